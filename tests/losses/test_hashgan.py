"""HashGAN's loss terms against numpy loops written from the paper's Eq. 2–5 (sums over N divided by N)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfhash.losses import hashgan


@pytest.fixture
def probabilities():
    return np.random.default_rng(0).uniform(0.02, 0.98, size=(6, 5)).astype("float32")


def entropy(p):
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_min_entropy_bits(probabilities):
    n, k = probabilities.shape
    expected = sum(entropy(float(probabilities[i, j])) for i in range(n) for j in range(k)) / n
    np.testing.assert_allclose(float(hashgan.min_entropy_bits_loss(probabilities)), expected, rtol=1e-5)
    assert float(hashgan.min_entropy_bits_loss([[0.0, 1.0]])) == pytest.approx(0.0, abs=1e-5)
    assert float(hashgan.min_entropy_bits_loss([[0.5, 0.5]])) == pytest.approx(2 * math.log(2), rel=1e-6)


def test_uniform_frequency(probabilities):
    n, k = probabilities.shape
    frequency = [sum(float(probabilities[i, j]) for i in range(n)) / n for j in range(k)]
    expected = sum(f * math.log(f) + (1 - f) * math.log(1 - f) for f in frequency)
    np.testing.assert_allclose(float(hashgan.uniform_frequency_loss(probabilities)), expected, rtol=1e-5)
    # Balanced bits reach the minimum −K log 2, whatever each image's value.
    balanced = np.array([[0.9, 0.1], [0.1, 0.9]], "float32")
    assert float(hashgan.uniform_frequency_loss(balanced)) == pytest.approx(-2 * math.log(2), rel=1e-6)


def test_consistent_and_collaborative(probabilities):
    other = probabilities[::-1].copy()
    n, k = probabilities.shape
    pairs = [(i, j) for i in range(n) for j in range(k)]
    expected = sum((float(probabilities[i, j]) - float(other[i, j])) ** 2 for i, j in pairs) / n
    np.testing.assert_allclose(float(hashgan.consistent_bits_loss(probabilities, other)), expected, rtol=1e-5)
    bits = (other > 0.5).astype("float32")
    expected = sum((float(probabilities[i, j]) - float(bits[i, j])) ** 2 for i, j in pairs) / n
    np.testing.assert_allclose(float(hashgan.collaborative_loss(probabilities, bits)), expected, rtol=1e-5)


def test_independent_bits_uses_the_bits_gram_matrix():
    kernel = np.random.default_rng(1).normal(size=(7, 3)).astype("float32")  # (hidden, K)
    gram = [[sum(float(kernel[h, a]) * float(kernel[h, b]) for h in range(7)) for b in range(3)]
            for a in range(3)]
    expected = sum((gram[a][b] - (a == b)) ** 2 for a in range(3) for b in range(3))
    np.testing.assert_allclose(float(hashgan.independent_bits_loss(kernel)), expected, rtol=1e-5)
    orthonormal = np.linalg.qr(np.random.default_rng(2).normal(size=(7, 3)))[0].astype("float32")
    assert float(hashgan.independent_bits_loss(orthonormal)) == pytest.approx(0.0, abs=1e-5)


def test_independent_bits_gradient_is_the_closed_form():
    # d‖WᵀW − I‖²/dW = 4 W (WᵀW − I)
    kernel = tf.constant(np.random.default_rng(3).normal(size=(4, 2)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(kernel)
        loss = hashgan.independent_bits_loss(kernel)
    w = kernel.numpy()
    np.testing.assert_allclose(tape.gradient(loss, kernel).numpy(), 4 * w @ (w.T @ w - np.eye(2)), rtol=1e-4)


def test_feature_matching():
    rng = np.random.default_rng(4)
    real, generated = rng.normal(size=(5, 3)), rng.normal(size=(8, 3))
    expected = sum((real[:, j].mean() - generated[:, j].mean()) ** 2 for j in range(3))
    np.testing.assert_allclose(float(hashgan.feature_matching_loss(real, generated)), expected, rtol=1e-5)


def test_adversarial_is_eq_2_negated():
    rng = np.random.default_rng(5)
    real_logits, generated_logits = rng.normal(size=(6, 1)), rng.normal(size=(4, 1))

    def sigmoid(x):
        return 1 / (1 + math.exp(-x))

    expected = -(np.mean([math.log(sigmoid(v)) for v in real_logits.ravel()])
                 + np.mean([math.log(1 - sigmoid(v)) for v in generated_logits.ravel()]))
    loss = hashgan.adversarial_loss(*(tf.constant(v, tf.float32) for v in (real_logits, generated_logits)))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
