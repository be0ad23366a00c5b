"""GaussianBlur: blurs images with a Gaussian kernel of random width, with probability p."""

import numbers

import keras
import tensorflow as tf

from tfhash.data.augment.augmentation import Augmentation, check_probability, check_range, fold_seed


@keras.saving.register_keras_serializable(package="tfhash")
class GaussianBlur(Augmentation):
    """Convolves each image with a ``kernel_size x kernel_size`` Gaussian whose sigma is drawn per image.

    The kernel is separable, ``g(t) ~ exp(-t^2 / (2 sigma^2))`` for integer offsets ``t``, normalised to sum
    1, with ``sigma ~ U(sigma)``; borders are mirrored without repeating the edge pixel (OpenCV's default
    BORDER_REFLECT_101, used by the CIBHash code, and torchvision's "reflect"), so the image keeps its size.
    Each image's kernel is applied as a weighted sum of shifted copies, so sigma can vary within the batch.

    Args:
        kernel_size: odd int >= 1 (3 in CIBHash and CIMON); images must be larger than ``kernel_size // 2``.
        sigma: (min, max) range of the standard deviation in pixels, positive.
        p: probability that an image is blurred.
        seed: int or None, seed of the layer's generator (see `Augmentation`).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> blur = GaussianBlur(kernel_size=3, sigma=(0.1, 2.0), p=0.5, seed=0)
    >>> blur(np.zeros((4, 8, 8, 3), np.uint8), training=True).shape
    TensorShape([4, 8, 8, 3])

    Reference:
        Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020 (blur
        with sigma in [0.1, 2.0]); the ``GaussianBlur(3)`` of the CIBHash code (cv2.GaussianBlur, p = 0.5).
    """

    def __init__(self, kernel_size=3, sigma=(0.1, 2.0), p=1.0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if (
            isinstance(kernel_size, bool)
            or not isinstance(kernel_size, numbers.Integral)
            or kernel_size < 1
            or kernel_size % 2 == 0
        ):
            raise ValueError(f"`kernel_size` must be an odd int >= 1, got {kernel_size!r}.")
        self.kernel_size = int(kernel_size)
        self.sigma = check_range(sigma, "sigma", 0.0)
        if self.sigma[0] <= 0:
            raise ValueError(f"`sigma` must be a (min, max) pair of positive numbers, got {sigma!r}.")
        self.p = check_probability(p)

    def augment(self, images, seed):
        radius = self.kernel_size // 2
        if radius == 0:
            return images

        def blur(x):
            sigma = tf.random.stateless_uniform(tf.shape(x)[:1], fold_seed(seed, 0), *self.sigma)
            offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
            weights = tf.exp(-0.5 * tf.square(offsets / sigma[:, None]))
            weights /= tf.reduce_sum(weights, axis=1, keepdims=True)  # (B, kernel_size)
            height, width = tf.shape(x)[1], tf.shape(x)[2]
            x = tf.pad(x, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
            x = tf.add_n(
                [weights[:, t, None, None, None] * x[:, t : t + height] for t in range(self.kernel_size)]
            )
            return tf.add_n(
                [weights[:, t, None, None, None] * x[:, :, t : t + width] for t in range(self.kernel_size)]
            )

        return self.apply_with_probability(blur, images, self.p, fold_seed(seed, 1))

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "sigma": self.sigma, "p": self.p}
