"""Augmentation: the base of tfhash's seeded, batch-wise image augmentation layers."""

import abc
import numbers

import keras
import tensorflow as tf

from tfhash._validation import check_int


def fold_seed(seed, data):
    """A new stateless seed (2,) int64 from ``seed`` and the integer ``data``: an independent stream."""
    return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), tf.cast(data, tf.int64))


def check_number(value, name, low=-float("inf"), high=float("inf")):
    """``value`` as a float, after checking that it is a real number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high:
        raise ValueError(f"`{name}` must be a number in [{low}, {high}], got {value!r}.")
    return float(value)


def check_probability(p, name="p"):
    """``p`` as a float, after checking that it is a probability."""
    return check_number(p, name, 0.0, 1.0)


def check_range(value, name, low=-float("inf"), high=float("inf")):
    """A (min, max) pair of floats within [low, high] with min <= max."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"`{name}` must be a (min, max) pair, got {value!r}.")
    lo, hi = value
    if (
        any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in (lo, hi))
        or not low <= lo <= hi <= high
    ):
        raise ValueError(
            f"`{name}` must be a (min, max) pair with {low} <= min <= max <= {high}, got {value!r}."
        )
    return float(lo), float(hi)


def check_size(size, name="size"):
    """(height, width) from an int or a pair of positive ints."""
    pair = (size, size) if isinstance(size, numbers.Integral) else size
    if (
        isinstance(pair, (str, bytes))
        or not hasattr(pair, "__len__")
        or len(pair) != 2
        or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in pair)
    ):
        raise ValueError(f"`{name}` must be a positive int or a (height, width) pair of them, got {size!r}.")
    return int(pair[0]), int(pair[1])


def select(chosen, transform, images):
    """``transform(images)`` where ``chosen`` (B,) is True, else ``images``; not computed if none is."""
    return tf.cond(
        tf.reduce_any(chosen),
        lambda: tf.where(chosen[:, None, None, None], transform(images), images),
        lambda: images,
    )


@keras.saving.register_keras_serializable(package="tfhash")
class Augmentation(keras.layers.Layer, metaclass=abc.ABCMeta):
    """Base class of the seeded image augmentations in `tfhash.data.augment`.

    Every augmentation is a preprocessing-style Keras layer: it takes a batch ``(B, H, W, C)`` of uint8 or
    float pixels in [0, 255] and returns float32 pixels in [0, 255], drawing independent random parameters for
    each image. It is active only when called with ``training=True`` (the tf.data pipelines do so); otherwise
    it returns its input cast to float32, so it can sit at the front of a model and be a no-op at inference.

    Randomness is stateless: every draw comes from a ``(2,)`` integer seed. Called without ``seed``, the layer
    takes the next seed from its own `keras.random.SeedGenerator` (seeded by the ``seed`` argument), as Keras'
    preprocessing layers do. The tf.data pipelines instead pass a per-sample ``seed`` derived from the
    pipeline seed, the epoch and the sample, which keeps augmentations reproducible under parallel,
    out-of-order execution, where a shared stateful generator would not be.

    The layers are not compiled with XLA (``supports_jit = False``: Keras then trains a model that holds one
    with ``jit_compile=False``), so a seed gives the same augmentation in a model as in the pipelines.

    Subclasses implement ``augment(images, seed)`` on float32 images and, when they change the image size,
    ``compute_output_shape``.

    Args:
        seed: int or None, seed of the layer's own generator (used when ``call`` gets no ``seed``).
        **kwargs: standard `keras.layers.Layer` arguments (``name``, ...).

    Call arguments:
        images: ``(B, H, W, C)`` uint8 or float tensor, pixels in [0, 255].
        training: bool; only True augments.
        seed: optional ``(2,)`` int32/int64 stateless seed; overrides the layer's generator for this call.

    Example:

    >>> class Invert(Augmentation):
    ...     def augment(self, images, seed):
    ...         return 255.0 - images
    >>> Invert()(np.zeros((1, 2, 2, 3), np.uint8), training=True).numpy().max()
    255.0
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = check_int(seed, "seed", allow_none=True)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.built = True  # no weights to create
        # XLA compiles neither crop_and_resize nor ImageProjectiveTransform, and draws other random numbers
        # for the same stateless seed: a model holding an augmentation runs without XLA (as with RandomCrop).
        self.supports_jit = False

    def call(self, images, training=None, seed=None):
        images = tf.convert_to_tensor(images)
        if images.shape.rank != 4:
            raise ValueError(
                f"{type(self).__name__} expects a batch of images (B, H, W, C), got shape {images.shape}."
            )
        images = tf.cast(images, tf.float32)
        if not training:
            return images
        seed = self.seed_generator.next() if seed is None else seed
        return self.augment(images, tf.cast(seed, tf.int64))

    @abc.abstractmethod
    def augment(self, images, seed):
        """The augmented float32 ``images`` (B, H, W, C) for the stateless ``seed`` (2,) int64."""

    @staticmethod
    def apply_with_probability(transform, images, p, seed):
        """``transform(images)`` for a random fraction ``p`` of the images (chosen per image), the rest as is.

        ``transform`` must keep the shape. ``p = 0`` returns ``images`` without computing the transform, and
        so does a batch in which no image is chosen (the pipelines augment one image at a time: this skips the
        work for the images that keep their pixels).
        """
        if p == 0:
            return images
        if p == 1:
            return transform(images)
        chosen = tf.random.stateless_uniform(tf.shape(images)[:1], seed) < p
        return select(chosen, transform, images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}
