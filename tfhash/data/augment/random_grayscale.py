"""RandomGrayscale: replaces RGB images by their luma, kept on three equal channels, with probability p."""

import keras
import tensorflow as tf

from tfhash.data.augment.augmentation import Augmentation, check_probability

# ITU-R 601-2 luma, the weights of PIL's convert("L") and of torchvision's rgb_to_grayscale.
LUMA = (0.299, 0.587, 0.114)


def grayscale(images):
    """Luma (B, H, W, 1) of float RGB images (B, H, W, 3)."""
    return tf.reduce_sum(images * tf.constant(LUMA, images.dtype), axis=-1, keepdims=True)


@keras.saving.register_keras_serializable(package="tfhash")
class RandomGrayscale(Augmentation):
    """With probability ``p``, replaces an RGB image by its luma repeated on the three channels.

    Single-channel images are already gray and pass through unchanged.

    Args:
        p: probability that an image is converted.
        seed: int or None, seed of the layer's generator (see `Augmentation`).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> gray = RandomGrayscale(p=1.0)
    >>> gray(np.array([[[[255, 0, 0]]]], np.uint8), training=True).numpy().ravel()
    array([76.245, 76.245, 76.245], dtype=float32)

    Reference:
        torchvision ``transforms.RandomGrayscale`` (p = 0.2 in the CIBHash and CIMON strong views).
    """

    def __init__(self, p=0.1, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.p = check_probability(p)

    def augment(self, images, seed):
        channels = images.shape[-1]
        if channels == 1:
            return images
        if channels != 3:
            raise ValueError(
                f"RandomGrayscale needs RGB images (3 channels) or gray ones, got {channels} channels."
            )
        return self.apply_with_probability(
            lambda x: tf.repeat(grayscale(x), 3, axis=-1), images, self.p, seed
        )

    def get_config(self):
        return {**super().get_config(), "p": self.p}
