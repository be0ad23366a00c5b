"""Clustering quality of binary codes: k-means on the codes, scored by NMI and Hungarian-mapped accuracy.

HashGAN (Ghasedi Dizaji et al., CVPR 2018, Table 3) measures how well the codes separate the classes by
running k-means on them (k = number of classes) and reporting the normalized mutual information and the
clustering accuracy of the clusters against the true labels, as the deep clustering papers of the time did
(DEC, DEPICT).

These are evaluation-time functions in numpy / SciPy / scikit-learn, not TensorFlow ops: they see each sample
once (at most ~70k of them), and the Hungarian algorithm and k-means have no use for a graph.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans

from tfhash._validation import check_int

_AVERAGES = ("geometric", "arithmetic", "min", "max")


def _as_ids(values, name):
    """Returns ``values`` as an int64 vector (n,) with n >= 1; a ValueError naming `name` otherwise."""
    values = np.asarray(values)
    if values.ndim != 1:
        detail = (
            "; a multi-hot label matrix has no single class per sample, which clustering quality needs"
            if values.ndim == 2
            else ""
        )
        raise ValueError(
            f"`{name}` must be a 1-D vector of integer ids (one per sample), "
            f"got shape {values.shape}{detail}."
        )
    if values.shape[0] == 0:
        raise ValueError(f"`{name}` is empty: it must hold at least one id.")
    floating = np.issubdtype(values.dtype, np.floating)
    whole_floats = floating and np.all(np.isfinite(values) & (values == np.round(values)))
    if not (np.issubdtype(values.dtype, np.integer) or whole_floats):
        detail = " with non-integer or non-finite entries" if floating else ""
        raise ValueError(f"`{name}` must hold integer ids, got dtype {values.dtype.name}{detail}.")
    return values.astype(np.int64)


def _contingency(labels, cluster_ids):
    """Contingency table (classes × clusters) of sample counts, as int64, after validating both id vectors."""
    labels = _as_ids(labels, "labels")
    cluster_ids = _as_ids(cluster_ids, "cluster_ids")
    if labels.shape[0] != cluster_ids.shape[0]:
        raise ValueError(
            "`labels` and `cluster_ids` must have the same length, "
            f"got {labels.shape[0]} and {cluster_ids.shape[0]}."
        )
    _, class_index = np.unique(labels, return_inverse=True)
    _, cluster_index = np.unique(cluster_ids, return_inverse=True)
    num_classes, num_clusters = class_index.max() + 1, cluster_index.max() + 1
    counts = np.bincount(class_index * num_clusters + cluster_index, minlength=num_classes * num_clusters)
    return counts.reshape(num_classes, num_clusters)


def _accuracy(table):
    rows, columns = linear_sum_assignment(table, maximize=True)
    return float(table[rows, columns].sum() / table.sum())


def _entropy(counts):
    """Entropy in nats of the distribution given by the counts, Σ (c/n)(log n − log c) over nonzero c."""
    counts = counts[counts > 0].astype(np.float64)
    n = counts.sum()
    return float(np.sum(counts / n * (np.log(n) - np.log(counts))))


def _nmi(table, average):
    num_classes, num_clusters = table.shape
    if num_classes == 1 and num_clusters == 1:
        return 1.0
    if num_classes == 1 or num_clusters == 1:
        return 0.0
    n = float(table.sum())
    class_sizes, cluster_sizes = table.sum(axis=1), table.sum(axis=0)
    rows, columns = np.nonzero(table)
    joint = table[rows, columns].astype(np.float64)
    # Σ p_ij log(n·n_ij / (a_i·b_j)), grouped as in `_entropy`: a perfect clustering's terms equal those of H.
    mutual_information = np.sum(
        joint / n * (np.log(joint) - np.log(class_sizes[rows]) - np.log(cluster_sizes[columns]) + np.log(n))
    )
    h_classes, h_clusters = _entropy(class_sizes), _entropy(cluster_sizes)
    normalizer = {
        "geometric": np.sqrt(h_classes * h_clusters),
        "arithmetic": (h_classes + h_clusters) / 2.0,
        "min": min(h_classes, h_clusters),
        "max": max(h_classes, h_clusters),
    }[average]
    # I ≤ min(H(Y), H(C)) ≤ every average; the clip only removes floating-point rounding at 0 and 1.
    return float(np.clip(mutual_information / normalizer, 0.0, 1.0))


def clustering_accuracy(labels, cluster_ids):
    """Clustering accuracy under the best one-to-one mapping of clusters to classes (Hungarian algorithm).

    ACC = max over one-to-one maps m of (1/n) Σᵢ 1[labels_i = m(cluster_i)], found by
    `scipy.optimize.linear_sum_assignment` on the classes × clusters contingency table. The numbers of
    clusters and classes may differ: the table is then rectangular, at most min(classes, clusters) pairs are
    matched, and the samples of an unmatched cluster (or class) count as wrong.

    Args:
        labels: (n,) integer class ids, any integers (not necessarily 0..classes−1).
        cluster_ids: (n,) integer cluster ids, any integers.

    Returns:
        float in [0, 1].

    Example:

    >>> clustering_accuracy([0, 0, 1, 1, 2], [7, 7, 3, 3, 3])
    0.8

    Reference:
        Xie, Girshick & Farhadi, "Unsupervised Deep Embedding for Clustering Analysis", ICML 2016 (the ACC
        definition); Kuhn, "The Hungarian method for the assignment problem", 1955; Ghasedi Dizaji et al.,
        CVPR 2018, Table 3 (reported for HashGAN's codes).
    """
    return _accuracy(_contingency(labels, cluster_ids))


def normalized_mutual_information(labels, cluster_ids, average="geometric"):
    """Normalized mutual information between classes and clusters, NMI = I(Y; C) / mean(H(Y), H(C)).

    Computed in float64 from the contingency table (natural logarithms; the base cancels). The default
    ``average="geometric"``, √(H(Y)·H(C)) (Strehl & Ghosh 2002), was scikit-learn's default before version
    0.22 and is the NMI that the 2017–2018 clustering and hashing papers (DEC, DEPICT, HashGAN) reported;
    `sklearn.metrics.normalized_mutual_info_score` now defaults to ``"arithmetic"``.

    Degenerate partitions follow scikit-learn: if both `labels` and `cluster_ids` put all samples in a single
    group the partitions are identical and NMI is 1.0; if only one of them does, it carries no information and
    NMI is 0.0 (whatever the average, including "min", whose normalizer would be 0).

    Args:
        labels: (n,) integer class ids, any integers.
        cluster_ids: (n,) integer cluster ids, any integers.
        average: how the two entropies are averaged in the normalizer: "geometric", "arithmetic", "min" or
            "max".

    Returns:
        float in [0, 1]; invariant to renaming the classes or the clusters.

    Example:

    >>> normalized_mutual_information([0, 0, 1, 1], [5, 5, 2, 2])
    1.0

    Reference:
        Strehl & Ghosh, "Cluster Ensembles", JMLR 2002 (geometric NMI); Vinh, Epps & Bailey, JMLR 2010 (the
        other normalizations); Ghasedi Dizaji et al., CVPR 2018, Table 3.
    """
    if average not in _AVERAGES:
        raise ValueError(f"`average` must be one of {_AVERAGES}, got {average!r}.")
    return _nmi(_contingency(labels, cluster_ids), average)


def _as_real_codes(codes, num_labels):
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"`codes` must be a 2-D matrix (samples × bits), got shape {codes.shape}.")
    if codes.shape[0] != num_labels:
        raise ValueError(
            f"`codes` has {codes.shape[0]} rows but `labels` has {num_labels} entries: they must match."
        )
    if codes.shape[1] == 0:
        raise ValueError("`codes` has no columns: each sample needs at least one bit.")
    if codes.dtype == np.uint8 and np.any(codes > 1):
        raise ValueError(
            "`codes` is uint8 with values other than 0 and 1: packed codes must be unpacked first "
            "(`tfhash.codes.unpack_codes`), k-means on packed bytes is meaningless."
        )
    if not (np.issubdtype(codes.dtype, np.number) or codes.dtype == np.bool_) or np.iscomplexobj(codes):
        raise ValueError(f"`codes` must hold real numbers, got dtype {codes.dtype.name}.")
    codes = codes.astype(np.float64)
    if not np.all(np.isfinite(codes)):
        raise ValueError("`codes` holds NaN or infinite values.")
    return codes


def kmeans_code_clustering(codes, labels, num_clusters=None, seed=0, n_init=10):
    """Clusters the codes with k-means and scores the clusters against the labels (HashGAN, Table 3).

    k-means (`sklearn.cluster.KMeans`, k-means++ initialisation, `n_init` restarts, ``random_state=seed``)
    runs on the codes as float64. Binary codes may be ±1 or {0, 1}: one is an affine image of the other, which
    k-means is equivariant to; any real-valued codes work too.

    Args:
        codes: (n, K) codes, ±1, {0, 1} or real-valued (not packed uint8 codes: unpack them first).
        labels: (n,) integer class ids, one class per sample (multi-hot labels are rejected).
        num_clusters: k; None uses the number of distinct labels, as the paper does.
        seed: k-means random state (an integer >= 0); the result is deterministic given it.
        n_init: number of k-means restarts; the run with the lowest inertia is kept.

    Returns:
        dict with "nmi" (geometric NMI, the paper's), "nmi_arithmetic" (scikit-learn's current default NMI),
        "accuracy" (Hungarian-mapped clustering accuracy) and "num_clusters" (the k used).

    Example:

    >>> codes = np.array([[1, 1], [1, 1], [-1, -1], [-1, -1]])
    >>> kmeans_code_clustering(codes, [3, 3, 8, 8])["accuracy"]
    1.0

    Reference:
        Ghasedi Dizaji et al., "Unsupervised Deep Generative Adversarial Hashing Network", CVPR 2018, Table 3.
    """
    labels = _as_ids(labels, "labels")
    codes = _as_real_codes(codes, labels.shape[0])
    num_clusters = check_int(num_clusters, "num_clusters", minimum=1, allow_none=True)
    if num_clusters is None:
        num_clusters = len(np.unique(labels))
    elif num_clusters > codes.shape[0]:
        raise ValueError(
            f"`num_clusters` must be at most the number of codes ({codes.shape[0]}), got {num_clusters}."
        )
    seed = check_int(seed, "seed", minimum=0)
    n_init = check_int(n_init, "n_init", minimum=1)
    cluster_ids = KMeans(n_clusters=num_clusters, n_init=n_init, random_state=seed).fit_predict(codes)
    table = _contingency(labels, cluster_ids)
    return {
        "nmi": _nmi(table, "geometric"),
        "nmi_arithmetic": _nmi(table, "arithmetic"),
        "accuracy": _accuracy(table),
        "num_clusters": num_clusters,
    }
