"""NT-Xent (normalised temperature-scaled cross-entropy): the contrastive loss of SimCLR, CIBHash, CIMON."""

import math
import numbers

import keras
import tensorflow as tf


def _check_temperature(temperature):
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, numbers.Real)
        or not (0 < temperature < math.inf)
    ):
        raise ValueError(f"`temperature` must be a finite number > 0, got {temperature!r}.")
    return float(temperature)


def _per_pair(z_a, z_b, temperature):
    """``(ℓ_i + ℓ_{N+i}) / 2`` for each of the N pairs: the two anchors' losses of pair i, shape (N,)."""
    temperature = _check_temperature(temperature)
    z_a, z_b = tf.convert_to_tensor(z_a), tf.convert_to_tensor(z_b)
    # float64 stays float64 (gradient checks); anything else, float16 included, is computed in float32.
    dtype = tf.float64 if z_a.dtype == tf.float64 and z_b.dtype == tf.float64 else tf.float32
    z_a, z_b = tf.cast(z_a, dtype), tf.cast(z_b, dtype)
    if z_a.shape.rank != 2 or z_b.shape.rank != 2:
        raise ValueError(
            f"`z_a` and `z_b` must be (batch, dim) matrices, got shapes {z_a.shape} and {z_b.shape}."
        )
    if not z_a.shape.is_compatible_with(z_b.shape):
        raise ValueError(f"`z_a` and `z_b` must have the same shape, got {z_a.shape} and {z_b.shape}.")
    n = tf.shape(z_a)[0]
    z = tf.math.l2_normalize(tf.concat([z_a, z_b], axis=0), axis=1)  # a zero row has cosine 0 to all
    logits = tf.matmul(z, z, transpose_b=True) / temperature
    # An anchor is no negative of itself: its logit is pushed far below every other (cosines are in
    # [-1/τ, 1/τ]); a finite offset rather than -inf keeps XLA and the gradient free of inf - inf.
    logits -= tf.eye(2 * n, dtype=dtype) * (4.0 / temperature + 1e4)
    positives = tf.concat([tf.range(n, 2 * n), tf.range(n)], axis=0)  # row i's other view
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positives, logits=logits)
    return (losses[:n] + losses[n:]) / 2


def nt_xent_loss(z_a, z_b, temperature):
    """NT-Xent over the 2N views of a batch of N pairs: each view's positive is its pair, the 2N − 2 others
    are its negatives; the mean over the 2N anchors.

    ``ℓ_i = −log( exp(cos(z_i, z_p(i)) / τ) / Σ_{k ≠ i} exp(cos(z_i, z_k) / τ) )`` over the rows ``z`` of
    ``[z_a; z_b]``, where ``p(i)`` is the other view of sample i; ``L = (1/2N) Σ_i ℓ_i``. The denominator
    runs over the positive and the 2N − 2 negatives. A zero row has cosine 0 to everything. Computed in
    float32 (float64 inputs in float64).

    Args:
        z_a: float tensor (N, D), the first view's representations (codes, for CIBHash).
        z_b: float tensor (N, D), the second view's, row i the same sample as ``z_a``'s row i.
        temperature: float > 0, τ (0.3 in CIBHash, 0.5 in CIMON).

    Returns:
        The scalar loss.

    Example:

    >>> z = tf.constant([[1.0, 1.0], [1.0, -1.0]])
    >>> float(nt_xent_loss(z, z, temperature=1.0))  # log(1 + 2/e): positives cos 1, negatives cos 0
    0.5514...

    Reference:
        Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020,
        Eq. 1 and Algorithm 1 (the mean over the 2N anchors); Qiu et al., CIBHash, IJCAI 2021, apply it to the
        two views' binary codes (released code ``NtXentLoss`` in model/CIBHash.py of zexuanqiu/CIBHash:
        cosine similarity, cross-entropy summed and divided by 2N).
    """
    return tf.reduce_mean(_per_pair(z_a, z_b, temperature))


@keras.saving.register_keras_serializable(package="tfhash")
class NTXentLoss(keras.losses.Loss):
    """`nt_xent_loss` as a Keras loss: ``y_true`` the first view's representations, ``y_pred`` the second's.

    Per sample it returns ``(ℓ_i + ℓ_{N+i}) / 2``, the mean of the losses of the pair's two anchors, so the
    default ``"sum_over_batch_size"`` reduction gives the mean over the 2N anchors, `nt_xent_loss`; a
    ``sample_weight`` weights pairs. The negatives are the other rows of the batch, so the value depends on
    the whole batch, not on each sample alone.

    Args:
        temperature: float > 0, τ.
        name, reduction, dtype: standard `keras.losses.Loss` arguments.

    Example:

    >>> loss = NTXentLoss(temperature=0.5)
    >>> value = loss(z_a, z_b)  # == nt_xent_loss(z_a, z_b, 0.5)

    Reference:
        Chen et al., SimCLR, ICML 2020, Eq. 1.
    """

    def __init__(self, temperature=0.5, name="nt_xent", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = _check_temperature(temperature)

    def call(self, y_true, y_pred):
        return _per_pair(y_true, y_pred, self.temperature)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
