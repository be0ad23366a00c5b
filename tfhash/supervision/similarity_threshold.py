"""UCSH's adaptive similarity threshold: SSDH's half-Gaussian fit to the distribution of cosine distances.

NumPy only; no TensorFlow. The pairwise cosine distances ``d_ij = 1 − cos(x_i, x_j)`` of deep features peak
at a mode m; the distances below it are modelled by the half N(m, σ_L²) and those above it by the half
N(m, σ_R²). UCSH calls pairs closer than ``d_t = m − 2σ_L`` similar and uses ``s_t = 1 − 2·d_t`` as the
similarity threshold of its similarity-separating loss (Eq. 6), refitted from the current features as training
goes on. `half_gaussian_fit` and `ucsh_similarity_threshold` take distances (a vector, or a matrix whose upper
triangle is read); `ucsh_similarity_threshold_from_features` computes the cosine distances itself, in blocks,
for all pairs or a seeded random subset of them, so that n = 50,000 features never need an n × n matrix.
"""

import numpy as np

from tfhash._validation import check_int, check_number

__all__ = [
    "cosine_distances",
    "half_gaussian_fit",
    "ucsh_similarity_threshold",
    "ucsh_similarity_threshold_from_features",
]

_BLOCK_SIZE = 1 << 22  # float32 values one block of distances (or gathered feature rows) holds: 16 MiB


def cosine_distances(features, pairs=None, block_size=_BLOCK_SIZE):
    """Cosine distances ``d_ij = 1 − x_i·x_j / (‖x_i‖ ‖x_j‖)`` of feature rows, clipped to [0, 2] (float32).

    Computed in float32 from the L2-normalised rows, block by block: memory beyond the features and the result
    is a small multiple of ``block_size`` float32 values, never an n × n matrix.

    Args:
        features: (n, D) real array, n >= 2, finite, no all-zero row.
        pairs: None for all pairs i < j, in row-major order (that of ``scipy.spatial.distance.pdist``:
            (0, 1), (0, 2), …, (1, 2), …), or a (p, 2) integer array of sample index pairs (i, j); a pair
            with i = j has distance exactly 0.
        block_size: int >= 1, about how many float32 values one block holds: the all-pairs path computes
            ``max(1, block_size // n)`` rows of distances at a time, the pairs path gathers the feature rows
            of ``max(1, block_size // (2·D))`` pairs at a time.

    Returns:
        float32 array of n(n − 1)/2 distances (``pairs=None``) or of p distances, one per pair.

    Example:

    >>> distances = cosine_distances(features)        # (n, D) → n(n − 1)/2 distances
    >>> ucsh_similarity_threshold(distances)["similarity_threshold"]

    Reference:
        Zhang et al., "Clustering and Separating Similarities for Deep Unsupervised Hashing" (UCSH), Sec. 2.3:
        the cosine distance d_ij between deep features, and S_ij = 1 − 2·d_ij (Eq. 2).
    """
    unit = unit_rows(features)
    pairs = None if pairs is None else _check_pairs(pairs, unit.shape[0])
    block_size = check_int(block_size, "block_size", minimum=1)
    blocks = _cosine_distance_blocks(unit, pairs, block_size)
    return np.concatenate([np.zeros(0, dtype=np.float32), *blocks])


