"""CIMONPseudoSimilarity: S, W1, W2 and W against a slow numpy reference written from the definitions."""

import json

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.cluster import SpectralClustering

from tfhash.supervision import CIMONPseudoSimilarity
from tfhash.supervision import cimon_pseudo_similarity as module
from tfhash.supervision import half_gaussian_confidence


def blobs(num_blobs=4, per_blob=15, dim=128, noise=0.041, seed=0):
    """Gaussian blobs around e_k plus a shared offset: within-blob cosine distances straddle 0.1, between-blob
    ones gather near 0.5, where the distance histogram then peaks (as with real backbone features)."""
    rng = np.random.default_rng(seed)
    centres = 1.0 / np.sqrt(dim) + np.eye(num_blobs, dim)
    label = np.repeat(np.arange(num_blobs), per_blob)
    x = centres[label] + noise * rng.standard_normal((label.size, dim))
    return x.astype(np.float32), label


def same_partition(a, b):
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def reference(features, cluster_ids, threshold):
    """The definitions, pair by pair in float64: cosine distances; the fullest of the open bins
    (k/100, (k+1)/100), stepped by repeated +0.01; Gaussian MLE fits of each side of the mode, mirrored about
    it; the truncated-Gaussian confidences; the clustering agreement."""
    x = np.asarray(features, np.float64)
    n = len(x)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                cosine = x[i] @ x[j] / (np.linalg.norm(x[i]) * np.linalg.norm(x[j]))
                d[i, j] = max(0.0, 1.0 - cosine)
    counts, best, mode, edge = [], 0, 0.0, 0.0
    for _ in range(100):
        count = int(np.sum((d > edge) & (d < edge + 0.01)))
        counts.append(count)
        if count > best:
            best, mode = count, edge
        edge += 0.01
    left, right = d[d <= mode], d[d > mode]
    left_mean, left_std = norm.fit(np.concatenate([left, 2 * mode - left]))
    right_mean, right_std = norm.fit(np.concatenate([2 * mode - right, right]))
    s, w1, w2 = np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            similar = d[i, j] <= threshold
            s[i, j] = 1 if similar else -1
            if similar:
                cut = norm.cdf(threshold, left_mean, left_std)
                confidence = (cut - norm.cdf(d[i, j], left_mean, left_std)) / cut
            else:
                cut = norm.cdf(threshold, right_mean, right_std)
                confidence = (norm.cdf(d[i, j], right_mean, right_std) - cut) / (1 - cut)
            w1[i, j] = min(1.0, max(0.0, confidence))
            w2[i, j] = 1.0 if (cluster_ids[i] == cluster_ids[j]) == similar else 0.0
    stats = {"mode": mode, "left": (left_mean, left_std), "right": (right_mean, right_std)}
    return s, w1, w2, d, {**stats, "histogram": counts}


@pytest.fixture(scope="module")
def data():
    return blobs()


@pytest.fixture(scope="module")
def fitted(data):
    return CIMONPseudoSimilarity(distance_threshold=0.1, num_clusters=4, seed=0).fit(data[0])


def test_matches_the_slow_reference(data, fitted):
    x, _ = data
    s_ref, w1_ref, w2_ref, d, stats = reference(x, fitted.cluster_ids_, 0.1)
    assert np.abs(d - 0.1).min() > 1e-5  # no pair so close to the threshold that float32 could flip S
    s, w, w1, w2 = fitted.pseudo_similarity(return_parts=True)
    np.testing.assert_array_equal(fitted.histogram_, stats["histogram"])
    assert fitted.mode_ == stats["mode"] and 0.3 < fitted.mode_ < 0.7  # between-blob distances dominate
    np.testing.assert_allclose(stats["left"][0], fitted.mode_, atol=1e-12)  # the mirrored fits are centred
    np.testing.assert_allclose(stats["right"][0], fitted.mode_, atol=1e-12)
    np.testing.assert_allclose(fitted.left_scale_, stats["left"][1], rtol=1e-5)
    np.testing.assert_allclose(fitted.right_scale_, stats["right"][1], rtol=1e-5)
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(w2, w2_ref)
    np.testing.assert_allclose(w1, w1_ref, atol=2e-5)
    np.testing.assert_allclose(w, w1_ref * w2_ref, atol=2e-5)
    # every kind of pair occurs: similar and dissimilar, agreeing and disagreeing with the clusters
    assert {1.0, -1.0} <= set(np.unique(s)) and {0.0, 1.0} <= set(np.unique(w2))


