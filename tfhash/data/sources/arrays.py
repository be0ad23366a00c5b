"""In-memory arrays and .npz files: pixels, file paths or features a user brings."""

from pathlib import Path

import numpy as np

from tfhash.data.image_set import ImageSet
from tfhash.data.sources._search import DatasetNotFoundError

_SAMPLE_KEYS = ("samples", "images", "features", "x")
_LABEL_KEYS = ("labels", "y")
_KERAS_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_arrays(samples, labels, partition=None, name="arrays", class_names=()):
    """Wrap arrays in an ImageSet, accepting the usual variants of their shapes.

    Args:
        samples: uint8 pixels (N, H, W, C) or grayscale (N, H, W); file paths (N,); or float features (N, D).
        labels: class ids (N,) or (N, 1), or a multi-hot matrix (N, classes); bool, or floats holding whole
            numbers, are converted to integers.
        partition: (N,) "train" / "test" per sample; None means all "train".
        name: the ImageSet's name.
        class_names: names of the classes, in label order.

    Returns:
        ImageSet.

    Raises:
        ValueError: shapes or dtypes that fit none of the forms above (raised by ImageSet).

    Example:
        >>> pool = load_arrays(np.random.rand(100, 512).astype("float32"), np.arange(100) % 10)
        >>> pool.kind, len(pool)
        ('features', 100)
    """
    samples, labels = np.asarray(samples), np.asarray(labels)
    if samples.ndim == 3 and samples.dtype == np.uint8:
        samples = samples[..., None]
    if labels.ndim == 2 and labels.shape[1] == 1:  # Keras-style column of class ids, not a 1-class multi-hot
        labels = labels[:, 0]
    if labels.dtype == bool or (labels.dtype.kind == "f" and np.array_equal(labels, np.round(labels))):
        labels = labels.astype(np.int64)
    return ImageSet(name, samples, labels, partition, class_names)


def load_npz(path, name=None):
    """Load an .npz file of samples and labels (see load_arrays for the accepted forms).

    Keys: samples under "samples", "images", "features" or "x"; labels under "labels" or "y"; optional
    "partition" and "class_names". Keras' layout "x_train", "y_train", "x_test", "y_test" (e.g. its
    ``mnist.npz``) is read too, with partition "train" then "test". Read with ``allow_pickle=False``.

    Args:
        path: the .npz file.
        name: the ImageSet's name (default: the file name without ".npz").

    Returns:
        ImageSet.

    Raises:
        DatasetNotFoundError: the file does not exist.
        ValueError: no samples or labels key.

    Example:
        >>> np.savez("features.npz", features=features, labels=labels)  # doctest: +SKIP
        >>> pool = load_npz("features.npz")  # doctest: +SKIP
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetNotFoundError(
            f"array file {path} does not exist; expected an .npz with samples (under one of {_SAMPLE_KEYS}) "
            f"and labels ({_LABEL_KEYS})."
        )
    name = name or path.name.removesuffix(".npz")
    with np.load(path, allow_pickle=False) as arrays:
        keys = set(arrays.files)
        if set(_KERAS_KEYS) <= keys:
            x_train, y_train, x_test, y_test = (arrays[key] for key in _KERAS_KEYS)
            partition = np.repeat(["train", "test"], [len(x_train), len(x_test)])
            samples, labels = np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])
            return load_arrays(samples, labels, partition, name)
        sample_key = next((key for key in _SAMPLE_KEYS if key in keys), None)
        label_key = next((key for key in _LABEL_KEYS if key in keys), None)
        if sample_key is None or label_key is None:
            raise ValueError(
                f"{path} holds arrays {sorted(keys)}; expected samples under one of {_SAMPLE_KEYS} and "
                f"labels under one of {_LABEL_KEYS} (or Keras' {_KERAS_KEYS})."
            )
        partition = arrays["partition"] if "partition" in keys else None
        class_names = tuple(map(str, arrays["class_names"])) if "class_names" in keys else ()
        return load_arrays(arrays[sample_key], arrays[label_key], partition, name, class_names)
