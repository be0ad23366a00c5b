import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.layers import BinaryLatentVAE
from tfhash.layers.binary_latent_vae import kl_to_fair_bernoulli

NUM_BITS = 6
# Encoder logits around 0 (a tiny negative one that sigmoid rounds to 0.5 included), near-saturated and
# saturated ones (sigmoid(±200) is exactly 1 / 0 in float32).
LOGITS = np.array(
    [
        [0.0, -1e-9, 1e-9, 0.3, -0.7, 2.0],
        [-30.0, 30.0, -12.0, 12.0, 5.0, -5.0],
        [200.0, -200.0, 1.5, -1.5, 0.01, -0.01],
    ],
    "float32",
)


def sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, "float64")))


def identity_encoder_vae(**kwargs):
    """A built layer whose encoder passes its NUM_BITS inputs through: its logits are its inputs."""
    layer = BinaryLatentVAE(NUM_BITS, decoder_units=(5,), seed=0, **kwargs)
    layer.build((None, NUM_BITS))
    layer.encoder.kernel.assign(np.eye(NUM_BITS, dtype="float32"))
    layer.encoder.bias.assign(np.zeros(NUM_BITS, "float32"))
    return layer


def numpy_decoder(layer, codes):
    outputs = np.asarray(codes, "float64")
    for dense in layer.decoder_layers:
        outputs = outputs @ np.asarray(dense.kernel, "float64") + np.asarray(dense.bias, "float64")
        if dense is not layer.decoder_layers[-1]:
            outputs = np.maximum(outputs, 0)
    return outputs


def numpy_kl(q):
    """Σ_k q log(2q) + (1 − q) log(2(1 − q)), batch mean, from the closed form (0 log 0 = 0)."""
    per_bit = np.where(q > 0, q * np.log(2 * np.maximum(q, 1e-300)), 0) + np.where(
        q < 1, (1 - q) * np.log(2 * np.maximum(1 - q, 1e-300)), 0
    )
    return per_bit.sum(axis=1).mean()


# --- the terms of the negative ELBO -------------------------------------------------------------------------


