import numpy as np
import pytest
import tensorflow as tf

from tfhash.codes import pack_codes, unpack_codes

K_VALUES = [1, 7, 8, 13, 64]


def random_bits(n, k, seed):
    return np.random.default_rng(seed).integers(0, 2, size=(n, k)).astype(bool)


@pytest.mark.parametrize("k", K_VALUES)
@pytest.mark.parametrize("bitorder", ["big", "little"])
@pytest.mark.parametrize("form", ["signed_float32", "signed_int8", "bits_int32", "bits_uint8", "bool"])
def test_pack_matches_numpy_packbits(k, bitorder, form):
    bits = random_bits(5, k, seed=k)
    codes = {
        "signed_float32": np.where(bits, 1.0, -1.0).astype("float32"),
        "signed_int8": np.where(bits, 1, -1).astype("int8"),
        "bits_int32": bits.astype("int32"),
        "bits_uint8": bits.astype("uint8"),
        "bool": bits,
    }[form]
    packed = pack_codes(codes, bitorder=bitorder)
    assert isinstance(packed, tf.Tensor) and packed.dtype == tf.uint8 and packed.shape == (5, (k + 7) // 8)
    np.testing.assert_array_equal(packed, np.packbits(bits, axis=-1, bitorder=bitorder))


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float64, tf.int64])
def test_pack_accepts_real_tensors(dtype):
    bits = random_bits(3, 13, seed=0)
    signed = tf.cast(np.where(bits, 1, -1), dtype)
    np.testing.assert_array_equal(pack_codes(signed), np.packbits(bits, axis=-1))


def test_all_ones_read_the_same_as_codes_or_bits():
    ones = np.ones((2, 10), "float32")
    np.testing.assert_array_equal(pack_codes(ones), np.packbits(ones.astype(bool), axis=-1))


@pytest.mark.parametrize("k", K_VALUES)
@pytest.mark.parametrize("bitorder", ["big", "little"])
def test_unpack_matches_numpy_unpackbits_and_inverts_pack(k, bitorder):
    bits = random_bits(6, k, seed=k + 1)
    packed = np.packbits(bits, axis=-1, bitorder=bitorder)
    expected_bits = np.unpackbits(packed, axis=-1, count=k, bitorder=bitorder).astype("float32")
    unsigned = unpack_codes(tf.constant(packed), k, bitorder=bitorder, signed=False)
    assert isinstance(unsigned, tf.Tensor) and unsigned.dtype == tf.float32
    np.testing.assert_array_equal(unsigned, expected_bits)
    signed = unpack_codes(packed, k, bitorder=bitorder)
    np.testing.assert_array_equal(signed, 2 * expected_bits - 1)
    np.testing.assert_array_equal(pack_codes(signed, bitorder=bitorder), packed)


def test_empty_batch():
    assert pack_codes(np.zeros((0, 13), "float32")).shape == (0, 2)
    assert unpack_codes(np.zeros((0, 2), np.uint8), 13).shape == (0, 13)


def test_inside_tf_function():
    bits = random_bits(4, 13, seed=2)
    pack = tf.function(pack_codes, input_signature=[tf.TensorSpec([None, None])])
    packed = pack(np.where(bits, 1.0, -1.0).astype("float32"))
    np.testing.assert_array_equal(packed, np.packbits(bits, axis=-1))
    unpack = tf.function(
        lambda p: unpack_codes(p, 13), input_signature=[tf.TensorSpec([None, None], tf.uint8)]
    )
    np.testing.assert_array_equal(unpack(packed), np.where(bits, 1.0, -1.0))
    with pytest.raises(tf.errors.InvalidArgumentError, match="codes"):
        pack(np.full((2, 3), 0.3, "float32"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_bits"):
        unpack(packed[:, :1])


@pytest.mark.parametrize(
    "codes",
    [
        [[1.0, 0.3]],
        [[1, 2]],
        [[1.0, float("nan")]],
        [[-1, 0, 1]],  # neither +-1 nor {0, 1}
        [1.0, -1.0],  # 1-D
        np.ones((2, 3), np.complex64),
    ],
)
def test_pack_rejects_non_codes(codes):
    with pytest.raises(ValueError, match="codes"):
        pack_codes(codes)


@pytest.mark.parametrize(
    "packed, num_bits, kwargs, name",
    [
        (np.zeros((2, 2), np.int32), 16, {}, "packed"),
        (np.zeros(2, np.uint8), 16, {}, "packed"),
        (np.zeros((2, 2), np.uint8), 17, {}, "num_bits"),
        (np.zeros((2, 2), np.uint8), 0, {}, "num_bits"),
        (np.zeros((2, 2), np.uint8), 16.0, {}, "num_bits"),
        (np.zeros((2, 2), np.uint8), 16, {"bitorder": "middle"}, "bitorder"),
        (np.zeros((2, 2), np.uint8), 16, {"signed": 1}, "signed"),
    ],
)
def test_unpack_rejects_bad_arguments(packed, num_bits, kwargs, name):
    with pytest.raises(ValueError, match=name):
        unpack_codes(packed, num_bits, **kwargs)


def test_pack_rejects_bad_bitorder():
    with pytest.raises(ValueError, match="bitorder"):
        pack_codes([[1, -1]], bitorder="BIG")


@pytest.mark.parametrize("k", [16, 64])
def test_faiss_hamming_distances_on_packed_codes(k):
    faiss = pytest.importorskip("faiss", reason="faiss-cpu is optional (extra 'faiss')")
    rng = np.random.default_rng(k)
    database = np.where(rng.integers(0, 2, size=(40, k)) == 1, 1.0, -1.0).astype("float32")
    queries = np.where(rng.integers(0, 2, size=(6, k)) == 1, 1.0, -1.0).astype("float32")
    index = faiss.IndexBinaryFlat(k)
    index.add(pack_codes(database).numpy())
    distances, ids = index.search(pack_codes(queries).numpy(), len(database))
    differing_bits = (queries[:, None, :] != database[None, :, :]).sum(axis=-1)
    np.testing.assert_array_equal(distances, np.take_along_axis(differing_bits, ids, axis=1))
    assert (np.sort(ids, axis=1) == np.arange(len(database))).all()

    # "little" is faiss's own packing of real vectors (positive -> 1).
    faiss_packed = np.zeros((len(database), k // 8), np.uint8)
    faiss.real_to_binary(database.size, faiss.swig_ptr(database), faiss.swig_ptr(faiss_packed))
    np.testing.assert_array_equal(pack_codes(database, bitorder="little"), faiss_packed)
