"""Datasets through the loaders of Keras and TensorFlow Datasets (their caches, or a download if allowed)."""

import numpy as np

from tfhash.data.image_set import ImageSet
from tfhash.data.sources._search import DATA_DIR_ENV, DatasetNotFoundError, keras_datasets_dir


def _pixel_image_set(name, train, test, class_names):
    """An ImageSet of uint8 pixels from ((x_train, y_train), (x_test, y_test)), partition train then test."""
    (x_train, y_train), (x_test, y_test) = train, test
    images = np.concatenate([x_train, x_test]).astype(np.uint8, copy=False)
    if images.ndim == 3:  # grayscale (N, H, W): ImageSet pixels always carry a channel axis
        images = images[..., None]
    labels = np.concatenate([np.reshape(y_train, -1), np.reshape(y_test, -1)]).astype(np.int64)
    partition = np.array(["train"] * len(x_train) + ["test"] * len(x_test))
    return ImageSet(name, images, labels, partition, class_names)


def load_keras_dataset(name, class_names=(), image_set_name=None):
    """Load ``keras.datasets.<name>`` (e.g. "mnist", "fashion_mnist", "cifar10") as an ImageSet of pixels.

    Keras reads its cache (``$KERAS_HOME/datasets``, default ``~/.keras/datasets``) and otherwise downloads,
    which needs network access.

    Args:
        name: module name under ``keras.datasets``.
        class_names: names of the classes, in label order.
        image_set_name: the returned ImageSet's name (default ``name``).

    Returns:
        ImageSet with uint8 pixels (N, H, W, C), int64 labels and partition "train"/"test".

    Raises:
        DatasetNotFoundError: Keras could neither read its cache nor download the files.

    Example:
        >>> pool = load_keras_dataset("mnist")  # doctest: +SKIP
    """
    import keras

    loader = getattr(keras.datasets, name).load_data  # looked up at call time, so tests can substitute it
    try:
        train, test = loader()
    except Exception as error:  # Keras raises a bare Exception for a failed download: no narrower type exists
        raise DatasetNotFoundError(
            f"keras.datasets.{name}.load_data() could not provide {name!r}: {error}\n"
            f"It reads the Keras cache {keras_datasets_dir()} and otherwise downloads, which needs network "
            f"access. Place the files in that cache, or point tfhash at a local copy (data_dir=... or "
            f"{DATA_DIR_ENV})."
        ) from error
    return _pixel_image_set(image_set_name or name, train, test, class_names)


def load_tfds_dataset(name, data_dir=None, class_names=(), image_set_name=None):
    """Load a prepared TensorFlow Datasets image classification set (train + test splits) as pixels.

    Nothing is downloaded (``download=False``): the set must have been prepared beforehand, e.g. with
    ``tfds.builder(name, data_dir=...).download_and_prepare()`` where the network allows.

    Args:
        name: the TFDS name, e.g. "cifar10", "mnist", "fashion_mnist".
        data_dir: TFDS data directory; None uses TFDS' default ($TFDS_DATA_DIR or ~/tensorflow_datasets).
        class_names: names of the classes, in label order.
        image_set_name: the returned ImageSet's name (default ``name``).

    Raises:
        ImportError: tensorflow-datasets is not installed.
        DatasetNotFoundError: the set is not prepared in ``data_dir``.

    Example:
        >>> pool = load_tfds_dataset("cifar10")  # doctest: +SKIP
    """
    try:
        import tensorflow_datasets as tfds  # optional dependency, imported only when asked for
    except ImportError as error:
        raise ImportError(
            "source='tfds' needs the tensorflow-datasets package: pip install 'tfhash[tfds]' "
            "(or use another source, e.g. source='folder' or source='keras')."
        ) from error
    try:
        train, test = tfds.load(
            name, split=["train", "test"], data_dir=data_dir, download=False, batch_size=-1,
            as_supervised=True,
        )
    except Exception as error:  # AssertionError or tfds' own not-found error, depending on the tfds version
        raise DatasetNotFoundError(
            f"TensorFlow Datasets has no prepared {name!r} in {data_dir or 'its default data directory'}: "
            f"{error}\nPrepare it where the network allows: "
            f"tfds.builder({name!r}, data_dir=...).download_and_prepare(), then pass that data_dir."
        ) from error
    return _pixel_image_set(image_set_name or name, tfds.as_numpy(train), tfds.as_numpy(test), class_names)
