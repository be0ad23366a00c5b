"""UCSH's similarity threshold: the half-Gaussian fit against known parameters and a direct numpy reference,
matrix and vector inputs, and the blockwise / sampled cosine distances of features."""

import tracemalloc

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

from tfhash.supervision import (
    cosine_distances,
    half_gaussian_fit,
    ucsh_similarity_threshold,
    ucsh_similarity_threshold_from_features,
)
from tfhash.supervision import similarity_threshold as module

MODE, LEFT_SCALE, RIGHT_SCALE = 0.6, 0.08, 0.15


def two_sided_gaussian(left_weight, size=200_000, seed=0):
    """Distances d = m − σ_L·|z| with probability ``left_weight``, else m + σ_R·|z|."""
    rng = np.random.default_rng(seed)
    left = rng.random(size) < left_weight
    spread = np.abs(rng.standard_normal(size))
    return np.where(left, MODE - LEFT_SCALE * spread, MODE + RIGHT_SCALE * spread)


def reference_fit(distances, bins, value_range):
    """The definitions in plain numpy: np.histogram's fullest bin, its centre, the two mirrored spreads."""
    counts, edges = np.histogram(distances, bins=bins, range=value_range)
    fullest = np.argmax(counts)
    mode = (edges[fullest] + edges[fullest + 1]) / 2
    left, right = distances[distances <= mode], distances[distances > mode]
    return mode, np.sqrt(np.mean((left - mode) ** 2)), np.sqrt(np.mean((right - mode) ** 2))


def clustered_features(num_clusters=10, per_cluster=150, dim=64, seed=0):
    """Clusters around random non-negative centres (as ReLU features): a clear peak of between-cluster
    distances, and within-cluster pairs well below it."""
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.standard_normal((num_clusters, dim)))
    label = np.repeat(np.arange(num_clusters), per_cluster)
    return (centres[label] + 0.35 * rng.standard_normal((label.size, dim))).astype(np.float32)


# --- the fit ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "left_weight",
    # a density continuous at the mode; half the distances on each side
    [LEFT_SCALE / (LEFT_SCALE + RIGHT_SCALE), 0.5],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_fit_recovers_known_parameters(left_weight, seed):
    """Default bins (width 0.02): the mode within a bin; the spreads within 6 %, the bias of a mode that is
    up to a bin off (about δ / σ_L for σ_L = 0.08)."""
    fit = half_gaussian_fit(two_sided_gaussian(left_weight, seed=seed))
    assert set(fit) == {"mode", "left_scale", "right_scale"}
    assert abs(fit["mode"] - MODE) <= 0.02 + 1e-12
    assert fit["left_scale"] == pytest.approx(LEFT_SCALE, rel=0.06)
    assert fit["right_scale"] == pytest.approx(RIGHT_SCALE, rel=0.06)


@pytest.mark.parametrize("bins, value_range", [(100, (0.0, 2.0)), (37, (0.0, 1.0)), (200, (0.3, 0.9))])
def test_fit_matches_the_definitions(bins, value_range):
    """Distances outside value_range are left out of the histogram but count in the spreads."""
    distances = two_sided_gaussian(0.4, size=50_000, seed=3)
    fit = half_gaussian_fit(distances, bins=bins, value_range=value_range)
    mode, left_scale, right_scale = reference_fit(distances, bins, value_range)
    assert fit["mode"] == pytest.approx(mode, abs=1e-12)
    assert fit["left_scale"] == pytest.approx(left_scale, rel=1e-9)
    assert fit["right_scale"] == pytest.approx(right_scale, rel=1e-9)


def test_mode_is_the_centre_of_the_first_fullest_bin():
    distances = np.array([0.11, 0.13, 0.55, 0.57, 1.9])  # bins [0.1, 0.2) and [0.5, 0.6) tie with 2 each
    fit = half_gaussian_fit(distances, bins=20, value_range=(0.0, 2.0))
    assert fit["mode"] == pytest.approx(0.15)
    assert fit["left_scale"] == pytest.approx(np.sqrt((0.04**2 + 0.02**2) / 2))
    assert fit["right_scale"] == pytest.approx(np.sqrt(np.mean((np.array([0.55, 0.57, 1.9]) - 0.15) ** 2)))