def test_clusters_are_sklearn_spectral_clustering_of_unit_features(data, fitted):
    x, label = data
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    expected = SpectralClustering(n_clusters=4, assign_labels="discretize", random_state=0)
    np.testing.assert_array_equal(fitted.cluster_ids_, expected.fit(unit.astype(np.float32)).labels_)
    assert same_partition(fitted.cluster_ids_, label)
    np.testing.assert_allclose(np.linalg.norm(fitted.features_, axis=1), 1.0, rtol=1e-6)


def test_lobpcg_finds_the_same_blobs(data):
    lobpcg = CIMONPseudoSimilarity(num_clusters=4, eigen_solver="lobpcg", seed=0).fit(data[0])
    assert same_partition(lobpcg.cluster_ids_, data[1])


def test_the_default_clusters_as_the_released_code(fitted):
    # The released code: SpectralClustering(n_clusters, random_state=0, assign_labels="discretize") with
    # scikit-learn's default solver (ARPACK) on float32 unit features. Without clusters in the data, solvers
    # cut the flat spectrum differently (LOBPCG's labels differ here), as on real backbone features.
    features = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    released = SpectralClustering(n_clusters=10, random_state=0, assign_labels="discretize").fit(unit).labels_
    default = CIMONPseudoSimilarity(distance_threshold=0.9, num_clusters=10, seed=0).fit(features)
    np.testing.assert_array_equal(default.cluster_ids_, released)
    lobpcg = CIMONPseudoSimilarity(distance_threshold=0.9, num_clusters=10, eigen_solver="lobpcg", seed=0)
    assert not np.array_equal(lobpcg.fit(features).cluster_ids_, released)
    assert fitted.get_config()["eigen_solver"] == "arpack"


def test_deterministic_under_the_seed(data, fitted):
    again = CIMONPseudoSimilarity(distance_threshold=0.1, num_clusters=4, seed=0).fit(data[0])
    np.testing.assert_array_equal(again.cluster_ids_, fitted.cluster_ids_)
    for first, second in zip(again.pseudo_similarity(), fitted.pseudo_similarity()):
        np.testing.assert_array_equal(first, second)


def test_symmetry_diagonal_and_ranges(fitted):
    s, w, w1, w2 = fitted.pseudo_similarity(return_parts=True)
    for matrix in (s, w, w1, w2):
        np.testing.assert_array_equal(matrix, matrix.T)
        assert matrix.dtype == np.float32 and matrix.shape == (60, 60)
    assert set(np.unique(s)) == {-1.0, 1.0} and set(np.unique(w2)) == {0.0, 1.0}
    assert w.min() >= 0.0 and w.max() <= 1.0
    np.testing.assert_array_equal(np.diag(s), 1.0)


def test_blocks_are_submatrices(fitted):
    # equal up to the float32 rounding of the distances, which depends on the product's shape
    s, w = fitted.pseudo_similarity()
    rows, columns = np.array([5, 0, 5, 59]), np.array([1, 5, 33])
    block_s, block_w = fitted.pseudo_similarity(rows, columns)
    np.testing.assert_array_equal(block_s, s[rows][:, columns])
    np.testing.assert_allclose(block_w, w[rows][:, columns], atol=1e-5)
    # a repeated sample is at distance exactly 0 from itself, wherever it appears
    square_s, square_w = fitted.pseudo_similarity(rows)
    np.testing.assert_array_equal(square_s, s[rows][:, rows])
    np.testing.assert_allclose(square_w, w[rows][:, rows], atol=1e-5)
    np.testing.assert_array_equal(square_w[0, 2], square_w[0, 0])


def test_block_size_does_not_change_the_statistics(data, fitted, monkeypatch):
    monkeypatch.setattr(module, "_BLOCK_ENTRIES", 7 * 60)  # blocks of 7 rows, the last one short
    blocked = CIMONPseudoSimilarity(distance_threshold=0.1, num_clusters=4, seed=0).fit(data[0])
    np.testing.assert_array_equal(blocked.histogram_, fitted.histogram_)
    assert blocked.mode_ == fitted.mode_
    np.testing.assert_allclose([blocked.left_scale_, blocked.right_scale_],
                               [fitted.left_scale_, fitted.right_scale_], rtol=1e-6)


