"""DSAH's Adaptive Neighbor Discovery (AND): the initial ±1 similarity W⁰ and its update between rounds.

NumPy / SciPy; no TensorFlow. W⁰ is computed once, before training, from the training set's backbone
features; between rounds, `AdaptiveNeighborDiscovery.update` turns into neighbours the dissimilar pairs whose
learned codes are at least as similar as the current neighbours typically are. Everything works in row blocks,
so the n × n similarity is never held as floats; it is kept either dense (int8, for n up to ~20,000) or as
neighbour lists (the positives of each row), which scale to n = 50,000 and beyond.
"""

import numpy as np
import scipy.sparse

from tfhash._validation import check_int, check_number

__all__ = ["AdaptiveNeighborDiscovery"]

_BLOCK_ROWS = 1024  # rows per block in the static conversions, which take no block_size


class AdaptiveNeighborDiscovery:
    """DSAH's Adaptive Neighbor Discovery: W⁰ from k-NN and shared neighbours (Eq. 7–9), updated by Eq. 10–12.

    W is an n × n matrix of ±1, ``w_ij = +1`` when j is a neighbour of i; rows are directional (W is not
    symmetrised). Two representations, accepted and returned by every method:

    - dense: an int8 array (n, n) of +1 / −1;
    - neighbour lists: an int32 array (n, c), row i holding the columns j with ``w_ij = +1`` in ascending
      order, padded at the end with −1 to the common width c. `to_dense` and `to_lists` convert between them.

    Initialisation (`initial_neighbors`), from features x (n, D):

    - Eq. 7, low order: ``N_L(i) = {i} ∪`` the k1 other samples of highest cosine similarity to i (cosines of
      the L2-normalised features in float32); ``(W_L)_ij = +1`` iff j ∈ N_L(i), so every row of W_L has
      exactly k1 + 1 positives. The sample itself counts, as in the released code's ``data[i][:K1 + 1]``
      ("exclude itself so add one"). Equal cosines at the k1-th place go to the lower sample index (cosines
      closer than float32 rounding may order differently from a float64 computation).
    - Eq. 8, high order: the paper ranks j by ``1 / (1 + ‖(W_L)_i − (W_L)_j‖)`` over the ±1 rows. As every row
      has k1 + 1 positives, ``‖(W_L)_i − (W_L)_j‖² = 8·(k1 + 1 − C_ij)`` with ``C_ij = |N_L(i) ∩ N_L(j)|`` the
      number of shared neighbours, so the ranking is by C_ij, descending. ``N_H(i) = {i} ∪`` the k2 other
      samples of largest C_ij, equal counts going to the lower sample index.
    - Eq. 9: ``w⁰_ij = +1`` iff j ∈ N_L(i) and j ∈ N_H(i), else −1. The diagonal is +1 and a row holds at most
      min(k1, k2) + 1 positives.

    Update (`update`), from the model's continuous codes z (n, K) of the training samples, with ``s_ij`` the
    cosine similarity of z_i and z_j (Eq. 4):

    - Eq. 11: μ and σ, the mean and the (population) standard deviation of s_ij over all n₊ pairs with
      ``w_ij = +1``, the diagonal included;
    - Eq. 10: the threshold ``m = μ + γ·σ``;
    - Eq. 12: every pair with ``w_ij = −1`` and ``s_ij ≥ m`` becomes +1. Positives are never removed.

    What the released code does (W_create.py, utils/Update.py, run_*_gpu.py), and what is followed here:

    - W_create.py ranks by squared Euclidean distance of the raw features (the paper: cosine similarity) and
      ranks the high order by the shared-neighbour counts directly (the same ranking as Eq. 8, see above),
      with an unstable sort (ties: here the lower index). It then intersects into an empty set
      (``sp = set(); sp = sp & ...``), so it never sets a positive, and it symmetrises
      (``S[i][j] = S[j][i] = 1``). Eq. 7–9 of the paper, row-wise, are implemented here.
    - ``update_W_AND`` takes the inner products of the raw tanh codes (the paper's Eq. 4: cosine; used here)
      and ``np.std(..., ddof=1)``; Eq. 11 divides by n₊, as here (σ smaller by a factor ≈ 1 − 1/(2n₊)). Its
      positives ``W0 >= 0`` include the diagonal, as here.

    Memory and speed: a block of ``block_size`` rows holds a few (block_size, n) arrays (feature cosines in
    float32, code cosines in float64, shared-neighbour counts in int32, masks); W_L is a sparse matrix of
    n·(k1 + 1) entries. The cost of W⁰ is dominated by the shared-neighbour counts, a sparse product of
    ≈ n·(k1 + 1)² multiply-adds (a dense float32 product of the 0/1 rows, n³, was 3× slower already at
    n = 10,000). Measured on two busy CPU cores with block_size = 1024, D = 1,280, k1 = k2 = 500: W⁰ of
    n = 10,000 samples takes ≈ 25 s and 0.6 GB at peak, of n = 50,000 ≈ 7 min and 2.6 GB. An update with
    K = 64 (three passes of code cosines) takes ≈ 3 s for n = 10,000 and 1–1.5 min for n = 50,000 (lists; the
    peak, 1.5–2.6 GB there, grows with the pairs added). The dense representation holds n² bytes in and n²
    out, so neighbour lists are the choice beyond n ≈ 20,000.

    Args:
        num_neighbors: k1, int >= 1, the low-order neighbours per sample besides itself (500 in the paper).
        num_shared_neighbors: k2, int >= 1, the high-order neighbours per sample besides itself (500).
        gamma: γ of Eq. 10, a finite float (1 for CIFAR-10 and NUS-WIDE, 0 for FLICKR25K in the paper);
            larger is stricter.
        block_size: int >= 1, rows processed at a time.

    Example:

    >>> discovery = AdaptiveNeighborDiscovery(num_neighbors=500, num_shared_neighbors=500, gamma=1.0)
    >>> neighbors = discovery.initial_neighbors(train_features)      # (n, c) int32 lists of W⁰
    >>> # ... train a round against W, then with the codes z (n, K) of the training images:
    >>> neighbors, report = discovery.update(neighbors, train_codes)  # report["threshold"], report["added"]
    >>> AdaptiveNeighborDiscovery.quality(neighbors, train_labels)["f_w"]   # Sec. 5.4.2, if labels exist

    Reference:
        Lin et al., "Deep Self-Adaptive Hashing for Image Retrieval", CIKM 2021, Sec. 4.2 (Eq. 7–12) and
        Sec. 5.4.2 (F_w). Released code: QinghongLin/DSAH (W_create.py, utils/Update.py).
    """

    def __init__(self, num_neighbors=500, num_shared_neighbors=500, gamma=1.0, block_size=1024):
        self.num_neighbors = check_int(num_neighbors, "num_neighbors", minimum=1)
        self.num_shared_neighbors = check_int(num_shared_neighbors, "num_shared_neighbors", minimum=1)
        self.gamma = check_number(gamma, "gamma")
        self.block_size = check_int(block_size, "block_size", minimum=1)

    def get_config(self):
        """The constructor's arguments as a JSON-compatible dict."""
        return {
            "num_neighbors": self.num_neighbors,
            "num_shared_neighbors": self.num_shared_neighbors,
            "gamma": self.gamma,
            "block_size": self.block_size,
        }

    def __repr__(self):
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"

    # --- W⁰ -----------------------------------------------------------------------------------------------

    def initial_neighbors(self, features):
        """W⁰ of Eq. 7–9 from features (n, D), as int32 neighbour lists (n, c), c ≤ min(k1, k2) + 1.

        ``w⁰_ij = +1`` iff j is among i's k1-NN by cosine similarity (i itself included) and among the k2
        samples sharing most of those neighbours with i (i itself included); see the class docstring.
        """
        x = _as_real_matrix(features, "features")
        n = x.shape[0]
        k1, k2 = self.num_neighbors, self.num_shared_neighbors
        if n < 2:
            raise ValueError(f"`features` must hold n >= 2 samples, got shape {x.shape}.")
        for name, k in (("num_neighbors", k1), ("num_shared_neighbors", k2)):
            if k >= n:
                raise ValueError(
                    f"`features` holds n = {n} samples: {name} must be < n (each sample needs {k} other "
                    f"samples), got {name}={k}."
                )
        unit = _normalize_rows(x, np.float32)

        # Eq. 7: the k1 + 1 highest cosines of each row, the sample itself forced in
        low = np.empty((n, k1 + 1), dtype=np.int32)
        for rows in self._blocks(n):
            cosine = unit[rows] @ unit.T
            cosine[_diagonal(rows)] = np.inf
            low[rows] = _mask_to_lists(_top_mask(cosine, k1 + 1), k1 + 1)

        # Eq. 8: shared-neighbour counts C = A·Aᵀ, A the 0/1 matrix of W_L's positives (sparse)
        adjacency = scipy.sparse.csr_array(
            (np.ones(low.size, dtype=np.int32), low.ravel(), np.arange(0, low.size + 1, k1 + 1)), shape=(n, n)
        )
        reverse = adjacency.T.tocsr()
        width = min(k1, k2) + 1
        neighbors = np.full((n, width), -1, dtype=np.int32)
        for rows in self._blocks(n):
            shared = (adjacency[rows] @ reverse).toarray()
            shared[_diagonal(rows)] = k1 + 2  # above any count (at most k1 + 1): i ∈ N_H(i)
            high = _top_mask(shared, k2 + 1)
            del shared
            # Eq. 9: the high-order neighbours that are low-order neighbours too
            index = np.arange(rows.stop - rows.start)[:, None], low[rows]
            both = np.zeros_like(high)
            both[index] = high[index]
            neighbors[rows] = _mask_to_lists(both, width)
        return np.ascontiguousarray(neighbors[:, : int((neighbors >= 0).sum(axis=1).max())])

    # --- Eq. 10–12 ----------------------------------------------------------------------------------------

    def update(self, similarity, codes, max_neighbors=None):
        """One AND update (Eq. 10–12) of W from the codes z (n, K) of the n training samples.

        Args:
            similarity: W, dense int8 (n, n) of ±1 or int neighbour lists (n, c) (dense iff it is a square
                int8 array; any other integer array is read as lists).
            codes: (n, K) float array, the model's continuous codes z of the training samples.
            max_neighbors: None (unlimited) or int >= 1, neighbour lists only: the most positives a row may
                hold. A row that would exceed it keeps all its old positives and takes the new pairs in
                decreasing s_ij (equal ones: lower index first) up to max_neighbors; a row already holding
                more keeps them all and takes none. The pairs left out are counted as ``dropped``.

        Returns:
            ``(new_similarity, report)``: W of the next round in the representation of ``similarity`` (a new
            array; lists sorted per row, width = the largest row count), and a dict of Python numbers:
            ``positives_before`` (n₊), ``positives`` (after), ``added``, ``dropped``, ``mean`` (μ), ``std``
            (σ, population) and ``threshold`` (m = μ + γσ).
        """
        kind, w = _as_similarity(similarity)
        n = w.shape[0]
        max_neighbors = check_int(max_neighbors, "max_neighbors", minimum=1, allow_none=True)
        if kind == "dense" and max_neighbors is not None:
            raise ValueError(
                f"`max_neighbors` bounds neighbour lists; `similarity` is dense (n × n int8), got "
                f"max_neighbors={max_neighbors}."
            )
        z = _as_real_matrix(codes, "codes")
        if z.shape[0] != n:
            raise ValueError(
                f"`codes` must have one row per sample of `similarity` ({n}), got shape {z.shape}."
            )
        unit = _normalize_rows(z, np.float64)

        # Eq. 11 in two passes (mean, then squared deviations), summed per row first so that the result does
        # not depend on the block boundaries
        row_sums = np.zeros(n)
        positives = 0
        for rows in self._blocks(n):
            positive = _positive_mask(kind, w, rows, n)
            row_sums[rows] = np.where(positive, unit[rows] @ unit.T, 0.0).sum(axis=1)
            positives += int(positive.sum())
        if positives == 0:
            raise ValueError("`similarity` has no positive pair: the mean μ of Eq. 11 is undefined.")
        mean = float(row_sums.sum() / positives)
        for rows in self._blocks(n):
            positive = _positive_mask(kind, w, rows, n)
            row_sums[rows] = np.where(positive, np.square(unit[rows] @ unit.T - mean), 0.0).sum(axis=1)
        std = float(np.sqrt(row_sums.sum() / positives))
        threshold = mean + self.gamma * std  # Eq. 10

        # Eq. 12
        added = dropped = 0
        if kind == "dense":
            updated = np.empty((n, n), dtype=np.int8)
        else:
            pieces = []
        for rows in self._blocks(n):
            positive = _positive_mask(kind, w, rows, n)
            cosine = unit[rows] @ unit.T
            new = (cosine >= threshold) & ~positive
            if max_neighbors is not None:
                dropped += _keep_most_similar(new, cosine, max_neighbors - positive.sum(axis=1))
            added += int(new.sum())
            positive |= new
            if kind == "dense":
                updated[rows] = np.where(positive, np.int8(1), np.int8(-1))
            else:
                pieces.append((rows.start, positive.sum(axis=1), np.nonzero(positive)[1].astype(np.int32)))
        if kind == "lists":
            updated = _pad_lists(pieces, n)
        report = {
            "positives_before": positives,
            "positives": positives + added,
            "added": added,
            "dropped": dropped,
            "mean": mean,
            "std": std,
            "threshold": float(threshold),
        }
        return updated, report

    # --- quality and conversions --------------------------------------------------------------------------

    @staticmethod
    def quality(similarity, labels, block_size=1024):
        """Precision, recall and F_w of W against the labels' same-class matrix G (Sec. 5.4.2, Fig. 7).

        ``g_ij = +1`` iff samples i and j share a label (the diagonal included: a sample shares its labels
        with itself; with multi-hot labels, a sample without any label shares none, not even with itself). The
        paper's α and β put ``1(w_ij = g_ij)`` in their numerators, which also counts the pairs where both are
        −1 (α could exceed 1); the evident intent, implemented here, is
        ``precision = #(w = +1 ∧ g = +1) / #(w = +1)``, ``recall = #(w = +1 ∧ g = +1) / #(g = +1)`` and
        ``F_w = 2 / (1/precision + 1/recall)`` (0 when either is 0; a ratio with a zero denominator is 0).

        Args:
            similarity: W, dense int8 (n, n) or int neighbour lists (n, c), as in `update`.
            labels: (n,) integer class ids, or (n, C) multi-hot 0/1 (share = at least one common label).
            block_size: int >= 1, rows processed at a time.

        Returns:
            dict of Python numbers: ``precision``, ``recall``, ``f_w``, ``positives`` (#(w = +1)),
            ``true_positives`` (#(w = +1 ∧ g = +1)) and ``label_positives`` (#(g = +1)).
        """
        kind, w = _as_similarity(similarity)
        block_size = check_int(block_size, "block_size", minimum=1)
        n = w.shape[0]
        y = np.asarray(labels)
        if y.shape[:1] != (n,) or y.ndim not in (1, 2):
            raise ValueError(
                f"`labels` must be (n,) class ids or (n, C) multi-hot with n = {n} samples, got shape "
                f"{y.shape}."
            )
        if y.ndim == 1 and not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"`labels` of shape (n,) must be integer class ids, got dtype {y.dtype}.")
        if y.ndim == 2:
            if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool) or not np.isin(y, (0, 1)).all():
                raise ValueError("`labels` of shape (n, C) must be multi-hot: every entry 0 or 1.")
            y = y.astype(np.float32)
        positives = true_positives = label_positives = 0
        for start in range(0, n, block_size):
            rows = slice(start, min(start + block_size, n))
            same = y[rows, None] == y[None, :] if y.ndim == 1 else (y[rows] @ y.T) > 0
            positive = _positive_mask(kind, w, rows, n)
            positives += int(positive.sum())
            true_positives += int((positive & same).sum())
            label_positives += int(same.sum())
        precision = true_positives / positives if positives else 0.0
        recall = true_positives / label_positives if label_positives else 0.0
        f_w = 2.0 / (1.0 / precision + 1.0 / recall) if precision > 0 and recall > 0 else 0.0
        return {
            "precision": float(precision),
            "recall": float(recall),
            "f_w": float(f_w),
            "positives": positives,
            "true_positives": true_positives,
            "label_positives": label_positives,
        }

    @staticmethod
    def to_dense(neighbor_lists, num_samples=None):
        """Neighbour lists (r, c) → dense int8 (r, num_samples) of ±1; ``num_samples`` defaults to r."""
        lists = np.asarray(neighbor_lists)
        if lists.ndim != 2 or not np.issubdtype(lists.dtype, np.integer):
            raise ValueError(
                f"`neighbor_lists` must be a 2-D integer array, got shape {lists.shape}, dtype {lists.dtype}."
            )
        if num_samples is None:
            num_samples = lists.shape[0]
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        if lists.size and lists.max() >= num_samples:
            raise ValueError(
                f"`num_samples` must exceed the largest index in `neighbor_lists` ({lists.max()}), got "
                f"{num_samples}."
            )
        lists = _check_lists(lists, num_samples, "neighbor_lists")
        dense = np.full((lists.shape[0], num_samples), -1, dtype=np.int8)
        row, slot = np.nonzero(lists >= 0)
        dense[row, lists[row, slot]] = 1
        return dense

    @staticmethod
    def to_lists(dense):
        """Dense ±1 (r, n) → int32 neighbour lists (r, c), c = the largest number of +1 in a row."""
        w = np.asarray(dense)
        if w.ndim != 2 or not (np.issubdtype(w.dtype, np.number) or w.dtype == bool):
            raise ValueError(f"`dense` must be a 2-D array of ±1, got shape {w.shape}, dtype {w.dtype}.")
        pieces = []
        for start in range(0, w.shape[0], _BLOCK_ROWS):
            block = w[start: start + _BLOCK_ROWS]
            positive = block == 1
            if not (positive | (block == -1)).all():
                raise ValueError("`dense` must hold only +1 and -1.")
            pieces.append((start, positive.sum(axis=1), np.nonzero(positive)[1].astype(np.int32)))
        return _pad_lists(pieces, w.shape[0])

    def _blocks(self, n):
        for start in range(0, n, self.block_size):
            yield slice(start, min(start + self.block_size, n))


