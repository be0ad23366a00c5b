"""Stochastic binary layer with a straight-through gradient (CIBHash)."""

import keras
import tensorflow as tf

from tfhash._validation import check_int


@keras.saving.register_keras_serializable(package="tfhash")
class StochasticBinary(keras.layers.Layer):
    """Samples bits from Bernoulli probabilities; the gradient passes straight through.

    The input holds probabilities ``p`` in ``[0, 1]`` (the output of a sigmoid). In training with
    ``stochastic=True`` each bit is ``1[u < p]`` with ``u ~ U[0, 1)``, so it is 1 with probability ``p``
    (the paper). In training with ``stochastic=False`` and in inference it is ``1[p >= 0.5]`` (the authors'
    released code thresholds deterministically in training too). Backward: ``db/dp = 1``, so with
    ``signed=True`` the output ``2b - 1`` has gradient 2 with respect to ``p``.

    The noise comes from a `keras.random.SeedGenerator` created with the layer: sampling is reproducible for a
    given ``seed``, and the generator's state is a non-trainable variable of the layer, so it advances inside
    `tf.function` too. A ``.keras`` file stores the seed, not that state (as for Keras' own ``Dropout``): a
    reloaded layer restarts its random stream from the seed.

    Args:
        stochastic: bool. If True, sample in training; if False, threshold at 0.5 in training too.
        signed: bool. If True, the output is ``2b - 1`` in ``{-1, +1}``; if False, ``b`` in ``{0, 1}``.
        seed: int or None, seed of the layer's `keras.random.SeedGenerator`.
        **kwargs: standard `keras.layers.Layer` arguments (``name``, ``dtype``, ...).

    Call arguments:
        inputs: float tensor of probabilities, shape ``(batch, bits)``.
        training: bool. True samples (if ``stochastic``); False or None thresholds at 0.5.

    Returns:
        A tensor of the same shape and dtype as ``inputs``, values in ``{-1, +1}`` (or ``{0, 1}``).

    Example:

    >>> layer = StochasticBinary(seed=0)
    >>> p = tf.constant([[0.9, 0.2, 0.5]])
    >>> layer(p).numpy()
    array([[ 1., -1.,  1.]], dtype=float32)
    >>> codes = layer(p, training=True)  # each bit is +1 with probability p

    Reference:
        Qiu et al., "Unsupervised Hashing with Contrastive Information Bottleneck", IJCAI 2021, the stochastic
        binary layer ``b = (sign(sigma(f(x)) - u) + 1) / 2``, ``u ~ U(0, 1)``, trained with the
        straight-through estimator ``db/d sigma(f(x)) = 1``.
    """

    def __init__(self, stochastic=True, signed=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("stochastic", stochastic), ("signed", signed)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be a bool, got {value!r}.")
        self.stochastic = stochastic
        self.signed = signed
        self.seed = check_int(seed, "seed", allow_none=True)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def call(self, inputs, training=None):
        if training and self.stochastic:
            noise = keras.random.uniform(tf.shape(inputs), dtype=inputs.dtype, seed=self.seed_generator)
            bits = noise < inputs
        else:
            bits = inputs >= 0.5
        signed = self.signed

        # A custom gradient rather than p + stop_gradient(b - p): the forward value is then exactly b.
        @tf.custom_gradient
        def straight_through(p):
            b = tf.cast(bits, p.dtype)
            if signed:
                return 2 * b - 1, lambda upstream: 2 * upstream
            return b, lambda upstream: upstream

        return straight_through(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = {"stochastic": self.stochastic, "signed": self.signed, "seed": self.seed}
        return {**super().get_config(), **config}
