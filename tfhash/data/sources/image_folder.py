"""Image folders (``<split>/<class>/<image>``, or an archive of one) and CIFAR-10."""

from pathlib import Path

import numpy as np

from tfhash.data.image_set import ImageSet
from tfhash.data.sources._search import (
    DatasetNotFoundError,
    how_to_provide,
    keras_datasets_dir,
    not_found,
    search_roots,
)
from tfhash.data.sources.archives import archive_stem, extract_archive, is_archive
from tfhash.data.sources.frameworks import load_keras_dataset, load_tfds_dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# CIFAR-10's canonical label order (the batches.meta of the original release) happens to be alphabetical, so
# class ids taken from sorted folder names equal the original ids; load_cifar10 checks the folder names.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR10_SOURCES = ("auto", "folder", "keras", "tfds")


def _subdirectories(path):
    return sorted(entry.name for entry in path.iterdir() if entry.is_dir() and not entry.name.startswith("."))


def _layout(path, splits):
    """(root, present splits) of an image folder; no present split means a flat ``<class>/<image>`` folder.

    An archive often wraps its content in one top folder: a lone subdirectory holding the splits is descended.
    """
    present = [split for split in splits if (path / split).is_dir()]
    if not present:
        children = _subdirectories(path)
        if len(children) == 1 and any((path / children[0] / split).is_dir() for split in splits):
            return _layout(path / children[0], splits)
    return path, present


def load_image_folder(path, name=None, splits=("train", "test"), cache_dir=None):
    """Load an image folder (or a tar archive of one) as file paths with class ids from the folder names.

    Layouts: ``<split>/<class>/<image>`` for the split names in `splits` (the split becomes the partition;
    other top-level folders are ignored), or ``<class>/<image>`` (partition "train"). Class ids index the
    sorted class folder names of all splits together. Images are files with an extension in IMAGE_EXTENSIONS
    (any case); hidden files and other files are ignored. Paths are absolute and ordered by split (in `splits`
    order), class name, then file name, so the same folder always gives the same order.

    Args:
        path: the folder, or an archive (.tar.gz, .tgz, .tar, .tar.bz2, .tar.xz) of it, extracted once by
            extract_archive into `cache_dir`.
        name: the ImageSet's name (default: the folder's or archive's name).
        splits: split folder names to read.
        cache_dir: where an archive is extracted (default $TFHASH_CACHE_DIR, else ~/.cache/tfhash).

    Returns:
        ImageSet of file paths (N,), int64 class ids, partition from the split folders, class_names sorted.

    Raises:
        DatasetNotFoundError: `path` does not exist.
        ValueError: no image files in the expected layout, or an unsafe archive.

    Example:
        >>> pool = load_image_folder("/data/cifar10-jpg.tar.gz", name="cifar10")  # doctest: +SKIP
        >>> pool.kind, pool.class_names[:2]  # doctest: +SKIP
        ('files', ('airplane', 'automobile'))
    """
    path = Path(path).expanduser()
    default_name = archive_stem(path) if is_archive(path) else path.name
    if is_archive(path):
        path = extract_archive(path, cache_dir)
    elif not path.is_dir():
        raise DatasetNotFoundError(
            f"image folder {path} does not exist; expected <split>/<class>/<image> with splits "
            f"{list(splits)}, or <class>/<image>, or a tar archive of either."
        )
    root, present = _layout(path.resolve(), splits)
    groups = {split: root / split for split in present} or {"train": root}
    classes = sorted({class_name for folder in groups.values() for class_name in _subdirectories(folder)})
    files, labels, partition = [], [], []
    for split, folder in groups.items():
        for label, class_name in enumerate(classes):
            directory = folder / class_name
            if not directory.is_dir():
                continue
            images = sorted(entry.name for entry in directory.iterdir()
                            if entry.suffix.lower() in IMAGE_EXTENSIONS and not entry.name.startswith("."))
            files += [str(directory / image) for image in images]
            labels += [label] * len(images)
            partition += [split] * len(images)
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found in {root}: expected "
                         f"<split>/<class>/<image> with splits {list(splits)}, or <class>/<image>.")
    labels, partition = np.array(labels, np.int64), np.array(partition)
    return ImageSet(name or default_name, np.array(files), labels, partition, classes)


