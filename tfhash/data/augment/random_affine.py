"""RandomAffine: a small random rotation and translation about the image centre."""

import math

import keras
import tensorflow as tf

from tfhash.data.augment.augmentation import Augmentation, check_number, check_probability, fold_seed

_FILL_MODES = ("constant", "nearest", "reflect", "wrap")


@keras.saving.register_keras_serializable(package="tfhash")
class RandomAffine(Augmentation):
    """Rotates each image by a random angle about its centre and shifts it by a random whole number of pixels.

    Per image: angle ~ U(-degrees, degrees); horizontal shift ~ U(-tx W, tx W) and vertical shift
    ~ U(-ty H, ty H), rounded to whole pixels (as torchvision's ``RandomAffine(degrees, translate)``). Pixels
    that come from outside the image are filled per ``fill_mode``; interpolation is bilinear (or nearest).
    Implemented with `keras.ops.image.affine_transform`.

    Args:
        degrees: float >= 0, the largest rotation in degrees.
        translate: (tx, ty), the largest shifts as fractions of the width and height, each in [0, 1].
        fill_mode: "constant" (``fill_value``, torchvision's behaviour), "nearest", "reflect" or "wrap".
        fill_value: pixel value for ``fill_mode="constant"``, in [0, 255].
        interpolation: "bilinear" or "nearest".
        p: probability that an image is transformed.
        seed: int or None, seed of the layer's generator (see `Augmentation`).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> affine = RandomAffine(degrees=10, translate=(0.1, 0.1), seed=0)
    >>> affine(np.zeros((2, 32, 32, 3), np.uint8), training=True).shape
    TensorShape([2, 32, 32, 3])

    Reference:
        torchvision ``transforms.RandomAffine`` (rotation and translation parameters).
    """

    def __init__(
        self,
        degrees=0.0,
        translate=(0.0, 0.0),
        fill_mode="constant",
        fill_value=0.0,
        interpolation="bilinear",
        p=1.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        self.degrees = check_number(degrees, "degrees", 0.0, 180.0)
        if isinstance(translate, (str, bytes)) or not hasattr(translate, "__len__") or len(translate) != 2:
            raise ValueError(
                f"`translate` must be a (tx, ty) pair of fractions in [0, 1], got {translate!r}."
            )
        self.translate = tuple(check_number(v, "translate", 0.0, 1.0) for v in translate)
        if fill_mode not in _FILL_MODES:
            raise ValueError(f"`fill_mode` must be one of {_FILL_MODES}, got {fill_mode!r}.")
        self.fill_mode = fill_mode
        self.fill_value = check_number(fill_value, "fill_value", 0.0, 255.0)
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"`interpolation` must be 'bilinear' or 'nearest', got {interpolation!r}.")
        self.interpolation = interpolation
        self.p = check_probability(p)

    def augment(self, images, seed):
        def transform(x):
            shape = tf.shape(x)
            batch = shape[:1]
            height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
            angle = tf.random.stateless_uniform(batch, fold_seed(seed, 0), -self.degrees, self.degrees)
            angle *= math.pi / 180.0
            max_x, max_y = self.translate[0] * width, self.translate[1] * height
            tx = tf.round(tf.random.stateless_uniform(batch, fold_seed(seed, 1)) * 2 * max_x - max_x)
            ty = tf.round(tf.random.stateless_uniform(batch, fold_seed(seed, 2)) * 2 * max_y - max_y)
            # The transform maps each output pixel to the input pixel it reads: rotate about the centre
            # (cx, cy) the point moved back by the shift. Row (a0, a1, a2, b0, b1, b2, c0, c1) of
            # ImageProjectiveTransform: x_in = a0 x + a1 y + a2, y_in = b0 x + b1 y + b2.
            cx, cy = (width - 1) / 2, (height - 1) / 2
            cos, sin = tf.cos(angle), tf.sin(angle)
            zeros = tf.zeros_like(angle)
            matrix = tf.stack(
                [
                    cos,
                    -sin,
                    cx - cos * (cx + tx) + sin * (cy + ty),
                    sin,
                    cos,
                    cy - sin * (cx + tx) - cos * (cy + ty),
                    zeros,
                    zeros,
                ],
                axis=1,
            )
            return keras.ops.image.affine_transform(
                x,
                matrix,
                interpolation=self.interpolation,
                fill_mode=self.fill_mode,
                fill_value=self.fill_value,
                data_format="channels_last",
            )

        return self.apply_with_probability(transform, images, self.p, fold_seed(seed, 3))

    def get_config(self):
        return {
            **super().get_config(),
            "degrees": self.degrees,
            "translate": self.translate,
            "fill_mode": self.fill_mode,
            "fill_value": self.fill_value,
            "interpolation": self.interpolation,
            "p": self.p,
        }
