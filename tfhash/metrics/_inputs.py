"""Validation and normalisation of codes and labels shared by the retrieval metrics."""

import numpy as np
import tensorflow as tf

TIE_RULES = ("average", "stable")


def check_ties(ties):
    if ties not in TIE_RULES:
        raise ValueError(f"`ties` must be one of {TIE_RULES}, got {ties!r}.")


def _as_array(values, name):
    """A numpy view of an array, list or eager tensor; TF floats numpy cannot hold natively become float32."""
    if isinstance(values, tf.Tensor):
        if values.dtype.is_floating and values.dtype not in (tf.float16, tf.float32, tf.float64):
            values = tf.cast(values, tf.float32)
        return values.numpy()
    try:
        return np.asarray(values)
    except ValueError as error:  # ragged nested lists
        raise ValueError(f"`{name}` must be a rectangular matrix: {error}") from None


def _code_form(codes, name):
    """``codes`` as a numpy matrix, checked, and its form: "packed" (uint8 bytes), "bits" (bool) or "signed" (any
    other real dtype: ±1 numbers, whose values `_signed_bits` checks)."""
    codes = _as_array(codes, name)
    if codes.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D matrix (samples × bits), got shape {codes.shape}.")
    if codes.shape[0] == 0:
        raise ValueError(f"`{name}` is empty: it holds no codes.")
    if codes.dtype == np.uint8:
        if not (codes > 1).any():
            raise ValueError(
                f"`{name}` is a uint8 matrix of only 0s and 1s: {{0, 1}} bits, or packed codes? tfhash reads "
                f"uint8 codes as packed bytes (8 bits each, `tfhash.codes.pack_codes`), which would make these "
                f"{8 * codes.shape[1]} bits. Pass bits as bool (`bits.astype(bool)`) or as ±1 codes "
                "(`2 * bits - 1`); packed codes whose bytes happen to be only 0 and 1: unpack them first "
                "(`tfhash.codes.unpack_codes(codes, num_bits)`)."
            )
        return codes, "packed"
    if codes.dtype == bool:
        return codes, "bits"
    if codes.dtype.kind not in "iuf":
        raise ValueError(f"`{name}` must hold ±1 numbers or packed uint8 codes, got dtype {codes.dtype}.")
    return codes, "signed"


def _signed_bits(codes, name):
    """The bits (True for +1) of ±1 codes, checked to hold nothing else."""
    bits = codes == 1
    valid = codes == -1
    if not np.logical_or(valid, bits, out=valid).all():
        raise ValueError(
            f"`{name}` must be binary ±1 codes (or packed uint8 codes); it holds other values, "
            "e.g. {0, 1} bits (convert with 2 * bits - 1) or real-valued outputs (binarize with sign first)."
        )
    return bits


def as_bits(codes, name):
    """Returns ``codes`` as a numpy bool matrix of bits (True for +1); packed uint8 codes are unpacked (padding
    bits read as False).

    Validated in numpy, without a TF copy: converting a 193,000 × 64 float32 database to a tensor took 43 ms,
    the whole numpy check and comparison 12 ms. The form is read from the dtype: uint8 is packed bytes, bool is
    bits, any other real dtype is ±1 codes. A uint8 matrix holding only 0 and 1 is refused: it is far more
    likely {0, 1} bits than packed bytes, and read as packed it would give 8 bits per column (issue:
    ``bit_balance`` of 16 such bits had 128 entries).

    Args:
        codes: (n, K) ±1 codes of a real dtype other than uint8, (n, K) bool bits, or (n, ⌈K/8⌉) packed
            uint8 codes.
        name: the argument's name, used in error messages.
    """
    codes, form = _code_form(codes, name)
    if form == "packed":
        return np.unpackbits(codes, axis=1).astype(bool)
    return codes if form == "bits" else _signed_bits(codes, name)


def as_signed_codes(codes, name):
    """Returns ``codes`` (in any form `as_bits` reads) as a float32 ±1 tensor."""
    return tf.constant(np.where(as_bits(codes, name), np.float32(1), np.float32(-1)))