def half_gaussian_fit(distances, bins=100, value_range=(0.0, 2.0)):
    """SSDH's two half-Gaussians around the mode of a distance distribution: the mode m and spreads σ_L, σ_R.

    - The mode m is the centre of the fullest bin of the histogram of the distances over ``value_range`` in
      ``bins`` equal bins (that of ``np.histogram(distances, bins, value_range)``: bins closed on the left,
      the last also on the right; distances outside ``value_range`` are not histogrammed). The first fullest
      bin wins ties.
    - The distances ``d <= m`` (all of them, inside ``value_range`` or not) and their mirror images
      ``2m − d`` are fitted with a Gaussian by maximum likelihood; its mean is m and its spread
      ``σ_L = sqrt(mean_{d <= m} (d − m)²)``. Likewise ``σ_R = sqrt(mean_{d > m} (d − m)²)``.

    Accuracy: an error δ in the mode moves distances between the halves and biases a spread by up to about
    δ/σ (relative). The fullest bin is at best within a bin of the true mode; narrower bins hold fewer
    distances each, so on a flat peak the fullest one wanders further. On two-sided Gaussians with m = 0.6,
    σ_L = 0.08, σ_R = 0.15 (200,000 distances), the default 100 bins over [0, 2] (width 0.02) put the mode
    within one bin and the spreads within about 6 %; 200 bins were no better (mode up to 2.5 bins off).

    Relation to `tfhash.supervision.CIMONPseudoSimilarity`: CIMON's fit (``_distance_statistics``) keeps the
    released SSDH/CIMON code's histogram — the left edge of the fullest of 100 open bins (k/100, (k+1)/100)
    over [0, 1), counted over all n² entries of the distance matrix, diagonal included — and is not reused
    here. This is the same maximum-likelihood spread computation with a plain histogram, the bin centre as
    the mode, and each pair counted once.

    Args:
        distances: a 1-D array of distances (at least one), or an (n, n) distance matrix, n >= 2, of which
            only the entries above the diagonal (each pair i < j once) are read. Real and finite.
        bins: int >= 1, the number of histogram bins.
        value_range: (low, high), finite, low < high: the histogram's range. Cosine distances lie in [0, 2];
            those of non-negative (ReLU) features in [0, 1], where ``value_range=(0.0, 1.0)`` with 100 bins
            gives SSDH's bin width 0.01.

    Returns:
        dict with floats ``"mode"`` (m), ``"left_scale"`` (σ_L) and ``"right_scale"`` (σ_R).

    Raises:
        ValueError: bad arguments; no distance within ``value_range``; no distance at or below the mode, or
            none above it (that half-Gaussian has no data).

    Example:

    >>> fit = half_gaussian_fit(cosine_distances(features))
    >>> similar = distances < fit["mode"] - 2 * fit["left_scale"]     # SSDH with α = 2

    Reference:
        Yang et al., "Semantic Structure-based Unsupervised Deep Hashing" (SSDH), IJCAI 2018: the two
        half-Gaussians of the cosine-distance distribution; used by Zhang et al., "Clustering and Separating
        Similarities for Deep Unsupervised Hashing" (UCSH), Sec. 2.4, text of Eq. 6.
    """
    histogram = _DistanceHistogram(bins, value_range)
    for block in _distance_blocks(distances):
        histogram.add(block)
    return histogram.fit("distances")


def ucsh_similarity_threshold(distances, bins=100, value_range=(0.0, 2.0)):
    """UCSH's distance and similarity thresholds ``d_t = m − 2σ_L`` and ``s_t = 1 − 2·d_t`` from distances.

    m and σ_L come from `half_gaussian_fit` (the paper's N(m₁, σ₁²) is the left half-Gaussian; both halves
    share the mode as their mean). Pairs with ``d_ij < d_t`` are the similar ones, and since
    ``S_ij = 1 − 2·d_ij`` (Eq. 2), exactly those with ``S_ij > s_t``. Nothing is clipped: where the left
    spread exceeds half the mode, ``d_t < 0`` and ``s_t > 1``, and no pair is similar.

    Args:
        distances, bins, value_range: as for `half_gaussian_fit`.

    Returns:
        dict with floats ``"distance_threshold"`` (d_t), ``"similarity_threshold"`` (s_t), and the fit's
        ``"mode"``, ``"left_scale"``, ``"right_scale"``.

    Example:

    >>> threshold = ucsh_similarity_threshold(cosine_distances(features))
    >>> threshold["similarity_threshold"]      # s_t of the similarity-separating loss, Eq. 6

    Reference:
        Zhang et al., "Clustering and Separating Similarities for Deep Unsupervised Hashing" (UCSH), Sec. 2.4,
        Eq. 6 and its text ("pairs with distance smaller than d_t = m₁ − 2σ₁ are similar; s_t = 1 − 2d_t");
        the half-Gaussians follow Yang et al., SSDH, IJCAI 2018.
    """
    return _thresholds(half_gaussian_fit(distances, bins=bins, value_range=value_range))


