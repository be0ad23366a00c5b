"""Small convolutional encoder trained from scratch, for 28x28 / 32x32 images."""

import keras

from tfhash.backbones._base import _Backbone
from tfhash.backbones.image_preprocessing import ImagePreprocessing


@keras.saving.register_keras_serializable(package="tfhash")
class SmallCNN(_Backbone):
    """Conv-BN-ReLU-maxpool stages and a dense layer: images -> ``feature_size`` ReLU features.

    Each entry of ``filters`` is one stage (3x3 convolution, batch norm, ReLU, 2x2 max pooling), halving the
    resolution; the flattened maps then go through ``Dense(feature_size, relu)``. Pixels are scaled from
    [0, 255] to [0, 1] inside the model. There are no pretrained weights.

    Args:
        image_size: int, height and width of the (square) images, e.g. 28 (MNIST) or 32 (CIFAR-10).
        channels: int, 1 (grayscale) or 3 (RGB).
        filters: sequence of ints, channels of the convolution stages.
        feature_size: int, width of the final dense layer.
        trainable: bool. True (the default) trains the encoder; False freezes it (batch norm then keeps its
            moving statistics).
        **kwargs: standard `keras.Model` arguments (``name``, ``dtype``).

    Call arguments:
        images: uint8 or float tensor ``(batch, image_size, image_size, channels)`` in [0, 255].
        training: bool, batch-norm mode while trainable.

    Returns:
        ``(batch, feature_size)`` features.

    Example:

    >>> encoder = SmallCNN(image_size=32, channels=3)
    >>> encoder.feature_size
    256

    Reference:
        The small convolutional trunks of the unsupervised hashing literature on MNIST / CIFAR-10 (e.g. the
        discriminator-shared encoder of HashGAN, Ghasedi Dizaji et al., CVPR 2018).
    """

    def __init__(
        self,
        image_size=32,
        channels=3,
        filters=(32, 64, 128),
        feature_size=256,
        trainable=True,
        name="small_cnn",
        **kwargs,
    ):
        filters = [int(f) for f in filters]
        if image_size < 2 ** len(filters):
            raise ValueError(f"{len(filters)} pooling stages do not fit {image_size}x{image_size} images.")
        super().__init__(
            image_size=image_size,
            channels=channels,
            feature_size=int(feature_size),
            preprocessing="[0, 255] -> [0, 1] (x / 255)",
            name=name,
            **kwargs,
        )
        self.filters = filters
        images = keras.Input(self.image_shape, name="images")
        x = ImagePreprocessing(std=255.0, name="preprocessing")(images)
        for i, f in enumerate(filters):
            x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
            x = keras.layers.ReLU(name=f"relu{i}")(keras.layers.BatchNormalization(name=f"bn{i}")(x))
            x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(self.feature_size, activation="relu", name="features")(x)
        self._set_network(keras.Model(images, x, name=f"{name}_network"), trainable)

    def get_config(self):
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "channels": self.channels,
            "filters": self.filters,
            "feature_size": self.feature_size,
        }
