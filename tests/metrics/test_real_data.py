"""Retrieval metrics on real MNIST codes (LSH of the pixels), against the per-query numpy reference."""

import gzip

import numpy as np
import pytest

from tests.metrics import reference
from tfhash.metrics import mean_average_precision

pytestmark = pytest.mark.real_data


def read_idx(path, header_bytes):
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), np.uint8, offset=header_bytes)


@pytest.fixture(scope="module")
def mnist_lsh_codes(shared_data):
    images = read_idx(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784) / 255.0
    labels = read_idx(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz", 8).astype(np.int64)
    projection = np.random.default_rng(0).normal(size=(784, 32))
    codes = np.where((images - images.mean(0)) @ projection >= 0, 1.0, -1.0)
    return codes[:300], codes[300:], labels[:300], labels[300:]


@pytest.mark.parametrize("top_k", [1000, None])
def test_stable_map_on_mnist_equals_reference_loop(mnist_lsh_codes, top_k):
    expected = reference.stable_average_precision(*mnist_lsh_codes, top_k=top_k).mean()
    result = float(mean_average_precision(*mnist_lsh_codes, top_k=top_k, ties="stable"))
    assert abs(result - expected) < 1e-12
    assert 0.2 < result < 0.9  # LSH of pixels retrieves far above chance (0.1) and far below perfect


def test_tie_rules_agree_closely_on_mnist(mnist_lsh_codes):
    average = float(mean_average_precision(*mnist_lsh_codes))
    stable = float(mean_average_precision(*mnist_lsh_codes, ties="stable"))
    assert abs(average - stable) < 5e-3