def ucsh_similarity_threshold_from_features(
    features, max_pairs=None, seed=0, bins=100, value_range=(0.0, 2.0), block_size=_BLOCK_SIZE
):
    """`ucsh_similarity_threshold` of the cosine distances of feature rows, streamed block by block.

    The distances of all n(n − 1)/2 pairs i < j, or of ``max_pairs`` pairs drawn uniformly without replacement
    from them (seeded), are computed in blocks (see `cosine_distances`) and only their histogram and per-bin
    moments are kept, so neither an n × n matrix nor the list of all distances is ever held: memory is the
    features, a small multiple of ``block_size`` float32 values, and a few tens of bytes per sampled pair.
    With all pairs the result equals ``ucsh_similarity_threshold(cosine_distances(features))`` up to the
    rounding of float sums.

    The histogram of a uniform random subset of pairs estimates that of all pairs without bias, so the sampled
    fit approaches the full one as ``max_pairs`` grows; the all-pairs cost, n²·D/2 multiply-adds, is what
    sampling avoids for large n (n = 50,000 gives 1.25·10⁹ pairs).

    Args:
        features: (n, D) real array, n >= 2, finite, no all-zero row (e.g. the current fc7 features).
        max_pairs: None (all pairs) or int >= 1, the number of random pairs; all pairs are used when
            ``max_pairs >= n(n − 1)/2``.
        seed: int >= 0, seed of the pair sample (unused for all pairs).
        bins, value_range: as for `half_gaussian_fit`.
        block_size: int >= 1, as for `cosine_distances`.

    Returns:
        dict as `ucsh_similarity_threshold`: ``"distance_threshold"``, ``"similarity_threshold"``, ``"mode"``,
        ``"left_scale"``, ``"right_scale"``.

    Example:

    >>> threshold = ucsh_similarity_threshold_from_features(features, max_pairs=1_000_000, seed=epoch)
    >>> s_t = threshold["similarity_threshold"]    # refreshed as the features change (UCSH, "adaptively")

    Reference:
        Zhang et al., "Clustering and Separating Similarities for Deep Unsupervised Hashing" (UCSH), Sec. 2.3
        (cosine distances) and Sec. 2.4, text of Eq. 6; the half-Gaussians follow Yang et al., SSDH, IJCAI
        2018.
    """
    histogram = _DistanceHistogram(bins, value_range)
    unit = unit_rows(features)
    max_pairs = check_int(max_pairs, "max_pairs", minimum=1, allow_none=True)
    seed = check_int(seed, "seed", minimum=0)
    block_size = check_int(block_size, "block_size", minimum=1)
    pairs = None if max_pairs is None else _sample_pairs(unit.shape[0], max_pairs, seed)
    for block in _cosine_distance_blocks(unit, pairs, block_size):
        histogram.add(block)
    return _thresholds(histogram.fit("features"))


def _thresholds(fit):
    distance_threshold = fit["mode"] - 2.0 * fit["left_scale"]
    similarity_threshold = 1.0 - 2.0 * distance_threshold
    return {"distance_threshold": distance_threshold, "similarity_threshold": similarity_threshold, **fit}


class _DistanceHistogram:
    """The histogram of distances and their count, sum and sum of squares per half bin, added block by block.

    The half-bin edges include every bin's centre, so the moments of the distances at or below any bin centre
    (and above it) are sums over whole half bins: the spreads around the mode need one pass over the data.
    Slot s of ``searchsorted(half_bin_edges, d, side="left")`` holds ``half_bin_edges[s − 1] < d <=
    half_bin_edges[s]``, slot 0 everything at or below ``low``, the last slot everything above ``high``.
    """

    def __init__(self, bins, value_range):
        bins = check_int(bins, "bins", minimum=1)
        if not (isinstance(value_range, (tuple, list)) and len(value_range) == 2):
            raise ValueError(f"`value_range` must be a pair (low, high), got {value_range!r}.")
        low = check_number(value_range[0], "value_range[0]")
        high = check_number(value_range[1], "value_range[1]")
        if not low < high:
            raise ValueError(f"`value_range` must have low < high, got {value_range!r}.")
        self.histogram_edges = np.linspace(low, high, bins + 1)
        self.half_bin_edges = np.linspace(low, high, 2 * bins + 1)
        self.histogram = np.zeros(bins, dtype=np.int64)
        slots = 2 * bins + 2
        self.counts, self.sums, self.squares = np.zeros(slots), np.zeros(slots), np.zeros(slots)

    def add(self, distances):
        d = np.asarray(distances, dtype=np.float64)
        self.histogram += np.histogram(d, bins=self.histogram_edges)[0]
        slot = np.searchsorted(self.half_bin_edges, d, side="left")
        slots = len(self.counts)
        self.counts += np.bincount(slot, minlength=slots)
        self.sums += np.bincount(slot, weights=d, minlength=slots)
        self.squares += np.bincount(slot, weights=d * d, minlength=slots)

    def fit(self, name):
        """The mode and the two spreads (see `half_gaussian_fit`); ValueErrors name the argument ``name``."""
        low, high = self.histogram_edges[0], self.histogram_edges[-1]
        if not self.histogram.any():
            raise ValueError(
                f"No distance of `{name}` lies within `value_range` ({low:g}, {high:g}): the mode is "
                "undefined."
            )
        fullest = int(np.argmax(self.histogram))
        mode = float(self.half_bin_edges[2 * fullest + 1])
        split = 2 * fullest + 2  # slots 0 … 2·fullest + 1 hold exactly the distances <= mode
        scales = []
        for side, part in (("at or below", slice(0, split)), ("above", slice(split, None))):
            count = self.counts[part].sum()
            if count == 0:
                raise ValueError(
                    f"No distance of `{name}` lies {side} the mode {mode:g}: that half-Gaussian has no data "
                    "(the distances are degenerate)."
                )
            # mean (d − m)² = mean d² − 2m·mean d + m²
            second_moment = (self.squares[part].sum() - 2.0 * mode * self.sums[part].sum()) / count + mode**2
            scales.append(float(np.sqrt(max(second_moment, 0.0))))
        return {"mode": mode, "left_scale": scales[0], "right_scale": scales[1]}


