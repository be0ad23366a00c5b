import itertools

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from tfhash.metrics import clustering_accuracy, kmeans_code_clustering, normalized_mutual_information

AVERAGES = ("geometric", "arithmetic", "min", "max")


def brute_force_accuracy(labels, cluster_ids):
    """Best fraction of matches over every one-to-one map of clusters to classes, by enumeration.

    Classes are padded with placeholder classes up to the number of clusters, so a permutation of the padded
    classes assigns each cluster a distinct class or a placeholder (an unmatched cluster, whose samples count
    as wrong); every one-to-one matching between clusters and classes arises this way.
    """
    classes, clusters = np.unique(labels), np.unique(cluster_ids)
    padded = list(classes) + [None] * max(0, len(clusters) - len(classes))
    best = 0
    for assignment in itertools.permutations(padded, len(clusters)):
        mapping = dict(zip(clusters, assignment))
        best = max(best, sum(mapping[c] == y for y, c in zip(labels, cluster_ids)))
    return best / len(labels)


def test_permuted_perfect_clustering():
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 3])
    cluster_ids = np.array([5, 0, 9, 2, 7, 1, 3, 4])[labels]  # class c -> cluster id [5, 9, 1, 4][c]
    assert clustering_accuracy(labels, cluster_ids) == 1.0
    for average in AVERAGES:
        assert normalized_mutual_information(labels, cluster_ids, average) == pytest.approx(1.0, abs=1e-12)


def test_hand_worked_two_by_two():
    # Contingency table (classes × clusters) [[2, 1], [0, 3]], n = 6.
    # Accuracy: cluster 0 -> class 0 (2 samples), cluster 1 -> class 1 (3 samples): 5/6.
    # H(Y) = ln 2 (class sizes 3, 3); H(C) = ln 3 − (2/3) ln 2 (cluster sizes 2, 4).
    # I = Σ p_ij ln(n n_ij / (a_i b_j)) = (1/3) ln(12/6) + (1/6) ln(6/12) + (1/2) ln(18/12)
    #   = (1/6) ln 2 + (1/2)(ln 3 − ln 2) = (1/2) ln 3 − (1/3) ln 2 ≈ 0.318257.
    # Geometric NMI = I / √(H(Y) H(C)) ≈ 0.318257 / √(0.693147 · 0.636514) ≈ 0.318257 / 0.664227 ≈ 0.479139.
    labels = [0, 0, 0, 1, 1, 1]
    cluster_ids = [0, 0, 1, 1, 1, 1]
    ln2, ln3 = np.log(2.0), np.log(3.0)
    mutual_information = ln3 / 2 - ln2 / 3
    h_labels, h_clusters = ln2, ln3 - 2 * ln2 / 3
    assert clustering_accuracy(labels, cluster_ids) == pytest.approx(5 / 6)
    expected = {
        "geometric": mutual_information / np.sqrt(h_labels * h_clusters),
        "arithmetic": mutual_information / ((h_labels + h_clusters) / 2),
        "min": mutual_information / h_clusters,
        "max": mutual_information / h_labels,
    }
    assert expected["geometric"] == pytest.approx(0.479139, abs=1e-6)
    for average, value in expected.items():
        assert normalized_mutual_information(labels, cluster_ids, average) == pytest.approx(value, rel=1e-12)


def test_default_average_is_geometric():
    labels, cluster_ids = [0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]
    assert normalized_mutual_information(labels, cluster_ids) == normalized_mutual_information(
        labels, cluster_ids, "geometric"
    )


@pytest.mark.parametrize("average", AVERAGES)
def test_nmi_against_sklearn(average):
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(2, 300))
        labels = rng.integers(0, rng.integers(1, 8), n)
        cluster_ids = rng.integers(-3, rng.integers(-2, 12), n) * 7  # any integers, not 0..k−1
        expected = normalized_mutual_info_score(labels, cluster_ids, average_method=average)
        actual = normalized_mutual_information(labels, cluster_ids, average)
        assert actual == pytest.approx(expected, abs=1e-12)


def test_nmi_degenerate_partitions():
    assert normalized_mutual_information([4, 4, 4], [1, 1, 1]) == 1.0
    assert normalized_mutual_information([4], [9]) == 1.0
    for average in AVERAGES:
        assert normalized_mutual_information([4, 4, 4, 4], [0, 1, 0, 2], average) == 0.0
        assert normalized_mutual_information([0, 1, 0, 2], [4, 4, 4, 4], average) == 0.0
        assert normalized_mutual_info_score([0, 1, 0, 2], [4, 4, 4, 4], average_method=average) == 0.0


def test_independent_partitions_give_zero_nmi():
    labels = [0, 0, 1, 1]
    cluster_ids = [0, 1, 0, 1]
    assert normalized_mutual_information(labels, cluster_ids) == pytest.approx(0.0, abs=1e-15)
    assert clustering_accuracy(labels, cluster_ids) == 0.5


def test_accuracy_against_brute_force():
    rng = np.random.default_rng(2)
    shapes = [(3, 3), (4, 4), (2, 5), (3, 6), (5, 2), (6, 3), (1, 4), (4, 1)]
    for num_classes, num_clusters in shapes:
        for _ in range(5):
            n = int(rng.integers(1, 40))
            labels = rng.integers(0, num_classes, n) * 3 + 11
            cluster_ids = rng.integers(0, num_clusters, n) - 2
            assert clustering_accuracy(labels, cluster_ids) == pytest.approx(
                brute_force_accuracy(labels, cluster_ids), abs=1e-12
            )


