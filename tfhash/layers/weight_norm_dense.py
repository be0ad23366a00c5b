"""Weight-normalised fully connected layer (Salimans & Kingma 2016), used by HashGAN's Improved-GAN nets."""

import keras
import tensorflow as tf

from tfhash._validation import check_int

# Added to ||v||^2 so that an all-zero column gives w = 0 instead of NaN; far below any trained ||v||^2.
_NORM_EPSILON = 1e-12
# Added to the batch variance in `initialize_from_batch`, as in the paper's code (1e-10).
_VARIANCE_EPSILON = 1e-10


def _check_bool(value, name):
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be a bool, got {value!r}.")
    return value


def _activation(identifier):
    """A Keras activation from a name or callable; a ValueError naming `activation` otherwise."""
    try:
        return keras.activations.get(identifier)
    except (ValueError, TypeError) as error:
        raise ValueError(f"`activation` is not a Keras activation: {identifier!r} ({error}).") from None


def _kernel_initializer(identifier, seed):
    """`keras.initializers.get(identifier)`, re-seeded with `seed` when one is given."""
    seed = check_int(seed, "seed", minimum=0, allow_none=True)
    try:
        initializer = keras.initializers.get(identifier)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"`kernel_initializer` is not a Keras initializer: {identifier!r} ({error})."
        ) from None
    if seed is None:
        return initializer, None
    config = initializer.get_config()
    if "seed" not in config:
        raise ValueError(f"`seed` was given but `kernel_initializer` {identifier!r} takes no seed.")
    return type(initializer).from_config({**config, "seed": seed}), seed


def _weight_norm(v, g, axes):
    """``w = g * v / ||v||``, the norm taken over `axes` (every axis but the output unit's)."""
    squared_norm = tf.reduce_sum(tf.square(v), axis=axes, keepdims=True)
    # g lies along the one axis left out of the norm, which is not always the last (transposed convolution).
    g = tf.reshape(g, [1 if i in axes else -1 for i in range(len(v.shape))])
    return v * (g * tf.math.rsqrt(squared_norm + tf.cast(_NORM_EPSILON, v.dtype)))


def _initialize_from_batch(layer, x):
    """Shared data-dependent initialisation (Salimans & Kingma 2016, §2.2) for the weight-norm layers.

    `layer._preactivation(x, g)` must give the layer's output before bias and activation for scale `g`.
    """
    x = tf.convert_to_tensor(x, dtype=layer.compute_dtype)
    if not layer.built:
        layer.build(x.shape)
    t = layer._preactivation(x, tf.ones_like(layer.g))
    mean, variance = tf.nn.moments(t, axes=list(range(t.shape.rank - 1)))
    scale = tf.math.rsqrt(variance + _VARIANCE_EPSILON)
    layer.g.assign(tf.cast(scale, layer.g.dtype))
    if layer.use_bias:
        layer.bias.assign(tf.cast(-mean * scale, layer.bias.dtype))
    return layer(x)


@keras.saving.register_keras_serializable(package="tfhash")
class WeightNormDense(keras.layers.Layer):
    """Fully connected layer with weight normalisation: ``y = activation(x · w + b)``, ``w = g · v / ‖v‖``.

    The trainable parameters are the direction ``kernel`` (``v``, shape ``(in, units)``), the per-unit scale
    ``g`` (shape ``(units,)``) and ``bias``; ``‖v‖`` is the Euclidean norm of each column of ``v`` (over the
    input axis, one per output unit), with a tiny epsilon inside the square root so that a zero column gives
    zero weights rather than NaN. The output does not change when ``v`` is multiplied by a constant.

    ``g`` starts at 1 and ``bias`` at 0. The paper's data-dependent initialisation is not done automatically:
    call `initialize_from_batch` once on a batch before training to get it.

    Args:
        units: int >= 1, the output dimension.
        activation: a Keras activation (name or callable) applied to the output, or None for linear.
        use_bias: bool, whether to add ``bias``.
        kernel_initializer: Keras initializer for ``v``. The default, ``"random_normal"`` (std 0.05), is the
            initialiser of the Improved-GAN code. Only the direction of ``v`` matters for the output; its
            scale sets the effective learning rate of ``v``.
        seed: int >= 0 or None, re-seeds ``kernel_initializer`` for reproducible weights.
        **kwargs: standard `keras.layers.Layer` arguments (``name``, ``dtype``, ...).

    Call arguments:
        inputs: float tensor of shape ``(..., in)``.

    Returns:
        A tensor of shape ``(..., units)``.

    Example:

    >>> layer = WeightNormDense(4, activation="relu", seed=0)
    >>> layer(tf.ones((2, 3))).shape
    TensorShape([2, 4])

    Reference:
        Salimans & Kingma, "Weight Normalization: A Simple Reparameterization to Accelerate Training of Deep
        Neural Networks", NeurIPS 2016 (eq. 2, ``w = g v / ‖v‖``; §2.2, data-dependent init). Salimans et al.,
        "Improved Techniques for Training GANs", NeurIPS 2016, use it in the discriminator and generator.
    """

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        kernel_initializer="random_normal",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_int(units, "units", minimum=1)
        self.activation = _activation(activation)
        self.use_bias = _check_bool(use_bias, "use_bias")
        self.kernel_initializer, self.seed = _kernel_initializer(kernel_initializer, seed)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(f"The last axis of the input of {self.name} must be known, got {input_shape}.")
        self.kernel = self.add_weight(
            name="kernel", shape=(input_dim, self.units), initializer=self.kernel_initializer
        )
        self.g = self.add_weight(name="g", shape=(self.units,), initializer="ones")
        self.bias = (
            self.add_weight(name="bias", shape=(self.units,), initializer="zeros") if self.use_bias else None
        )
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: input_dim})

    def normalized_kernel(self):
        """The effective weight ``w = g · v / ‖v‖``, shape ``(in, units)``."""
        return _weight_norm(self.kernel, self.g, axes=[0])

    def _preactivation(self, inputs, g):
        # tf.tensordot accepts any leading shape, as keras.layers.Dense does.
        return tf.tensordot(inputs, _weight_norm(self.kernel, g, axes=[0]), axes=[[-1], [0]])

    def call(self, inputs):
        outputs = self._preactivation(inputs, self.g)
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs)

    def initialize_from_batch(self, x):
        """Data-dependent initialisation (paper §2.2): sets ``g`` and ``bias`` from one batch.

        After it, the pre-activations ``x · w + b`` have zero mean and unit variance per unit over the batch
        (``g = 1 / σ``, ``b = −μ / σ``, with ``μ, σ`` those of ``x · v / ‖v‖``). Without a bias only the
        variance is set. Builds the layer if needed.

        Args:
            x: a batch of inputs, shape ``(batch, ..., in)``.

        Returns:
            The layer's output on ``x`` after initialisation, to initialise the next layer of a stack.
        """
        return _initialize_from_batch(self, x)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "seed": self.seed,
        }
