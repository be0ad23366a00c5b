"""Hyper-Quantization Tree (HQT): per-bit binary pseudo labels from random-depth binary k-means trees.

Pure NumPy (float32 BLAS); no TensorFlow. The pseudo bits are computed once, before training, from the
training set's backbone features, and serve as the BCE targets y_t of Eq. 2 of the paper.
"""

import numpy as np

from tfhash._validation import check_int

__all__ = ["HyperQuantizationTree", "binary_kmeans"]

# node ids are heap indices (root 1, children 2i and 2i + 1): depth 30 still fits in int64 easily
_MAX_DEPTH = 30


def _assign(x, c0, c1):
    """Nearest of two centres: label 1 where ||x − c1||² < ||x − c0||².

    That is x·(c1 − c0) > (||c1||² − ||c0||²)/2.
    Ties go to 0 (as argmin would). One matrix-vector product over x.
    """
    w = c1 - c0
    t = 0.5 * (float(c1 @ c1) - float(c0 @ c0))
    return (x @ w) > t


def binary_kmeans(x, seed=0, iterations=20):
    """2-means (k = 2) of the rows of x: k-means++ seeding, then at most ``iterations`` Lloyd steps.

    Deterministic for a given seed. The distances of the seeding use ||x||² − 2x·c + ||c||²; an assignment is
    a single matrix-vector product (the difference of the two squared distances is linear in x), and a centre
    update another one (the sum of cluster 1; cluster 0's sum is the total minus it), so an iteration reads x
    twice. Lloyd stops early once the assignment no longer changes (this does not change the result).

    Args:
        x: (n, d) float array (float32 is used as is; other dtypes are converted to float32).
        seed: int, seed of the k-means++ draws (numpy Generator).
        iterations: maximum number of Lloyd steps (>= 1).

    Returns:
        (n,) bool array: True = cluster 1. All False (one cluster) when x has < 2 distinct rows.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    if n < 2:
        return np.zeros(n, dtype=bool)
    rng = np.random.default_rng(seed)
    c0 = x[rng.integers(n)].copy()
    sq_norms = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    d2 = np.maximum(sq_norms - 2.0 * (x @ c0).astype(np.float64) + float(c0 @ c0), 0.0)
    total_d2 = d2.sum()
    if not total_d2 > 0.0:  # every row equals c0 (up to rounding): nothing to split
        return np.zeros(n, dtype=bool)
    c1 = x[rng.choice(n, p=d2 / total_d2)].copy()
    labels = _assign(x, c0, c1)
    total = np.ones(n, dtype=np.float32) @ x
    for _ in range(iterations):
        n1 = int(labels.sum())
        if n1 == 0 or n1 == n:  # degenerate: one cluster only
            break
        s1 = labels.astype(np.float32) @ x
        c1 = s1 / np.float32(n1)
        c0 = (total - s1) / np.float32(n - n1)
        new_labels = _assign(x, c0, c1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
    return labels


def _build_tree(x, max_depth, kmeans_seed, iterations):
    """Grows one binary k-means tree to ``max_depth`` levels; returns the node path of every sample.

    Returns an (n, max_depth + 1) int64 array: column d holds the id of the node a sample reaches after d
    levels (root 1; children of node i are 2i (k-means cluster 0) and 2i + 1 (cluster 1), as in Alg. 1). A
    node with < 2 samples, or whose split puts every sample on one side, is a leaf: its id is repeated in the
    later columns. Every node's 2-means uses the same ``kmeans_seed`` (like sklearn KMeans with one fixed
    random_state), so the first d levels of this tree are the tree grown to depth d. Depth first, so at most
    one node's rows are copied at a time.
    """
    n = x.shape[0]
    path = np.empty((n, max_depth + 1), dtype=np.int64)
    path[:, 0] = 1
    stack = [(None, 1, 0)]  # (sample indices or None for all, node id, level)
    while stack:
        idx, node, level = stack.pop()
        rows = slice(None) if idx is None else idx
        size = n if idx is None else idx.shape[0]
        if level == max_depth or size < 2:
            path[rows, level + 1:] = node
            continue
        labels = binary_kmeans(x if idx is None else x[idx], kmeans_seed, iterations)
        n1 = int(labels.sum())
        if n1 == 0 or n1 == size:
            path[rows, level + 1:] = node
            continue
        all_idx = np.arange(n) if idx is None else idx
        left, right = all_idx[~labels], all_idx[labels]
        path[left, level + 1] = 2 * node
        path[right, level + 1] = 2 * node + 1
        stack.append((right, 2 * node + 1, level + 1))
        stack.append((left, 2 * node, level + 1))
    return path


def _pca(x, dim, rng, power_iterations=1, oversampling=10):
    """Projects x onto its top ``dim`` principal directions (randomized range finder, Halko et al. 2011).

    The centring is folded into the products (x is never copied). Cost ≈ (3 + 2·power_iterations) passes of an
    (n, d) × (d, dim + oversampling) product.
    """
    n, d = x.shape
    width = min(dim + oversampling, d, n)
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)

    def right(m):  # (x − mean) @ m
        return x @ m - mean @ m

    def left(q):  # (x − mean).T @ q
        return x.T @ q - np.outer(mean, q.sum(axis=0))

    omega = rng.standard_normal((d, width)).astype(np.float32)
    q, _ = np.linalg.qr(right(omega))
    for _ in range(power_iterations):
        p, _ = np.linalg.qr(left(q))
        q, _ = np.linalg.qr(right(p))
    b = left(q).T  # (width, d) = q.T @ (x − mean)
    _, _, vt = np.linalg.svd(b, full_matrices=False)
    components = np.ascontiguousarray(vt[:dim].T, dtype=np.float32)  # (d, <= dim)
    return np.ascontiguousarray(right(components), dtype=np.float32)


class HyperQuantizationTree:
    """Hyper-Quantization Tree: one binary pseudo label per bit from a random-depth binary k-means tree.

    Per bit b (Alg. 1 of the paper): the training features are split recursively by 2-means into a tree of
    depth ``depths[b]`` (drawn uniformly from ``depth_range``, inclusive); a node is a leaf at that depth or
    when it holds < 2 samples (also when its 2-means puts every sample on one side, e.g. duplicates). The
    unique leaf ids that hold samples are permuted at random; the first ⌊L/2⌋ leaves form hyper-cluster 1
    (pseudo bit 1), the other ⌈L/2⌉ hyper-cluster 0 (pseudo bit 0) — balanced in leaves, not in samples (with
    L = 1 every bit is 0).

    ``shared_tree=True`` reproduces the released code: every node of every tree uses the same k-means seed, so
    trees of equal depth are identical and a depth-d tree is the first d levels of the deepest one. The
    deepest tree is therefore grown once and each bit reads its leaves at its own depth (the node reached
    after d levels, or the earlier leaf where a node stopped splitting); diversity across bits comes from the
    depths and the leaf partitions only. ``shared_tree=False`` grows an independently seeded tree per bit (the
    paper's description); it costs about ``num_bits`` times more, so for large inputs set ``projection_dim``
    (below).

    Randomness: ``numpy.random.Generator(seed)`` draws the depths (at construction); three further streams,
    ``Generator([seed, 1])``, ``([seed, 2])`` and ``([seed, 3])``, draw the k-means seed(s) (one, or one per
    bit when not shared), the PCA sketch (if any) and one leaf permutation per bit, so the shared tree depends
    on ``seed`` only (not on num_bits or depth_range). Identical seed and features give identical bits.

    Our 2-means (:func:`binary_kmeans`: k-means++ seeding, at most ``kmeans_iterations`` Lloyd steps in
    float32) replaces sklearn's KMeans(n_init='auto'), which runs one k-means++ init for k=2: the partitions
    agree on well-separated data, not bit for bit in general (different random streams).

    Speed (50,000 × 4,096 float32, 64 bits, 2 CPU cores; benchmarks/hqt_tree_speed.py): shared mode at full
    dimension ≈ 4–10 s; independent mode with ``projection_dim=128`` ≈ 9–12 s; independent mode at full
    dimension ≈ 3–7 min (extrapolated), over a 3-minute budget.

    Args:
        num_bits: number of bits K (>= 1), one tree each.
        depth_range: (min_depth, max_depth), inclusive, 1 <= min <= max <= 30; (3, 5) in the paper.
        shared_tree: True (released code): one k-means seed for all nodes and trees. False: one seed per tree.
        seed: int >= 0, seed of the numpy Generator behind every random draw.
        kmeans_iterations: maximum Lloyd iterations per node (>= 1).
        projection_dim: None (cluster the features as given) or an int >= 1: the features are first projected
            onto their top ``projection_dim`` principal components (randomized PCA, seeded from ``seed``); the
            trees are grown in that space. Not in the paper; a speed option for ``shared_tree=False``.

    Attributes (after :meth:`fit` / :meth:`pseudo_bits`):
        depths: (num_bits,) int array, each bit's tree depth (available from construction).
        leaf_ids_: (n, num_bits) int64, each sample's leaf id (heap index: root 1, children 2i, 2i + 1).
        positive_leaves_: list of num_bits sorted int64 arrays, the leaf ids whose samples get bit 1.
        pseudo_bits_: (n, num_bits) uint8 in {0, 1}.

    Example:
        >>> hqt = HyperQuantizationTree(num_bits=64, depth_range=(3, 5), seed=0)
        >>> targets = hqt.pseudo_bits(train_features)  # (n, 64) uint8: BCE targets y_t of Eq. 2
        >>> hqt.depths[:4], hqt.leaf_ids_[:2, 0]

    Reference:
        Kim & Ryu, "Unsupervised Hashing Network with Hyper Quantization Tree" (HQT), BMVC 2024: Alg. 1,
        Eq. 1–3, §3.3; released code https://github.com/Lab-LVM/HQT.
    """

    def __init__(self, num_bits, depth_range=(3, 5), shared_tree=True, seed=0, kmeans_iterations=20,
                 projection_dim=None):
        self.num_bits = check_int(num_bits, "num_bits", minimum=1)
        try:
            low, high = depth_range
        except (TypeError, ValueError):
            message = f"depth_range must be a pair (min_depth, max_depth), got {depth_range!r}"
            raise ValueError(message) from None
        low = check_int(low, "depth_range[0]", minimum=1)
        high = check_int(high, "depth_range[1]", minimum=1)
        if low > high:
            raise ValueError(f"depth_range must have min_depth <= max_depth, got {depth_range!r}")
        if high > _MAX_DEPTH:
            raise ValueError(f"depth_range max_depth must be <= {_MAX_DEPTH}, got {high}")
        self.depth_range = (low, high)
        if not isinstance(shared_tree, (bool, np.bool_)):
            raise ValueError(f"shared_tree must be a bool, got {shared_tree!r}")
        self.shared_tree = bool(shared_tree)
        self.seed = check_int(seed, "seed", minimum=0)
        self.kmeans_iterations = check_int(kmeans_iterations, "kmeans_iterations", minimum=1)
        if projection_dim is not None:
            projection_dim = check_int(projection_dim, "projection_dim", minimum=1)
        self.projection_dim = projection_dim
        self._rng = np.random.default_rng(self.seed)
        self.depths = self._rng.integers(low, high + 1, size=self.num_bits)

    def get_config(self):
        """The constructor's arguments as a JSON-compatible dict: ``HyperQuantizationTree(**get_config())``
        builds an identical tree (same depths, same draws on the same features)."""
        return {
            "num_bits": self.num_bits,
            "depth_range": list(self.depth_range),
            "shared_tree": self.shared_tree,
            "seed": self.seed,
            "kmeans_iterations": self.kmeans_iterations,
            "projection_dim": self.projection_dim,
        }

    def fit(self, features):
        """Grows the tree(s) on ``features`` (n, d) and draws the leaf partitions; returns self.

        Refitting restarts the random streams, so it gives the same result for the same data.
        """
        x = np.asarray(features)
        if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"features must be a non-empty 2-D array (n, d), got shape {x.shape}")
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) or np.iscomplexobj(x):
            raise ValueError(f"features must be real numbers, got dtype {x.dtype}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise ValueError("features must be finite (no NaN or inf)")
        if self.projection_dim is not None and self.projection_dim > x.shape[1]:
            raise ValueError(
                f"projection_dim must be <= the feature width {x.shape[1]}, got {self.projection_dim}"
            )

        kmeans_rng = np.random.default_rng([self.seed, 1])
        partition_rng = np.random.default_rng([self.seed, 3])
        if self.projection_dim is not None:
            x = _pca(x, self.projection_dim, np.random.default_rng([self.seed, 2]))
        n = x.shape[0]
        leaf_ids = np.empty((n, self.num_bits), dtype=np.int64)
        if self.shared_tree:
            kmeans_seed = int(kmeans_rng.integers(2**31))
            path = _build_tree(x, int(self.depths.max()), kmeans_seed, self.kmeans_iterations)
            leaf_ids[:] = path[:, self.depths]
        else:
            kmeans_seeds = kmeans_rng.integers(2**31, size=self.num_bits)
            for b in range(self.num_bits):
                depth = int(self.depths[b])
                leaf_ids[:, b] = _build_tree(x, depth, int(kmeans_seeds[b]), self.kmeans_iterations)[:, depth]

        bits = np.empty((n, self.num_bits), dtype=np.uint8)
        positive_leaves = []
        for b in range(self.num_bits):
            leaves = np.unique(leaf_ids[:, b])
            permuted = partition_rng.permutation(leaves)
            positive = np.sort(permuted[: leaves.size // 2])
            positive_leaves.append(positive)
            bits[:, b] = np.isin(leaf_ids[:, b], positive)
        self.leaf_ids_ = leaf_ids
        self.positive_leaves_ = positive_leaves
        self.pseudo_bits_ = bits
        return self

    def pseudo_bits(self, features):
        """Fits on ``features`` (n, d) and returns the pseudo bits, (n, num_bits) uint8 in {0, 1}."""
        return self.fit(features).pseudo_bits_