# --- helpers ------------------------------------------------------------------------------------------------


def _as_real_matrix(values, name):
    x = np.asarray(values)
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"`{name}` must be a 2-D array (n, D) with D >= 1, got shape {x.shape}.")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise ValueError(f"`{name}` must be real numbers, got dtype {x.dtype}.")
    if not np.isfinite(x).all():
        raise ValueError(f"`{name}` must be finite (found NaN or inf).")
    return x


def _normalize_rows(x, dtype):
    """Rows scaled to unit L2 norm (in float64, by blocks of rows), as ``dtype``; all-zero rows stay zero
    (their cosine with anything is 0, not NaN)."""
    unit = np.empty(x.shape, dtype=dtype)
    for start in range(0, x.shape[0], _BLOCK_ROWS):
        block = x[start: start + _BLOCK_ROWS].astype(np.float64)
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        unit[start: start + _BLOCK_ROWS] = block / np.where(norms > 0, norms, 1.0)
    return unit


def _diagonal(rows):
    """Index of the entries (i, i) in a block of the rows ``rows`` (a slice) of an n × n matrix."""
    return np.arange(rows.stop - rows.start), np.arange(rows.start, rows.stop)


def _top_mask(values, count):
    """Boolean mask of the ``count`` largest entries of each row of ``values`` (b, n); at the boundary, equal
    values go to the lower column index. Selection by np.partition (linear time), not a sort."""
    n = values.shape[1]
    kth = np.partition(values, n - count, axis=1)[:, n - count, None]  # the count-th largest of each row
    above = values > kth
    at = values == kth
    need = count - above.sum(axis=1)
    tied = np.flatnonzero(at.sum(axis=1) > need)
    mask = above | at
    if tied.size:
        rank = np.cumsum(at[tied], axis=1, dtype=np.int32)  # 1, 2, … over the tied entries, left to right
        mask[tied] = above[tied] | (at[tied] & (rank <= need[tied, None]))
    return mask


