"""Protocols on synthetic pools of the papers' sizes (fake file paths or 1-d features, no images)."""

import numpy as np
import pytest

from tfhash.data import protocols as protocols_module
from tfhash.data.image_set import ImageSet
from tfhash.data.protocols import Protocol, Split, get_protocol, list_protocols, register_protocol
from tfhash.data.sources import load_digits


def shuffled(labels, partition, seed):
    """Labels and partition in a random order, so that no protocol can rely on the pool being grouped."""
    order = np.random.default_rng(seed).permutation(len(labels))
    return labels[order], partition[order]


def single_label_pool(name, train_per_class, test_per_class):
    labels = np.repeat(np.tile(np.arange(10), 2), np.repeat([train_per_class, test_per_class], 10))
    partition = np.array(["train"] * (10 * train_per_class) + ["test"] * (10 * test_per_class))
    labels, partition = shuffled(labels, partition, seed=1)
    return ImageSet(name, np.array([f"{name}/{i:05d}.jpg" for i in range(len(labels))]), labels, partition)


def multi_label_pool(name, size, classes):
    labels = (np.random.default_rng(2).random((size, classes)) < 0.2).astype(np.uint8)
    return ImageSet(name, np.zeros((size, 1), np.float32), labels)


POOLS = {
    "cifar10": lambda: single_label_pool("cifar10", 5000, 1000),  # 60,000 with partition train / test
    "mnist": lambda: single_label_pool("mnist", 6000, 1000),  # 70,000 (balanced stand-in for MNIST's counts)
    "flickr25k": lambda: multi_label_pool("flickr25k", 25_000, 24),
    "nuswide-21": lambda: multi_label_pool("nuswide-21", 269_648, 21),
    "nuswide-10": lambda: multi_label_pool("nuswide-10", 186_577, 10),
    "digits": load_digits,  # the embedded demo data itself (1,797 images, 10 slightly unequal classes)
}
POOL_OF = {
    "cifar10-i": "cifar10", "cifar10-ii": "cifar10", "cifar10-bihalf-i": "cifar10", "cifar10-cib": "cifar10", "cifar10-dsah": "cifar10",
    "cifar10-hashgan": "cifar10", "mnist-hashgan": "mnist", "flickr25k": "flickr25k",
    "flickr25k-dsah": "flickr25k", "nuswide-21": "nuswide-21", "nuswide-10": "nuswide-10", "digits": "digits",
}
# (query, train, database, top_k, train is the whole database) as the papers state them.
EXPECTED = {
    "cifar10-i": (10_000, 5_000, 50_000, None, False),
    "cifar10-ii": (10_000, 50_000, 50_000, 1000, True),
    "cifar10-bihalf-i": (10_000, 50_000, 50_000, 1000, True),
    "cifar10-cib": (10_000, 5_000, 50_000, 1000, False),
    "cifar10-dsah": (1_000, 10_000, 59_000, 5000, False),
    "mnist-hashgan": (1_000, 69_000, 69_000, None, True),
    "cifar10-hashgan": (1_000, 59_000, 59_000, None, True),
    "flickr25k": (1_000, 10_000, 24_000, None, False),
    "flickr25k-dsah": (1_000, 10_000, 24_000, 5000, False),
    "nuswide-21": (2_100, 10_500, 267_548, 5000, False),
    "nuswide-10": (5_000, 10_500, 181_577, None, False),
    "digits": (300, 1_497, 1_497, None, True),
}


@pytest.fixture(scope="module")
def pools():
    return {name: build() for name, build in POOLS.items()}


def test_every_protocol_is_covered():
    assert sorted(p.name for p in list_protocols()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sizes_metric_and_disjointness(pools, name):
    protocol, pool = get_protocol(name), pools[POOL_OF[name]]
    query, train, database, top_k, train_is_database = EXPECTED[name]
    split = protocol.split(pool, seed=0)
    assert isinstance(split, Split) and split.protocol == name and split.seed == 0
    assert split.sizes == {"query": query, "train": train, "database": database} == protocol.sizes
    assert split.top_k == protocol.top_k == top_k
    assert split.metric == protocol.metric == ("mAP@all" if top_k is None else f"mAP@{top_k}")
    for part in (split.query, split.train, split.database):
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)  # sorted, unique
    assert np.intersect1d(split.query, split.database).size == 0
    assert np.array_equal(np.union1d(split.query, split.database), np.arange(len(pool)))
    assert np.isin(split.train, split.database).all()
    assert np.array_equal(split.train, split.database) == train_is_database


