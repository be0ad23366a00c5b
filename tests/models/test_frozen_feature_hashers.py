"""BiHalfHasher and GreedyHasher: their losses against numpy references written from the papers' equations."""

import numpy as np
import pytest
import tensorflow as tf

from tfhash.models import BiHalfHasher, GreedyHasher, HQTRegularizer


def cosine_matrix(x):
    x = np.asarray(x, np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    return x @ x.T


def similarity_loss(codes, features):
    """(1/N²) Σ_ij (cos(b_i, b_j) − cos(x_i, x_j))², by explicit loops over the pairs."""
    n = len(codes)
    b, x = cosine_matrix(codes), cosine_matrix(features)
    return sum((b[i, j] - x[i, j]) ** 2 for i in range(n) for j in range(n)) / n**2


def bi_half_codes(u):
    """Per bit, the floor(N/2) largest of the batch → +1 (ties to the earlier row), the rest → −1."""
    codes = -np.ones_like(u)
    for k in range(u.shape[1]):
        order = sorted(range(len(u)), key=lambda i: (-u[i, k], i))
        codes[order[: len(u) // 2], k] = 1
    return codes


@pytest.fixture
def batch():
    rng = np.random.default_rng(3)
    return rng.normal(size=(9, 12)).astype("float32")


def test_bi_half_loss_matches_reference(batch):
    model = BiHalfHasher(6, feature_size=12, seed=0)
    loss, terms, (codes,) = model.self_loss(tf.constant(batch), None, training=True)
    u = batch @ model.head.kernel.numpy()
    np.testing.assert_array_equal(codes.numpy(), bi_half_codes(u))
    np.testing.assert_allclose(float(loss), similarity_loss(bi_half_codes(u), batch), rtol=1e-5)
    assert float(terms["similarity"]) == float(loss)


def test_greedy_loss_matches_reference(batch):
    model = GreedyHasher(5, feature_size=12, quantization_weight=0.1, seed=1)
    loss, terms, (codes,) = model.self_loss(tf.constant(batch), None, training=True)
    h = batch @ model.head.kernel.numpy() + model.head.bias.numpy()
    b = np.where(h >= 0, 1.0, -1.0)
    cubic = np.mean(np.abs(np.abs(h) - 1) ** 3)
    np.testing.assert_array_equal(codes.numpy(), b)
    np.testing.assert_allclose(float(terms["quantization"]), cubic, rtol=1e-5)
    np.testing.assert_allclose(float(loss), similarity_loss(b, batch) + 0.1 * cubic, rtol=1e-5)


def test_greedy_gradient_passes_straight_through_the_sign(batch):
    # d/dh of the cubic term is 3·(|h| − 1)²·sign(|h| − 1)·sign(h) / (N·K); the sign's gradient is the identity.
    model = GreedyHasher(4, feature_size=12, seed=2)
    h = tf.constant(model.head(tf.constant(batch)).numpy())
    weights = tf.constant([1.0, -2.0, 3.0, 0.5])
    with tf.GradientTape() as tape:
        tape.watch(h)
        loss = tf.reduce_sum(model.binarizer(h, training=True) * weights) + tf.reduce_mean(
            tf.abs(tf.abs(h) - 1.0) ** 3
        )
    gradient = tape.gradient(loss, h).numpy()
    h = h.numpy()
    cubic = 3 * (np.abs(h) - 1) ** 2 * np.sign(np.abs(h) - 1) * np.sign(h) / h.size
    np.testing.assert_allclose(gradient, weights.numpy() + cubic, rtol=1e-5)


@pytest.mark.parametrize("model_class", [BiHalfHasher, GreedyHasher])
def test_hqt_total_is_eq_3_on_the_codes(model_class, batch):
    bits = np.random.default_rng(0).integers(0, 2, size=(20, 6))
    model = model_class(6, feature_size=12, hqt=HQTRegularizer(20, alpha=0.5), seed=0)
    model.hqt.assign(bits)
    index = np.arange(9) * 2
    losses = model.compute_losses({"inputs": tf.constant(batch), "sample_index": tf.constant(index)}, training=True)
    _, _, (codes,) = model.self_loss(tf.constant(batch), None, training=True)
    p = 1 / (1 + np.exp(-codes.numpy().astype(np.float64)))
    y = bits[index]
    bce = np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
    np.testing.assert_allclose(float(losses["hqt_loss"]), bce, rtol=1e-5)
    np.testing.assert_allclose(float(losses["loss"]), 0.5 * float(losses["self_loss"]) + 0.5 * bce, rtol=1e-5)
