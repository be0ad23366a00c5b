"""Image folders (``<split>/<class>/<image>``, or an archive of one), CIFAR-10, and finding bad images."""

import os
import re
import warnings
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
ON_BAD_IMAGE = ("raise", "skip")
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)
_TAIL_BYTES = 64
_LISTED = 10  # bad files named in a message; the rest are counted


def find_bad_images(paths):
    """The image files among ``paths`` that TensorFlow cannot decode, and what is wrong with each.

    A quick check reads each file's first and last bytes: a missing or empty file, one that is not JPEG, PNG,
    GIF or BMP (by its first bytes, whatever its extension), or one that ends before its format's end (a JPEG
    without its end-of-image marker, a PNG without its IEND chunk, a GIF without its trailer, a BMP shorter
    than its header says) is a suspect. Suspects of a known format are then decoded as the pipelines decode
    them (`tf.io.decode_image`), and only those that fail are reported: a JPEG with trailing bytes after its
    end marker decodes and is not reported. Damage inside a file that keeps both ends intact is not looked
    for (decoding every file would be needed); `tfhash.data.FeatureBank` names such a file when it meets it.

    Args:
        paths: iterable of file paths.

    Returns:
        list of ``(path, reason)`` in the order of ``paths``.

    Example:

    >>> find_bad_images(["a.jpg", "empty.jpg"])  # doctest: +SKIP
    [('empty.jpg', 'empty file (0 bytes)')]
    """
    bad = []
    for path in map(str, paths):  # about 2 s for CIFAR-10's 60,000 JPEGs here (threads were slower)
        reason, decodable_format = _quick_check(path)
        if reason is not None and decodable_format:
            error = decode_error(path)
            reason = None if error is None else f"{reason} (decoding fails: {error})"
        if reason is not None:
            bad.append((path, reason))
    return bad


def decode_error(path):
    """TensorFlow's message for an image file it cannot decode (as the pipelines decode), None if it can."""
    import tensorflow as tf  # only here: listing folders needs no TensorFlow

    try:
        tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.DataLossError) as error:
        message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", error.message)
        return re.sub(r"\s*\[Op:\w+\].*$", "", message, flags=re.S).strip() or type(error).__name__
    return None


def _quick_check(path):
    """``(reason, decodable_format)``: why the file is suspect (None if it looks whole), and whether it is of
    a format TensorFlow decodes (then decoding decides)."""
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            head = file.read(8)
            file.seek(max(size - _TAIL_BYTES, 0))
            tail = file.read()
    except OSError as error:
        return f"cannot be read ({error.strerror or error})", False
    if size == 0:
        return "empty file (0 bytes)", False
    kind = next((name for signature, name in _SIGNATURES if head.startswith(signature)), None)
    if kind is None:
        return f"not a JPEG, PNG, GIF or BMP file (it starts with bytes {head[:4].hex(' ')})", False
    end = tail.rstrip(b"\x00")  # zero padding after the end is common and harmless
    if kind == "JPEG" and not end.endswith(b"\xff\xd9"):
        return f"truncated JPEG: its {size} bytes end without the end-of-image marker FF D9", True
    if kind == "PNG" and b"IEND" not in tail:
        return f"truncated PNG: its {size} bytes end without the IEND chunk", True
    if kind == "GIF" and not end.endswith(b";"):
        return f"truncated GIF: its {size} bytes end without the trailer 3B", True
    if kind == "BMP" and len(head) >= 6 and int.from_bytes(head[2:6], "little") > size:
        return f"truncated BMP: {size} of the {int.from_bytes(head[2:6], 'little')} bytes it declares", True
    return None, True


def describe_bad_images(bad, what):
    """One message for a list of ``(path, reason)``: the first few named, the others counted."""
    lines = [f"  {path}: {reason}" for path, reason in bad[:_LISTED]]
    if len(bad) > _LISTED:
        lines.append(f"  ... and {len(bad) - _LISTED} more")
    return f"{len(bad)} image file(s) of {what} cannot be decoded:\n" + "\n".join(lines)


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


def load_image_folder(path, name=None, splits=("train", "test"), cache_dir=None, on_bad_image="raise"):
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
        on_bad_image: what to do with image files TensorFlow cannot decode (empty, truncated, not an image;
            found by `find_bad_images`, which reads the ends of every file): "raise" (a ValueError naming
            each file and what is wrong, before any image is used) or "skip" (leave them out, with a warning
            that counts and names them).

    Returns:
        ImageSet of file paths (N,), int64 class ids, partition from the split folders, class_names sorted.

    Raises:
        DatasetNotFoundError: `path` does not exist.
        ValueError: no image files in the expected layout, an unsafe archive, or (``on_bad_image="raise"``)
            image files that cannot be decoded.

    Example:
        >>> pool = load_image_folder("/data/cifar10-jpg.tar.gz", name="cifar10")  # doctest: +SKIP
        >>> pool.kind, pool.class_names[:2]  # doctest: +SKIP
        ('files', ('airplane', 'automobile'))
    """
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(f"`on_bad_image` must be one of {ON_BAD_IMAGE}, got {on_bad_image!r}.")
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
    bad = find_bad_images(files)
    if bad and on_bad_image == "raise":
        raise ValueError(
            describe_bad_images(bad, str(root)) + "\nRepair or remove them, or pass on_bad_image=\"skip\" to "
            "leave them out."
        )
    if bad:
        skipped_message = describe_bad_images(bad, str(root)).replace(
            "cannot be decoded", 'cannot be decoded and were skipped (on_bad_image="skip")', 1
        )
        warnings.warn(skipped_message, stacklevel=2)
        skipped = {path for path, _ in bad}
        keep = [i for i, file in enumerate(files) if file not in skipped]
        files, labels = [files[i] for i in keep], [labels[i] for i in keep]
        partition = [partition[i] for i in keep]
        if not files:
            raise ValueError(f"no decodable image files in {root}: all {len(bad)} were skipped.")
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


def load_cifar10(data_dir=None, source="auto", cache_dir=None, on_bad_image="raise"):
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
        on_bad_image: "raise" or "skip", for undecodable image files in a folder or archive
            (`load_image_folder`).

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
                pool = load_image_folder(candidate, "cifar10", cache_dir=cache_dir, on_bad_image=on_bad_image)
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
