"""AdaptiveNeighborDiscovery: W⁰, the update and F_w against slow numpy references written from Eq. 7–12."""

import json

import numpy as np
import pytest

from tfhash.supervision import AdaptiveNeighborDiscovery

to_dense = AdaptiveNeighborDiscovery.to_dense
to_lists = AdaptiveNeighborDiscovery.to_lists


def reference_w0(features, k1, k2):
    """Eq. 7–9 literally: W_L from a stable sort of the cosines (the sample itself first), then per row the
    neighbour-set similarity 1 / (1 + ‖(W_L)_i − (W_L)_j‖) of the ±1 rows, the k2 best others (stable sort:
    ties to the lower index) plus i, and W⁰ = W_L AND W_H."""
    x = np.asarray(features, np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    cosine = x @ x.T
    n = len(x)
    low = -np.ones((n, n))
    for i in range(n):
        order = [j for j in np.argsort(-cosine[i], kind="stable") if j != i]
        low[i, [i] + order[:k1]] = 1
    high = -np.ones((n, n))
    for i in range(n):
        score = np.array([1.0 / (1.0 + np.linalg.norm(low[i] - low[j])) for j in range(n)])
        order = [j for j in np.argsort(-score, kind="stable") if j != i]
        high[i, [i] + order[:k2]] = 1
    return np.where((low == 1) & (high == 1), 1, -1).astype(np.int8)


def clustered(num_clusters=3, per_cluster=15, dim=8, seed=1):
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.standard_normal((num_clusters, dim))
    label = np.repeat(np.arange(num_clusters), per_cluster)
    return (centres[label] + rng.standard_normal((label.size, dim))).astype(np.float32), label


# --- W⁰ -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block_size", [1, 7, 1024])
@pytest.mark.parametrize("case", ["gaussian", "clustered"])
def test_initial_neighbors_match_the_equations(case, block_size):
    if case == "gaussian":
        x, k1, k2 = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32), 5, 4
    else:
        (x, _), k1, k2 = clustered(), 6, 9
    lists = AdaptiveNeighborDiscovery(k1, k2, block_size=block_size).initial_neighbors(x)
    assert lists.dtype == np.int32
    np.testing.assert_array_equal(to_dense(lists), reference_w0(x, k1, k2))
    counts = (lists >= 0).sum(axis=1)
    assert counts.max() == lists.shape[1] and counts.max() <= min(k1, k2) + 1
    assert (lists[:, :-1][lists[:, 1:] >= 0] < lists[:, 1:][lists[:, 1:] >= 0]).all()  # ascending rows


@pytest.mark.parametrize("block_size", [1, 5, 1024])
def test_initial_neighbors_break_ties_toward_the_lower_index(block_size):
    # exact duplicates: cosines exactly 1 within a group and 0 across, so both orders are full of ties
    group = np.array([0, 1, 0, 0, 2, 1, 0, 2, 1, 0, 0, 2])
    x = np.eye(3, dtype=np.float32)[group]
    lists = AdaptiveNeighborDiscovery(3, 2, block_size=block_size).initial_neighbors(x)
    np.testing.assert_array_equal(to_dense(lists), reference_w0(x, 3, 2))
    # sample 9 (group 0: 0, 2, 3, 6, 9, 10): low order {9, 0, 2, 3}; shared counts 4 with 0, 2, 3 → {9, 0, 2}
    assert list(lists[9][lists[9] >= 0]) == [0, 2, 9]


def test_initial_neighbors_zero_feature_row_and_self():
    x = np.random.default_rng(3).standard_normal((12, 4))
    x[5] = 0.0
    lists = AdaptiveNeighborDiscovery(3, 3).initial_neighbors(x)
    dense = to_dense(lists)
    np.testing.assert_array_equal(dense, reference_w0(x, 3, 3))
    assert (np.diag(dense) == 1).all()


# --- update (Eq. 10–12) -------------------------------------------------------------------------------------

# ±1 codes of norm 2: the cosines are exact multiples of 1/4
CODES = np.array([[1, 1, 1, 1], [1, 1, 1, -1], [1, 1, -1, -1], [-1, -1, -1, -1]], dtype=np.float32)
# s = [[1, .5, 0, -1], [.5, 1, .5, -.5], [0, .5, 1, 0], [-1, -.5, 0, 1]]
W_HAND = np.array([[1, 1, -1, -1], [-1, 1, -1, -1], [-1, -1, 1, -1], [-1, -1, -1, 1]], dtype=np.int8)
# positives: the diagonal (s = 1, four times) and (0, 1) (s = .5): μ = 4.5/5 = .9,
# σ² = (4·.1² + .4²)/5 = .04, σ = .2


