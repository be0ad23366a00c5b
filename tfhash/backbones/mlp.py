"""Fully connected encoder trained from scratch, for MNIST-size images."""

import keras

from tfhash.backbones._base import _Backbone
from tfhash.backbones.image_preprocessing import ImagePreprocessing


@keras.saving.register_keras_serializable(package="tfhash")
class MLP(_Backbone):
    """Multilayer perceptron on flattened pixels: images -> ``hidden_units[-1]`` ReLU features.

    Pixels are scaled from [0, 255] to [0, 1] inside the model. There are no pretrained weights.

    Args:
        image_size: int, height and width of the (square) images, e.g. 28 (MNIST) or 32 (CIFAR-10).
        channels: int, 1 (grayscale) or 3 (RGB).
        hidden_units: sequence of ints, widths of the ReLU layers; the last is the feature size.
        trainable: bool. True (the default) trains the encoder; False freezes it.
        **kwargs: standard `keras.Model` arguments (``name``, ``dtype``).

    Call arguments:
        images: uint8 or float tensor ``(batch, image_size, image_size, channels)`` in [0, 255].
        training: bool, unused by these layers.

    Returns:
        ``(batch, hidden_units[-1])`` features.

    Example:

    >>> encoder = MLP(image_size=28, channels=1, hidden_units=(512, 256))
    >>> encoder(np.zeros((4, 28, 28, 1), "uint8")).shape
    TensorShape([4, 256])

    Reference:
        The fully connected encoders of the unsupervised hashing baselines on MNIST (e.g. Ghasedi Dizaji et
        al., "Unsupervised Deep Generative Adversarial Hashing Network", CVPR 2018, compare against them).
    """

    def __init__(
        self, image_size=28, channels=1, hidden_units=(1024, 512), trainable=True, name="mlp", **kwargs
    ):
        hidden_units = [int(u) for u in hidden_units]
        if not hidden_units:
            raise ValueError("`hidden_units` needs at least one layer width.")
        super().__init__(
            image_size=image_size,
            channels=channels,
            feature_size=hidden_units[-1],
            preprocessing="[0, 255] -> [0, 1] (x / 255)",
            name=name,
            **kwargs,
        )
        self.hidden_units = hidden_units
        images = keras.Input(self.image_shape, name="images")
        x = ImagePreprocessing(std=255.0, name="preprocessing")(images)
        x = keras.layers.Flatten(name="flatten")(x)
        for i, units in enumerate(hidden_units):
            x = keras.layers.Dense(units, activation="relu", name=f"dense{i}")(x)
        self._set_network(keras.Model(images, x, name=f"{name}_network"), trainable)

    def get_config(self):
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "channels": self.channels,
            "hidden_units": self.hidden_units,
        }
