"""hadamard_codebook: the Sylvester construction, its order, and the Hamming distances it promises."""

import numpy as np
import pytest
from scipy.linalg import hadamard

from tfhash.supervision import hadamard_codebook

POWERS_OF_TWO = (1, 2, 4, 8, 16, 32, 64, 128)


def hamming(codes):
    """Pairwise Hamming distances of ±1 rows."""
    num_bits = codes.shape[1]
    return np.rint((num_bits - codes @ codes.T) / 2).astype(np.int64)


def smallest_power_of_two(num_bits):
    return 1 << (num_bits - 1).bit_length()


def test_shape_dtype_values_and_determinism():
    codebook = hadamard_codebook(10, 16)
    assert codebook.shape == (10, 16) and codebook.dtype == np.float32
    assert set(np.unique(codebook)) == {-1.0, 1.0}
    np.testing.assert_array_equal(codebook, hadamard_codebook(10, 16))


@pytest.mark.parametrize("order", POWERS_OF_TWO)
def test_sylvester_recursion_matches_scipy_in_the_documented_order(order):
    h = hadamard(order)
    expected = np.concatenate([h[1:], -h[1:], h[:1], -h[:1]])
    np.testing.assert_array_equal(hadamard_codebook(2 * order, order), expected)


def test_small_cases_written_out():
    np.testing.assert_array_equal(hadamard_codebook(2, 1), [[1], [-1]])
    np.testing.assert_array_equal(hadamard_codebook(4, 2), [[1, -1], [-1, 1], [1, 1], [-1, -1]])
    np.testing.assert_array_equal(hadamard_codebook(3, 3), [[1, -1, 1], [1, 1, -1], [1, -1, -1]])


@pytest.mark.parametrize("num_bits", [2, 4, 8, 16, 32, 64, 128])
def test_power_of_two_codes_are_balanced_orthogonal_and_at_half_distance(num_bits):
    codes = hadamard_codebook(num_bits - 1, num_bits)
    np.testing.assert_array_equal(codes.sum(axis=1), 0)
    gram = codes @ codes.T
    np.testing.assert_array_equal(gram, num_bits * np.eye(num_bits - 1))
    distance = hamming(codes)
    off_diagonal = ~np.eye(num_bits - 1, dtype=bool)
    assert (distance[off_diagonal] == num_bits // 2).all()


@pytest.mark.parametrize("num_bits", [2, 8, 32])
def test_power_of_two_negatives_are_at_full_distance_and_others_at_half(num_bits):
    codes = hadamard_codebook(2 * num_bits, num_bits)
    distance = hamming(codes)
    negative_of = np.concatenate([np.arange(num_bits - 1, 2 * num_bits - 2), np.arange(num_bits - 1),
                                  [2 * num_bits - 1, 2 * num_bits - 2]])
    np.testing.assert_array_equal(codes[negative_of], -codes)
    assert (distance[np.arange(2 * num_bits), negative_of] == num_bits).all()
    others = ~np.eye(2 * num_bits, dtype=bool)
    others[np.arange(2 * num_bits), negative_of] = False
    assert (distance[others] == num_bits // 2).all()


def test_truncated_codes_keep_the_first_columns():
    full = hadamard_codebook(40, 32)
    np.testing.assert_array_equal(hadamard_codebook(40, 24), full[:, :24])
    np.testing.assert_array_equal(hadamard_codebook(7, 24), full[:7, :24])


def test_distance_bounds_for_every_code_length_up_to_130():
    """The docstring's statements, for K = 1 … 130 and every prefix of the codebook (num_codes = 2 … 2m)."""
    for num_bits in range(1, 131):
        order = smallest_power_of_two(num_bits)
        codes = hadamard_codebook(2 * order, num_bits)
        size = 2 * order
        distance = hamming(codes)
        negative_of = np.concatenate([np.arange(order - 1, 2 * order - 2), np.arange(order - 1),
                                      [2 * order - 1, 2 * order - 2]])
        np.testing.assert_array_equal(codes[negative_of], -codes)
        assert (distance[np.arange(size), negative_of] == num_bits).all()
        others = ~np.eye(size, dtype=bool)
        others[np.arange(size), negative_of] = False
        assert len(np.unique(codes, axis=0)) == size, num_bits  # all 2m codewords are distinct
        lower, upper = num_bits - order / 2, order / 2
        if others.any():  # K = 1 has only [1] and [-1], negatives of each other
            assert distance[others].min() >= lower and distance[others].max() <= upper, num_bits
        # the minimum over the first N codewords, N = 2 … 2m
        np.fill_diagonal(distance, num_bits + 1)
        prefix_minimum = np.array([distance[:n, :n].min() for n in range(2, size + 1)])
        num_codes = np.arange(2, size + 1)
        reached = num_codes >= order // 2 + 1
        if order >= 4:  # rows 1 and 1 + m/2 exist
            assert (prefix_minimum[reached] == lower).all(), num_bits
        assert (prefix_minimum[num_codes <= order // 2] >= max(order / 4, lower)).all(), num_bits
        divisor = num_bits & -num_bits  # the largest power of two dividing K
        exact = num_codes <= divisor - 1
        assert (prefix_minimum[exact] == num_bits / 2).all(), num_bits
        head = codes[: divisor - 1]
        np.testing.assert_array_equal(head.sum(axis=1), 0)
        np.testing.assert_array_equal(head @ head.T, num_bits * np.eye(len(head)))


@pytest.mark.parametrize(
    "num_bits, minimum_by_num_codes",
    [
        (12, {4: 6, 5: 4, 32: 4}),
        (24, {8: 12, 9: 8, 64: 8}),
        (48, {16: 24, 17: 16, 128: 16}),
        (96, {32: 48, 33: 32, 256: 32}),
        (100, {4: 50, 5: 48, 32: 48, 33: 36, 256: 36}),
        (33, {32: 16, 33: 1}),
    ],
)
def test_documented_minimum_distances(num_bits, minimum_by_num_codes):
    for num_codes, minimum in minimum_by_num_codes.items():
        distance = hamming(hadamard_codebook(num_codes, num_bits))
        np.fill_diagonal(distance, num_bits + 1)
        assert distance.min() == minimum, (num_bits, num_codes)


def test_num_codes_beyond_the_limit_is_refused():
    hadamard_codebook(32, 16)
    with pytest.raises(ValueError, match=r"`num_codes` must be at most 32 for num_bits=16.*got 33"):
        hadamard_codebook(33, 16)
    with pytest.raises(ValueError, match=r"`num_codes` must be at most 64 for num_bits=24"):
        hadamard_codebook(65, 24)


@pytest.mark.parametrize(
    "num_codes, num_bits, name",
    [(0, 16, "num_codes"), (2.0, 16, "num_codes"), (True, 16, "num_codes"), (None, 16, "num_codes"),
     (4, 0, "num_bits"), (4, -8, "num_bits"), (4, "16", "num_bits"), (4, 16.5, "num_bits")],
)
def test_bad_arguments_name_the_argument(num_codes, num_bits, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        hadamard_codebook(num_codes, num_bits)
