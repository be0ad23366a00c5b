"""ConsistencyTransform: the random image transformation of HashGAN's consistent-bits loss, in the model."""

import keras
import tensorflow as tf

from tfhash._validation import check_int, check_number


@keras.saving.register_keras_serializable(package="tfhash")
class ConsistencyTransform(keras.layers.Layer):
    """Random integer translation, horizontal flip and additive Gaussian noise, drawn per image.

    HashGAN's consistent-bits term compares the encoder's bits of a real image with those of a transformed
    version of it. This layer makes that version on the fly, inside the training step, and compiles with XLA
    (unlike the `tfhash.data.augment` layers, which rely on image-projective kernels): a translation by up to
    ``max_shift`` pixels in each direction (integers, reflect padding so no constant border appears), a flip
    with probability 1/2 when ``horizontal_flip``, then noise of standard deviation ``noise_stddev`` in the
    units of its input. It transforms only with ``training=True`` and is the identity otherwise.

    Args:
        max_shift: int >= 0, the largest translation in pixels (each axis, drawn uniformly in
            [−max_shift, max_shift]).
        horizontal_flip: bool, flip half of the images left-right.
        noise_stddev: float >= 0, standard deviation of the added Gaussian noise (input units: 0.15 on
            images in [0, 1] is 15 % of the range).
        seed: int or None, seed of the layer's `keras.random.SeedGenerator`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example (HashGAN's CIFAR-10 setting: translations and flips; MNIST: noise only):

    >>> transform = ConsistencyTransform(max_shift=2, horizontal_flip=True, seed=0)
    >>> transform(np.zeros((4, 32, 32, 3), np.float32), training=True).shape
    TensorShape([4, 32, 32, 3])

    Reference:
        Ghasedi Dizaji et al., "Unsupervised Deep Generative Adversarial Hashing Network", CVPR 2018, Eq. 3
        (consistent bits) and §4.2 ("we only use noise for image transformation on MNIST ... translations and
        horizontal flipping for CIFAR-10").
    """

    def __init__(self, max_shift=0, horizontal_flip=False, noise_stddev=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.max_shift = check_int(max_shift, "max_shift", minimum=0)
        if not isinstance(horizontal_flip, bool):
            raise ValueError(f"`horizontal_flip` must be a bool, got {horizontal_flip!r}.")
        self.horizontal_flip = horizontal_flip
        self.noise_stddev = check_number(noise_stddev, "noise_stddev", minimum=0.0)
        self.seed = check_int(seed, "seed", allow_none=True)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.built = True

    def call(self, images, training=False):
        images = tf.cast(images, self.compute_dtype)
        if images.shape.rank != 4:
            raise ValueError(f"ConsistencyTransform expects images (B, H, W, C), got shape {images.shape}.")
        if not training:
            return images
        batch = tf.shape(images)[0]
        if self.max_shift:
            images = self._translate(images, batch)
        if self.horizontal_flip:
            flip = keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator) < 0.5
            images = tf.where(flip, tf.reverse(images, axis=[2]), images)
        if self.noise_stddev:
            noise = keras.random.normal(tf.shape(images), stddev=self.noise_stddev, seed=self.seed_generator)
            images = images + tf.cast(noise, images.dtype)
        return images

    def _translate(self, images, batch):
        shift = self.max_shift
        height, width = images.shape[1], images.shape[2]
        if shift >= min(height, width):
            raise ValueError(
                f"`max_shift` ({shift}) must be smaller than the image size ({height} x {width})."
            )
        padded = tf.pad(images, [[0, 0], [shift, shift], [shift, shift], [0, 0]], mode="REFLECT")
        # Offsets in [0, 2·shift] per image: a gather with batch_dims is an XLA-friendly per-image crop.
        offsets = keras.random.randint((batch, 2), 0, 2 * shift + 1, seed=self.seed_generator, dtype="int32")
        rows = offsets[:, :1] + tf.range(height)[None, :]
        columns = offsets[:, 1:] + tf.range(width)[None, :]
        cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
        return tf.gather(cropped, columns, axis=2, batch_dims=1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "max_shift": self.max_shift,
            "horizontal_flip": self.horizontal_flip,
            "noise_stddev": self.noise_stddev,
            "seed": self.seed,
        }