def test_threshold_is_mode_minus_two_left_scales():
    distances = two_sided_gaussian(0.4, size=50_000, seed=1)
    fit = half_gaussian_fit(distances)
    threshold = ucsh_similarity_threshold(distances)
    keys = {"distance_threshold", "similarity_threshold", "mode", "left_scale", "right_scale"}
    assert set(threshold) == keys
    assert {key: threshold[key] for key in fit} == fit
    assert threshold["distance_threshold"] == pytest.approx(fit["mode"] - 2 * fit["left_scale"], abs=1e-15)
    distance_threshold = threshold["distance_threshold"]
    assert threshold["similarity_threshold"] == pytest.approx(1 - 2 * distance_threshold, abs=1e-15)
    assert all(isinstance(value, float) for value in threshold.values())


def test_thresholds_are_not_clipped():
    distances = np.array([0.05, 0.1, 0.3, 0.305, 0.9])  # mode 0.31 (bin [0.3, 0.32)), left spread ≈ 0.17
    threshold = ucsh_similarity_threshold(distances)
    assert threshold["distance_threshold"] < 0 and threshold["similarity_threshold"] > 1


# --- matrix input -------------------------------------------------------------------------------------------


def test_matrix_input_reads_each_pair_once():
    distances = two_sided_gaussian(0.4, size=300 * 299 // 2, seed=2)
    matrix = squareform(distances)
    matrix[np.tril_indices(300)] = np.nan  # the diagonal and the lower triangle are never read
    expected = half_gaussian_fit(distances)
    fit = half_gaussian_fit(matrix)
    assert fit == pytest.approx(expected, rel=1e-12)
    assert ucsh_similarity_threshold(matrix) == pytest.approx(ucsh_similarity_threshold(distances), rel=1e-12)


def test_matrix_input_in_many_row_blocks(monkeypatch):
    distances = two_sided_gaussian(0.4, size=120 * 119 // 2, seed=4)
    expected = half_gaussian_fit(distances)
    monkeypatch.setattr(module, "_BLOCK_SIZE", 250)  # two rows of 120 per block; vectors in chunks of 250
    assert half_gaussian_fit(squareform(distances)) == pytest.approx(expected, rel=1e-12)
    assert half_gaussian_fit(distances) == pytest.approx(expected, rel=1e-12)


# --- cosine distances of features ---------------------------------------------------------------------------


def test_cosine_distances_match_scipy_in_pdist_order():
    features = clustered_features(num_clusters=3, per_cluster=20, dim=16)
    distances = cosine_distances(features)
    assert distances.dtype == np.float32 and distances.shape == (60 * 59 // 2,)
    expected = np.clip(pdist(features.astype(np.float64), "cosine"), 0, 2)
    np.testing.assert_allclose(distances, expected, atol=2e-6)
    np.testing.assert_allclose(cosine_distances(features, block_size=1), distances, atol=2e-7)


def test_cosine_distances_of_given_pairs():
    features = clustered_features(num_clusters=3, per_cluster=20, dim=16)
    matrix = squareform(pdist(features.astype(np.float64), "cosine"))
    pairs = np.array([[0, 1], [5, 3], [7, 7], [59, 0], [12, 40]])
    for block_size in (1, 64, 1 << 22):
        distances = cosine_distances(features, pairs=pairs, block_size=block_size)
        np.testing.assert_allclose(distances, matrix[pairs[:, 0], pairs[:, 1]], atol=2e-6)
        assert distances[2] == 0.0
    assert cosine_distances(features, pairs=np.zeros((0, 2), dtype=np.int64)).shape == (0,)


def test_opposite_and_identical_directions_are_clipped_to_the_range():
    features = np.array([[1.0, 0.0], [-3.0, 0.0], [2.0, 0.0]])
    np.testing.assert_array_equal(cosine_distances(features), [2.0, 0.0, 2.0])


def test_from_features_with_all_pairs_equals_the_distance_route():
    features = clustered_features()
    distances = cosine_distances(features)
    expected = ucsh_similarity_threshold(distances)
    assert ucsh_similarity_threshold_from_features(features) == pytest.approx(expected, rel=1e-9)
    small_blocks = ucsh_similarity_threshold_from_features(features, block_size=5_000)
    assert small_blocks == pytest.approx(expected, rel=1e-9)
    every_pair = ucsh_similarity_threshold_from_features(features, max_pairs=len(distances), seed=7)
    assert every_pair == pytest.approx(expected, rel=1e-9)
    float64 = ucsh_similarity_threshold(pdist(features.astype(np.float64), "cosine"))
    assert ucsh_similarity_threshold_from_features(features) == pytest.approx(float64, rel=1e-4)


def test_sampled_pairs_agree_with_all_pairs():
    features = clustered_features()
    full = ucsh_similarity_threshold_from_features(features)
    width = 2.0 / 100
    for seed in (0, 1, 2):
        sampled = ucsh_similarity_threshold_from_features(features, max_pairs=50_000, seed=seed)
        assert abs(sampled["mode"] - full["mode"]) <= width
        assert abs(sampled["distance_threshold"] - full["distance_threshold"]) <= width
        assert sampled["left_scale"] == pytest.approx(full["left_scale"], rel=0.05)
        assert sampled["right_scale"] == pytest.approx(full["right_scale"], rel=0.05)


def test_sampled_pairs_are_seeded():
    features = clustered_features(num_clusters=4, per_cluster=50)
    first = ucsh_similarity_threshold_from_features(features, max_pairs=2_000, seed=3)
    assert ucsh_similarity_threshold_from_features(features, max_pairs=2_000, seed=3) == first
    assert ucsh_similarity_threshold_from_features(features, max_pairs=2_000, seed=4) != first


@pytest.mark.parametrize("n, max_pairs", [(5, 9), (30, 100), (1000, 5000)])
def test_sampled_pairs_are_distinct_upper_triangle_pairs_in_row_major_order(n, max_pairs):
    pairs = module._sample_pairs(n, max_pairs, seed=0)
    assert pairs.shape == (max_pairs, 2) and pairs.dtype == np.int64
    first, second = pairs.T
    assert (first >= 0).all() and (first < second).all() and (second < n).all()
    condensed = first * n - first * (first + 1) // 2 + (second - first - 1)
    assert (np.diff(condensed) > 0).all()
    assert module._sample_pairs(n, n * (n - 1) // 2, seed=0) is None


def test_sampled_pairs_cover_the_triangle_uniformly():
    pairs = module._sample_pairs(40, 390, seed=0)  # half of the 780 pairs
    counts = np.bincount(pairs[:, 0], minlength=40)
    expected = np.arange(39, -1, -1) / 2  # row i has 39 − i pairs
    assert abs(counts[:20].sum() - expected[:20].sum()) < 25  # rows 0-19 hold 590 of 780 pairs


def test_sampled_path_for_50000_samples_never_builds_a_square_matrix():
    features = np.random.default_rng(0).standard_normal((50_000, 8)).astype(np.float32)
    tracemalloc.start()
    try:
        threshold = ucsh_similarity_threshold_from_features(features, max_pairs=200_000, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20  # an n × n float64 matrix would be 20 GB
    assert 0.9 < threshold["mode"] < 1.1  # random directions: cosine distances centred on 1


def test_all_pairs_path_memory_is_bounded_by_the_block_size():
    features = np.random.default_rng(0).standard_normal((3_000, 8)).astype(np.float32)
    tracemalloc.start()
    try:
        ucsh_similarity_threshold_from_features(features, block_size=1 << 16)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20  # the 4.5 million distances alone would take 18 MB (float32), 36 MB (float64)


# --- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "distances, message",
    [
        (np.zeros(0), "`distances` must be a non-empty"),
        ([], "`distances` must be a non-empty"),
        (np.array([0.2, np.nan, 0.5]), "`distances` must be finite"),
        (np.array([0.2, np.inf]), "`distances` must be finite"),
        (np.full((3, 3, 3), 0.5), "`distances` must be a non-empty 1-D array .* got shape \\(3, 3, 3\\)"),
        (np.full((3, 4), 0.5), "`distances` .* got shape \\(3, 4\\)"),
        (np.zeros((1, 1)), "`distances` .* n >= 2"),
        (np.array(["0.5"]), "`distances` must be real numbers"),
        (np.array([True, False]), "`distances` must be real numbers"),
        (np.array([0.5 + 1j]), "`distances` must be real numbers"),
        (0.5, "`distances` .* got shape \\(\\)"),
    ],
)
def test_bad_distances_are_named(distances, message):
    with pytest.raises(ValueError, match=message):
        half_gaussian_fit(distances)
    with pytest.raises(ValueError, match=message):
        ucsh_similarity_threshold(distances)


def test_nan_in_the_upper_triangle_is_refused():
    matrix = squareform(np.array([0.2, 0.4, 0.6]))
    matrix[0, 2] = np.nan
    with pytest.raises(ValueError, match="`distances` must be finite"):
        half_gaussian_fit(matrix)


@pytest.mark.parametrize(
    "settings, name",
    [
        ({"bins": 0}, "bins"),
        ({"bins": -3}, "bins"),
        ({"bins": 2.5}, "bins"),
        ({"bins": True}, "bins"),
        ({"value_range": (1.0, 1.0)}, "value_range"),
        ({"value_range": (2.0, 0.0)}, "value_range"),
        ({"value_range": (0.0, np.inf)}, "value_range"),
        ({"value_range": (0.0,)}, "value_range"),
        ({"value_range": 2.0}, "value_range"),
        ({"value_range": ("0", "2")}, "value_range"),
    ],
)
def test_bad_histogram_settings_are_named(settings, name):
    distances = two_sided_gaussian(0.4, size=1_000)
    for function in (half_gaussian_fit, ucsh_similarity_threshold):
        with pytest.raises(ValueError, match=f"`{name}"):
            function(distances, **settings)
    with pytest.raises(ValueError, match=f"`{name}"):
        ucsh_similarity_threshold_from_features(clustered_features(num_clusters=2, per_cluster=5), **settings)


def test_no_distance_in_value_range():
    with pytest.raises(ValueError, match="No distance of `distances` lies within `value_range` \\(0, 1\\)"):
        half_gaussian_fit(np.array([1.5, 1.7]), value_range=(0.0, 1.0))


def test_degenerate_distances_leave_a_half_without_data():
    with pytest.raises(ValueError, match="No distance of `distances` lies above the mode 0.51"):
        half_gaussian_fit(np.full(10, 0.5))  # bin [0.5, 0.52), centre 0.51: nothing above it
    with pytest.raises(ValueError, match="No distance of `distances` lies at or below the mode 0.51"):
        half_gaussian_fit(np.full(10, 0.515))
    with pytest.raises(ValueError, match="No distance of `features` lies above the mode"):
        ucsh_similarity_threshold_from_features(np.ones((4, 3)))  # all distances 0: mode 0.01


@pytest.mark.parametrize(
    "features, message",
    [
        (np.ones(5), "`features` must be an \\(n, D\\) array"),
        (np.ones((1, 4)), "`features` must be an \\(n, D\\) array with n >= 2"),
        (np.ones((4, 0)), "`features` must be an \\(n, D\\) array .* D >= 1"),
        (np.ones((2, 2, 2)), "`features` must be an \\(n, D\\) array"),
        (np.array([[1.0, np.nan], [1.0, 2.0]]), "`features` must be finite"),
        (np.array([[0.0, 0.0], [1.0, 2.0]]), "`features` has 1 all-zero row"),
        (np.array([["a", "b"], ["c", "d"]]), "`features` must be real numbers"),
    ],
)
def test_bad_features_are_named(features, message):
    with pytest.raises(ValueError, match=message):
        cosine_distances(features)
    with pytest.raises(ValueError, match=message):
        ucsh_similarity_threshold_from_features(features)


@pytest.mark.parametrize(
    "settings, name",
    [
        ({"max_pairs": 0}, "max_pairs"),
        ({"max_pairs": 10.0}, "max_pairs"),
        ({"seed": -1}, "seed"),
        ({"seed": None}, "seed"),
        ({"block_size": 0}, "block_size"),
    ],
)
def test_bad_sampling_settings_are_named(settings, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        ucsh_similarity_threshold_from_features(clustered_features(num_clusters=2, per_cluster=5), **settings)


@pytest.mark.parametrize(
    "pairs, message",
    [
        (np.array([0, 1]), "`pairs` must be None or a \\(p, 2\\) integer array"),
        (np.array([[0, 1, 2]]), "`pairs` must be None or a \\(p, 2\\) integer array"),
        (np.array([[0.0, 1.0]]), "`pairs` must be None or a \\(p, 2\\) integer array"),
        (np.array([[0, 10]]), "`pairs` must index the 10 feature rows"),
        (np.array([[-1, 3]]), "`pairs` must index the 10 feature rows"),
    ],
)
def test_bad_pairs_are_named(pairs, message):
    with pytest.raises(ValueError, match=message):
        cosine_distances(clustered_features(num_clusters=2, per_cluster=5), pairs=pairs)


@pytest.mark.parametrize("block_size", [0, 2.0, None])
def test_bad_block_size_is_named(block_size):
    with pytest.raises(ValueError, match="`block_size`"):
        cosine_distances(clustered_features(num_clusters=2, per_cluster=5), block_size=block_size)
