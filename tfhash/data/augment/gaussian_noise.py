"""GaussianNoise: adds i.i.d. Gaussian noise to every pixel, clipped to [0, 255]."""

import keras
import tensorflow as tf

from tfhash.data.augment.augmentation import Augmentation, check_number, check_probability, fold_seed


@keras.saving.register_keras_serializable(package="tfhash")
class GaussianNoise(Augmentation):
    """Adds zero-mean Gaussian noise of standard deviation ``stddev`` (0-255 pixel units) to each pixel.

    The result is clipped to [0, 255], so near-black and near-white pixels get a biased, truncated noise.
    Unlike `keras.layers.GaussianNoise`, it is seeded per sample and keeps the [0, 255] contract of the
    augmentations.

    Args:
        stddev: float >= 0, standard deviation in pixel units. HashGAN's sigma = 0.15 on inputs scaled to
            [-1, 1] is ``0.15 * 127.5 ~= 19`` here.
        p: probability that an image receives noise.
        seed: int or None, seed of the layer's generator (see `Augmentation`).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> noise = GaussianNoise(stddev=19.0, seed=0)
    >>> noise(np.full((2, 8, 8, 3), 128, np.uint8), training=True).shape
    TensorShape([2, 8, 8, 3])

    Reference:
        Ghasedi Dizaji et al., "Unsupervised Deep Generative Adversarial Hashing Network", CVPR 2018 (Gaussian
        noise on the discriminator / encoder input).
    """

    def __init__(self, stddev, p=1.0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.stddev = check_number(stddev, "stddev", 0.0)
        self.p = check_probability(p)

    def augment(self, images, seed):
        def add_noise(x):
            noise = tf.random.stateless_normal(tf.shape(x), fold_seed(seed, 1), stddev=self.stddev)
            return tf.clip_by_value(x + noise, 0.0, 255.0)

        return self.apply_with_probability(add_noise, images, self.p, fold_seed(seed, 0))

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "p": self.p}