def _cifar10_candidates(root):
    """Where a CIFAR-10 image folder or archive may sit within a search root."""
    yield root  # the folder (or archive) itself
    for folder in ("cifar10", "cifar10-jpg", "cifar-10"):
        yield root / folder
    for archive in ("cifar10-jpg.tar.gz", "cifar10.tar.gz"):
        yield root / archive


def _is_split_folder(path):
    return path.is_dir() and (path / "train").is_dir() and (path / "test").is_dir()


def load_cifar10(data_dir=None, source="auto", cache_dir=None):
    """CIFAR-10 (Krizhevsky 2009): 50,000 training + 10,000 test 32×32 colour images of 10 classes.

    Args:
        data_dir: an image folder ``train/<class>/*.jpg`` + ``test/<class>/*.jpg``, a tar archive of it
            (e.g. ``cifar10-jpg.tar.gz``), or a directory holding one as ``cifar10/``, ``cifar10-jpg/``,
            ``cifar-10/``, ``cifar10-jpg.tar.gz`` or ``cifar10.tar.gz``. When given, it is the only place
            searched; otherwise $TFHASH_DATA_DIR, then the Keras cache directory. For ``source="tfds"``: the
            TFDS data directory.
        source: "auto" (an image folder / archive as above, else CIFAR-10 in the Keras cache read by
            ``keras.datasets.cifar10``; never downloads), "folder" (image folders / archives only), "keras"
            (``keras.datasets.cifar10.load_data()``: its cache, else a download) or "tfds" (a prepared TFDS
            set).
        cache_dir: where an archive is extracted (default $TFHASH_CACHE_DIR, else ~/.cache/tfhash).

    Returns:
        ImageSet "cifar10" with labels 0–9 in CIFAR10_CLASSES order and partition "train" / "test": file
        paths (sorted by split, class, name) from a folder or archive, uint8 pixels (N, 32, 32, 3) from Keras
        or TFDS.

    Raises:
        DatasetNotFoundError: not found; the message lists every place searched and how to provide the data.
        ValueError: a folder whose class folders are not CIFAR-10's ten classes.

    Example:
        >>> pool = load_cifar10("/work/shared/data", cache_dir="/tmp/tfhash-cache")  # doctest: +SKIP
        >>> len(pool), pool.kind  # doctest: +SKIP
        (60000, 'files')

    Reference:
        A. Krizhevsky. Learning multiple layers of features from tiny images. Tech. report, U. Toronto, 2009.
    """
    if source not in _CIFAR10_SOURCES:
        raise ValueError(f"`source` must be one of {_CIFAR10_SOURCES}, got {source!r}.")
    if source == "keras":
        return load_keras_dataset("cifar10", CIFAR10_CLASSES)
    if source == "tfds":
        return load_tfds_dataset("cifar10", data_dir, CIFAR10_CLASSES)
    places = []
    for root in search_roots(data_dir):
        for candidate in _cifar10_candidates(root):
            places.append(candidate)
            if _is_split_folder(candidate) or (is_archive(candidate) and candidate.is_file()):
                pool = load_image_folder(candidate, "cifar10", cache_dir=cache_dir)
                if pool.class_names != CIFAR10_CLASSES:
                    raise ValueError(
                        f"{candidate} has class folders {list(pool.class_names)}; CIFAR-10 needs exactly "
                        f"{list(CIFAR10_CLASSES)}."
                    )
                return pool
    # keras.datasets.cifar10 keeps the extracted python batches here (Keras 3; Keras 2 omitted "-target").
    keras_dirs = [keras_datasets_dir() / f"cifar-10-batches-py{suffix}" for suffix in ("-target", "")]
    if source == "auto" and data_dir is None:
        places += keras_dirs
        if any(directory.is_dir() for directory in keras_dirs):
            return load_keras_dataset("cifar10", CIFAR10_CLASSES)
    raise not_found(
        "CIFAR-10", "an image folder train/<class>/*.jpg + test/<class>/*.jpg or a .tar.gz of it", places,
        how_to_provide("/data/cifar10-jpg.tar.gz", "cifar10"),
    )
