"""Validation and normalisation of codes and labels shared by the retrieval metrics."""

import numpy as np
import tensorflow as tf

from tfhash.codes import unpack_codes

TIE_RULES = ("average", "stable")


def check_ties(ties):
    if ties not in TIE_RULES:
        raise ValueError(f"`ties` must be one of {TIE_RULES}, got {ties!r}.")


def _all_signs_eager(codes):
    return tf.reduce_all(tf.abs(codes) == 1.0)


# One fused pass instead of eager ops that each write a full-size temporary: 7 against 37 ms for a
# 193,000 × 64 float32 database. XLA compiles once per shape, so small inputs stay eager.
_all_signs = tf.function(
    _all_signs_eager, input_signature=[tf.TensorSpec([None, None], tf.float32)], jit_compile=True
)
_FUSED_CHECK_ELEMENTS = 2**20


def as_signed_codes(codes, name):
    """Returns ``codes`` as a float32 ±1 matrix; packed uint8 codes are unpacked (padding bits read as −1).

    The form is read from the dtype: uint8 is packed bytes, bool is bits, any other real dtype is ±1 codes.
    A uint8 matrix holding only 0 and 1 is refused: it is far more likely {0, 1} bits than packed bytes, and
    read as packed it would give 8 bits per column (issue: ``bit_balance`` of 16 such bits had 128 entries).

    Args:
        codes: (n, K) ±1 codes of a real dtype other than uint8, (n, K) bool bits, or (n, ⌈K/8⌉) packed
            uint8 codes.
        name: the argument's name, used in error messages.
    """
    codes = tf.convert_to_tensor(codes)
    if codes.shape.rank != 2:
        raise ValueError(f"`{name}` must be a 2-D matrix (samples × bits), got shape {codes.shape}.")
    if codes.shape[0] == 0:
        raise ValueError(f"`{name}` is empty: it holds no codes.")
    if codes.dtype == tf.uint8:
        if bool(tf.reduce_all(codes <= 1)):
            raise ValueError(
                f"`{name}` is a uint8 matrix of only 0s and 1s: {{0, 1}} bits, or packed codes? tfhash reads "
                f"uint8 codes as packed bytes (8 bits each, `tfhash.codes.pack_codes`), which would make these "
                f"{8 * codes.shape[1]} bits. Pass bits as bool (`bits.astype(bool)`) or as ±1 codes "
                "(`2 * bits - 1`); packed codes whose bytes happen to be only 0 and 1: unpack them first "
                "(`tfhash.codes.unpack_codes(codes, num_bits)`)."
            )
        return unpack_codes(codes, num_bits=8 * codes.shape[1], signed=True)
    if codes.dtype == tf.bool:
        return tf.where(codes, 1.0, -1.0)
    if not (codes.dtype.is_floating or codes.dtype.is_integer):
        raise ValueError(f"`{name}` must hold ±1 numbers or packed uint8 codes, got dtype {codes.dtype.name}.")
    codes = tf.cast(codes, tf.float32)
    if not bool((_all_signs if codes.shape.num_elements() >= _FUSED_CHECK_ELEMENTS else _all_signs_eager)(codes)):
        raise ValueError(
            f"`{name}` must be binary ±1 codes (or packed uint8 codes); it holds other values, "
            "e.g. {0, 1} bits (convert with 2 * bits - 1) or real-valued outputs (binarize with sign first)."
        )
    return codes


def as_code_pair(query_codes, db_codes):
    """Validates and converts a query / database pair of codes; returns (query ±1, database ±1)."""
    # converted once: a copy of a NUS-WIDE-sized database (193,000 × 64 float32) took 50 ms
    query_codes, db_codes = tf.convert_to_tensor(query_codes), tf.convert_to_tensor(db_codes)
    query_packed = query_codes.dtype == tf.uint8
    db_packed = db_codes.dtype == tf.uint8
    query = as_signed_codes(query_codes, "query_codes")
    database = as_signed_codes(db_codes, "db_codes")
    if query_packed != db_packed:
        raise ValueError(
            "`query_codes` and `db_codes` must both be packed uint8 codes or both ±1 codes; "
            f"got {'packed' if query_packed else '±1'} queries and {'packed' if db_packed else '±1'} database codes."
        )
    if query.shape[1] != database.shape[1]:
        raise ValueError(
            f"`query_codes` and `db_codes` must have the same code length; got {query.shape[1]} and "
            f"{database.shape[1]} {'bits' if not query_packed else 'bits after unpacking'}."
        )
    return query, database


def as_labels(labels, name, num_codes):
    """Returns (labels tensor, is_multi_label): int64 class ids (n,) or float32 multi-hot (n, C)."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "biuf":
        raise ValueError(
            f"`{name}` must hold numbers (integer class ids, or a 0/1 multi-hot matrix), got dtype "
            f"{labels.dtype} (class names? map them to ids first, over query and database labels together: "
            "`np.unique(labels, return_inverse=True)[1]`)."
        )
    if labels.ndim not in (1, 2):
        raise ValueError(
            f"`{name}` must be class ids of shape (n,) or a multi-hot matrix of shape (n, classes), "
            f"got shape {labels.shape}."
        )
    if labels.shape[0] != num_codes:
        raise ValueError(f"`{name}` has {labels.shape[0]} rows but there are {num_codes} codes: they must match.")
    if labels.ndim == 1:
        if not (np.issubdtype(labels.dtype, np.integer) or np.all(labels == np.round(labels))):
            raise ValueError(f"`{name}` given as a vector must hold integer class ids.")
        return tf.constant(labels.astype(np.int64)), False
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError(
            f"`{name}` given as a matrix must be multi-hot (0/1 entries); for class ids pass a vector of shape (n,)."
        )
    return tf.constant(labels.astype(np.float32)), True


def as_label_pair(query_labels, db_labels, num_queries, num_db):
    """Validates a query / database pair of labels; returns (query labels, database labels, is_multi_label)."""
    query, query_multi = as_labels(query_labels, "query_labels", num_queries)
    database, db_multi = as_labels(db_labels, "db_labels", num_db)
    if query_multi != db_multi:
        raise ValueError("`query_labels` and `db_labels` must both be class ids or both multi-hot matrices.")
    if query_multi and query.shape[1] != database.shape[1]:
        raise ValueError(
            f"`query_labels` and `db_labels` must have the same number of classes; got {query.shape[1]} "
            f"and {database.shape[1]}."
        )
    if not query_multi:
        # Compact int32 ids compare faster than arbitrary int64 class ids.
        _, ids = np.unique(np.concatenate([query.numpy(), database.numpy()]), return_inverse=True)
        query, database = tf.constant(ids[:num_queries], tf.int32), tf.constant(ids[num_queries:], tf.int32)
    return query, database, query_multi