@pytest.mark.parametrize("name, query_per_class, train_per_class", [
    ("cifar10-i", 1000, 500), ("cifar10-dsah", 100, 1000), ("cifar10-hashgan", 100, 5900),
    ("mnist-hashgan", 100, 6900), ("cifar10-cib", 1000, 500), ("cifar10-ii", 1000, 5000),
])
def test_per_class_counts(pools, name, query_per_class, train_per_class):
    pool = pools[POOL_OF[name]]
    split = get_protocol(name).split(pool, seed=3)
    assert np.bincount(pool.labels[split.query], minlength=10).tolist() == [query_per_class] * 10
    assert np.bincount(pool.labels[split.train], minlength=10).tolist() == [train_per_class] * 10


@pytest.mark.parametrize("name", ["cifar10-ii", "cifar10-cib"])
def test_official_partition_protocols_use_the_test_set_as_queries(pools, name):
    pool = pools["cifar10"]
    split = get_protocol(name).split(pool, seed=0)
    assert np.array_equal(split.query, np.flatnonzero(pool.partition == "test"))
    assert np.array_equal(split.database, np.flatnonzero(pool.partition == "train"))


def test_sampled_protocols_draw_queries_from_both_partitions(pools):
    pool = pools["cifar10"]
    partitions = set(pool.partition[get_protocol("cifar10-i").split(pool).query])
    assert partitions == {"train", "test"}  # from all 60,000, not from the test set


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_deterministic_under_a_seed_and_changing_with_it(pools, name):
    protocol, pool = get_protocol(name), pools[POOL_OF[name]]
    first, again, other = (protocol.split(pool, seed=seed) for seed in (7, 7, 8))
    for part in ("query", "train", "database"):
        assert np.array_equal(getattr(first, part), getattr(again, part))
    if protocol.query_partition is None:
        assert not np.array_equal(first.query, other.query)
    if not np.array_equal(first.train, first.database):
        assert not np.array_equal(first.train, other.train)


def test_known_first_draw_is_stable_across_versions():
    """A regression pin: the sampling rule (spawned streams, ascending classes) must not change silently."""
    pool = ImageSet("toy", np.zeros((12, 1), np.float32), np.arange(12) % 3)
    split = Protocol("toy", query_per_class=1, train_per_class=2).split(pool, seed=0)
    expected = np.random.default_rng(np.random.SeedSequence(0).spawn(2)[0])
    first_class = expected.choice(np.array([0, 3, 6, 9]), 1, replace=False)
    assert first_class[0] in split.query and split.sizes == {"query": 3, "train": 6, "database": 9}


@pytest.mark.parametrize("alias, name", [
    ("cifar10_ii", "cifar10-i"), ("Cifar10_II", "cifar10-i"), ("cimon-cifar10", "cifar10-i"),
    ("cifar10_i", "cifar10-bihalf-i"), ("bihalf-cifar10-i", "cifar10-bihalf-i"), ("greedyhash-cifar10", "cifar10-ii"), (" CIFAR10-II ", "cifar10-ii"),
    ("cibhash-cifar10", "cifar10-cib"), ("dsah-cifar10", "cifar10-dsah"), ("hashgan-mnist", "mnist-hashgan"),
    ("hashgan-cifar10", "cifar10-hashgan"), ("mirflickr25k", "flickr25k"),
    ("dsah-flickr25k", "flickr25k-dsah"),
    ("dsah-nuswide", "nuswide-21"), ("nuswide_ii", "nuswide-10"), ("hqt-nuswide-i", "nuswide-10"),
])
def test_alias_resolution(alias, name):
    assert get_protocol(alias).name == name
    assert get_protocol(get_protocol(alias)) is get_protocol(name)


