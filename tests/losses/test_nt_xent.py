"""NT-Xent against a loop-by-loop numpy reference of SimCLR's Eq. 1, a hand-worked case, and its gradient."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.losses import NTXentLoss, nt_xent_loss


def anchor_losses(z_a, z_b, temperature):
    """ℓ_i = −log(exp(cos(z_i, z_p(i))/τ) / Σ_{k≠i} exp(cos(z_i, z_k)/τ)) for the 2N anchors, by loops."""
    z = np.concatenate([z_a, z_b]).astype(np.float64)
    two_n = len(z)

    def cos(u, v):
        norm = np.linalg.norm(u) * np.linalg.norm(v)
        return 0.0 if norm == 0 else float(u @ v) / norm

    losses = []
    for i in range(two_n):
        positive = (i + two_n // 2) % two_n
        denominator = sum(np.exp(cos(z[i], z[k]) / temperature) for k in range(two_n) if k != i)
        losses.append(-np.log(np.exp(cos(z[i], z[positive]) / temperature) / denominator))
    return np.array(losses)


def reference(z_a, z_b, temperature):
    """SimCLR's L = (1/2N) Σ_i ℓ_i."""
    return anchor_losses(z_a, z_b, temperature).mean()


@pytest.mark.parametrize("signed_codes", [False, True])
@pytest.mark.parametrize("temperature", [0.3, 1.0])
def test_matches_reference(signed_codes, temperature):
    rng = np.random.default_rng(0)
    z_a, z_b = rng.normal(size=(2, 7, 5)).astype("float32")
    if signed_codes:
        z_a, z_b = (np.where(z >= 0, 1.0, -1.0).astype("float32") for z in (z_a, z_b))
    expected = reference(z_a, z_b, temperature)
    np.testing.assert_allclose(float(nt_xent_loss(z_a, z_b, temperature)), expected, rtol=1e-5)


def test_hand_worked_case():
    # Two orthogonal codes, both views identical: each anchor's positive has cosine 1, its two negatives 0, so
    # every ℓ_i = −log(e^{1/τ} / (e^{1/τ} + 2)) = log(1 + 2 e^{−1/τ}).
    z = np.array([[1.0, 1.0], [1.0, -1.0]], "float32")
    for temperature in (0.5, 1.0):
        expected = np.log1p(2 * np.exp(-1 / temperature))
        np.testing.assert_allclose(float(nt_xent_loss(z, z, temperature)), expected, rtol=1e-6)


def test_one_pair_has_no_negatives_and_zero_rows_have_cosine_zero():
    np.testing.assert_allclose(float(nt_xent_loss([[1.0, 2.0]], [[-3.0, 1.0]], 0.5)), 0.0, atol=1e-6)
    z_a = np.array([[0.0, 0.0], [1.0, 0.0]], "float32")
    z_b = np.array([[1.0, 1.0], [0.0, 1.0]], "float32")
    np.testing.assert_allclose(float(nt_xent_loss(z_a, z_b, 0.5)), reference(z_a, z_b, 0.5), rtol=1e-5)
    assert np.isfinite(float(nt_xent_loss(np.zeros((3, 4)), np.zeros((3, 4)), 0.1)))


def test_aligned_views_give_a_lower_loss_than_unrelated_ones():
    rng = np.random.default_rng(1)
    z_a = rng.normal(size=(16, 8)).astype("float32")
    aligned = float(nt_xent_loss(z_a, z_a + 0.01 * rng.normal(size=z_a.shape), 0.3))
    unrelated = float(nt_xent_loss(z_a, rng.normal(size=z_a.shape), 0.3))
    assert aligned < unrelated


def test_gradient_matches_finite_differences_and_is_scale_invariant():
    rng = np.random.default_rng(2)
    z_a, z_b = (tf.constant(v) for v in rng.normal(size=(2, 4, 3)))  # float64: computed in float64
    theoretical, numerical = tf.test.compute_gradient(lambda a, b: nt_xent_loss(a, b, 0.4), [z_a, z_b])
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, atol=1e-5)  # central differences, step 1e-3
    # Cosines do not change when a row is scaled, so each row's gradient is orthogonal to the row.
    with tf.GradientTape() as tape:
        tape.watch([z_a, z_b])
        loss = nt_xent_loss(z_a, z_b, 0.4)
    for z, gradient in zip((z_a, z_b), tape.gradient(loss, [z_a, z_b])):
        np.testing.assert_allclose(tf.reduce_sum(z * gradient, axis=1), 0.0, atol=1e-12)


def test_jit_compiled_matches_eager():
    rng = np.random.default_rng(3)
    z_a, z_b = (tf.constant(v, tf.float32) for v in rng.normal(size=(2, 6, 4)))
    compiled = tf.function(lambda a, b: nt_xent_loss(a, b, 0.3), jit_compile=True)
    np.testing.assert_allclose(float(compiled(z_a, z_b)), float(nt_xent_loss(z_a, z_b, 0.3)), rtol=1e-6)


def test_keras_wrapper_gives_the_mean_and_weights_pairs():
    rng = np.random.default_rng(4)
    z_a, z_b = rng.normal(size=(2, 5, 3)).astype("float32")
    loss = NTXentLoss(temperature=0.3)
    np.testing.assert_allclose(float(loss(z_a, z_b)), float(nt_xent_loss(z_a, z_b, 0.3)), rtol=1e-6)
    # A weight per pair: weighting all pairs by 2 doubles the value; a zero weight drops that pair's anchors.
    doubled = loss(z_a, z_b, sample_weight=np.full(5, 2.0))
    np.testing.assert_allclose(float(doubled), 2 * float(loss(z_a, z_b)), rtol=1e-6)
    # "sum_over_batch_size": Σ_i w_i (ℓ_i + ℓ_{N+i})/2 divided by N.
    weights = np.array([1.0, 0.5, 3.0, 1.0, 0.0])
    anchors = anchor_losses(z_a, z_b, 0.3)
    expected = np.sum(weights * (anchors[:5] + anchors[5:]) / 2) / 5
    np.testing.assert_allclose(float(loss(z_a, z_b, sample_weight=weights)), expected, rtol=1e-5)


def test_keras_wrapper_serialises():
    loss = NTXentLoss(temperature=0.25, name="contrast")
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, NTXentLoss) and restored.temperature == 0.25 and restored.name == "contrast"


@pytest.mark.parametrize("temperature", [0, -1.0, float("inf"), float("nan"), True, "0.3"])
def test_invalid_temperature_is_refused(temperature):
    with pytest.raises(ValueError, match="`temperature`"):
        nt_xent_loss(np.ones((2, 3)), np.ones((2, 3)), temperature)
    with pytest.raises(ValueError, match="`temperature`"):
        NTXentLoss(temperature=temperature)


def test_shape_errors_name_the_arguments():
    with pytest.raises(ValueError, match="same shape"):
        nt_xent_loss(np.ones((2, 3)), np.ones((3, 3)), 0.5)
    with pytest.raises(ValueError, match="matrices"):
        nt_xent_loss(np.ones(3), np.ones(3), 0.5)
