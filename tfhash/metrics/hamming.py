"""Hamming distance between binary codes."""

import tensorflow as tf

from tfhash.metrics._inputs import as_word_pair, word_bits


def packed_words(bits):
    """Packs a bool matrix (n, K) into int64 words (n, ⌈K/64⌉), 64 bits a word, as a tensor.

    The bits go to numpy.packbits' bytes, 8 bytes a word; padding bits are 0, equal in every row, so they add
    nothing to a Hamming distance or to a label overlap. numpy packs ~8× faster than the equivalent TF ops, and
    the metrics run eagerly anyway.

    Example:
        >>> packed_words([[True, False, True]]).numpy()
        array([[160]])
    """
    return tf.constant(word_bits(bits))


def word_distances(words, other_words, dtype=tf.int32):
    """Hamming distances as `dtype` between packed words of the same (broadcast) shape, over the last axis: XOR,
    then a population count per word."""
    differing = tf.bitwise.bitwise_xor(words, other_words)
    return tf.reduce_sum(tf.cast(tf.raw_ops.PopulationCount(x=differing), dtype), axis=-1)


def word_hamming(query_words, db_words, dtype=tf.int32):
    """Hamming distances (b, n_db) as `dtype` between every query's and every database item's packed words."""
    return word_distances(query_words[:, None, :], db_words[None, :, :], dtype)


# XLA fuses the XOR, the population count and the sum into one pass writing only the int32 result. Measured on
# CPU: unfused TF ops (which write the (b, n_db, words) int64 XOR first) and the float matmul of ±1 codes used
# before are both about 4× slower.
_hamming = tf.function(word_hamming, input_signature=[tf.TensorSpec([None, None], tf.int64)] * 2, jit_compile=True)


def hamming_distance(query_codes, db_codes):
    """Hamming distances between every query code and every database code.

    Codes are packed 64 bits to an int64 word and compared by XOR and population count, in one fused (XLA)
    pass. Packed uint8 codes are read as their 8 bits per byte; their padding bits are equal in both operands and
    so add nothing.

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
    query_words, db_words, _ = as_word_pair(query_codes, db_codes)
    return _hamming(tf.constant(query_words), tf.constant(db_words))