def test_protocols_declare_their_paper_and_extra_metrics(pools):
    for protocol in list_protocols():
        assert protocol.paper and protocol.description and protocol.pool
    assert get_protocol("mnist-hashgan").also_reports == ("mAP@1000", "precision@1000")
    split = get_protocol("cifar10-hashgan").split(pools["cifar10"])
    assert split.also_reports == ("mAP@1000", "precision@1000")


def test_unknown_protocol_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown protocol 'cifar-100'.*; cifar10-i, cifar10_ii, "):
        get_protocol("cifar-100")


def test_custom_protocol_and_registration(monkeypatch):
    # A copy of the registry, restored after the test, so the test's registrations do not leak.
    monkeypatch.setattr(protocols_module, "_REGISTRY", dict(protocols_module._REGISTRY))
    pool = ImageSet("toy", np.zeros((40, 2), np.float32), np.arange(40) % 4)
    protocol = Protocol("toy-protocol", query_per_class=2, train_size=5, top_k=10, aliases=("toy",))
    split = protocol.split(pool, seed=1)
    assert split.sizes == {"query": 8, "train": 5, "database": 32} and split.metric == "mAP@10"
    parts = split.subsets(pool)
    assert len(parts["query"]) == 8 and np.bincount(parts["query"].labels).tolist() == [2, 2, 2, 2]
    register_protocol(protocol)
    assert get_protocol("TOY") is protocol
    register_protocol(protocol)  # the same protocol again is harmless
    with pytest.raises(ValueError, match=r"already registered \(by \['cifar10-i'\]\)"):
        register_protocol(Protocol("mine", query_size=5, aliases=("cifar10_ii",)))


@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one of"),
    ({"query_per_class": 1, "query_size": 2}, "exactly one of"),
    ({"query_size": 2, "train_per_class": 1, "train_size": 3}, "at most one of"),
    ({"query_size": 0}, "`query_size` must be a positive integer"),
    ({"query_size": 2, "top_k": 2.5}, "`top_k` must be a positive integer"),
    ({"query_per_class": True}, "`query_per_class` must be a positive integer"),
])
def test_invalid_protocol_definitions(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Protocol("bad", **kwargs)


def test_bad_pools_and_seeds_are_clear_errors(pools):
    cifar = pools["cifar10"]
    with pytest.raises(ValueError, match="`seed` must be a non-negative integer"):
        get_protocol("cifar10-i").split(cifar, seed=-1)
    with pytest.raises(ValueError, match="`seed`"):
        get_protocol("cifar10-i").split(cifar, seed=0.5)
    with pytest.raises(ValueError, match="needs class ids.*multi-hot"):
        get_protocol("cifar10-i").split(pools["flickr25k"])
    train_only = ImageSet("cifar10-train", cifar.samples[:100], cifar.labels[:100])
    with pytest.raises(ValueError, match=r"partition 'test'.*partitions \['train'\] with 0 of 100"):
        get_protocol("cifar10-ii").split(train_only)
    with pytest.raises(ValueError, match=r"draws 1000 query images per class from the pool, but class \d+ of "
                                         r"ImageSet 'cifar10-train' has only \d+"):
        get_protocol("cifar10-i").split(train_only)
    # Class 3 keeps 1,200 images: enough for its 1,000 queries, but 200 < 500 remain for training.
    small = cifar.subset(np.concatenate([np.flatnonzero(cifar.labels != 3)[:15_000],
                                         np.flatnonzero(cifar.labels == 3)[:1200]]))
    with pytest.raises(ValueError, match="500 training images per class from the database .* class 3 .*200"):
        get_protocol("cifar10-i").split(small)
    with pytest.raises(ValueError, match="draws 10000 training images from the database .* only 3000"):
        get_protocol("flickr25k").split(multi_label_pool("tiny", 4000, 24))


def test_digits_demo_protocol_on_the_embedded_data():
    pool = load_digits()
    split = get_protocol("digits").split(pool, seed=0)
    assert np.bincount(pool.labels[split.query]).tolist() == [30] * 10
    assert np.array_equal(split.train, split.database) and split.metric == "mAP@all"
    assert not np.array_equal(get_protocol("digits").split(pool, seed=1).query, split.query)