def test_more_clusters_than_classes_count_unmatched_clusters_as_wrong():
    # Class 0 is split over clusters 0 and 1; only one of them can map to class 0.
    labels = [0, 0, 0, 0, 1, 1]
    cluster_ids = [0, 0, 0, 1, 2, 2]
    assert clustering_accuracy(labels, cluster_ids) == pytest.approx(5 / 6)


def test_whole_float_ids_are_accepted():
    assert clustering_accuracy([0.0, 1.0, 1.0], [2, 3, 3]) == 1.0


@pytest.fixture
def separable_codes():
    """Three classes with far-apart 16-bit prototypes, each sample flipping at most one bit."""
    rng = np.random.default_rng(3)
    prototypes = np.array([[1] * 16, [-1] * 16, [1, -1] * 8])
    class_ids = np.repeat([0, 1, 2], 10)
    codes = prototypes[class_ids].copy()
    flips = rng.integers(0, 16, class_ids.size)
    codes[np.arange(class_ids.size), flips] *= -1
    labels = np.array([10, -2, 7])[class_ids]
    return codes, labels


def test_kmeans_on_separable_codes(separable_codes):
    codes, labels = separable_codes
    result = kmeans_code_clustering(codes, labels)
    assert result["num_clusters"] == 3
    assert result["accuracy"] == 1.0
    assert result["nmi"] == pytest.approx(1.0, abs=1e-12)
    assert result["nmi_arithmetic"] == pytest.approx(1.0, abs=1e-12)
    zero_one = kmeans_code_clustering((codes + 1) // 2, labels)  # {0, 1} bits
    assert zero_one["accuracy"] == 1.0
    assert kmeans_code_clustering(codes > 0, labels)["accuracy"] == 1.0  # bool bits


def test_kmeans_with_explicit_number_of_clusters(separable_codes):
    codes, labels = separable_codes
    result = kmeans_code_clustering(codes, labels, num_clusters=2)
    assert result["num_clusters"] == 2
    assert result["accuracy"] == pytest.approx(20 / 30)  # two classes merged: one of them is all wrong


def test_kmeans_is_deterministic_given_seed():
    rng = np.random.default_rng(4)
    codes = rng.choice([-1.0, 1.0], size=(120, 12))
    labels = rng.integers(0, 4, 120)
    first = kmeans_code_clustering(codes, labels, seed=5, n_init=2)
    assert kmeans_code_clustering(codes, labels, seed=5, n_init=2) == first
    assert set(first) == {"nmi", "nmi_arithmetic", "accuracy", "num_clusters"}
    assert first["num_clusters"] == 4
    assert 0.0 <= first["accuracy"] <= 1.0 and 0.0 <= first["nmi"] <= 1.0


@pytest.mark.parametrize(
    "labels, cluster_ids, match",
    [
        ([[0, 1], [1, 0]], [0, 1], "`labels` .*multi-hot"),
        ([0, 1], [[0], [1]], "`cluster_ids` must be a 1-D vector"),
        ([], [], "`labels` is empty"),
        ([0, 1], [], "`cluster_ids` is empty"),
        ([0, 1, 1], [0, 1], "same length"),
        ([0, 0.5], [0, 1], "`labels` must hold integer ids"),
        ([0, np.nan], [0, 1], "`labels` must hold integer ids"),
        ([0, 1], ["a", "b"], "`cluster_ids` must hold integer ids"),
        (0, [0], "`labels` must be a 1-D vector"),
    ],
)
def test_id_errors(labels, cluster_ids, match):
    with pytest.raises(ValueError, match=match):
        clustering_accuracy(labels, cluster_ids)
    with pytest.raises(ValueError, match=match):
        normalized_mutual_information(labels, cluster_ids)


def test_average_error():
    with pytest.raises(ValueError, match="`average` must be one of"):
        normalized_mutual_information([0, 1], [0, 1], average="mean")


@pytest.mark.parametrize(
    "codes, labels, kwargs, match",
    [
        (np.ones((4, 2)), np.eye(4, dtype=int), {}, "`labels` .*multi-hot"),
        (np.ones(4), [0, 0, 1, 1], {}, "`codes` must be a 2-D matrix"),
        (np.ones((3, 2)), [0, 0, 1, 1], {}, "`codes` has 3 rows but `labels` has 4"),
        (np.ones((4, 0)), [0, 0, 1, 1], {}, "`codes` has no columns"),
        (np.full((4, 2), 200, np.uint8), [0, 0, 1, 1], {}, "`codes` is uint8 .*unpack"),
        (np.full((4, 2), np.nan), [0, 0, 1, 1], {}, "`codes` holds NaN"),
        (np.full((4, 2), "a"), [0, 0, 1, 1], {}, "`codes` must hold real numbers"),
        (np.ones((4, 2)), [0, 0, 1, 1], {"num_clusters": 0}, "`num_clusters` must be an integer >= 1"),
        (np.ones((4, 2)), [0, 0, 1, 1], {"num_clusters": 2.0}, "`num_clusters` must be an integer"),
        (np.ones((4, 2)), [0, 0, 1, 1], {"num_clusters": True}, "`num_clusters` must be an integer"),
        (np.ones((4, 2)), [0, 0, 1, 1], {"num_clusters": 5}, "`num_clusters` must be at most the number"),
        (np.ones((4, 2)), [0, 0, 1, 1], {"seed": -1}, "`seed` must be an integer >= 0"),
        (np.ones((4, 2)), [0, 0, 1, 1], {"n_init": 0}, "`n_init` must be an integer >= 1"),
    ],
)
def test_kmeans_errors(codes, labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        kmeans_code_clustering(codes, labels, **kwargs)
