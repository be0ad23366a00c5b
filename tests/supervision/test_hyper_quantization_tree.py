"""HyperQuantizationTree (HQT pseudo labels) and its 2-means."""

import json

import numpy as np
import pytest
from sklearn.cluster import KMeans

from tfhash.supervision import HyperQuantizationTree, binary_kmeans


def hierarchical_blobs(per_blob=60, extra_dims=5, seed=0):
    """8 blobs at (±100, ±30, ±10) (+ noise dims): 2-means splits them 4/4, 2/2, 1/1."""
    rng = np.random.default_rng(seed)
    signs = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], dtype=np.float32)
    centres = np.concatenate([signs * np.array([100.0, 30.0, 10.0]), np.zeros((8, extra_dims))], axis=1)
    blob = np.repeat(np.arange(8), per_blob)
    x = centres[blob] + rng.standard_normal((blob.size, centres.shape[1]))
    return x.astype(np.float32), blob


def same_partition(a, b):
    """True when the labelings a and b define the same partition (labels may be renamed)."""
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def refines(fine, coarse):
    """True when every group of `fine` lies inside a single group of `coarse`."""
    pairs = np.unique(np.stack([fine, coarse], axis=1), axis=0)
    return len(pairs) == len(np.unique(fine))


@pytest.fixture(scope="module")
def gaussian():
    return np.random.default_rng(1).standard_normal((400, 16)).astype(np.float32)


def test_output_shape_dtype_and_values(gaussian):
    hqt = HyperQuantizationTree(num_bits=12, seed=3)
    bits = hqt.pseudo_bits(gaussian)
    assert bits.shape == (400, 12) and bits.dtype == np.uint8
    assert set(np.unique(bits)) <= {0, 1}
    assert hqt.leaf_ids_.shape == (400, 12) and len(hqt.positive_leaves_) == 12


def test_depths_within_range_and_drawn_from_the_seed():
    hqt = HyperQuantizationTree(num_bits=200, depth_range=(3, 5), seed=7)
    assert hqt.depths.min() >= 3 and hqt.depths.max() <= 5
    assert set(hqt.depths.tolist()) == {3, 4, 5}
    expected = np.random.default_rng(7).integers(3, 6, size=200)
    np.testing.assert_array_equal(hqt.depths, expected)
    assert set(HyperQuantizationTree(num_bits=10, depth_range=(4, 4)).depths.tolist()) == {4}


@pytest.mark.parametrize("shared", [True, False])
def test_bits_align_with_blobs_at_depth_3(shared):
    x, blob = hierarchical_blobs()
    hqt = HyperQuantizationTree(num_bits=16, depth_range=(3, 3), shared_tree=shared, seed=0)
    bits = hqt.pseudo_bits(x)
    for b in range(16):
        assert same_partition(hqt.leaf_ids_[:, b], blob)  # 8 leaves = the 8 blobs
        for k in range(8):
            assert np.unique(bits[blob == k, b]).size == 1  # constant within a blob
        assert bits[:, b].sum() == 4 * 60  # 4 blobs (leaves) per hyper-cluster


@pytest.mark.parametrize("shared", [True, False])
def test_deeper_leaves_stay_inside_blobs(shared):
    x, blob = hierarchical_blobs()
    hqt = HyperQuantizationTree(num_bits=16, depth_range=(3, 5), shared_tree=shared, seed=1).fit(x)
    for b in range(16):
        assert refines(hqt.leaf_ids_[:, b], blob)
        assert np.unique(hqt.leaf_ids_[:, b]).size == 2 ** hqt.depths[b]


def test_leaves_balanced_between_hyper_clusters(gaussian):
    hqt = HyperQuantizationTree(num_bits=24, shared_tree=False, seed=5).fit(gaussian)
    for b in range(24):
        leaves = np.unique(hqt.leaf_ids_[:, b])
        positive = hqt.positive_leaves_[b]
        assert positive.size == leaves.size // 2
        assert abs(positive.size - (leaves.size - positive.size)) <= 1
        assert np.isin(positive, leaves).all()
        np.testing.assert_array_equal(hqt.pseudo_bits_[:, b], np.isin(hqt.leaf_ids_[:, b], positive))


