import numpy as np
import pytest

from tfhash.codes import pack_codes
from tfhash.metrics import (
    bit_balance,
    bit_correlation,
    bit_entropy,
    correlation_ratio,
    entropy_ratio,
    fisher_score,
    mean_bit_correlation,
)


def entropy_reference(codes):
    p = (codes > 0).mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = [np.where(q > 0, -q * np.log2(q), 0.0) for q in (p, 1 - p)]
    return terms[0] + terms[1]


def correlation_reference(codes):
    """Mean |Pearson correlation| over distinct pairs of bits, pairs with a constant bit counting 0."""
    bits = codes.shape[1]
    values = []
    for i in range(bits):
        for j in range(bits):
            if i != j:
                a, b = codes[:, i], codes[:, j]
                values.append(0.0 if a.std() == 0 or b.std() == 0 else abs(np.corrcoef(a, b)[0, 1]))
    return np.mean(values)


@pytest.fixture
def labelled_codes():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    prototypes = rng.choice([-1.0, 1.0], size=(3, 10))
    codes = prototypes[labels]
    codes[rng.random(codes.shape) < 0.25] *= -1
    return codes, labels


def test_balance_and_entropy_hand_worked():
    codes = np.array([[1, 1, -1], [1, -1, -1], [1, 1, -1], [1, -1, -1]])
    np.testing.assert_allclose(bit_balance(codes).numpy(), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(bit_entropy(codes).numpy(), [0.0, 1.0, 0.0])
    three_quarters = np.array([[1], [1], [1], [-1]])
    np.testing.assert_allclose(bit_entropy(three_quarters).numpy(), [-(0.75 * np.log2(0.75) + 0.25 * np.log2(0.25))])


def test_correlation_against_numpy(labelled_codes):
    codes, _ = labelled_codes
    np.testing.assert_allclose(bit_correlation(codes).numpy(), np.corrcoef(codes.T), atol=1e-12)
    np.testing.assert_allclose(mean_bit_correlation(codes).numpy(), correlation_reference(codes), atol=1e-12)


def test_fisher_score_against_paper_formula(labelled_codes):
    codes, labels = labelled_codes
    mean = codes.mean(0)
    classes = [codes[labels == c] for c in np.unique(labels)]
    expected = sum(((mean - c.mean(0)) ** 2).sum() for c in classes) / sum(c.var(0).sum() for c in classes)
    np.testing.assert_allclose(fisher_score(codes, labels).numpy(), expected, rtol=1e-12)


def test_entropy_and_correlation_ratios_against_paper_formulas(labelled_codes):
    codes, labels = labelled_codes
    classes = [codes[labels == c] for c in np.unique(labels)]
    expected_entropy = entropy_reference(codes).mean() / np.mean([entropy_reference(c).mean() for c in classes])
    expected_correlation = correlation_reference(codes) / np.mean([correlation_reference(c) for c in classes])
    np.testing.assert_allclose(entropy_ratio(codes, labels).numpy(), expected_entropy, rtol=1e-12)
    np.testing.assert_allclose(correlation_ratio(codes, labels).numpy(), expected_correlation, rtol=1e-12)


def test_class_constant_codes_have_undefined_ratios():
    # Codes that identify the class exactly: no intra-class variance or entropy, so the ratios are undefined.
    codes = np.array([[1, 1], [1, 1], [-1, 1], [-1, 1]])
    labels = [0, 0, 1, 1]
    assert np.isnan(fisher_score(codes, labels).numpy())
    assert np.isnan(entropy_ratio(codes, labels).numpy())


def test_statistics_reject_multi_label_and_single_bit():
    codes = np.array([[1, -1], [-1, 1]])
    with pytest.raises(ValueError, match="labels"):
        fisher_score(codes, np.eye(2))
    with pytest.raises(ValueError, match="2 bits"):
        mean_bit_correlation(np.array([[1], [-1]]))
    with pytest.raises(ValueError, match="codes"):
        bit_entropy(np.array([[0.5, 1.0]]))


def test_uint8_zero_one_bits_are_not_read_as_packed_codes():
    # Issue 12, item 11: 16 {0, 1} bits in a uint8 matrix were unpacked as 16 bytes, giving 128 "bits".
    bits = (np.random.default_rng(0).random((10, 16)) > 0.5).astype(np.uint8)
    with pytest.raises(ValueError, match=r"`codes` is a uint8 matrix of only 0s and 1s.*as bool.*2 \* bits - 1"):
        bit_balance(bits)
    np.testing.assert_allclose(bit_balance(bits.astype(bool)).numpy(), bits.mean(0))
    np.testing.assert_allclose(bit_balance(2.0 * bits - 1).numpy(), bits.mean(0))
    packed = pack_codes(2 * bits.astype(np.int8) - 1)  # real packed codes (bytes > 1) are still read as such
    np.testing.assert_allclose(bit_balance(packed).numpy(), bits.mean(0))


def test_string_labels_are_named():
    codes = np.array([[1, -1], [-1, 1], [1, 1]])
    with pytest.raises(ValueError, match="`labels` must hold numbers .*class names"):
        fisher_score(codes, np.array(["cat", "dog", "cat"]))