@pytest.mark.parametrize("representation", ["dense", "lists"])
def test_update_by_hand(representation):
    w = W_HAND if representation == "dense" else to_lists(W_HAND)
    before = w.copy()
    # γ = −2.5: m = .9 − .5 = .4, so the pairs of cosine .5 turn positive: (1, 0), (1, 2), (2, 1)
    new, report = AdaptiveNeighborDiscovery(gamma=-2.5).update(w, CODES)
    expected = W_HAND.copy()
    expected[[1, 1, 2], [0, 2, 1]] = 1
    np.testing.assert_array_equal(new if representation == "dense" else to_dense(new), expected)
    np.testing.assert_array_equal(w, before)  # the input is left alone
    assert report == pytest.approx(
        {"positives_before": 5, "positives": 8, "added": 3, "dropped": 0, "mean": 0.9, "std": 0.2,
         "threshold": 0.4}
    )
    assert all(type(value) is (int if key in ("positives_before", "positives", "added", "dropped") else float)
               for key, value in report.items())
    # γ = 1: m = 1.1, above every cosine: nothing changes
    new, report = AdaptiveNeighborDiscovery(gamma=1.0).update(w, CODES)
    np.testing.assert_array_equal(new, w)
    assert report["added"] == 0 and report["threshold"] == pytest.approx(1.1)


def test_update_max_neighbors_keeps_the_most_similar():
    # γ = −5: m = −.1; new pairs (cosine): row 0: 2 (0); row 1: 0 (.5), 2 (.5); row 2: 1 (.5), 0 (0), 3 (0);
    # row 3: 2 (0)
    discovery = AdaptiveNeighborDiscovery(gamma=-5.0)
    unlimited, report = discovery.update(to_lists(W_HAND), CODES)
    assert report["added"] == 7 and report["dropped"] == 0 and report["threshold"] == pytest.approx(-0.1)
    dense, _ = discovery.update(W_HAND, CODES)
    np.testing.assert_array_equal(to_dense(unlimited), dense)
    # at most 2 per row: row 0 is full already; row 1 takes 0 (tie with 2: the lower index); row 2 takes 1
    limited, report = discovery.update(to_lists(W_HAND), CODES, max_neighbors=2)
    np.testing.assert_array_equal(limited, [[0, 1], [0, 1], [1, 2], [2, 3]])
    assert (report["added"], report["dropped"], report["positives"]) == (3, 4, 8)
    # a row holding more than max_neighbors keeps all of them and takes nothing
    limited, report = discovery.update(to_lists(W_HAND), CODES, max_neighbors=1)
    np.testing.assert_array_equal(limited, [[0, 1], [1, -1], [2, -1], [3, -1]])
    assert (report["added"], report["dropped"]) == (0, 7)


def random_similarity(n, seed, density=0.05):
    rng = np.random.default_rng(seed)
    w = np.where(rng.random((n, n)) < density, 1, -1).astype(np.int8)
    np.fill_diagonal(w, 1)
    return w, rng.standard_normal((n, 8)).astype(np.float32)


def test_update_dense_and_lists_agree_across_block_sizes():
    w, codes = random_similarity(57, seed=0)
    results = []
    for block_size in (1, 7, 1024):
        discovery = AdaptiveNeighborDiscovery(gamma=0.5, block_size=block_size)
        dense, dense_report = discovery.update(w, codes)
        lists, lists_report = discovery.update(to_lists(w), codes)
        np.testing.assert_array_equal(to_dense(lists), dense)
        assert dense_report == lists_report
        assert ((dense == 1) | (w == -1)).all()  # positives never disappear
        results.append((dense, dense_report))
    for dense, report in results[1:]:
        np.testing.assert_array_equal(dense, results[0][0])
        assert report == pytest.approx(results[0][1])


def test_update_against_a_direct_computation():
    w, codes = random_similarity(45, seed=2)
    unit = codes / np.linalg.norm(codes, axis=1, keepdims=True)
    s = unit.astype(np.float64) @ unit.T.astype(np.float64)
    mean, std = s[w == 1].mean(), s[w == 1].std()
    threshold = mean + 0.3 * std
    expected = np.where((w == 1) | (s >= threshold), 1, -1)
    new, report = AdaptiveNeighborDiscovery(gamma=0.3, block_size=8).update(w, codes)
    np.testing.assert_array_equal(new, expected)
    assert new.dtype == np.int8
    assert report["mean"] == pytest.approx(mean) and report["std"] == pytest.approx(std)
    assert report["added"] == int((expected == 1).sum() - (w == 1).sum())


# --- quality ------------------------------------------------------------------------------------------------


def reference_quality(w, same):
    tp = int(((w == 1) & same).sum())
    precision, recall = tp / (w == 1).sum(), tp / same.sum()
    return precision, recall, 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("multi_hot", [False, True])
def test_quality_against_dense_numpy(multi_hot):
    w, _ = random_similarity(50, seed=4, density=0.2)
    rng = np.random.default_rng(5)
    if multi_hot:
        labels = (rng.random((50, 4)) < 0.35).astype(np.int64)
        same = (labels @ labels.T) > 0
    else:
        labels = rng.integers(0, 3, 50)
        same = labels[:, None] == labels[None, :]
    precision, recall, f_w = reference_quality(w, same)
    for similarity in (w, to_lists(w)):
        for block_size in (3, 1024):
            result = AdaptiveNeighborDiscovery.quality(similarity, labels, block_size=block_size)
            assert result["precision"] == pytest.approx(precision)
            assert result["recall"] == pytest.approx(recall)
            assert result["f_w"] == pytest.approx(f_w)
            assert result["positives"] == int((w == 1).sum()) and result["label_positives"] == int(same.sum())


