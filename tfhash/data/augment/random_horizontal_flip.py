"""RandomHorizontalFlip: mirrors images left-right with probability p."""

import keras
import tensorflow as tf

from tfhash.data.augment.augmentation import Augmentation, check_probability


@keras.saving.register_keras_serializable(package="tfhash")
class RandomHorizontalFlip(Augmentation):
    """Mirrors each image left-right with probability ``p`` (an exact permutation of its pixels).

    Args:
        p: probability that an image is flipped.
        seed: int or None, seed of the layer's generator (see `Augmentation`).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> flip = RandomHorizontalFlip(p=1.0)
    >>> flip(np.arange(3, dtype=np.uint8).reshape(1, 1, 3, 1), training=True).numpy().ravel()
    array([2., 1., 0.], dtype=float32)

    Reference:
        torchvision ``transforms.RandomHorizontalFlip``, the flip of the CIBHash and CIMON views.
    """

    def __init__(self, p=0.5, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.p = check_probability(p)

    def augment(self, images, seed):
        return self.apply_with_probability(lambda x: tf.reverse(x, axis=[2]), images, self.p, seed)

    def get_config(self):
        return {**super().get_config(), "p": self.p}
