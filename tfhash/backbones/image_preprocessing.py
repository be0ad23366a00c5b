"""Per-channel image normalisation as a serializable layer, so backbones take raw [0, 255] pixels."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfhash")
class ImagePreprocessing(keras.layers.Layer):
    """Maps [0, 255] pixels to a backbone's input range: ``(x[..., order] - mean) / std``.

    Keeping the normalisation inside the model means a saved or exported backbone takes raw images, and the
    statistics its weights were trained with cannot be forgotten or applied twice.

    Args:
        mean: float or per-channel list, subtracted after the optional channel reversal (so, in the output's
            channel order).
        std: float or per-channel list dividing the centred pixels.
        reverse_channels: bool. If True, RGB input becomes BGR (Caffe-trained weights such as VGG's).
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: uint8 or float tensor ``(batch, height, width, channels)`` with values in [0, 255].

    Returns:
        A float tensor of the same shape, in the layer's compute dtype.

    Example:

    >>> layer = ImagePreprocessing(mean=127.0, std=128.0)
    >>> layer(keras.ops.full((1, 2, 2, 3), 255.0)).numpy()[0, 0, 0]
    array([1., 1., 1.], dtype=float32)

    Reference:
        ``keras.applications.imagenet_utils.preprocess_input`` ('caffe' mode: RGB to BGR and minus the
        ImageNet BGR mean); the TF EfficientNet-Lite input pipeline ((x - 127) / 128).
    """

    def __init__(self, mean=0.0, std=1.0, reverse_channels=False, **kwargs):
        super().__init__(**kwargs)
        self.mean = list(mean) if isinstance(mean, (list, tuple)) else float(mean)
        self.std = list(std) if isinstance(std, (list, tuple)) else float(std)
        self.reverse_channels = bool(reverse_channels)

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.reverse_channels:
            x = ops.flip(x, axis=-1)
        mean = ops.convert_to_tensor(self.mean, self.compute_dtype)
        std = ops.convert_to_tensor(self.std, self.compute_dtype)
        return (x - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "mean": self.mean,
            "std": self.std,
            "reverse_channels": self.reverse_channels,
        }