def _mask_to_lists(mask, width):
    """The True columns of each row of a boolean (b, n) mask, ascending, padded with −1 to ``width``."""
    row, column = np.nonzero(mask)
    lists = np.full((mask.shape[0], width), -1, dtype=np.int32)
    starts = np.concatenate([[0], np.cumsum(mask.sum(axis=1))[:-1]])
    lists[row, np.arange(row.size) - starts[row]] = column
    return lists


def _pad_lists(pieces, num_rows):
    """Neighbour lists (num_rows, the largest count) from blocks of rows, each ``(first row, row counts, the
    rows' columns end to end)``. The list of pieces is emptied as they are copied, so that the pieces and the
    result are not both held in full."""
    width = max((int(counts.max()) for _, counts, _ in pieces if counts.size), default=0)
    lists = np.full((num_rows, width), -1, dtype=np.int32)
    while pieces:
        start, counts, columns = pieces.pop(0)
        lists[start: start + counts.size][np.arange(width) < counts[:, None]] = columns
    return lists


def _check_lists(lists, num_columns, name):
    """Validates neighbour lists (rows strictly ascending, −1 only as trailing padding, indices below
    ``num_columns``) and returns them as int32."""
    valid = lists >= 0
    if lists.size and (lists.min() < -1 or lists.max() >= num_columns):
        raise ValueError(
            f"`{name}` entries must be column indices in [0, {num_columns}) or the padding -1, got values in "
            f"[{lists.min()}, {lists.max()}]."
        )
    if (valid[:, 1:] & ~valid[:, :-1]).any():
        raise ValueError(f"`{name}` must pad each row with -1 at the end only.")
    if (valid[:, 1:] & (np.diff(lists, axis=1) <= 0)).any():
        raise ValueError(f"`{name}` rows must be strictly ascending column indices.")
    return lists.astype(np.int32, copy=False)


