"""ColorJitter: random brightness, contrast, saturation and hue, in a random order, with probability p."""

import numbers

import keras
import tensorflow as tf

from tfhash.data.augment.augmentation import Augmentation, check_probability, check_range, fold_seed, select
from tfhash.data.augment.random_grayscale import grayscale


def _factor_range(value, name):
    """torchvision's convention: a number v gives [max(0, 1 - v), 1 + v]; a (min, max) pair is taken as is."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"`{name}` must be >= 0 or a (min, max) pair of factors >= 0, got {value!r}.")
        return max(0.0, 1.0 - value), 1.0 + value
    return check_range(value, name, 0.0)


def _hue_range(value):
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if not 0 <= value <= 0.5:
            raise ValueError(
                f"`hue` must be in [0, 0.5] or a (min, max) pair within [-0.5, 0.5], got {value!r}."
            )
        return -float(value), float(value)
    return check_range(value, "hue", -0.5, 0.5)


def _blend(x, other, factor):
    """factor * x + (1 - factor) * other, clipped to [0, 255] as torchvision's _blend."""
    return tf.clip_by_value(factor * x + (1.0 - factor) * other, 0.0, 255.0)


def _gray(x):
    return x if x.shape[-1] == 1 else grayscale(x)


def _adjust_brightness(x, factor):
    return _blend(x, 0.0, factor)


def _adjust_contrast(x, factor):
    return _blend(x, tf.reduce_mean(_gray(x), axis=[1, 2, 3], keepdims=True), factor)


def _adjust_saturation(x, factor):
    return _blend(x, _gray(x), factor)


def _adjust_hue(x, shift):
    hsv = tf.image.rgb_to_hsv(x / 255.0)
    hue = tf.math.floormod(hsv[..., :1] + shift, 1.0)  # shift is a fraction of the hue circle
    return tf.image.hsv_to_rgb(tf.concat([hue, hsv[..., 1:]], axis=-1)) * 255.0


@keras.saving.register_keras_serializable(package="tfhash")
class ColorJitter(Augmentation):
    """Random brightness, contrast, saturation and hue changes of each image (torchvision's ``ColorJitter``).

    Per image, factors are drawn uniformly: brightness ``b`` (pixels times ``b``), contrast ``c`` (blend with
    the mean luma), saturation ``s`` (blend with the luma image), and a hue shift ``h`` (fraction of the hue
    circle). Each adjustment clips to [0, 255]. With ``random_order=True`` (the default, as torchvision, which
    the CIBHash and CIMON code use) the four adjustments are applied in a random order drawn per image;
    otherwise always brightness, contrast, saturation, hue. The whole jitter is applied to an image with
    probability ``p``: ``ColorJitter(..., p=0.7)`` is torchvision's ``RandomApply([ColorJitter(...)], 0.7)``.

    Args:
        brightness: v >= 0 for factors in [max(0, 1 - v), 1 + v], or a (min, max) pair of factors >= 0.
            0 disables it.
        contrast: same convention as ``brightness``.
        saturation: same convention as ``brightness`` (needs RGB images unless 0).
        hue: h in [0, 0.5] for shifts in [-h, h], or a (min, max) pair within [-0.5, 0.5] (needs RGB images
            unless 0).
        p: probability that an image is jittered.
        random_order: apply the adjustments in a random order per image (True) or in the fixed order above.
        seed: int or None, seed of the layer's generator (see `Augmentation`).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> jitter = ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.7, seed=0)
    >>> jitter(np.full((2, 8, 8, 3), 100, np.uint8), training=True).dtype
    tf.float32

    Reference:
        torchvision ``transforms.ColorJitter``; Qiu et al., "Unsupervised Hashing with Contrastive Information
        Bottleneck", IJCAI 2021 (ColorJitter(0.4, 0.4, 0.4, 0.1), p = 0.7).
    """

    def __init__(
        self,
        brightness=0.0,
        contrast=0.0,
        saturation=0.0,
        hue=0.0,
        p=1.0,
        random_order=True,
        seed=None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        self.brightness = _factor_range(brightness, "brightness")
        self.contrast = _factor_range(contrast, "contrast")
        self.saturation = _factor_range(saturation, "saturation")
        self.hue = _hue_range(hue)
        self.p = check_probability(p)
        if not isinstance(random_order, bool):
            raise ValueError(f"`random_order` must be a bool, got {random_order!r}.")
        self.random_order = random_order

    def augment(self, images, seed):
        if images.shape[-1] != 3 and (self.saturation != (1.0, 1.0) or self.hue != (0.0, 0.0)):
            raise ValueError(
                f"ColorJitter with `saturation` or `hue` needs RGB images (3 channels), got "
                f"{images.shape[-1]}."
            )
        batch = tf.shape(images)[:1]
        # The adjustments whose range is not the identity, each with its per-image parameter; the seed stream
        # of a parameter is fixed by its kind, so disabling one adjustment does not change the others' draws.
        steps = [
            (
                adjust,
                tf.random.stateless_uniform(batch, fold_seed(seed, k), *value_range)[:, None, None, None],
            )
            for k, (adjust, value_range, identity) in enumerate(
                (
                    (_adjust_brightness, self.brightness, (1.0, 1.0)),
                    (_adjust_contrast, self.contrast, (1.0, 1.0)),
                    (_adjust_saturation, self.saturation, (1.0, 1.0)),
                    (_adjust_hue, self.hue, (0.0, 0.0)),
                )
            )
            if value_range != identity
        ]

        def jitter(x):
            if not self.random_order or len(steps) < 2:
                for adjust, factor in steps:
                    x = adjust(x, factor)
                return x
            # order[i, t] = which adjustment image i gets at step t (a uniform random permutation per image).
            # At each step, the images that chose adjustment j take adjust_j(x); an adjustment no image chose
            # at this step is not computed (one image at a time, in the pipelines: 4 adjustments, not 16).
            order = tf.argsort(
                tf.random.stateless_uniform([batch[0], len(steps)], fold_seed(seed, 4)), axis=1
            )
            for t in range(len(steps)):
                adjusted = x
                for j, (adjust, factor) in enumerate(steps):
                    adjusted = select(order[:, t] == j, lambda _, a=adjust, f=factor, x=x: a(x, f), adjusted)
                x = adjusted
            return x

        return self.apply_with_probability(jitter, images, self.p, fold_seed(seed, 5))

    def get_config(self):
        return {
            **super().get_config(),
            "brightness": self.brightness,
            "contrast": self.contrast,
            "saturation": self.saturation,
            "hue": self.hue,
            "p": self.p,
            "random_order": self.random_order,
        }
