"""Bi-half layer: per-bit half/half binarization over the batch (Li & van Gemert, AAAI 2021)."""

import math
import numbers

import keras
import tensorflow as tf

from tfhash.layers.sign_ste import _sign

_BATCH_OF_ONE = (
    "BiHalf ranks each bit over the batch in training and needs at least 2 rows; got a batch of 1. "
    "Call it with training=False to encode a single example."
)


@keras.saving.register_keras_serializable(package="tfhash")
class BiHalf(keras.layers.Layer):
    """Parameter-free binarizer that makes every bit exactly half +1 / half -1 over the batch.

    Training: per bit (column), the ``floor(N/2)`` largest of the ``N`` values in the batch become +1 and the
    rest -1; this is the optimal transport of the batch's values onto the half-half distribution. Ties are
    broken by batch position (an earlier row ranks higher), so the output is deterministic. Backward:
    ``dL/dU = dL/dB + gamma * (U - B) / (N * K)``, the straight-through gradient plus a term that pulls the
    continuous features towards their codes (``K`` = number of bits, ``N`` = batch size, read at run time).

    Inference (``training`` False or None): ``sign(U)`` with ``sign(0) = +1``, which encodes any number of
    rows, a single query included.

    Notes:
        - Distribution: under `tf.distribute` the ranking is per replica (each replica balances its own
          share of the batch). The pull term is further divided by ``num_replicas_in_sync``: Keras 3 scales
          each replica's loss by ``1 / replicas`` and sums the replicas' gradients, so the pull term then
          equals that of single-device training on the global batch. Use ``drop_remainder=True`` so that no
          replica receives a single row.
        - Mixed precision: under a ``mixed_float16`` policy the optimizer scales the loss, but not the pull
          term, which is added in the backward pass; after unscaling, the pull term is divided by the loss
          scale. Give this layer ``dtype="float32"`` if that matters. The pull term is computed in float32.
        - Batch of one in training: a ValueError at trace time when the batch size is static, otherwise a
          `tf.debugging` assertion (InvalidArgumentError) at run time. XLA (``jit_compile=True``) drops
          assertions: there a dynamic batch of one silently gives all -1.

    Args:
        gamma: float >= 0, weight of the pull term (6 in the authors' code for images, 1 for their MNIST
            autoencoder).
        **kwargs: standard `keras.layers.Layer` arguments (``name``, ``dtype``, ...).

    Call arguments:
        inputs: float tensor ``U`` of shape ``(batch, bits)``.
        training: bool. True ranks over the batch; False or None applies the sign.

    Returns:
        A tensor of the same shape and dtype as ``inputs`` with values in ``{-1, +1}``.

    Example:

    >>> layer = BiHalf()
    >>> u = tf.constant([[0.3, -2.0], [0.1, -1.0], [0.2, -3.0], [0.4, -4.0]])
    >>> layer(u, training=True).numpy()
    array([[ 1.,  1.],
           [-1.,  1.],
           [-1., -1.],
           [ 1., -1.]], dtype=float32)
    >>> layer(u).numpy()
    array([[ 1., -1.],
           [ 1., -1.],
           [ 1., -1.],
           [ 1., -1.]], dtype=float32)

    Reference:
        Li & van Gemert, "Deep Unsupervised Image Hashing by Maximizing Bit Entropy", AAAI 2021, section
        "Bi-half layer for quantization": forward ``B = pi_0`` applied to ``U`` (optimal transport to the
        half-half distribution), backward ``dL/dU = dL/dB + gamma * (U - B)``; the ``1 / (N * K)`` scaling is
        that of the authors' released code.
    """

    def __init__(self, gamma=6.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not (0 <= gamma < math.inf):
            raise ValueError(f"`gamma` must be a finite number >= 0, got {gamma!r}.")
        self.gamma = float(gamma)

    def call(self, inputs, training=None):
        if not training:
            return _sign(inputs)
        if inputs.shape[0] == 1:
            raise ValueError(_BATCH_OF_ONE)
        assert_batch = tf.debugging.assert_none_equal(tf.shape(inputs)[0], 1, message=_BATCH_OF_ONE)
        with tf.control_dependencies([assert_batch]):
            inputs = tf.identity(inputs)
        return self._bi_half(inputs)

    def _bi_half(self, u):
        gamma = self.gamma
        # Read here, in the replica's context, so that the scaling follows the strategy running the step.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        # N * K may exceed float16's range: widen half-precision inputs for the pull term.
        pull_dtype = tf.float32 if u.dtype.size < 4 else u.dtype

        @tf.custom_gradient
        def bi_half(u):
            # Stable descending argsort gives each row's position per column (ties: earlier row first); a
            # second argsort inverts that permutation into each element's rank. O(N log N) per bit.
            order = tf.argsort(u, axis=0, direction="DESCENDING", stable=True)
            rank = tf.argsort(order, axis=0, stable=True)
            b = tf.where(rank < tf.shape(u)[0] // 2, tf.ones_like(u), -tf.ones_like(u))

            def grad(upstream):
                scale = gamma / tf.cast(tf.size(u) * replicas, pull_dtype)
                return upstream + tf.cast(scale * tf.cast(u - b, pull_dtype), upstream.dtype)

            return b, grad

        return bi_half(u)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma}