def test_alpha_and_beta_only_set_the_ssdh_bounds(data, fitted):
    other = CIMONPseudoSimilarity(distance_threshold=0.1, alpha=0.5, beta=3.0, num_clusters=4, seed=0)
    other.fit(data[0])
    for first, second in zip(other.pseudo_similarity(), fitted.pseudo_similarity()):
        np.testing.assert_array_equal(first, second)
    assert other.lower_distance_ == pytest.approx(other.mode_ - 0.5 * other.left_scale_)
    assert other.upper_distance_ == pytest.approx(other.mode_ + 3.0 * other.right_scale_)
    assert fitted.lower_distance_ == pytest.approx(fitted.mode_ - 2.0 * fitted.left_scale_)


@pytest.mark.parametrize("threshold", [0.3, 0.45])  # below the mode, and a threshold beyond it
def test_confidence_against_scipy_and_its_limits(threshold):
    mode, left_scale, right_scale = 0.4, 0.1, 0.05
    d = np.linspace(0.0, 1.0, 201)
    similar = d <= threshold
    ours = half_gaussian_confidence(d, similar, threshold, mode, left_scale, right_scale)
    left_cut = norm.cdf(threshold, mode, left_scale)
    right_cut = norm.cdf(threshold, mode, right_scale)
    expected = np.where(similar, (left_cut - norm.cdf(d, mode, left_scale)) / left_cut,
                        (norm.cdf(d, mode, right_scale) - right_cut) / (1 - right_cut))
    np.testing.assert_allclose(ours, np.clip(expected, 0, 1), atol=1e-12)
    # 0 at the threshold on either side, growing away from it
    assert np.all(np.diff(ours[similar]) <= 1e-15) and np.all(np.diff(ours[~similar]) >= -1e-15)
    for side in (True, False):  # the similar side's formula is 0 at t; so is the dissimilar side's
        value = half_gaussian_confidence([threshold], [side], threshold, mode, left_scale, right_scale)
        assert value[0] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"distance_threshold": -0.1}, "distance_threshold"), ({"distance_threshold": 2}, "distance_threshold"),
     ({"alpha": -1}, "alpha"), ({"beta": True}, "beta"), ({"num_clusters": 1}, "num_clusters"),
     ({"eigen_solver": "dense"}, "eigen_solver"), ({"seed": -1}, "seed"), ({"seed": 0.5}, "seed")],
)
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CIMONPseudoSimilarity(**kwargs)


@pytest.mark.parametrize(
    "features, message",
    [(np.ones(5), "shape"), (np.ones((1, 4)), "shape"),
     (np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]), "all-zero"),
     (np.array([[1.0, np.nan], [1.0, 0.0], [0.0, 1.0]]), "finite"), (np.eye(3, 4), "fewer than num_clusters"),
     (np.ones((6, 3)), "degenerate"), (np.array([["a", "b"], ["c", "d"]]), "real numbers")],
)
def test_bad_features_are_refused(features, message):
    with pytest.raises(ValueError, match=message):
        CIMONPseudoSimilarity(num_clusters=2 if message != "fewer than num_clusters" else 4).fit(features)


def test_unfitted_and_bad_indices(fitted):
    with pytest.raises(ValueError, match="not fitted"):
        CIMONPseudoSimilarity().pseudo_similarity()
    with pytest.raises(ValueError, match="rows"):
        fitted.pseudo_similarity(np.array([0, 60]))
    with pytest.raises(ValueError, match="columns"):
        fitted.pseudo_similarity(np.array([0]), np.array([[1]]))


def test_get_config_rebuilds_the_same_settings():
    similarity = CIMONPseudoSimilarity(distance_threshold=0.2, alpha=1.0, beta=3.0, num_clusters=5,
                                       eigen_solver="arpack", seed=4)
    config = json.loads(json.dumps(similarity.get_config()))
    assert config == {"distance_threshold": 0.2, "alpha": 1.0, "beta": 3.0, "num_clusters": 5,
                      "eigen_solver": "arpack", "seed": 4}
    assert CIMONPseudoSimilarity(**config).get_config() == config
