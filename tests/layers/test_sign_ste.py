import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.layers import SignSTE

# Exact zeros (both signs) and the clipping boundary |x| = 1 are the cases that matter.
X = np.array(
    [[-2.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.0], [1e-8, -1e-8, 1.5, -1.5, 0.9, -0.9, 3.0, 0.0]], "float32"
)


def test_forward_is_sign_with_zero_as_plus_one():
    expected = np.where(X >= 0, 1.0, -1.0)
    layer = SignSTE()
    for training in (True, False, None):
        out = layer(X, training=training)
        assert out.dtype == tf.float32
        np.testing.assert_array_equal(out, expected)


def test_forward_keeps_the_layer_dtype():
    out = SignSTE(dtype="float64")(X.astype("float64"))
    assert out.dtype == tf.float64
    np.testing.assert_array_equal(out, np.where(X >= 0, 1.0, -1.0))


@pytest.mark.parametrize("clip_gradient", [False, True])
def test_gradient_is_straight_through(clip_gradient):
    w = np.random.default_rng(0).normal(size=X.shape).astype("float32")
    x = tf.constant(X)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(w * SignSTE(clip_gradient=clip_gradient)(x, training=True))
    expected = w * (np.abs(X) <= 1) if clip_gradient else w
    np.testing.assert_allclose(tape.gradient(loss, x), expected, rtol=0, atol=0)


def test_invalid_clip_gradient():
    with pytest.raises(ValueError, match="clip_gradient"):
        SignSTE(clip_gradient="yes")


def test_compute_output_shape():
    assert SignSTE().compute_output_shape((None, 16)) == (None, 16)


def test_serialization_round_trip(tmp_path):
    layer = SignSTE(clip_gradient=True, name="sign")
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, SignSTE) and clone.get_config() == layer.get_config()
    np.testing.assert_array_equal(clone(X), layer(X))

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8), layer])
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert loaded.layers[-1].get_config() == layer.get_config()
    np.testing.assert_array_equal(loaded(X), model(X))


def test_bool_bits_give_plus_minus_one():
    # Issue 12, item 11: bool input raised a TypeError.
    bits = np.array([[True, False, True], [False, False, True]])
    out = SignSTE()(bits)
    assert out.dtype == tf.float32
    np.testing.assert_array_equal(out, np.where(bits, 1.0, -1.0))
    np.testing.assert_array_equal(SignSTE(dtype="float64")(tf.constant(bits)), np.where(bits, 1.0, -1.0))
