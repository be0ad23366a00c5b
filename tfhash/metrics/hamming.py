"""Hamming distance between binary codes."""

import tensorflow as tf

from tfhash.metrics._inputs import as_code_pair


@tf.function(reduce_retracing=True)
def _signed_hamming(query, database):
    """Hamming distances of ±1 float32 codes: 0.5·(K − q·bᵀ), exact in float32 for K < 2²⁴."""
    num_bits = tf.cast(tf.shape(query)[1], tf.float32)
    inner = tf.matmul(query, database, transpose_b=True)
    return tf.cast(tf.round(0.5 * (num_bits - inner)), tf.int32)


def hamming_distance(query_codes, db_codes):
    """Hamming distances between every query code and every database code.

    Computed as 0.5·(K − q·bᵀ) with one matrix product, which is exact for ±1 codes and uses the BLAS / GPU
    matmul rather than a per-bit loop. Packed codes are unpacked first; their padding bits are equal in both
    operands and so add nothing.

    Args:
        query_codes: (n_query, K) ±1 codes (any real dtype, or bool bits) or (n_query, ⌈K/8⌉) packed uint8
            codes from `tfhash.codes.pack_codes`.
        db_codes: database codes in the same form as `query_codes`.

    Returns:
        int32 tensor (n_query, n_db) of distances in [0, K].

    Example:
        >>> hamming_distance([[1, -1, 1]], [[1, 1, 1], [-1, 1, -1]]).numpy()
        array([[1, 3]], dtype=int32)
    """
    query, database = as_code_pair(query_codes, db_codes)
    return _signed_hamming(query, database)
