"""Backbones by name, for recipes and configuration files."""

from tfhash.backbones.efficientnet_lite0 import EfficientNetLite0
from tfhash.backbones.mlp import MLP
from tfhash.backbones.small_cnn import SmallCNN
from tfhash.backbones.vgg import VGG

_PRETRAINED = {
    "vgg16": lambda **kw: VGG(depth=16, **kw),
    "vgg19": lambda **kw: VGG(depth=19, **kw),
    "efficientnet_lite0": EfficientNetLite0,
}
_FROM_SCRATCH = {"mlp": MLP, "small_cnn": SmallCNN}
NAMES = (*_PRETRAINED, *_FROM_SCRATCH)


_DEFAULT = "default"


def get(name, weights=_DEFAULT, trainable=False, **kwargs):
    """Builds a backbone by name.

    Args:
        name: one of ``"vgg16"``, ``"vgg19"``, ``"efficientnet_lite0"`` (ImageNet-pretrained) or ``"mlp"``,
            ``"small_cnn"`` (trained from scratch).
        weights: for the pretrained backbones ``"imagenet"`` (the default), ``None`` (random initialisation) or
            a weight file path. The from-scratch encoders have no pretrained weights: their default is ``None``.
        trainable: bool. False freezes the backbone (features computed once, batch norm in inference mode);
            True fine-tunes or, for the from-scratch encoders, trains it.
        **kwargs: further constructor arguments of the backbone's class (e.g. ``include_top`` for
            ``efficientnet_lite0``, ``image_size`` / ``channels`` for ``mlp`` and ``small_cnn``).

    Returns:
        The backbone: a `keras.Model` with attributes ``feature_size``, ``image_size``, ``image_shape`` and
        ``preprocessing``.

    Raises:
        ValueError: unknown name (the message lists the valid ones), or pretrained weights asked of a
            from-scratch encoder.

    Example:

    >>> backbone = get("efficientnet_lite0")  # frozen, ImageNet weights
    >>> encoder = get("small_cnn", trainable=True, image_size=28, channels=1)
    """
    if name in _PRETRAINED:
        weights = "imagenet" if weights == _DEFAULT else weights
        return _PRETRAINED[name](weights=weights, trainable=trainable, **kwargs)
    if name in _FROM_SCRATCH:
        if weights not in (None, _DEFAULT):
            raise ValueError(
                f"{name!r} is trained from scratch and has no pretrained weights: pass weights=None "
                "(and trainable=True to train it)."
            )
        return _FROM_SCRATCH[name](trainable=trainable, **kwargs)
    raise ValueError(f"Unknown backbone {name!r}; valid names: {', '.join(NAMES)}.")
