"""What every tfhash backbone shares: fixed-size [0, 255] images in, one feature vector per image out."""

import keras
from keras import ops


class _Backbone(keras.Model):
    """Base of the backbones: wraps a functional ``network`` (preprocessing included) built by the subclass.

    Subclasses call ``super().__init__(...)``, build the network and hand it to ``_set_network``; their
    ``get_config`` adds their own constructor arguments.

    Args:
        image_size: int, height and width the network takes (pipelines resize to it).
        channels: int, 1 (grayscale) or 3 (RGB).
        feature_size: int, length of the feature vector used for hashing.
        preprocessing: str, how the network maps [0, 255] pixels to its input range (done inside the model).
        **kwargs: standard `keras.Model` arguments (``name``, ``dtype``).
    """

    def __init__(self, image_size, channels, feature_size, preprocessing, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.channels = channels
        self.feature_size = feature_size
        self.preprocessing = preprocessing

    @property
    def image_shape(self):
        """``(height, width, channels)`` of the images the backbone takes."""
        return (self.image_size, self.image_size, self.channels)

    def _set_network(self, network, trainable):
        self.network = network
        # Set once the sublayers exist, so that the flag reaches each of them (BatchNormalization included).
        self.trainable = trainable
        self.build((None, *self.image_shape))

    def build(self, input_shape):
        # The network is complete from __init__; this only records the input shape for saving.
        self.built = True

    def call(self, images, training=None):
        shape = tuple(images.shape)
        if len(shape) != 4 or any(s is not None and s != e for s, e in zip(shape[1:], self.image_shape)):
            raise ValueError(
                f"{self.name} takes images of shape (batch, {self.image_size}, {self.image_size}, "
                f"{self.channels}) with values in [0, 255], got shape {shape}. Resize them to "
                f"`image_size`={self.image_size} first (e.g. keras.layers.Resizing)."
            )
        if not self.trainable:
            # A frozen backbone is a fixed feature extractor: BatchNormalization keeps its moving statistics
            # and dropout stays off even while the hashing layers on top train.
            training = False
        return self.network(ops.cast(images, "float32"), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.network.output_shape[-1])
