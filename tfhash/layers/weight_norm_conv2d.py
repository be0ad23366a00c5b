"""Weight-normalised 2-D convolution (Salimans & Kingma 2016), used by HashGAN's Improved-GAN nets."""

import keras
import tensorflow as tf

from tfhash._validation import check_int
from tfhash.layers.weight_norm_dense import (
    _activation,
    _check_bool,
    _initialize_from_batch,
    _kernel_initializer,
    _weight_norm,
)


def _check_pair(value, name):
    """An int or a pair of ints >= 1 as a tuple of two ints; a ValueError naming `name` otherwise."""
    values = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(values) != 2:
        raise ValueError(f"`{name}` must be an integer >= 1 or a pair of them, got {value!r}.")
    try:
        return tuple(check_int(v, name, minimum=1) for v in values)
    except ValueError:
        raise ValueError(f"`{name}` must be an integer >= 1 or a pair of them, got {value!r}.") from None


class _WeightNormConvBase(keras.layers.Layer):
    """Arguments, weights and config shared by `WeightNormConv2D` and `WeightNormConv2DTranspose`.

    Subclasses set `_norm_axes` (every kernel axis but the output channel's), `_kernel_shape(in_channels)`
    and `_convolve(inputs, kernel)`. Inputs are channels-last ``(batch, height, width, channels)``.
    """

    _norm_axes = None

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="same",
        activation=None,
        use_bias=True,
        kernel_initializer="random_normal",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = check_int(filters, "filters", minimum=1)
        self.kernel_size = _check_pair(kernel_size, "kernel_size")
        self.strides = _check_pair(strides, "strides")
        if not isinstance(padding, str) or padding.lower() not in ("same", "valid"):
            raise ValueError(f"`padding` must be 'same' or 'valid', got {padding!r}.")
        self.padding = padding.lower()
        self.activation = _activation(activation)
        self.use_bias = _check_bool(use_bias, "use_bias")
        self.kernel_initializer, self.seed = _kernel_initializer(kernel_initializer, seed)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                f"The channel axis of the input of {self.name} must be known, got {input_shape}."
            )
        self.kernel = self.add_weight(
            name="kernel", shape=self._kernel_shape(channels), initializer=self.kernel_initializer
        )
        self.g = self.add_weight(name="g", shape=(self.filters,), initializer="ones")
        self.bias = (
            self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
            if self.use_bias
            else None
        )
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})

    def normalized_kernel(self):
        """The effective kernel ``w = g · v / ‖v‖``, the norm taken per output channel."""
        return _weight_norm(self.kernel, self.g, axes=self._norm_axes)

    def _preactivation(self, inputs, g):
        return self._convolve(inputs, _weight_norm(self.kernel, g, axes=self._norm_axes))

    def call(self, inputs):
        outputs = self._preactivation(inputs, self.g)
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs)

    def initialize_from_batch(self, x):
        """Data-dependent initialisation (paper §2.2): sets ``g`` and ``bias`` from one batch.

        After it, the pre-activations have zero mean and unit variance per output channel over the batch
        and spatial positions (``g = 1 / σ``, ``b = −μ / σ``, with ``μ, σ`` those of the convolution with
        ``v / ‖v‖``). Without a bias only the variance is set. Builds the layer if needed.

        Args:
            x: a batch of inputs, shape ``(batch, height, width, channels)``.

        Returns:
            The layer's output on ``x`` after initialisation, to initialise the next layer of a stack.
        """
        return _initialize_from_batch(self, x)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="tfhash")
class WeightNormConv2D(_WeightNormConvBase):
    """2-D convolution with weight normalisation: ``y = activation(conv(x, w) + b)``, ``w = g · v / ‖v‖``.

    The trainable parameters are the direction ``kernel`` (``v``, shape ``(kh, kw, in, filters)``), the
    per-filter scale ``g`` (shape ``(filters,)``) and ``bias``; ``‖v‖`` is the Euclidean norm of each filter
    (over ``kh, kw, in``), with a tiny epsilon inside the square root. The output does not change when ``v``
    is multiplied by a constant. ``g`` starts at 1 and ``bias`` at 0; the paper's data-dependent
    initialisation is available as `initialize_from_batch`. Channels-last only.

    Args:
        filters: int >= 1, the number of output channels.
        kernel_size: int or pair of ints >= 1, ``(kh, kw)``.
        strides: int or pair of ints >= 1.
        padding: ``"same"`` (the default, as in the Improved-GAN code) or ``"valid"``, as in
            `keras.layers.Conv2D`.
        activation: a Keras activation (name or callable), or None for linear.
        use_bias: bool, whether to add ``bias``.
        kernel_initializer: Keras initializer for ``v``; the default ``"random_normal"`` (std 0.05) is the
            Improved-GAN code's. Only the direction of ``v`` matters for the output.
        seed: int >= 0 or None, re-seeds ``kernel_initializer`` for reproducible weights.
        **kwargs: standard `keras.layers.Layer` arguments (``name``, ``dtype``, ...).

    Call arguments:
        inputs: float tensor of shape ``(batch, height, width, in)``.

    Returns:
        A tensor of shape ``(batch, out_height, out_width, filters)``, the spatial sizes as for
        `keras.layers.Conv2D` (``ceil(size / stride)`` with ``"same"``).

    Example:

    >>> layer = WeightNormConv2D(8, 3, strides=2, activation="relu", seed=0)
    >>> layer(tf.ones((2, 32, 32, 3))).shape
    TensorShape([2, 16, 16, 8])

    Reference:
        Salimans & Kingma, "Weight Normalization: A Simple Reparameterization to Accelerate Training of Deep
        Neural Networks", NeurIPS 2016. Salimans et al., "Improved Techniques for Training GANs", NeurIPS
        2016 (weight-normalised convolutional discriminator for CIFAR-10).
    """

    _norm_axes = [0, 1, 2]

    def _kernel_shape(self, in_channels):
        return (*self.kernel_size, in_channels, self.filters)

    def _convolve(self, inputs, kernel):
        return tf.nn.conv2d(inputs, kernel, strides=self.strides, padding=self.padding.upper())

    def compute_output_shape(self, input_shape):
        spatial = []
        for size, k, s in zip(input_shape[1:3], self.kernel_size, self.strides):
            if size is None:
                spatial.append(None)
            elif self.padding == "same":
                spatial.append(-(-size // s))
            else:
                spatial.append((size - k) // s + 1)
        return (input_shape[0], *spatial, self.filters)