@pytest.mark.parametrize("training", [False, True])
def test_elbo_terms_match_numpy(training):
    layer = identity_encoder_vae(kl_weight=0.25)
    terms = layer.elbo_terms(LOGITS, training=training)
    q = sigmoid(LOGITS)
    np.testing.assert_allclose(terms["probabilities"], q, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(terms["kl"], numpy_kl(q), rtol=1e-6, atol=1e-6)
    codes = np.where(LOGITS >= 0, 1.0, -1.0)
    np.testing.assert_array_equal(terms["codes"], codes)
    reconstruction = np.mean(np.sum((LOGITS - numpy_decoder(layer, codes)) ** 2, axis=1) / NUM_BITS)
    np.testing.assert_allclose(terms["reconstruction"], reconstruction, rtol=1e-5)
    np.testing.assert_allclose(terms["loss"], terms["reconstruction"] + 0.25 * terms["kl"], rtol=1e-6)


def test_kl_is_exact_and_finite_for_saturated_bits():
    layer = identity_encoder_vae()
    logits = tf.constant([[200.0, -200.0, 1e4, -1e4, 0.0, 0.0]])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        kl = layer.elbo_terms(logits)["kl"]
    # q is exactly 1 or 0 in float32 for the first four bits: log 2 each; q = 1/2 for the last two: 0.
    assert set(np.asarray(layer.probabilities(logits))[0, :4]) == {0.0, 1.0}
    np.testing.assert_allclose(kl, 4 * np.log(2), rtol=1e-6)
    gradient = tape.gradient(kl, logits).numpy()
    assert np.isfinite(gradient).all()
    np.testing.assert_allclose(gradient, 0, atol=1e-6)  # d KL / d logit = q (1 − q) logit vanishes there


def test_reconstruction_of_other_targets_with_output_size():
    layer = BinaryLatentVAE(NUM_BITS, output_size=3, decoder_units=(), seed=0)
    x = np.random.default_rng(1).normal(size=(4, 10)).astype("float32")
    targets = np.random.default_rng(2).normal(size=(4, 3)).astype("float32")
    terms = layer.elbo_terms(x, targets=targets)
    codes = np.asarray(layer(x))
    assert layer.reconstruct(codes).shape == (4, 3)
    expected = np.mean(np.sum((targets - numpy_decoder(layer, codes)) ** 2, axis=1) / 3)
    np.testing.assert_allclose(terms["reconstruction"], expected, rtol=1e-5)


def test_terms_are_float32_under_mixed_precision():
    layer = BinaryLatentVAE(NUM_BITS, decoder_units=(4,), seed=0, dtype="mixed_float16")
    terms = layer.elbo_terms(np.ones((2, 8), "float32"), training=True)
    assert terms["codes"].dtype == tf.float16
    for name in ("probabilities", "reconstruction", "kl", "loss"):
        assert terms[name].dtype == tf.float32, name


# --- codes and their gradients ------------------------------------------------------------------------------


@pytest.mark.parametrize("sampling", ["deterministic", "stochastic"])
@pytest.mark.parametrize("training", [True, False])
def test_straight_through_gradient_on_the_probability(sampling, training):
    layer = identity_encoder_vae(sampling=sampling)
    weights = np.random.default_rng(3).normal(size=LOGITS.shape).astype("float32")
    logits = tf.constant(LOGITS)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        codes = layer.binarize(logits, training=training)
        objective = tf.reduce_sum(weights * codes)
    assert set(np.unique(codes)) <= {-1.0, 1.0}
    q = sigmoid(LOGITS)
    expected = weights * 2 * q * (1 - q)
    np.testing.assert_allclose(tape.gradient(objective, logits), expected, rtol=1e-5, atol=1e-7)


def test_gradient_reaches_the_encoder_through_call():
    layer = BinaryLatentVAE(NUM_BITS, decoder_units=(), seed=0)
    x = tf.constant(np.random.default_rng(4).normal(size=(3, 5)).astype("float32"))
    with tf.GradientTape() as tape:
        objective = tf.reduce_sum(layer(x, training=True))
    q = np.asarray(layer.probabilities(x), "float64")
    expected = x.numpy().T @ (2 * q * (1 - q))  # d/dW Σ b with db/dlogit = 2q(1 − q), logit = xW + c
    np.testing.assert_allclose(tape.gradient(objective, layer.encoder.kernel), expected, rtol=1e-5, atol=1e-6)


def test_relaxation_gives_2q_minus_1_in_training_and_signs_in_inference():
    layer = identity_encoder_vae(relaxation=True)
    logits = tf.constant(LOGITS)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        codes = layer.binarize(logits, training=True)
        objective = tf.reduce_sum(codes)
    q = sigmoid(LOGITS)
    np.testing.assert_allclose(codes, 2 * q - 1, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(tape.gradient(objective, logits), 2 * q * (1 - q), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(layer(LOGITS), np.where(LOGITS >= 0, 1.0, -1.0))


@pytest.mark.parametrize(
    "sampling, training",
    [("deterministic", True), ("deterministic", False), ("stochastic", False), ("stochastic", None)],
)
def test_deterministic_codes_are_the_signs_of_the_logits(sampling, training):
    # sign(0) = +1; sigmoid(−1e-9) is 0.5 in float32, and the code still follows the logit's sign.
    layer = identity_encoder_vae(sampling=sampling)
    expected = np.where(LOGITS >= 0, 1.0, -1.0)
    np.testing.assert_array_equal(layer(LOGITS, training=training), expected)
    np.testing.assert_array_equal(layer(LOGITS, training=training), expected)


def test_stochastic_sampling_is_seeded():
    x = np.zeros((16, NUM_BITS), "float32")  # q = 1/2 with a zero bias: 96 fair coins per call
    first = identity_encoder_vae(sampling="stochastic")
    second = identity_encoder_vae(sampling="stochastic")
    draws = first(x, training=True).numpy()
    np.testing.assert_array_equal(draws, second(x, training=True))
    assert not np.array_equal(draws, first(x, training=True)), "the seed generator's state must advance"
    other = BinaryLatentVAE(NUM_BITS, sampling="stochastic", seed=1)
    other.build((None, NUM_BITS))
    other.encoder.kernel.assign(np.eye(NUM_BITS, dtype="float32"))
    assert not np.array_equal(draws, other(x, training=True))


def test_stochastic_mean_matches_2q_minus_1():
    n = 20_000
    logits = np.array([[-200.0, -3.0, -0.5, 0.0, 1.0, 200.0]], "float32")
    codes = identity_encoder_vae(sampling="stochastic").binarize(np.tile(logits, (n, 1)), training=True)
    assert set(np.unique(codes)) <= {-1.0, 1.0}
    q = sigmoid(logits[0])
    # the mean of n codes ±1 has standard deviation 2 sqrt(q (1 − q) / n) <= 0.0071: 5 of them is loose.
    tolerance = 5 * 2 * np.sqrt(q * (1 - q) / n)
    assert (np.abs(codes.numpy().mean(axis=0) - (2 * q - 1)) <= tolerance).all()


# --- initializers and the encoder alone --------------------------------------------------------------------

CONSTANTS = {"kernel_initializer": keras.initializers.Constant(0.5), "bias_initializer": "zeros"}
# One per Dense layer of decoder_units=(5,): objects, names, serialized configurations.
GIVEN_INITIALIZERS = [
    {"kernel_initializer": keras.initializers.Constant(0.5),
     "bias_initializer": keras.initializers.Constant(-0.25)},
    {"kernel_initializer": "ones", "bias_initializer": "zeros"},
    {"kernel_initializer": keras.initializers.serialize(keras.initializers.Constant(2.0)),
     "bias_initializer": {"class_name": "Constant", "config": {"value": 0.75}}},
]
GIVEN_VALUES = [(0.5, -0.25), (1.0, 0.0), (2.0, 0.75)]  # (kernel, bias) of each layer


def test_given_dense_initializers_are_used_in_build_order():
    layer = BinaryLatentVAE(NUM_BITS, decoder_units=(5,), seed=0, dense_initializers=GIVEN_INITIALIZERS)
    layer.build((None, 7))
    layers = [layer.encoder, *layer.decoder_layers]
    assert [tuple(dense.kernel.shape) for dense in layers] == [(7, NUM_BITS), (NUM_BITS, 5), (5, 7)]
    for dense, (kernel, bias) in zip(layers, GIVEN_VALUES):
        np.testing.assert_array_equal(dense.kernel.numpy(), np.full(dense.kernel.shape, kernel), dense.name)
        np.testing.assert_array_equal(dense.bias.numpy(), np.full(dense.bias.shape, bias), dense.name)


def test_default_initializers_are_seeded_glorot_kernels_and_zero_biases():
    layer = BinaryLatentVAE(NUM_BITS, decoder_units=(5,), seed=3)
    layer.build((None, 7))
    for offset, dense in enumerate([layer.encoder, *layer.decoder_layers], start=1):
        expected = keras.initializers.GlorotUniform(seed=3 + offset)(dense.kernel.shape)
        np.testing.assert_array_equal(dense.kernel.numpy(), keras.ops.convert_to_numpy(expected), dense.name)
        np.testing.assert_array_equal(dense.bias.numpy(), 0.0)


def test_the_dense_initializers_survive_config_and_keras_file_round_trips(tmp_path):
    layer = BinaryLatentVAE(NUM_BITS, decoder_units=(5,), dense_initializers=GIVEN_INITIALIZERS, name="vae")
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    clone = keras.saving.deserialize_keras_object(config)
    assert clone.get_config() == layer.get_config()
    clone.build((None, 7))  # freshly drawn: the initializers themselves came back
    for dense, (kernel, bias) in zip([clone.encoder, *clone.decoder_layers], GIVEN_VALUES):
        np.testing.assert_array_equal(dense.kernel.numpy(), np.full(dense.kernel.shape, kernel), dense.name)
        np.testing.assert_array_equal(dense.bias.numpy(), np.full(dense.bias.shape, bias), dense.name)
    model = keras.Sequential([keras.Input((7,)), layer])
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras").layers[-1]
    assert loaded.get_config() == layer.get_config()
    assert loaded.get_config()["dense_initializers"][2]["bias_initializer"]["config"] == {"value": 0.75}


def test_without_a_decoder_the_layer_is_its_encoder():
    x = np.random.default_rng(8).normal(size=(4, 9)).astype("float32")
    layer = BinaryLatentVAE(NUM_BITS, decoder=False, seed=2, name="vae")
    full = BinaryLatentVAE(NUM_BITS, seed=2)
    np.testing.assert_array_equal(layer(x), full(x))  # the same seeded encoder
    assert layer.decoder_layers == [] and layer.decoder_units == ()
    assert [v.path for v in layer.weights] == ["vae/encoder/kernel", "vae/encoder/bias"]
    with pytest.raises(ValueError, match="has no decoder.*cannot `reconstruct`"):
        layer.reconstruct(layer(x))
    # no ELBO without a reconstruction; the KL alone is the expression the error gives
    with pytest.raises(ValueError, match="no decoder.*`elbo_terms` needs decoder=True.*kl_to_fair_bernoulli"):
        layer.elbo_terms(x)
    kl = tf.reduce_mean(tf.reduce_sum(kl_to_fair_bernoulli(layer.logits(x)), axis=-1))
    np.testing.assert_allclose(kl, full.elbo_terms(x)["kl"], rtol=1e-6)


def test_an_encoder_alone_round_trips(tmp_path):
    x = np.random.default_rng(9).normal(size=(4, 9)).astype("float32")
    layer = BinaryLatentVAE(NUM_BITS, decoder=False, sampling="stochastic", seed=1,
                            dense_initializers=[GIVEN_INITIALIZERS[0]])
    model = keras.Sequential([keras.Input((9,)), layer])
    assert layer.get_config()["decoder_units"] == [] and layer.get_config()["decoder"] is False
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert loaded.layers[-1].get_config() == layer.get_config() and loaded.layers[-1].decoder_layers == []
    np.testing.assert_array_equal(loaded(x), model(x))


# --- configuration and files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_bits": 0}, "num_bits"),
        ({"num_bits": 8.0}, "num_bits"),
        ({"output_size": 0}, "output_size"),
        ({"decoder_units": (16, 0)}, "decoder_units"),
        ({"decoder_units": 16}, "decoder_units"),
        ({"sampling": "random"}, "sampling"),
        ({"relaxation": 1}, "relaxation"),
        ({"relaxation": True, "sampling": "stochastic"}, "sampling"),
        ({"kl_weight": -1.0}, "kl_weight"),
        ({"kl_weight": float("nan")}, "kl_weight"),
        ({"seed": -1}, "seed"),
        ({"decoder": 0}, "`decoder` must be a bool"),
        ({"decoder": False, "output_size": 4}, "`output_size`.*with decoder=False"),
        ({"decoder": False, "decoder_units": (16,)}, "`decoder_units`.*with decoder=False"),
        # the default decoder, (1024,), has two Dense layers besides the encoder
        ({"dense_initializers": [CONSTANTS] * 2}, "`dense_initializers`.* 3 here"),
        ({"dense_initializers": [CONSTANTS] * 3, "decoder": False}, "`dense_initializers`.* 1 here"),
        ({"dense_initializers": CONSTANTS, "decoder": False}, "`dense_initializers`.* 1 here"),
        ({"dense_initializers": [{"kernel_initializer": "zeros"}], "decoder": False},
         "`dense_initializers\\[0\\]` must be a dict with the keys"),
        ({"dense_initializers": [{**CONSTANTS, "bias_initializer": "nope"}], "decoder": False},
         "`dense_initializers\\[0\\]\\['bias_initializer'\\]` is not a Keras initializer"),
        ({"dense_initializers": [{**CONSTANTS, "kernel_initializer": None}], "decoder": False},
         "`dense_initializers\\[0\\]\\['kernel_initializer'\\]` is not a Keras initializer"),
    ],
)
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BinaryLatentVAE(**{"num_bits": 8, **kwargs})


def test_reconstruct_before_build_is_refused():
    with pytest.raises(ValueError, match="not built"):
        BinaryLatentVAE(NUM_BITS).reconstruct(np.ones((1, NUM_BITS), "float32"))


def test_compute_output_shape():
    assert BinaryLatentVAE(NUM_BITS).compute_output_shape((None, 12)) == (None, NUM_BITS)


def assert_same_outputs(actual, expected, x):
    np.testing.assert_array_equal(actual(x), expected(x))
    actual_terms, expected_terms = actual.elbo_terms(x), expected.elbo_terms(x)
    for name in expected_terms:
        np.testing.assert_allclose(actual_terms[name], expected_terms[name], rtol=1e-6, err_msg=name)


@pytest.mark.parametrize(
    "kwargs",
    [{"sampling": "stochastic", "kl_weight": 0.5}, {"relaxation": True, "output_size": 7}],
)
def test_config_round_trip(kwargs):
    layer = BinaryLatentVAE(NUM_BITS, decoder_units=[5, 4], seed=2, **kwargs)
    x = np.random.default_rng(5).normal(size=(4, 7)).astype("float32")
    layer(x)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, BinaryLatentVAE) and clone.get_config() == layer.get_config()
    clone(x)
    clone.set_weights(layer.get_weights())
    assert_same_outputs(clone, layer, x)