def test_partitions_differ_across_bits_of_equal_depth(gaussian):
    hqt = HyperQuantizationTree(num_bits=32, depth_range=(4, 4), seed=0).fit(gaussian)
    distinct = {tuple(p.tolist()) for p in hqt.positive_leaves_}
    assert len(distinct) > 1


@pytest.mark.parametrize("shared", [True, False])
def test_deterministic_and_seed_sensitive(gaussian, shared):
    def bits(seed):
        return HyperQuantizationTree(num_bits=16, shared_tree=shared, seed=seed).pseudo_bits(gaussian)

    np.testing.assert_array_equal(bits(0), bits(0))
    assert not np.array_equal(bits(0), bits(1))
    hqt = HyperQuantizationTree(num_bits=16, shared_tree=shared, seed=0)
    np.testing.assert_array_equal(hqt.pseudo_bits(gaussian), hqt.pseudo_bits(gaussian))  # refit is identical


def test_shared_tree_shallow_leaves_coarsen_deep_leaves(gaussian):
    hqt = HyperQuantizationTree(num_bits=32, depth_range=(3, 5), shared_tree=True, seed=0).fit(gaussian)
    depths, leaves = hqt.depths, hqt.leaf_ids_
    assert {3, 5} <= set(depths.tolist())
    for shallow in np.flatnonzero(depths == 3):
        for deep in np.flatnonzero(depths == 5):
            assert refines(leaves[:, deep], leaves[:, shallow])
            # heap indices: a depth-5 node's id >> 2 is its depth-3 ancestor (where the node is at full depth)
            full = leaves[:, deep] >= 2**5
            assert full.any()
            np.testing.assert_array_equal(leaves[full, deep] >> 2, leaves[full, shallow])
    for d in (3, 4, 5):  # equal depth -> identical trees
        same = np.flatnonzero(depths == d)
        assert (leaves[:, same] == leaves[:, same[:1]]).all()


def test_shared_tree_matches_a_tree_grown_to_each_depth(gaussian):
    deep = HyperQuantizationTree(num_bits=8, depth_range=(5, 5), seed=0).fit(gaussian).leaf_ids_[:, 0]
    # one k-means seed per `seed`: a tree grown to depth d is the first d levels of the depth-5 tree
    for d in (3, 4):
        shallow = HyperQuantizationTree(num_bits=3, depth_range=(d, d), seed=0).fit(gaussian).leaf_ids_[:, 0]
        full = deep >= 2**5
        np.testing.assert_array_equal(shallow[full], deep[full] >> (5 - d))
        assert refines(deep, shallow)


def test_independent_trees_differ_from_shared(gaussian):
    shared = HyperQuantizationTree(num_bits=16, depth_range=(4, 4), shared_tree=True, seed=0).fit(gaussian)
    independent = HyperQuantizationTree(num_bits=16, depth_range=(4, 4), shared_tree=False, seed=0)
    independent.fit(gaussian)
    assert all(same_partition(shared.leaf_ids_[:, 0], shared.leaf_ids_[:, b]) for b in range(16))
    first = independent.leaf_ids_[:, 0]
    assert not all(same_partition(first, independent.leaf_ids_[:, b]) for b in range(16))
    assert not np.array_equal(shared.pseudo_bits_, independent.pseudo_bits_)


def test_projection_keeps_the_blob_structure():
    x, blob = hierarchical_blobs(extra_dims=29)
    hqt = HyperQuantizationTree(num_bits=8, depth_range=(3, 3), shared_tree=False, seed=0, projection_dim=4)
    bits = hqt.pseudo_bits(x)
    for b in range(8):
        assert same_partition(hqt.leaf_ids_[:, b], blob)
        assert all(np.unique(bits[blob == k, b]).size == 1 for k in range(8))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_kmeans_matches_sklearn_on_easy_data(seed):
    rng = np.random.default_rng(seed)
    two = np.concatenate([rng.normal(-5, 1, (150, 10)), rng.normal(5, 1, (90, 10))]).astype(np.float32)
    x8, _ = hierarchical_blobs(seed=seed)
    for x in (two, x8):
        ours = binary_kmeans(x, seed=seed)
        theirs = KMeans(n_clusters=2, n_init="auto", random_state=seed).fit_predict(x)
        assert same_partition(ours.astype(int), theirs)
    np.testing.assert_array_equal(binary_kmeans(two, seed=4), binary_kmeans(two, seed=4))


