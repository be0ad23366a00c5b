"""RandomResizedCrop: a crop of random area and aspect ratio, resized to a fixed size (torchvision's)."""

import math

import keras
import tensorflow as tf

from tfhash.data.augment.augmentation import Augmentation, check_range, check_size, fold_seed

_ATTEMPTS = 10  # as torchvision: the first of 10 draws that fits the image wins, else a central crop


@keras.saving.register_keras_serializable(package="tfhash")
class RandomResizedCrop(Augmentation):
    """Crops a random region of each image, with random area and aspect ratio, and resizes it to ``size``.

    The crop follows torchvision's ``RandomResizedCrop``: up to 10 draws of an area fraction ``s ~ U(scale)``
    and a log-uniform aspect ratio ``r`` (width / height) in ``ratio`` give a ``w x h`` box
    (``w = round(sqrt(s r HW))``, ``h = round(sqrt(s HW / r))``); the first that fits is placed uniformly at
    random; if none fits, the largest central crop whose aspect ratio is within ``ratio`` is used. The box is
    resampled bilinearly with half-pixel centres and edge clamping, which equals ``tf.image.resize`` of the
    cropped region (no antialiasing when shrinking, unlike torchvision's default on tensors).

    Args:
        size: int or (height, width), output size.
        scale: (min, max) fraction of the image area covered by the crop, within (0, 1].
        ratio: (min, max) aspect ratio (width / height) of the crop, positive.
        seed: int or None, seed of the layer's generator (see `Augmentation`).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> crop = RandomResizedCrop(224, scale=(0.5, 1.0), seed=0)
    >>> crop(np.zeros((2, 32, 32, 3), np.uint8), training=True).shape
    TensorShape([2, 224, 224, 3])

    Reference:
        Szegedy et al., "Going deeper with convolutions", CVPR 2015 (the crop); torchvision
        ``transforms.RandomResizedCrop`` (the algorithm and defaults followed here).
    """

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.size = check_size(size)
        self.scale = check_range(scale, "scale", 0.0, 1.0)
        if self.scale[0] <= 0:
            raise ValueError(f"`scale` must be within (0, 1], got {scale!r}.")
        self.ratio = check_range(ratio, "ratio", 0.0)
        if self.ratio[0] <= 0:
            raise ValueError(f"`ratio` must be a (min, max) pair of positive numbers, got {ratio!r}.")

    def augment(self, images, seed):
        shape = tf.shape(images)
        batch = shape[0]
        height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        area = (
            tf.random.stateless_uniform([batch, _ATTEMPTS], fold_seed(seed, 0), *self.scale) * height * width
        )
        log_ratio = tf.random.stateless_uniform(
            [batch, _ATTEMPTS], fold_seed(seed, 1), math.log(self.ratio[0]), math.log(self.ratio[1])
        )
        w = tf.round(tf.sqrt(area * tf.exp(log_ratio)))
        h = tf.round(tf.sqrt(area / tf.exp(log_ratio)))
        fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = tf.argmax(tf.cast(fits, tf.int32), axis=1)  # index of the first fitting draw (0 if none fits)
        w, h = tf.gather(w, first, batch_dims=1), tf.gather(h, first, batch_dims=1)

        # Fallback of torchvision: the whole image, narrowed to the nearest allowed aspect ratio.
        aspect = width / height
        fallback_w = tf.where(aspect > self.ratio[1], tf.round(height * self.ratio[1]), width)
        fallback_h = tf.where(aspect < self.ratio[0], tf.round(width / self.ratio[0]), height)
        any_fits = tf.reduce_any(fits, axis=1)
        w = tf.where(any_fits, w, fallback_w)
        h = tf.where(any_fits, h, fallback_h)
        top = tf.floor(tf.random.stateless_uniform([batch], fold_seed(seed, 2)) * (height - h + 1))
        left = tf.floor(tf.random.stateless_uniform([batch], fold_seed(seed, 3)) * (width - w + 1))
        left = tf.where(any_fits, left, tf.floor((width - w) / 2))
        top = tf.where(any_fits, top, tf.floor((height - h) / 2))

        # crop_and_resize samples box corners exactly (align-corners); the box below puts the samples at the
        # half-pixel centres of the crop instead. Those reach half a pixel outside the image, so the image is
        # padded by one replicated edge pixel: bilinear weights there then equal clamping to the edge.
        out_h, out_w = self.size
        padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
        y1 = (top + 0.5 * h / out_h + 0.5) / (height + 1)  # normalised by the padded size minus one
        y2 = (top + h - 0.5 * h / out_h + 0.5) / (height + 1)
        x1 = (left + 0.5 * w / out_w + 0.5) / (width + 1)
        x2 = (left + w - 0.5 * w / out_w + 0.5) / (width + 1)
        boxes = tf.stack([y1, x1, y2, x2], axis=1)
        return tf.image.crop_and_resize(padded, boxes, tf.range(batch), self.size, method="bilinear")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "size": self.size, "scale": self.scale, "ratio": self.ratio}
