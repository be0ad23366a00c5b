"""Symmetric Bernoulli KL against loops over the definition, a hand-worked case, and both gradients."""

import numpy as np
import pytest
import tensorflow as tf

from tfhash.losses import symmetric_bernoulli_kl


def reference(p_a, p_b):
    """(1/N) Σ_i Σ_k (KL(p_a,ik ‖ p_b,ik) + KL(p_b,ik ‖ p_a,ik)) / 2 from the Bernoulli KL definition."""

    def kl(p, q):
        return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))

    n, k = np.shape(p_a)
    total = 0.0
    for i in range(n):
        for j in range(k):
            a, b = float(p_a[i][j]), float(p_b[i][j])
            total += (kl(a, b) + kl(b, a)) / 2
    return total / n


@pytest.fixture
def probabilities():
    rng = np.random.default_rng(0)
    return rng.uniform(0.02, 0.98, size=(2, 6, 5))


def test_matches_reference(probabilities):
    p_a, p_b = probabilities
    for dtype in ("float32", "float64"):
        value = symmetric_bernoulli_kl(p_a.astype(dtype), p_b.astype(dtype))
        np.testing.assert_allclose(float(value), reference(p_a, p_b), rtol=1e-5)
    detached = float(symmetric_bernoulli_kl(p_a, p_b, stop_gradient=True))
    assert detached == pytest.approx(reference(p_a, p_b), 1e-9)


def test_hand_worked_case():
    # KL(½ ‖ ¼) = ½ log(4/3), KL(¼ ‖ ½) = ¼ log ½ + ¾ log(3/2); their mean is
    # ½ (p − q)(logit p − logit q) = log(3)/8.
    np.testing.assert_allclose(float(symmetric_bernoulli_kl([[0.5]], [[0.25]])), np.log(3) / 8, rtol=1e-6)


def test_sums_over_bits_and_averages_over_the_batch(probabilities):
    # The released code's reduction: torch.mean(torch.sum(kl, axis=1)).
    p_a, p_b = probabilities
    value = float(symmetric_bernoulli_kl(p_a, p_b))
    np.testing.assert_allclose(float(symmetric_bernoulli_kl(np.tile(p_a, 2), np.tile(p_b, 2))), 2 * value)
    repeated = symmetric_bernoulli_kl(np.tile(p_a, (3, 1)), np.tile(p_b, (3, 1)))
    np.testing.assert_allclose(float(repeated), value)


def test_symmetric_nonnegative_and_zero_for_equal_distributions(probabilities):
    p_a, p_b = probabilities
    assert float(symmetric_bernoulli_kl(p_a, p_b)) == pytest.approx(float(symmetric_bernoulli_kl(p_b, p_a)))
    assert float(symmetric_bernoulli_kl(p_a, p_b)) > 0
    assert float(symmetric_bernoulli_kl(p_a, p_a)) == pytest.approx(0.0, abs=1e-12)


def test_saturated_probabilities_are_clipped_to_a_finite_value_and_gradient():
    p_a = tf.constant([[0.0, 1.0, 1.0, 0.3]])
    p_b = tf.constant([[1.0, 0.0, 1.0, 0.3]])
    with tf.GradientTape() as tape:
        tape.watch(p_a)
        value = symmetric_bernoulli_kl(p_a, p_b)
    gradient = tape.gradient(value, p_a)
    assert np.isfinite(float(value)) and np.isfinite(gradient.numpy()).all()
    # Opposite certain bits cost about log(1/ε) each (clipped to ε and to 1 − ε as float32 rounds it); equal
    # ones cost 0.
    low, high = np.float32(1e-7), np.float32(1) - np.float32(1e-7)
    np.testing.assert_allclose(float(value), reference([[low, high]], [[high, low]]), rtol=1e-5)
    assert 2 * np.log(1e7) * 0.99 < float(value) < 2 * np.log(1e7) * 1.01


@pytest.mark.parametrize("stop_gradient", [False, True])
def test_gradient_closed_form(probabilities, stop_gradient):
    # d/dp_a of KL(p_a ‖ q) is logit p_a − logit q; of KL(q ‖ p_a), (p_a − q) / (p_a (1 − p_a)). The released
    # code's stop-gradient keeps only the first (halved by the symmetric mean).
    p_a, p_b = (tf.constant(p) for p in probabilities)
    with tf.GradientTape() as tape:
        tape.watch(p_a)
        value = symmetric_bernoulli_kl(p_a, p_b, stop_gradient=stop_gradient)
    gradient = tape.gradient(value, p_a).numpy()
    a, b = probabilities
    n = len(a)
    expected = (np.log(a / (1 - a)) - np.log(b / (1 - b))) / (2 * n)
    if not stop_gradient:
        expected += (a - b) / (a * (1 - a)) / (2 * n)
    np.testing.assert_allclose(gradient, expected, rtol=1e-8)
    if not stop_gradient:
        theoretical, numerical = tf.test.compute_gradient(
            lambda x: symmetric_bernoulli_kl(x, p_b), [p_a], delta=1e-6
        )
        np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        symmetric_bernoulli_kl(np.full((2, 3), 0.5), np.full((2, 4), 0.5))
    with pytest.raises(ValueError, match="`stop_gradient`"):
        symmetric_bernoulli_kl([[0.5]], [[0.5]], stop_gradient=1)
    with pytest.raises(ValueError, match="`epsilon`"):
        symmetric_bernoulli_kl([[0.5]], [[0.5]], epsilon=0.5)
