"""Statistics of binary codes used in the HQT paper's analysis (Kim & Ryu, BMVC 2024, §5.2–5.3).

All functions take ±1 codes (or packed uint8 codes) of shape (n, K); the class-based ratios also take integer
class ids (n,). The global quantities are computed over all n codes, the intra-class ones over the codes of each
class, and each ratio compares the two (the Fisher criterion applied to entropy and correlation).
"""

import numpy as np
import tensorflow as tf

from tfhash.metrics._inputs import as_labels, as_signed_codes


def _balance(codes):
    return tf.reduce_mean((codes + 1.0) / 2.0, axis=0)


def _entropy(codes):
    """Per-bit entropy in bits of float64 ±1 codes; 0·log 0 = 0."""
    def term(p):
        return tf.where(p > 0.0, -p * tf.math.log(tf.where(p > 0.0, p, 1.0)) / np.log(2.0), 0.0)

    balance = _balance(codes)
    return term(balance) + term(1.0 - balance)


def bit_balance(codes):
    """Fraction of +1 per bit, float64 (K,); 0.5 is perfectly balanced."""
    return _balance(tf.cast(as_signed_codes(codes, "codes"), tf.float64))


def bit_entropy(codes):
    """Entropy in bits of each bit, S(H) = −p(H⁺)log₂p(H⁺) − p(H⁻)log₂p(H⁻) (HQT Eq. 4); float64 (K,)."""
    return _entropy(tf.cast(as_signed_codes(codes, "codes"), tf.float64))


def _correlation_matrix(codes):
    centred = codes - tf.reduce_mean(codes, axis=0, keepdims=True)
    covariance = tf.matmul(centred, centred, transpose_a=True) / tf.cast(tf.shape(codes)[0], tf.float64)
    std = tf.sqrt(tf.linalg.diag_part(covariance))
    return tf.math.divide_no_nan(covariance, std[:, None] * std[None, :])


def bit_correlation(codes):
    """Pearson correlation between bits over the samples, float64 (K, K).

    A bit that is constant over the samples has no defined correlation; its row and column are 0 (so is its
    diagonal entry).
    """
    return _correlation_matrix(tf.cast(as_signed_codes(codes, "codes"), tf.float64))


def _mean_abs_off_diagonal(matrix):
    size = tf.shape(matrix)[0]
    off_diagonal = tf.abs(matrix) * (1.0 - tf.eye(size, dtype=matrix.dtype))
    return tf.reduce_sum(off_diagonal) / tf.cast(size * (size - 1), matrix.dtype)


def mean_bit_correlation(codes):
    """Mean absolute Pearson correlation over all pairs of distinct bits: corr(H) in HQT §5.3; float64 scalar."""
    codes = as_signed_codes(codes, "codes")
    if codes.shape[1] < 2:
        raise ValueError(f"`codes` needs at least 2 bits for a correlation between bits, got {codes.shape[1]}.")
    return _mean_abs_off_diagonal(_correlation_matrix(tf.cast(codes, tf.float64)))


def _codes_by_class(codes, labels):
    codes = tf.cast(as_signed_codes(codes, "codes"), tf.float64)
    labels, multi_label = as_labels(labels, "labels", codes.shape[0])
    if multi_label:
        raise ValueError("`labels` must be integer class ids (n,): the class-based code statistics need one class.")
    _, class_index = np.unique(labels, return_inverse=True)
    return codes, [tf.gather(codes, np.flatnonzero(class_index == c)) for c in range(class_index.max() + 1)]


def _ratio(numerator, denominator):
    """numerator / denominator, NaN where the denominator is 0 (the ratio is undefined, not infinite or 0)."""
    return tf.where(denominator > 0.0, numerator / tf.where(denominator > 0.0, denominator, 1.0), np.nan)


def fisher_score(codes, labels):
    """Fisher score Ω = Σ_c ‖μ − μ_c‖² / Σ_c ‖σ_c‖² of the codes (HQT §5.2, unweighted by class size).

    μ is the mean code over all samples, μ_c and σ_c² the mean and (population) variance of class c, per bit;
    numerator and denominator are summed over bits (the trace form). NaN when every class has constant codes.

    Args:
        codes: (n, K) ±1 or packed uint8 codes.
        labels: (n,) integer class ids.

    Reference:
        Kim & Ryu, "Hyper-Quantization Tree", BMVC 2024, §5.2 and Table 6.
    """
    codes, per_class = _codes_by_class(codes, labels)
    mean = tf.reduce_mean(codes, axis=0)
    between = tf.add_n([tf.reduce_sum(tf.square(mean - tf.reduce_mean(c, axis=0))) for c in per_class])
    within = tf.add_n([tf.reduce_sum(tf.math.reduce_variance(c, axis=0)) for c in per_class])
    return _ratio(between, within)


def entropy_ratio(codes, labels):
    """Ω_S = S(H) / ((1/C)·Σ_c S(H_c)), S the bit entropy (Eq. 4) averaged over bits (HQT §5.2); float64 scalar.

    Higher means codes spread over the whole set while staying concentrated within each class. NaN when every
    class has constant codes.
    """
    codes, per_class = _codes_by_class(codes, labels)
    overall = tf.reduce_mean(_entropy(codes))
    intra = tf.reduce_mean(tf.stack([tf.reduce_mean(_entropy(c)) for c in per_class]))
    return _ratio(overall, intra)


def correlation_ratio(codes, labels):
    """Ω_corr = corr(H) / ((1/C)·Σ_c corr(H_c)), corr the mean absolute correlation between bits (HQT §5.3).

    Lower means bits are less correlated over the whole set than within classes. NaN when no class has a pair of
    non-constant bits.
    """
    codes, per_class = _codes_by_class(codes, labels)
    if codes.shape[1] < 2:
        raise ValueError(f"`codes` needs at least 2 bits for a correlation between bits, got {codes.shape[1]}.")
    overall = _mean_abs_off_diagonal(_correlation_matrix(codes))
    intra = tf.reduce_mean(tf.stack([_mean_abs_off_diagonal(_correlation_matrix(c)) for c in per_class]))
    return _ratio(overall, intra)
