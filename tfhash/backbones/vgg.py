"""VGG16 / VGG19 fc7 features from keras.applications, the backbone of most unsupervised hashing papers."""

import os

import keras

from tfhash.backbones._base import _Backbone
from tfhash.backbones.image_preprocessing import ImagePreprocessing

_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg{depth}/{file}"
# ImageNet weights with the fully connected layers (fc7 needs them), named and hashed as keras.applications.
_WEIGHT_FILES = {
    16: ("vgg16_weights_tf_dim_ordering_tf_kernels.h5", "64373286793e3c8b2b4e3219cbf3544b"),
    19: ("vgg19_weights_tf_dim_ordering_tf_kernels.h5", "cbe5617147190e668d6c5d5026f83318"),
}
# keras.applications.vgg16.preprocess_input ('caffe' mode): RGB -> BGR, minus the ImageNet mean in BGR order.
_BGR_MEAN = [103.939, 116.779, 123.68]
_IMAGE_SIZE = 224


def _imagenet_weights(depth):
    """Path of the ImageNet weight file in the Keras cache, downloaded there if absent."""
    file_name, file_hash = _WEIGHT_FILES[depth]
    # Read KERAS_HOME now, not at import as keras.utils.get_file does, so that a changed value is honoured.
    cache_dir = os.path.expanduser(os.environ.get("KERAS_HOME", os.path.join("~", ".keras")))
    try:
        return keras.utils.get_file(
            file_name,
            _URL.format(depth=depth, file=file_name),
            cache_subdir="models",
            cache_dir=cache_dir,
            file_hash=file_hash,
        )
    except Exception as error:  # get_file wraps every network failure in a bare Exception
        raise FileNotFoundError(
            f"VGG{depth}'s ImageNet weights are neither in the Keras cache nor downloadable ({error}). "
            f"Place {file_name} (from {_URL.format(depth=depth, file=file_name)}) at "
            f"{os.path.join(cache_dir, 'models', file_name)} (the cache is $KERAS_HOME/models, by default "
            "~/.keras/models), pass its path as `weights=`, or pass weights=None for random initialisation."
        ) from error


def _network(depth, weights_path):
    application = {16: keras.applications.VGG16, 19: keras.applications.VGG19}[depth]
    classifier = application(include_top=True, weights=None, input_shape=(_IMAGE_SIZE, _IMAGE_SIZE, 3))
    if weights_path is not None:
        classifier.load_weights(weights_path)
    # fc7 is keras.applications' "fc2" layer (Dense 4096 with ReLU); the 1000-way classifier is dropped.
    trunk = keras.Model(classifier.input, classifier.get_layer("fc2").output, name=f"vgg{depth}_fc7")
    images = keras.Input((_IMAGE_SIZE, _IMAGE_SIZE, 3), name="images")
    x = ImagePreprocessing(mean=_BGR_MEAN, reverse_channels=True, name="preprocessing")(images)
    return keras.Model(images, trunk(x), name=f"vgg{depth}_network")


@keras.saving.register_keras_serializable(package="tfhash")
class VGG(_Backbone):
    """VGG16 or VGG19 fc7 feature extractor: 224x224 RGB images -> 4096-d features (after ReLU).

    The network is keras.applications' VGG with its fully connected layers, cut after ``fc2`` (the papers'
    fc7); keras.applications' preprocessing (RGB to BGR, minus the ImageNet BGR mean
    [103.939, 116.779, 123.68], no scaling) runs inside the model.

    ImageNet weights come from the Keras cache,
    ``$KERAS_HOME/models/vgg16_weights_tf_dim_ordering_tf_kernels.h5`` (``vgg19_...`` for VGG19;
    ``KERAS_HOME`` defaults to ``~/.keras``), and are downloaded there when missing and the network allows;
    otherwise a `FileNotFoundError` says where to put the file.

    Args:
        depth: 16 or 19.
        weights: ``"imagenet"``, ``None`` (random initialisation) or the path to a keras.applications VGG
            weight file *with* the top layers (``.h5``).
        trainable: bool. False freezes the backbone (no trainable weights); True fine-tunes it.
        **kwargs: standard `keras.Model` arguments (``name``, ``dtype``).

    Call arguments:
        images: uint8 or float tensor ``(batch, 224, 224, 3)``, RGB values in [0, 255]; other sizes raise.
        training: bool, ignored (inference) while the backbone is frozen.

    Returns:
        ``(batch, 4096)`` fc7 features.

    Example:

    >>> backbone = VGG(16, weights=None)
    >>> backbone.feature_size, backbone.image_size
    (4096, 224)

    Reference:
        Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR 2015;
        fc7 features as used by Bi-half (Li & van Gemert, AAAI 2021), GreedyHash, CIBHash and HQT.
    """

    def __init__(self, depth=16, weights="imagenet", trainable=False, name=None, **kwargs):
        if depth not in _WEIGHT_FILES:
            raise ValueError(f"`depth` must be 16 or 19, got {depth!r}.")
        if weights not in ("imagenet", None) and not os.path.isfile(str(weights)):
            raise ValueError(f"`weights` must be 'imagenet', None or a weight file path, got {weights!r}.")
        super().__init__(
            image_size=_IMAGE_SIZE,
            channels=3,
            feature_size=4096,
            preprocessing=f"RGB in [0, 255] -> BGR, minus the ImageNet BGR mean {_BGR_MEAN} (Caffe style)",
            name=name or f"vgg{depth}",
            **kwargs,
        )
        self.depth = depth
        # Find the weights before building the (large) network, so that a missing file fails fast.
        weights_path = _imagenet_weights(depth) if weights == "imagenet" else weights
        self._set_network(_network(depth, weights_path), trainable)

    def get_config(self):
        # The weights travel with a saved model, so rebuilding it from its config needs no weight file.
        return {**super().get_config(), "depth": self.depth, "weights": None}