def test_quality_zero_f_w():
    # only the off-diagonal pair (0, 1), of different classes: no true positive
    lists = np.array([[1], [-1], [-1]])
    result = AdaptiveNeighborDiscovery.quality(lists, np.array([0, 1, 1]))
    assert result == {"precision": 0.0, "recall": 0.0, "f_w": 0.0, "positives": 1, "true_positives": 0,
                      "label_positives": 5}


# --- conversions, configuration, errors ---------------------------------------------------------------------


def test_dense_lists_round_trip():
    w, _ = random_similarity(30, seed=6, density=0.3)
    lists = to_lists(w)
    assert lists.dtype == np.int32 and lists.shape[1] == (w == 1).sum(axis=1).max()
    np.testing.assert_array_equal(to_dense(lists), w)
    np.testing.assert_array_equal(to_lists(to_dense(lists)), lists)
    assert to_dense(np.array([[1], [-1]]), num_samples=3).tolist() == [[-1, 1, -1], [-1, -1, -1]]
    empty = to_lists(np.full((3, 3), -1, np.int8))
    assert empty.shape == (3, 0) and (to_dense(empty) == -1).all()


def test_config_round_trip():
    discovery = AdaptiveNeighborDiscovery(num_neighbors=20, num_shared_neighbors=30, gamma=0.0, block_size=64)
    config = json.loads(json.dumps(discovery.get_config()))
    assert AdaptiveNeighborDiscovery(**config).get_config() == config
    assert "num_neighbors=20" in repr(discovery)


@pytest.mark.parametrize(
    "arguments, name",
    [({"num_neighbors": 0}, "num_neighbors"), ({"num_shared_neighbors": 1.5}, "num_shared_neighbors"),
     ({"gamma": float("nan")}, "gamma"), ({"block_size": 0}, "block_size")],
)
def test_constructor_errors(arguments, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        AdaptiveNeighborDiscovery(**arguments)


def test_errors():
    discovery = AdaptiveNeighborDiscovery(num_neighbors=3, num_shared_neighbors=3)
    x = np.random.default_rng(0).standard_normal((6, 4))
    with pytest.raises(ValueError, match="`features`.*2-D"):
        discovery.initial_neighbors(x[0])
    with pytest.raises(ValueError, match="`features`.*finite"):
        discovery.initial_neighbors(np.where(x > 1, np.nan, x))
    with pytest.raises(ValueError, match="`features` holds n = 3.*num_neighbors must be < n"):
        discovery.initial_neighbors(x[:3])
    with pytest.raises(ValueError, match="num_shared_neighbors must be < n"):
        AdaptiveNeighborDiscovery(num_neighbors=2, num_shared_neighbors=6).initial_neighbors(x)
    with pytest.raises(ValueError, match="`codes`.*finite"):
        discovery.update(W_HAND, np.where(CODES > 0, np.nan, CODES))
    with pytest.raises(ValueError, match="`codes`.*one row per sample"):
        discovery.update(W_HAND, CODES[:3])
    with pytest.raises(ValueError, match="`similarity`"):
        discovery.update(W_HAND.astype(np.float32), CODES)
    for nothing in (np.full((4, 4), -1, np.int8), np.zeros((4, 0), np.int32)):
        with pytest.raises(ValueError, match="`similarity`.*no positive pair"):
            discovery.update(nothing, CODES)
    with pytest.raises(ValueError, match="`similarity`.*ascending"):
        discovery.update(np.array([[1, 0], [1, -1], [2, -1], [3, -1]]), CODES)
    with pytest.raises(ValueError, match="`max_neighbors`"):
        discovery.update(W_HAND, CODES, max_neighbors=2)
    with pytest.raises(ValueError, match="`labels`"):
        AdaptiveNeighborDiscovery.quality(W_HAND, np.zeros(3, int))
    with pytest.raises(ValueError, match="`num_samples`"):
        to_dense(np.array([[2], [-1]]), num_samples=2)


def test_scale_smoke():
    x = np.random.default_rng(7).standard_normal((3000, 64)).astype(np.float32)
    discovery = AdaptiveNeighborDiscovery(num_neighbors=50, num_shared_neighbors=50, gamma=1.0)
    lists = discovery.initial_neighbors(x)
    counts = (lists >= 0).sum(axis=1)
    assert lists.shape[0] == 3000 and lists.shape[1] == counts.max() <= 51 and counts.min() >= 1
    codes = np.random.default_rng(8).standard_normal((3000, 16)).astype(np.float32)
    new, report = discovery.update(lists, codes, max_neighbors=100)
    assert new.shape[0] == 3000 and (new >= 0).sum(axis=1).max() <= 100
    assert report["positives_before"] == counts.sum() and report["positives"] == (new >= 0).sum()
