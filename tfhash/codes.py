"""Bit packing of binary codes: 8 bits per uint8 byte, in `numpy.packbits`' layout.

Packed codes take 1/32 of the memory of float32 codes and are what Hamming search indexes read (e.g.
``faiss.IndexBinaryFlat``). Both functions are TensorFlow ops: they accept numpy arrays or tensors, work
inside `tf.function`, and return a `tf.Tensor`.

`tfhash.metrics` read any uint8 code matrix as packed bytes, and refuse one holding only 0s and 1s (far more
likely {0, 1} bits than packed bytes): pass bits as bool or ±1, or unpack such packed codes first with
`unpack_codes`.
"""

import tensorflow as tf

from tfhash._validation import check_int


def _bit_shifts(bitorder):
    """Left-shift of each of a byte's 8 bits, in the order the bits appear in the code."""
    if bitorder == "big":  # numpy's default: the first bit is the most significant
        return tf.constant([7, 6, 5, 4, 3, 2, 1, 0], tf.int32)
    if bitorder == "little":  # faiss.real_to_binary's order: the first bit is the least significant
        return tf.constant([0, 1, 2, 3, 4, 5, 6, 7], tf.int32)
    raise ValueError(f"`bitorder` must be 'big' or 'little', got {bitorder!r}.")


def _dim(x, axis):
    """Static size of an axis where known (keeps static shapes inside tf.function), else the dynamic one."""
    return x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]


def _require(condition, message):
    """ValueError if `condition` fails; a run-time assertion if it is only known when a graph runs."""
    if tf.is_tensor(condition) and not tf.executing_eagerly():
        tf.debugging.Assert(condition, [message])
    elif not bool(condition):
        raise ValueError(message)


def pack_codes(codes, bitorder="big"):
    """Packs binary codes into bytes, 8 bits per uint8, as ``numpy.packbits(bits, axis=-1)`` does.

    Args:
        codes: array or tensor of shape ``(n, K)``: either +-1 codes (any real dtype), ``{0, 1}`` bits, or
            bool. +1, 1 and True give bit 1; -1, 0 and False give bit 0 (all ones read the same either way).
        bitorder: ``"big"`` (numpy's default: the first bit of each byte is its most significant) or
            ``"little"`` (the order of ``faiss.real_to_binary``).

    Returns:
        uint8 tensor of shape ``(n, ceil(K / 8))``; the padding bits of the last byte are 0.

    Raises:
        ValueError: ``codes`` is not 2-D, not real or bool, or holds values other than +-1 or {0, 1} (inside a
            `tf.function` the value check is a run-time assertion instead).

    Example:

    >>> pack_codes([[1, -1, -1, -1, -1, -1, -1, 1, 1]]).numpy()
    array([[129, 128]], dtype=uint8)
    """
    shifts = _bit_shifts(bitorder)
    codes = tf.convert_to_tensor(codes)
    if codes.shape.rank != 2:
        raise ValueError(f"`codes` must be 2-D (n, bits), got shape {codes.shape}.")
    if codes.dtype == tf.bool:
        bits = codes
    elif codes.dtype.is_floating or codes.dtype.is_integer:
        # Exact test: a real value casts to -1, 0 or 1 in float64 only if it is that value.
        values = tf.cast(codes, tf.float64)
        is_one = values == 1
        _require(
            tf.reduce_all(is_one | (values == -1)) | tf.reduce_all(is_one | (values == 0)),
            "`codes` must hold either +-1 codes or {0, 1} bits; it has other values (or mixes -1 and 0).",
        )
        bits = values > 0
    else:
        raise ValueError(f"`codes` must have a real or bool dtype, got {codes.dtype.name}.")
    n, k = _dim(bits, 0), _dim(bits, 1)
    num_bytes = (k + 7) // 8
    bits = tf.pad(tf.cast(bits, tf.int32), [[0, 0], [0, 8 * num_bytes - k]])
    groups = tf.reshape(bits, [n, num_bytes, 8])
    # The 8 shifted bits of a byte do not overlap, so their sum is their bitwise or.
    return tf.cast(tf.reduce_sum(tf.bitwise.left_shift(groups, shifts), axis=-1), tf.uint8)


def unpack_codes(packed, num_bits, bitorder="big", signed=True):
    """Unpacks bytes from `pack_codes` (or ``numpy.packbits``) into codes.

    Args:
        packed: uint8 array or tensor of shape ``(n, bytes)``.
        num_bits: int, code length ``K`` with ``1 <= K <= 8 * bytes``; the remaining padding bits are dropped.
        bitorder: ``"big"`` or ``"little"``, as given to `pack_codes`.
        signed: bool. If True, return +-1 codes; if False, ``{0, 1}`` bits.

    Returns:
        float32 tensor of shape ``(n, num_bits)``.

    Raises:
        ValueError: bad dtype, rank, ``num_bits`` or ``bitorder``.

    Example:

    >>> unpack_codes(tf.constant([[129, 128]], tf.uint8), 9).numpy()
    array([[ 1., -1., -1., -1., -1., -1., -1.,  1.,  1.]], dtype=float32)
    """
    shifts = _bit_shifts(bitorder)
    packed = tf.convert_to_tensor(packed)
    if packed.dtype != tf.uint8:
        raise ValueError(f"`packed` must have dtype uint8, got {packed.dtype.name}.")
    if packed.shape.rank != 2:
        raise ValueError(f"`packed` must be 2-D (n, bytes), got shape {packed.shape}.")
    check_int(num_bits, "num_bits", minimum=1)
    if not isinstance(signed, bool):
        raise ValueError(f"`signed` must be a bool, got {signed!r}.")
    n, num_bytes = _dim(packed, 0), _dim(packed, 1)
    _require(
        num_bits <= 8 * num_bytes,
        f"`num_bits` = {num_bits} exceeds 8 * bytes, the bits held by `packed` of shape {packed.shape}.",
    )
    groups = tf.bitwise.right_shift(tf.cast(packed, tf.int32)[:, :, None], shifts)
    bits = tf.reshape(tf.bitwise.bitwise_and(groups, 1), [n, 8 * num_bytes])[:, : int(num_bits)]
    bits = tf.cast(bits, tf.float32)
    return 2 * bits - 1 if signed else bits
