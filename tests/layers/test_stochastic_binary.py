import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.layers import StochasticBinary

P = np.array([[0.0, 0.1, 0.49, 0.5, 0.51, 0.9, 1.0], [1.0, 0.7, 0.5, 0.2, 0.0, 0.5, 0.3]], "float32")


def threshold(p, signed):
    bits = (p >= 0.5).astype("float32")
    return 2 * bits - 1 if signed else bits


def test_same_seed_same_samples_and_different_seed_different_samples():
    p = np.full((8, 16), 0.5, "float32")  # 128 fair coins: equal draws by chance have probability 2**-128
    first, second = StochasticBinary(seed=1), StochasticBinary(seed=1)
    a = first(p, training=True).numpy()
    np.testing.assert_array_equal(a, second(p, training=True))
    assert not np.array_equal(a, StochasticBinary(seed=2)(p, training=True))
    assert not np.array_equal(a, first(p, training=True)), "the seed generator's state must advance"


def test_samples_advance_inside_tf_function():
    layer = StochasticBinary(seed=3)
    sample = tf.function(lambda p: layer(p, training=True))
    p = tf.fill((8, 16), 0.5)
    assert not np.array_equal(sample(p), sample(p))


@pytest.mark.parametrize("signed", [True, False])
def test_empirical_mean_matches_probabilities(signed):
    n = 20_000
    p = np.array([0.0, 0.05, 0.3, 0.5, 0.8, 1.0], "float32")
    out = StochasticBinary(signed=signed, seed=4)(np.tile(p, (n, 1)), training=True).numpy()
    assert set(np.unique(out)) <= ({-1.0, 1.0} if signed else {0.0, 1.0})
    mean = ((out + 1) / 2 if signed else out).mean(axis=0)
    # A column mean is binomial(n, p) / n, std sqrt(p (1 - p) / n) <= 0.0036; a correct sampler is off by more
    # than 5 std with probability < 1e-6.
    # p = 0 and p = 1 are exact because u ~ U[0, 1) is never < 0 and always < 1.
    tolerance = 5 * np.sqrt(p * (1 - p) / n)
    assert (np.abs(mean - p) <= tolerance).all(), (mean, p, tolerance)


@pytest.mark.parametrize("signed", [True, False])
def test_deterministic_mode_and_inference_threshold_at_one_half(signed):
    expected = threshold(P, signed)
    deterministic = StochasticBinary(stochastic=False, signed=signed)
    np.testing.assert_array_equal(deterministic(P, training=True), expected)
    layer = StochasticBinary(signed=signed, seed=5)
    for training in (False, None):
        np.testing.assert_array_equal(layer(P, training=training), expected)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("stochastic, training", [(True, True), (False, True), (True, False)])
def test_gradient_is_straight_through(signed, stochastic, training):
    w = np.random.default_rng(6).normal(size=P.shape).astype("float32")
    p = tf.constant(P)
    with tf.GradientTape() as tape:
        tape.watch(p)
        b = StochasticBinary(stochastic=stochastic, signed=signed, seed=7)(p, training=training)
        loss = tf.reduce_sum(w * b)
    np.testing.assert_array_equal(tape.gradient(loss, p), 2 * w if signed else w)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"stochastic": 1}, "stochastic"),
        ({"signed": "yes"}, "signed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": True}, "seed"),
    ],
)
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        StochasticBinary(**kwargs)


def test_compute_output_shape():
    assert StochasticBinary().compute_output_shape((None, 16)) == (None, 16)


def test_serialization_round_trip(tmp_path):
    layer = StochasticBinary(signed=False, seed=np.int64(8), name="stochastic_binary")
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, StochasticBinary) and clone.get_config() == layer.get_config()
    # Fresh layers with the same seed draw the same samples.
    np.testing.assert_array_equal(clone(P, training=True), layer(P, training=True))
    np.testing.assert_array_equal(clone(P), layer(P))

    x = np.random.default_rng(9).normal(size=(4, 7)).astype("float32")
    model = keras.Sequential([keras.Input((7,)), keras.layers.Dense(7, activation="sigmoid"), layer])
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert loaded.layers[-1].get_config() == layer.get_config()
    np.testing.assert_array_equal(loaded(x), model(x))
    # A .keras file keeps the seed, not the generator's state: the reloaded layer replays a fresh layer.
    fresh = keras.saving.deserialize_keras_object(config)
    np.testing.assert_array_equal(loaded(x, training=True), fresh(model.layers[0](x), training=True))