def _words_of_bytes(packed):
    """Packed bytes (n, B) as int64 words (n, ⌈B/8⌉), 8 bytes a word, the last one padded with zeros."""
    if packed.shape[1] % 8 == 0:
        return np.ascontiguousarray(packed).view(np.int64)
    words = np.zeros((packed.shape[0], -(-packed.shape[1] // 8) * 8), np.uint8)
    words[:, : packed.shape[1]] = packed
    return words.view(np.int64)


def word_bits(bits):
    """A bool matrix (n, K) packed into int64 words (n, ⌈K/64⌉), numpy: numpy.packbits' bytes, 8 to a word
    (padding bits 0). The rows are padded to whole words first and packed as one flat array: for short rows (21
    labels) packbits along an axis took 2.3× as long."""
    bits = np.asarray(bits, bool)
    padded = np.zeros((bits.shape[0], -(-bits.shape[1] // 64) * 64), bool)
    padded[:, : bits.shape[1]] = bits
    return np.packbits(padded.reshape(-1)).view(np.int64).reshape(padded.shape[0], padded.shape[1] // 64)


# Rows of ±1 codes checked and packed at once by `as_words`: their temporaries stay in the cache.
_CHUNK_ROWS = 4096


def as_words(codes, name):
    """(words, K): ``codes`` (in any form `as_bits` reads, checked as it does) as int64 words (n, ⌈K/64⌉), numpy,
    laid out as `word_bits` packs `as_bits`; K bits. Packed codes are read as words directly, and ±1 codes are
    checked and packed by blocks of rows, without the full-size temporaries of `as_bits`."""
    codes, form = _code_form(codes, name)
    if form == "packed":
        return _words_of_bytes(codes), 8 * codes.shape[1]
    if form == "bits":
        return word_bits(codes), codes.shape[1]
    packed = np.empty((codes.shape[0], -(-codes.shape[1] // 8)), np.uint8)
    for start in range(0, codes.shape[0], _CHUNK_ROWS):
        rows = slice(start, start + _CHUNK_ROWS)
        packed[rows] = np.packbits(_signed_bits(codes[rows], name), axis=1)
    return _words_of_bytes(packed), codes.shape[1]


def _as_pair(query_codes, db_codes, convert):
    """(query, database, K): ``convert(codes, name)`` of each, checked to be in the same form (both packed or
    neither) and of the same code length K; convert returns its result and the code length."""
    query_codes, db_codes = _as_array(query_codes, "query_codes"), _as_array(db_codes, "db_codes")
    query_packed, db_packed = query_codes.dtype == np.uint8, db_codes.dtype == np.uint8
    query, query_bits = convert(query_codes, "query_codes")
    database, db_bits = convert(db_codes, "db_codes")
    if query_packed != db_packed:
        raise ValueError(
            "`query_codes` and `db_codes` must both be packed uint8 codes or both ±1 codes; "
            f"got {'packed' if query_packed else '±1'} queries and {'packed' if db_packed else '±1'} database codes."
        )
    if query_bits != db_bits:
        raise ValueError(
            f"`query_codes` and `db_codes` must have the same code length; got {query_bits} and "
            f"{db_bits} {'bits' if not query_packed else 'bits after unpacking'}."
        )
    return query, database, query_bits


def as_bit_pair(query_codes, db_codes):
    """Validates a query / database pair of codes; returns their bits (numpy bool matrices, `as_bits`)."""

    def convert(codes, name):
        bits = as_bits(codes, name)
        return bits, bits.shape[1]

    return _as_pair(query_codes, db_codes, convert)[:2]


def as_word_pair(query_codes, db_codes):
    """Validates a query / database pair of codes as `as_bit_pair` does; returns (query words, database words,
    code length K), the words numpy int64 (`as_words`)."""
    return _as_pair(query_codes, db_codes, as_words)


def as_labels(labels, name, num_codes):
    """Returns (labels, is_multi_label) as numpy: int64 class ids (n,) or a bool multi-hot matrix (n, C)."""
    labels = _as_array(labels, name)
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
        return labels.astype(np.int64), False
    bits = labels == 1
    if np.count_nonzero(labels) != np.count_nonzero(bits):  # an entry other than 0 and 1 (NaN included)
        raise ValueError(
            f"`{name}` given as a matrix must be multi-hot (0/1 entries); for class ids pass a vector of shape (n,)."
        )
    return bits, True


def as_label_pair(query_labels, db_labels, num_queries, num_db):
    """Validates a query / database pair of labels; returns (query labels, database labels, is_multi_label), as
    numpy: class ids renumbered 0, 1, … as int32 (compact ids compare faster than arbitrary int64 ones), or bool
    multi-hot matrices."""
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
        _, ids = np.unique(np.concatenate([query, database]), return_inverse=True)
        query, database = ids[:num_queries].astype(np.int32), ids[num_queries:].astype(np.int32)
    return query, database, query_multi
