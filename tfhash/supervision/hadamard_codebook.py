"""UCSH's Hadamard codebook: a distinct ±1 target code per K-means cluster, from a Sylvester Hadamard matrix.

NumPy only; no TensorFlow. UCSH clusters the deep features with K-means into N clusters and pulls the code of
every image towards its cluster's Hadamard codeword (the feature clustering loss, Eq. 5); `hadamard_codebook`
gives those N codewords for K-bit codes.
"""

import numpy as np

from tfhash._validation import check_int

__all__ = ["hadamard_codebook"]


def hadamard_codebook(num_codes, num_bits):
    """``num_codes`` distinct ±1 codewords of ``num_bits`` bits, one per cluster, from a Sylvester matrix.

    Construction. Let m be the smallest power of two >= ``num_bits`` (K) and H_m the Sylvester Hadamard
    matrix of Eq. 4: ``H_1 = [[1]]``, ``H_2 = [[1, 1], [1, −1]]``, ``H_2m = [[H_m, H_m], [H_m, −H_m]]``; its
    entries are ``H_m[r, c] = (−1)^popcount(r & c)`` and it is symmetric, so its rows are the columns the
    paper assigns. The codewords, in order, are

    1. rows 1 … m−1 of H_m (row 0, all ones, is held back): each balanced (as many +1 as −1), pairwise
       orthogonal;
    2. then, if more are needed, their negatives −H_m[1] … −H_m[m−1];
    3. then the all-ones row H_m[0] and its negative,

    each keeping only its first K columns (truncation; nothing is dropped when K is a power of two, m = K).
    Codeword c therefore goes to cluster c; at most 2m codes exist.

    Hamming distances, K a power of two (the paper's case, m = K): for ``num_codes <= K − 1`` the codewords
    are balanced (sum 0), pairwise orthogonal (inner product 0) and pairwise at distance exactly K/2. More
    codes keep distance K/2 between any two, except a codeword and its negative, at distance K; the last two
    (all ones, all minus ones) are not balanced.

    Hamming distances, K not a power of two (m/2 < K < m, the first K columns kept). Any two codewords from
    rows r, s have distance ``#{c < K: H_m[t, c] = −1}``, with ``t = r xor s`` (and ``#{… = +1}`` when one of
    them is negated), a count over the first K entries of a row t of H_m. Hence:

    - A codeword and its negative are at distance K. Every other pair is at a distance between K − m/2 and
      m/2: a row t ≠ 0 of H_m holds m/2 entries of each sign, so its first K entries hold at most m/2 of
      either. Since K > m/2, K − m/2 >= 1: all 2m codewords are distinct. The lower bound is reached as soon
      as ``num_codes >= m/2 + 1`` (rows 1 and 1 + m/2 differ in columns m/2 … K−1 only), sometimes earlier.
    - With 2^a the largest power of two dividing K, rows 1 … 2^a − 1 repeat with period 2^a: for
      ``num_codes <= 2^a − 1`` the codewords are still balanced, orthogonal and at distance exactly K/2.
    - For ``num_codes <= m/2`` the distance is at least max(m/4, K − m/2): the codewords come from rows
      1 … m/2, so every t differs from 0 and from m/2, and the first m/2 entries of such a row t are row
      ``t mod m/2 ≠ 0`` of H_{m/2}, which holds m/4 entries −1.

    The minimum distance among the first ``num_codes`` codewords (checked for every K in 1 … 130 and every
    ``num_codes`` up to 2m), for some common code lengths:

    ====  ===  ==========================================================
    K     m    minimum distance by num_codes
    ====  ===  ==========================================================
    12    16   6 for ≤ 4; 4 for 5 … 32
    24    32   12 for ≤ 8; 8 for 9 … 64
    48    64   24 for ≤ 16; 16 for 17 … 128
    96    128  48 for ≤ 32; 32 for 33 … 256
    100   128  50 for ≤ 4; 48 for 5 … 32; 36 for 33 … 256
    ====  ===  ==========================================================

    A short code length just above a power of two is poor for many clusters: K = 33 (m = 64) keeps distance
    16 for up to 32 codes but drops to 1 from 33 codes on. Choose K a power of two, or N <= m/2.

    Args:
        num_codes: int >= 1, the number of codewords N (K-means clusters), at most 2m.
        num_bits: int >= 1, the code length K.

    Returns:
        float32 array (num_codes, num_bits) of ±1; row c is the target code of cluster c. Deterministic.

    Raises:
        ValueError: an argument is not a positive integer, or ``num_codes`` exceeds 2m.

    Example:

    >>> codebook = hadamard_codebook(num_codes=10, num_bits=16)   # UCSH on CIFAR-10: N = 10 clusters
    >>> codebook.shape
    (10, 16)
    >>> targets = codebook[cluster_ids]   # (n, 16) target codes b of Eq. 5 for the K-means assignments

    Reference:
        Zhang et al., "Clustering and Separating Similarities for Deep Unsupervised Hashing" (UCSH), Sec. 2.4,
        Eq. 4 (Sylvester construction) and Eq. 5 (feature clustering loss ``Σ ||b_i − h_C(x_i)||²``); the
        Hadamard codebook follows Lin et al., "Supervised Online Hashing via Hadamard Codebook Learning",
        ACM MM 2018. The paper gives no construction for N > K or K not a power of two; the ordering and the
        truncation above are tfhash's.
    """
    num_codes = check_int(num_codes, "num_codes", minimum=1)
    num_bits = check_int(num_bits, "num_bits", minimum=1)
    order = 1 << (num_bits - 1).bit_length()
    if num_codes > 2 * order:
        raise ValueError(
            f"`num_codes` must be at most {2 * order} for num_bits={num_bits} (the {order - 1} balanced rows "
            f"of the {order} × {order} Hadamard matrix, their negatives, the all-ones row and its negative), "
            f"got {num_codes}."
        )
    hadamard = _sylvester_hadamard(order)
    codewords = np.concatenate([hadamard[1:], -hadamard[1:], hadamard[:1], -hadamard[:1]])
    return codewords[:num_codes, :num_bits].astype(np.float32)


def _sylvester_hadamard(order):
    """The Sylvester Hadamard matrix H_order (int8), by the doubling of Eq. 4 from ``H_1 = [[1]]``."""
    hadamard = np.ones((1, 1), dtype=np.int8)
    while hadamard.shape[0] < order:
        hadamard = np.block([[hadamard, hadamard], [hadamard, -hadamard]])
    return hadamard
