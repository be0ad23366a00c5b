"""Dataset sources by name, for recipes and configuration files (as `tfhash.backbones.get` for backbones)."""

import numpy as np

from tfhash.data.image_set import ImageSet
from tfhash.data.sources.embedded import load_digits
from tfhash.data.sources.idx import load_fashion_mnist, load_mnist
from tfhash.data.sources.image_folder import load_cifar10
from tfhash.data.sources.list_file import load_list_dataset

_SOURCES = {
    "digits": lambda data_dir, **kwargs: load_digits(**kwargs),  # embedded: nothing to search
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    # multi-label sets from list files (the images are not redistributable): <data_dir>/<name>/all.txt, ...
    "flickr25k": lambda data_dir, **kwargs: load_list_dataset("flickr25k", data_dir, **kwargs),
    "nuswide": lambda data_dir, **kwargs: load_list_dataset("nuswide", data_dir, **kwargs),
}
NAMES = tuple(_SOURCES)


def get(name, data_dir=None, rgb=False, **kwargs):
    """Loads a dataset by name, as an `ImageSet`.

    Args:
        name: one of `NAMES`: ``"digits"`` (scikit-learn's 8×8 digits, embedded: `load_digits`), ``"mnist"``
            (`load_mnist`), ``"fashion_mnist"`` (`load_fashion_mnist`), ``"cifar10"`` (`load_cifar10`),
            ``"flickr25k"`` or ``"nuswide"`` (list files in a folder of that name: `load_list_dataset`).
        data_dir: where the dataset is (see each loader); None searches $TFHASH_DATA_DIR, then the Keras
            cache.
            ``"digits"`` ships inside scikit-learn and ignores it.
        rgb: bool. True gives gray pixel images three equal channels (the input of the ImageNet backbones);
            colour images and file paths are returned as they are.
        **kwargs: further arguments of the loader (e.g. ``source="keras"``, ``cache_dir`` for CIFAR-10).

    Returns:
        `ImageSet`.

    Raises:
        ValueError: unknown name; the message lists the valid ones.
        DatasetNotFoundError: the dataset is not found; the message lists every place searched and how to
            provide it.

    Example:

    >>> pool = get("digits", rgb=True)
    >>> pool.name, pool.samples.shape
    ('digits', (1797, 8, 8, 3))
    """
    if not isinstance(name, str) or name not in _SOURCES:
        raise ValueError(f"Unknown dataset {name!r}; valid names: {', '.join(NAMES)}.")
    if not isinstance(rgb, bool):
        raise ValueError(f"`rgb` must be a bool, got {rgb!r}.")
    pool = _SOURCES[name](data_dir, **kwargs)
    if rgb and pool.kind == "pixels" and pool.samples.shape[-1] == 1:
        pool = ImageSet(
            pool.name, np.repeat(pool.samples, 3, axis=-1), pool.labels, pool.partition, pool.class_names
        )
    return pool
