"""Sources on the real data in ../shared/data: MNIST, Fashion-MNIST (IDX .gz), CIFAR-10 (JPEG .tar.gz)."""

import hashlib

import numpy as np
import pytest
import tensorflow as tf

from tfhash.data.protocols import get_protocol
from tfhash.data.sources import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    load_cifar10,
    load_fashion_mnist,
    load_mnist,
)

pytestmark = pytest.mark.real_data

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_files_match_sha256sums(shared_data):
    entries = [line.split() for line in (shared_data / "SHA256SUMS").read_text().splitlines() if line.strip()]
    assert len(entries) == 9
    for expected, name in entries:
        digest = hashlib.sha256()
        with open(shared_data / name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        assert digest.hexdigest() == expected, name


@pytest.mark.parametrize("loader, name, train_counts, test_counts, first_labels", [
    (load_mnist, "mnist", MNIST_TRAIN_COUNTS, MNIST_TEST_COUNTS, [5, 0, 4, 1, 9]),
    (load_fashion_mnist, "fashion-mnist", [6000] * 10, [1000] * 10, [9, 0, 0, 3, 0]),
])
def test_idx_datasets(shared_data, loader, name, train_counts, test_counts, first_labels):
    pool = loader(shared_data)
    assert pool.name == name and pool.kind == "pixels"
    assert pool.samples.shape == (70_000, 28, 28, 1) and pool.samples.dtype == np.uint8
    train, test = pool.partition == "train", pool.partition == "test"
    assert train.sum() == 60_000 and test.sum() == 10_000 and train[:60_000].all()
    assert np.bincount(pool.labels[train]).tolist() == train_counts
    assert np.bincount(pool.labels[test]).tolist() == test_counts
    assert pool.labels[:5].tolist() == first_labels  # the files' own order
    assert pool.samples.max() == 255 and pool.samples.min() == 0
    if name == "fashion-mnist":
        assert pool.class_names == FASHION_MNIST_CLASSES


@pytest.fixture(scope="session")
def cifar10(shared_data, tfhash_cache_dir):
    """CIFAR-10 from the .tar.gz, extracted once per session into its temporary cache (conftest.py)."""
    return load_cifar10(shared_data, cache_dir=tfhash_cache_dir), tfhash_cache_dir


def test_cifar10_from_tar_gz(cifar10):
    pool, cache = cifar10
    assert pool.name == "cifar10" and pool.kind == "files" and pool.class_names == CIFAR10_CLASSES
    train, test = pool.partition == "train", pool.partition == "test"
    assert train.sum() == 50_000 and test.sum() == 10_000
    assert np.bincount(pool.labels[train]).tolist() == [5000] * 10
    assert np.bincount(pool.labels[test]).tolist() == [1000] * 10
    assert all(path.startswith(str(cache)) for path in pool.samples[::997])
    folders = [path.split("/")[-2] for path in pool.samples]
    assert folders == [CIFAR10_CLASSES[label] for label in pool.labels]
    assert list(pool.samples) == sorted(pool.samples, key=lambda p: (p.split("/")[-3] == "test", p))
    image = tf.io.decode_jpeg(tf.io.read_file(pool.samples[12_345]))
    assert image.shape == (32, 32, 3) and image.dtype == tf.uint8


def test_cifar10_second_load_reuses_the_extraction(cifar10, shared_data):
    pool, cache = cifar10
    again = load_cifar10(shared_data / "cifar10-jpg.tar.gz", cache_dir=cache)
    assert len(list(cache.iterdir())) == 1
    assert np.array_equal(again.samples, pool.samples) and np.array_equal(again.labels, pool.labels)


@pytest.mark.parametrize("name", ["cifar10-i", "cifar10-ii", "cifar10-cib", "cifar10-dsah",
                                  "cifar10-hashgan"])
def test_cifar10_protocols_on_the_real_pool(cifar10, name):
    protocol = get_protocol(name)
    assert protocol.split(cifar10[0], seed=0).sizes == protocol.sizes


def test_mnist_hashgan_protocol_on_the_real_pool(shared_data):
    pool = load_mnist(shared_data)
    split = get_protocol("mnist-hashgan").split(pool, seed=0)
    assert split.sizes == {"query": 1_000, "train": 69_000, "database": 69_000}
    assert np.bincount(pool.labels[split.query]).tolist() == [100] * 10
