"""HQTRegularizer: Eq. 2 against a numpy BCE, the ±1-target option, Eq. 3, state handling and serialization."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.models import BiHalfHasher, HQTRegularizer


def reference_bce(logits, targets):
    """Eq. 2 straight from the paper: −(y log σ(ŷ) + (1 − y) log(1 − σ(ŷ))), averaged (float64)."""
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return float(np.mean(-(targets * np.log(p) + (1 - targets) * np.log(1 - p))))


def built(num_samples=6, num_bits=4, **kwargs):
    layer = HQTRegularizer(num_samples, **kwargs)
    layer.build((None, num_bits))
    return layer


@pytest.mark.parametrize("signed_targets", [False, True])
def test_loss_matches_numpy_bce(signed_targets):
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, size=(6, 4))
    layer = built(signed_targets=signed_targets)
    layer.assign(bits)
    index = np.array([5, 0, 3, 3])
    logits = rng.choice([-1.0, 1.0], size=(4, 4)).astype("float32") * rng.uniform(0.2, 3, size=(4, 4))
    targets = bits[index].astype(np.float64)
    if signed_targets:  # the released code's targets; BCE's formula is linear in y, so it extends as is
        targets = 2 * targets - 1
    np.testing.assert_allclose(float(layer(logits.astype("float32"), index)), reference_bce(logits, targets),
                               rtol=1e-5)


def test_hand_worked_values_of_binarized_codes():
    # ŷ = ±1 codes: agreeing bits cost log(1 + e^-1), disagreeing bits log(1 + e).
    layer = built(num_samples=1, num_bits=2)
    layer.assign([[1, 0]])
    loss = float(layer(tf.constant([[1.0, 1.0]]), tf.constant([0])))
    np.testing.assert_allclose(loss, (np.log1p(np.exp(-1)) + np.log1p(np.e)) / 2, rtol=1e-6)


def test_gradient_is_sigmoid_minus_target_over_elements():
    layer = built()
    bits = np.eye(6, 4, dtype=np.uint8)
    layer.assign(bits)
    logits = tf.constant(np.linspace(-2, 2, 12, dtype="float32").reshape(3, 4))
    index = tf.constant([0, 2, 1])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = layer(logits, index)
    expected = (1 / (1 + np.exp(-logits.numpy())) - bits[[0, 2, 1]]) / logits.numpy().size
    np.testing.assert_allclose(tape.gradient(loss, logits).numpy(), expected, rtol=1e-5, atol=1e-7)


def test_combine_is_eq_3():
    layer = built(alpha=0.3)
    assert layer.combine(2.0, 10.0) == pytest.approx(0.7 * 2.0 + 0.3 * 10.0)


def test_unassigned_bits_raise():
    layer = built()
    with pytest.raises(tf.errors.InvalidArgumentError, match="no pseudo bits yet"):
        layer(tf.ones((2, 4)), tf.constant([0, 1]))


@pytest.mark.parametrize(
    "bits, message",
    [(np.zeros((6, 3)), "shape"), (np.full((6, 4), 2), "only 0 and 1"), (np.zeros((5, 4)), "shape")],
)
def test_assign_validates(bits, message):
    with pytest.raises(ValueError, match=message):
        built().assign(bits)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"num_samples": 0}, "num_samples"), ({"num_samples": 3, "alpha": 1.5}, "alpha"),
     ({"num_samples": 3, "alpha": True}, "alpha"), ({"num_samples": 3, "signed_targets": 1}, "signed_targets")],
)
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        HQTRegularizer(**kwargs)


def test_config_round_trips_through_json():
    layer = HQTRegularizer(7, alpha=0.25, signed_targets=True, tree={"depth_range": (3, 4), "seed": 2},
                           every_n_epochs=5, name="hqt")
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    clone = keras.saving.deserialize_keras_object(config)
    assert (clone.num_samples, clone.alpha, clone.signed_targets, clone.name) == (7, 0.25, True, "hqt")
    assert clone.tree == {"depth_range": [3, 4], "seed": 2} and clone.every_n_epochs == 5
    assert json.loads(json.dumps(keras.saving.serialize_keras_object(clone))) == config


def test_tree_and_refresher_from_the_settings():
    layer = built(num_bits=4, tree={"depth_range": (2, 3), "shared_tree": False}, every_n_epochs=2)
    tree = layer.hyper_quantization_tree(seed=9)
    assert (tree.num_bits, tree.depth_range, tree.shared_tree, tree.seed) == (4, (2, 3), False, 9)
    refresher = layer.refresher(np.zeros((6, 3)), seed=9)
    assert refresher.tree.get_config() == tree.get_config() and refresher.every_n_epochs == 2
    assert built(tree={"seed": 1}).hyper_quantization_tree(seed=9).seed == 1  # its own seed wins


@pytest.mark.parametrize("bad_index", [6, 100, -1])
def test_an_out_of_range_index_raises_naming_num_samples(bad_index):
    layer = built()
    layer.assign(np.zeros((6, 4)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_samples=6"):
        layer(tf.ones((2, 4)), tf.constant([0, bad_index]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_samples=6"):
        tf.function(layer)(tf.ones((2, 4)), tf.constant([0, bad_index]))
    # Under XLA the assertion is dropped and the gather clamps: the loss is NaN rather than plausible.
    loss = tf.function(layer, jit_compile=True)(tf.ones((2, 4)), tf.constant([0, bad_index]))
    assert np.isnan(float(loss))
    assert np.isfinite(float(tf.function(layer, jit_compile=True)(tf.ones((2, 4)), tf.constant([0, 5]))))


def test_model_bit_count_must_match_a_built_regularizer():
    layer = built(num_bits=4)
    with pytest.raises(ValueError, match="num_bits"):
        BiHalfHasher(8, feature_size=5, hqt=layer)
