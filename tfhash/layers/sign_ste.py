"""Sign binarizer with a straight-through gradient (GreedyHash)."""

import keras
import tensorflow as tf


def _sign(x):
    # sign(0) = +1 so that every code is exactly +-1 (tf.sign would give 0).
    return tf.where(x >= 0, tf.ones_like(x), -tf.ones_like(x))


@keras.saving.register_keras_serializable(package="tfhash")
class SignSTE(keras.layers.Layer):
    """Binarizes to +-1 with the sign function and passes gradients straight through.

    Forward: ``b = sign(h)`` with ``sign(0) = +1``. Backward: ``dL/dh = dL/db`` (identity straight-through
    estimator), or with ``clip_gradient=True`` ``dL/dh = dL/db * 1[|h| <= 1]`` (the hardtanh estimator).
    The layer behaves identically in training and inference.

    Args:
        clip_gradient: bool. If True, the gradient is zeroed where ``|h| > 1``.
        **kwargs: standard `keras.layers.Layer` arguments (``name``, ``dtype``, ...).

    Call arguments:
        inputs: float tensor of shape ``(batch, bits)``; or bool bits (True gives +1, False −1), which have no
            gradient.

    Returns:
        A tensor of the same shape and dtype as ``inputs`` (the layer's compute dtype for bool inputs) with
        values in ``{-1, +1}``.

    Example:

    >>> layer = SignSTE()
    >>> layer(tf.constant([[-0.5, 0.0, 2.0]])).numpy()
    array([[-1.,  1.,  1.]], dtype=float32)

    Reference:
        Su et al., "Greedy Hash: Towards Fast Optimization for Accurate Hash Coding in CNN", NeurIPS 2018:
        the greedy principle's forward ``b = sgn(h)`` and backward ``dL/dh = dL/db``.
    """

    def __init__(self, clip_gradient=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(clip_gradient, bool):
            raise ValueError(f"`clip_gradient` must be a bool, got {clip_gradient!r}.")
        self.clip_gradient = clip_gradient

    def call(self, inputs):
        if inputs.dtype == tf.bool:  # bits, True is +1 (as in tfhash.codes.pack_codes): no gradient
            return tf.where(inputs, tf.constant(1, self.compute_dtype), tf.constant(-1, self.compute_dtype))
        clip = self.clip_gradient

        @tf.custom_gradient
        def sign_ste(x):
            def grad(upstream):
                if clip:
                    return upstream * tf.cast(tf.abs(x) <= 1, upstream.dtype)
                return upstream

            return _sign(x), grad

        return sign_ste(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "clip_gradient": self.clip_gradient}