def _distance_blocks(distances):
    """The distances of a vector, or the above-diagonal entries of a square matrix, as float64 blocks."""
    array = np.asarray(distances)
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(f"`distances` must be real numbers, got dtype {array.dtype}.")
    if array.ndim == 1 and array.size >= 1:
        blocks = (array[start: start + _BLOCK_SIZE] for start in range(0, array.size, _BLOCK_SIZE))
    elif array.ndim == 2 and array.shape[0] == array.shape[1] >= 2:
        row_blocks = _upper_row_blocks(array.shape[0], _BLOCK_SIZE)
        blocks = (array[start:stop, start:][upper] for start, stop, upper in row_blocks)
    else:
        raise ValueError(
            "`distances` must be a non-empty 1-D array of distances or an (n, n) distance matrix with "
            f"n >= 2, got shape {array.shape}."
        )
    for block in blocks:
        block = block.astype(np.float64)
        if not np.isfinite(block).all():
            raise ValueError("`distances` must be finite (found NaN or inf).")
        yield block


def _upper_row_blocks(n, block_size):
    """Row blocks of an n × n matrix: (start, stop, upper), upper the mask of columns start … n − 1 above the
    diagonal in rows start … stop − 1; every pair i < j falls in one block, in row-major order."""
    rows_per_block = max(1, block_size // n)
    for start in range(0, n - 1, rows_per_block):
        stop = min(n - 1, start + rows_per_block)
        yield start, stop, np.arange(start, n)[None, :] > np.arange(start, stop)[:, None]


def _cosine_distance_blocks(unit, pairs, block_size):
    """Cosine distances of unit rows, clipped to [0, 2], as float32 blocks: all pairs i < j (``pairs=None``,
    row-major order) or the given (p, 2) pairs, in order."""
    n, dim = unit.shape
    if pairs is None:
        for start, stop, upper in _upper_row_blocks(n, block_size):
            block = 1.0 - unit[start:stop] @ unit[start:].T
            yield np.clip(block[upper], 0.0, 2.0)
        return
    pairs_per_block = max(1, block_size // (2 * dim))
    for start in range(0, len(pairs), pairs_per_block):
        first, second = pairs[start: start + pairs_per_block].T
        distance = 1.0 - np.einsum("pd,pd->p", unit[first], unit[second])
        np.clip(distance, 0.0, 2.0, out=distance)
        distance[first == second] = 0.0
        yield distance


def _sample_pairs(n, max_pairs, seed):
    """``max_pairs`` pairs i < j drawn uniformly without replacement, in row-major order ((p, 2) int64), or
    None (all pairs) when there are no more than ``max_pairs`` pairs."""
    num_pairs = n * (n - 1) // 2
    if max_pairs >= num_pairs:
        return None
    chosen = np.sort(np.random.default_rng(seed).choice(num_pairs, size=max_pairs, replace=False))
    row_starts = np.concatenate([[0], np.cumsum(np.arange(n - 1, 0, -1))])  # pairs before row i
    first = np.searchsorted(row_starts, chosen, side="right") - 1
    second = chosen - row_starts[first] + first + 1
    return np.stack([first, second], axis=1)


def unit_rows(features):
    """``features`` as L2-normalised float32 rows, after checking them (2-D with n >= 2, real, finite, no
    all-zero row); ValueErrors name ``features``. Shared by the cosine-distance constructions (also CIMON's)."""
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"`features` must be an (n, D) array with n >= 2 and D >= 1, got shape {x.shape}.")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise ValueError(f"`features` must be real numbers, got dtype {x.dtype}.")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError("`features` must be finite (found NaN or inf).")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not (norms > 0).all():
        raise ValueError(
            f"`features` has {int((norms == 0).sum())} all-zero row(s): their cosine distances are undefined."
        )
    x /= norms
    return x


def _check_pairs(pairs, n):
    index = np.asarray(pairs)
    integral = np.issubdtype(index.dtype, np.integer) or index.size == 0
    if index.ndim != 2 or index.shape[1] != 2 or not integral:
        raise ValueError(f"`pairs` must be None or a (p, 2) integer array of sample indices, got {pairs!r}.")
    if index.size and (index.min() < 0 or index.max() >= n):
        raise ValueError(f"`pairs` must index the {n} feature rows (0 … {n - 1}), got values outside.")
    return index.astype(np.int64)