def test_binary_kmeans_degenerate_inputs():
    assert binary_kmeans(np.ones((1, 3))).tolist() == [False]
    assert not binary_kmeans(np.ones((5, 3))).any()  # identical rows: one cluster
    assert binary_kmeans(np.zeros((0, 3))).shape == (0,)


def test_node_with_fewer_than_two_samples_stays_a_leaf():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal((50, 4)), [[1000.0, 0, 0, 0]]]).astype(np.float32)
    hqt = HyperQuantizationTree(num_bits=6, depth_range=(5, 5), seed=0).fit(x)
    outlier_leaf = hqt.leaf_ids_[-1, 0]
    assert outlier_leaf in (2, 3)  # split off at the root, then never split again
    assert np.unique(hqt.leaf_ids_[:-1, 0]).size > 1 and outlier_leaf not in hqt.leaf_ids_[:-1, 0]
    single = HyperQuantizationTree(num_bits=3, seed=0)
    np.testing.assert_array_equal(single.fit(x[:1]).leaf_ids_, [[1, 1, 1]])
    assert single.pseudo_bits_.tolist() == [[0, 0, 0]]  # one leaf: floor(1/2) = 0 leaves get bit 1


def test_duplicate_samples_do_not_split():
    hqt = HyperQuantizationTree(num_bits=4, depth_range=(3, 3), seed=0)
    x = np.concatenate([np.zeros((10, 3)), np.ones((10, 3))]).astype(np.float32)
    leaves = hqt.fit(x).leaf_ids_[:, 0]
    assert np.unique(leaves).size == 2 and set(leaves.tolist()) <= {2, 3}


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_bits": 0}, "num_bits"),
        ({"num_bits": 2.5}, "num_bits"),
        ({"num_bits": True}, "num_bits"),
        ({"num_bits": 8, "depth_range": 3}, "depth_range"),
        ({"num_bits": 8, "depth_range": (5, 3)}, "depth_range"),
        ({"num_bits": 8, "depth_range": (0, 3)}, "depth_range"),
        ({"num_bits": 8, "depth_range": (3, 31)}, "depth_range"),
        ({"num_bits": 8, "shared_tree": "yes"}, "shared_tree"),
        ({"num_bits": 8, "seed": -1}, "seed"),
        ({"num_bits": 8, "seed": None}, "seed"),
        ({"num_bits": 8, "kmeans_iterations": 0}, "kmeans_iterations"),
        ({"num_bits": 8, "projection_dim": 0}, "projection_dim"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        HyperQuantizationTree(**kwargs)


@pytest.mark.parametrize(
    "features, name",
    [
        (np.zeros(5), "features"),
        (np.zeros((0, 3)), "features"),
        (np.array([[1.0, np.nan]]), "features"),
        (np.array([["a", "b"]]), "features"),
    ],
)
def test_bad_features(features, name):
    with pytest.raises(ValueError, match=name):
        HyperQuantizationTree(num_bits=2).fit(features)


def test_projection_dim_wider_than_features():
    with pytest.raises(ValueError, match="projection_dim"):
        HyperQuantizationTree(num_bits=2, projection_dim=8).fit(np.zeros((10, 4)))


def test_get_config_rebuilds_an_identical_tree():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    tree = HyperQuantizationTree(6, depth_range=(2, 4), shared_tree=False, seed=3, kmeans_iterations=7,
                                 projection_dim=3)
    config = json.loads(json.dumps(tree.get_config()))
    assert config == {"num_bits": 6, "depth_range": [2, 4], "shared_tree": False, "seed": 3,
                      "kmeans_iterations": 7, "projection_dim": 3}
    clone = HyperQuantizationTree(**config)
    np.testing.assert_array_equal(clone.depths, tree.depths)
    np.testing.assert_array_equal(clone.pseudo_bits(x), tree.pseudo_bits(x))