def _as_similarity(similarity):
    """("dense", int8 (n, n)) or ("lists", int32 (n, c)), validated; a ValueError naming `similarity`."""
    w = np.asarray(similarity)
    if w.ndim == 2 and w.shape[0] == w.shape[1] and w.dtype == np.int8:
        for start in range(0, w.shape[0], _BLOCK_ROWS):
            block = w[start: start + _BLOCK_ROWS]
            if not ((block == 1) | (block == -1)).all():
                raise ValueError("`similarity` (dense, int8) must hold only +1 and -1.")
        return "dense", w
    if w.ndim == 2 and np.issubdtype(w.dtype, np.integer) and w.shape[0] >= 1:
        return "lists", _check_lists(w, w.shape[0], "similarity")
    raise ValueError(
        "`similarity` must be a dense int8 (n, n) array of ±1 or integer neighbour lists (n, c) padded with "
        f"-1, got shape {w.shape}, dtype {w.dtype}."
    )


def _positive_mask(kind, w, rows, n):
    """Boolean (b, n) mask of the positives of the rows ``rows`` (a slice) of W."""
    if kind == "dense":
        return w[rows] == 1
    lists = w[rows]
    mask = np.zeros((lists.shape[0], n), dtype=bool)
    row, slot = np.nonzero(lists >= 0)
    mask[row, lists[row, slot]] = True
    return mask


def _keep_most_similar(new, cosine, room):
    """Trims each row of the candidate mask ``new`` (in place) to its ``room`` (≥ 0 kept) most similar
    entries, equal cosines to the lower column; returns the number of candidates removed."""
    room = np.maximum(room, 0)
    found = new.sum(axis=1)
    removed = 0
    for row in np.flatnonzero(found > room):
        columns = np.flatnonzero(new[row])
        order = np.argsort(-cosine[row, columns], kind="stable")  # columns ascend: ties stay lower-first
        new[row, columns[order[room[row]:]]] = False
        removed += int(found[row] - room[row])
    return removed
