"""Weight-normalised transposed 2-D convolution (Salimans & Kingma 2016), for HashGAN's generator."""

import keras
import tensorflow as tf

from tfhash.layers.weight_norm_conv2d import _WeightNormConvBase


@keras.saving.register_keras_serializable(package="tfhash")
class WeightNormConv2DTranspose(_WeightNormConvBase):
    """Transposed 2-D convolution with weight normalisation, ``w = g · v / ‖v‖`` per output channel.

    The trainable parameters are the direction ``kernel`` (``v``, shape ``(kh, kw, filters, in)``, the
    layout of `tf.nn.conv2d_transpose` and `keras.layers.Conv2DTranspose`), the per-filter scale ``g`` (shape
    ``(filters,)``) and ``bias``; ``‖v‖`` is the Euclidean norm over ``kh, kw, in`` for each output channel,
    with a tiny epsilon inside the square root. The output does not change when ``v`` is multiplied by a
    constant. ``g`` starts at 1 and ``bias`` at 0; the paper's data-dependent initialisation is available as
    `initialize_from_batch`. Channels-last only.

    Args:
        filters: int >= 1, the number of output channels.
        kernel_size: int or pair of ints >= 1, ``(kh, kw)``.
        strides: int or pair of ints >= 1 (the upsampling factor).
        padding: ``"same"`` (the default) or ``"valid"``, as in `keras.layers.Conv2DTranspose`.
        activation: a Keras activation (name or callable), or None for linear.
        use_bias: bool, whether to add ``bias``.
        kernel_initializer: Keras initializer for ``v``; the default ``"random_normal"`` (std 0.05) is the
            Improved-GAN code's. Only the direction of ``v`` matters for the output.
        seed: int >= 0 or None, re-seeds ``kernel_initializer`` for reproducible weights.
        **kwargs: standard `keras.layers.Layer` arguments (``name``, ``dtype``, ...).

    Call arguments:
        inputs: float tensor of shape ``(batch, height, width, in)``.

    Returns:
        A tensor of shape ``(batch, out_height, out_width, filters)``: ``size · stride`` with ``"same"``,
        ``size · stride + max(k − stride, 0)`` with ``"valid"`` (as `keras.layers.Conv2DTranspose`).

    Example:

    >>> layer = WeightNormConv2DTranspose(3, 5, strides=2, activation="tanh", seed=0)
    >>> layer(tf.ones((2, 8, 8, 16))).shape
    TensorShape([2, 16, 16, 3])

    Reference:
        Salimans & Kingma, "Weight Normalization: A Simple Reparameterization to Accelerate Training of Deep
        Neural Networks", NeurIPS 2016. Salimans et al., "Improved Techniques for Training GANs", NeurIPS
        2016 (the CIFAR-10 generator's last layer is a weight-normalised transposed convolution).
    """

    _norm_axes = [0, 1, 3]

    def _kernel_shape(self, in_channels):
        return (*self.kernel_size, self.filters, in_channels)

    def _output_size(self, size, k, s):
        return size * s if self.padding == "same" else size * s + max(k - s, 0)

    def _convolve(self, inputs, kernel):
        # Static sizes where known, so that shapes stay static under tf.function / XLA.
        static, dynamic = inputs.shape, tf.shape(inputs)
        sizes = [static[i] if static[i] is not None else dynamic[i] for i in range(3)]
        output_shape = [
            sizes[0],
            *(self._output_size(sizes[i + 1], self.kernel_size[i], self.strides[i]) for i in range(2)),
            self.filters,
        ]
        return tf.nn.conv2d_transpose(
            inputs, kernel, tf.stack(output_shape), strides=self.strides, padding=self.padding.upper()
        )

    def compute_output_shape(self, input_shape):
        spatial = [
            None if size is None else self._output_size(size, k, s)
            for size, k, s in zip(input_shape[1:3], self.kernel_size, self.strides)
        ]
        return (input_shape[0], *spatial, self.filters)