def test_keras_file_round_trip(tmp_path):
    x = np.random.default_rng(6).normal(size=(4, 9)).astype("float32")
    model = keras.Sequential(
        [keras.Input((9,)), BinaryLatentVAE(NUM_BITS, decoder_units=(5,), sampling="stochastic", seed=3)]
    )
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    layer, loaded_layer = model.layers[-1], loaded.layers[-1]
    assert isinstance(loaded_layer, BinaryLatentVAE) and loaded_layer.get_config() == layer.get_config()
    np.testing.assert_array_equal(loaded(x), model(x))
    assert_same_outputs(loaded_layer, layer, x)


# --- as a binary autoencoder hasher -------------------------------------------------------------------------


class BinaryAutoencoderHasher(keras.Model):
    """The class docstring's example."""

    def __init__(self, num_bits, **kwargs):
        super().__init__()
        self.vae = BinaryLatentVAE(num_bits, decoder_units=(32,), seed=0, **kwargs)

    def call(self, features, training=False):
        if not training:
            return self.vae(features)
        terms = self.vae.elbo_terms(features, training=True)
        self.add_loss(terms["loss"])
        return terms["codes"]


@pytest.mark.slow  # a few hundred training steps (~4 s each case on 2 idle cores)
@pytest.mark.parametrize(
    "kwargs", [{}, {"sampling": "stochastic", "kl_weight": 0.1}], ids=["defaults", "sampled"]
)
def test_training_as_an_autoencoder_lowers_the_reconstruction_error(kwargs):
    rng = np.random.default_rng(7)
    centers = 2.0 * rng.normal(size=(8, 24))
    features = (centers[rng.integers(0, 8, size=512)] + 0.3 * rng.normal(size=(512, 24))).astype("float32")
    keras.utils.set_random_seed(0)
    model = BinaryAutoencoderHasher(8, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model(features[:1])
    before = float(model.vae.elbo_terms(features)["reconstruction"])
    history = model.fit(features, epochs=30, batch_size=64, verbose=0).history  # 240 steps
    after = float(model.vae.elbo_terms(features)["reconstruction"])
    assert np.isfinite(history["loss"]).all()
    # Before: about the features' mean square (3.4); 8 bits can name the 8 clusters, leaving the noise (0.09).
    # Seen: 0.42 (defaults), 0.11 (sampled).
    assert after < 0.25 * before, (before, after)
    codes = model.predict(features, verbose=0)
    assert set(np.unique(codes)) <= {-1.0, 1.0}
