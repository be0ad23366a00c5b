"""Symmetric KL divergence between the per-bit Bernoulli distributions of two views' codes (CIBHash)."""

import numbers

import tensorflow as tf


def _bernoulli_kl(p, q, epsilon):
    """Per-bit KL(Bernoulli(p) ‖ Bernoulli(q)) of probabilities clipped to [ε, 1 − ε]."""
    p = tf.clip_by_value(p, epsilon, 1.0 - epsilon)
    q = tf.clip_by_value(q, epsilon, 1.0 - epsilon)
    return p * (tf.math.log(p) - tf.math.log(q)) + (1.0 - p) * (tf.math.log1p(-p) - tf.math.log1p(-q))


def symmetric_bernoulli_kl(p_a, p_b, stop_gradient=False, epsilon=1e-7):
    """``(KL(p_a ‖ p_b) + KL(p_b ‖ p_a)) / 2`` of per-bit Bernoulli probabilities, summed over the bits and
    averaged over the batch.

    Each row of ``p_a`` / ``p_b`` holds the probabilities that the K bits of one sample's code are 1 under
    the first / second view; a code's distribution factorises over its bits, so its KL is the sum of the
    per-bit ones, ``KL(p ‖ q) = Σ_k p_k log(p_k / q_k) + (1 − p_k) log((1 − p_k) / (1 − q_k))``. The result
    is the mean of that sum over the batch, as in the released code (``compute_kl``:
    ``torch.mean(torch.sum(kl, axis=1))``). Probabilities are clipped to ``[ε, 1 − ε]`` so that a saturated
    sigmoid gives a finite value (the released code adds 1e-8 inside the logs instead; the two agree to
    ~1e-7 away from 0 and 1). Computed in float32 (float64 inputs in float64).

    Gradient: with ``stop_gradient=False`` (the paper's objective) it is the true gradient of the symmetric
    KL. The released code detaches the second argument of each KL, ``KL(p_a ‖ sg(p_b))`` and
    ``KL(p_b ‖ sg(p_a))``: the value is the same, but each view is only pulled towards the other, and the
    gradient with respect to ``p_a`` becomes ``(logit p_a − logit p_b) / 2`` per bit (divided by N);
    ``stop_gradient=True`` reproduces it.

    Args:
        p_a: float tensor (N, K), Bernoulli probabilities in [0, 1] (a sigmoid's output) of the first view.
        p_b: float tensor (N, K), those of the second view.
        stop_gradient: bool, detach the second argument of each KL as the released code does (see above).
        epsilon: float in (0, 0.5), the clipping margin.

    Returns:
        The scalar ``(1/N) Σ_i Σ_k (KL_ik(p_a ‖ p_b) + KL_ik(p_b ‖ p_a)) / 2``.

    Example:

    >>> float(symmetric_bernoulli_kl([[0.5]], [[0.25]]))  # ½ (p − q)(logit p − logit q) = log(3) / 8
    0.1373...

    Reference:
        Qiu et al., "Unsupervised Hashing with Contrastive Information Bottleneck", IJCAI 2021: the β-weighted
        term ``(β/2)·(KL(P(b|x⁽¹⁾) ‖ P(b|x⁽²⁾)) + KL(P(b|x⁽²⁾) ‖ P(b|x⁽¹⁾)))`` of the final CIB objective;
        released code zexuanqiu/CIBHash (the paper's qiuzx2/CIBHash), model/CIBHash.py, ``compute_kl``.
    """
    if not isinstance(stop_gradient, bool):
        raise ValueError(f"`stop_gradient` must be a bool, got {stop_gradient!r}.")
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not 0 < epsilon < 0.5:
        raise ValueError(f"`epsilon` must be a number in (0, 0.5), got {epsilon!r}.")
    p_a, p_b = tf.convert_to_tensor(p_a), tf.convert_to_tensor(p_b)
    dtype = tf.float64 if p_a.dtype == tf.float64 and p_b.dtype == tf.float64 else tf.float32
    p_a, p_b = tf.cast(p_a, dtype), tf.cast(p_b, dtype)
    if p_a.shape.rank != 2 or not p_a.shape.is_compatible_with(p_b.shape):
        raise ValueError(
            "`p_a` and `p_b` must be (batch, bits) matrices of the same shape, "
            f"got {p_a.shape} and {p_b.shape}."
        )
    target_a, target_b = (tf.stop_gradient(p_a), tf.stop_gradient(p_b)) if stop_gradient else (p_a, p_b)
    kl = (_bernoulli_kl(p_a, target_b, epsilon) + _bernoulli_kl(p_b, target_a, epsilon)) / 2
    return tf.reduce_mean(tf.reduce_sum(kl, axis=1))
