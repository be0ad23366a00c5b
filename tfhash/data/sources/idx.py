"""MNIST-style IDX files (MNIST, Fashion-MNIST): a parser and directory / dataset loaders.

File format (LeCun et al., http://yann.lecun.com/exdb/mnist/): magic number 0x0000TTDD (TT the element type,
DD the number of dimensions), then DD big-endian uint32 sizes, then the elements in big-endian C order.
"""

import dataclasses
import gzip
import struct
from pathlib import Path

import numpy as np

from tfhash.data.image_set import ImageSet
from tfhash.data.sources._search import how_to_provide, not_found, search_roots
from tfhash.data.sources.arrays import load_npz
from tfhash.data.sources.frameworks import load_keras_dataset, load_tfds_dataset

MNIST_CLASSES = tuple("0123456789")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
# Debian's dataset-fashion-mnist package installs the four .gz files in DEBIAN_DATASETS_DIR/fashion-mnist.
DEBIAN_DATASETS_DIR = Path("/usr/share/datasets")

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_SPLITS = {"train": "train", "test": "t10k"}  # partition → file prefix
_SOURCES = ("auto", "idx", "keras", "tfds")


def read_idx(path):
    """Read one IDX file, gzipped or not, into a numpy array (native byte order).

    Args:
        path: the file; gzip is recognised by its content, not by the name.

    Returns:
        Array with the header's shape and element type.

    Raises:
        ValueError: bad magic number, unknown element type, or a size that disagrees with the header.

    Example:
        >>> images = read_idx("mnist/train-images-idx3-ubyte.gz")  # doctest: +SKIP
        >>> images.shape, images.dtype  # doctest: +SKIP
        ((60000, 28, 28), dtype('uint8'))
    """
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] or data[1] or data[2] not in _IDX_TYPES:
        raise ValueError(
            f"{path} is not an IDX file: magic number 0x{data[:4].hex()}, expected 0x0000TTDD with element "
            f"type TT in {{{', '.join(f'{code:02x}' for code in _IDX_TYPES)}}}."
        )
    header_size = 4 + 4 * data[3]
    if len(data) < header_size:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, the header needs {header_size}).")
    shape = struct.unpack(f">{data[3]}I", data[4:header_size])
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = header_size + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{path}: the header declares shape {shape} ({expected} bytes in all) but the file holds "
            f"{len(data)} bytes; it is truncated or corrupt."
        )
    return np.frombuffer(data, dtype, offset=header_size).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_file(directory, prefix, kind, rank):
    """The file for (prefix, kind) in `directory` under its usual names, or None."""
    for stem in (f"{prefix}-{kind}-idx{rank}-ubyte", f"{prefix}-{kind}.idx{rank}-ubyte"):
        for name in (stem + ".gz", stem):
            if (directory / name).is_file():
                return directory / name
    return None


def _idx_files(directory):
    """{(partition, kind): path or None} for the four files of an IDX dataset directory."""
    return {
        (partition, kind): _idx_file(directory, prefix, kind, rank)
        for partition, prefix in _SPLITS.items()
        for kind, rank in (("images", 3), ("labels", 1))
    }


_EXPECTED_FILES = (
    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
    "(each optionally .gz)"
)


def load_idx_directory(path, name=None, class_names=()):
    """Load an IDX image dataset directory (the four MNIST-style files) as uint8 pixels, partition train/test.

    Args:
        path: directory holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
            ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each optionally gzipped (``.gz``); the
            ``*-images.idx3-ubyte`` spelling is accepted too.
        name: the ImageSet's name (default: the directory's name).
        class_names: names of the classes, in label order.

    Returns:
        ImageSet of uint8 pixels (N, H, W, 1), int64 labels, the training images first (partition "train")
        then the test images ("test"), each in file order.

    Raises:
        DatasetNotFoundError: a file is missing.
        ValueError: a file is not valid IDX, or images and labels disagree.

    Example:
        >>> pool = load_idx_directory("/data/mnist")  # doctest: +SKIP
    """
    path = Path(path).expanduser()
    files = _idx_files(path)
    missing = [f"{_SPLITS[partition]}-{kind}" for (partition, kind), file in files.items() if file is None]
    if missing:
        raise not_found(
            f"IDX files {', '.join(missing)}", _EXPECTED_FILES, [path],
            "put the four IDX files (gzipped or not) in that directory.",
        )
    images, labels = [], []
    for partition in _SPLITS:
        pixels, ids = read_idx(files[partition, "images"]), read_idx(files[partition, "labels"])
        if pixels.ndim != 3 or pixels.dtype != np.uint8 or ids.ndim != 1 or len(ids) != len(pixels):
            raise ValueError(
                f"{path}: {partition} images must be uint8 (N, H, W) with N labels (N,); got images "
                f"{pixels.dtype} {pixels.shape} and labels {ids.dtype} {ids.shape}."
            )
        images.append(pixels[..., None])
        labels.append(ids.astype(np.int64))
    partition = np.repeat(list(_SPLITS), [len(ids) for ids in labels])
    return ImageSet(name or path.name, np.concatenate(images), np.concatenate(labels), partition, class_names)


def _load_idx_dataset(name, subdirs, framework_name, class_names, data_dir, source, npz_name=None,
                      extra_roots=()):
    """Shared body of load_mnist / load_fashion_mnist: search IDX directories (and a Keras .npz), in order."""
    if source not in _SOURCES:
        raise ValueError(f"`source` must be one of {_SOURCES}, got {source!r}.")
    if source == "keras":
        return load_keras_dataset(framework_name, class_names, image_set_name=name)
    if source == "tfds":
        return load_tfds_dataset(framework_name, data_dir, class_names, image_set_name=name)
    places = []
    for root in search_roots(data_dir, extra_roots):
        for directory in [root / subdir for subdir in subdirs] + [root]:
            places.append(directory)
            if all(file is not None for file in _idx_files(directory).values()):
                return load_idx_directory(directory, name, class_names)
        # Keras caches MNIST as one mnist.npz (x_train, y_train, x_test, y_test) instead of IDX files.
        if npz_name and source == "auto":
            places.append(root / npz_name)
            if (root / npz_name).is_file():
                return dataclasses.replace(load_npz(root / npz_name, name), class_names=class_names)
    how = how_to_provide(f"/data (holding {subdirs[0]}/)", framework_name)
    raise not_found(name, _EXPECTED_FILES, places, how)


def load_mnist(data_dir=None, source="auto"):
    """MNIST (LeCun et al. 1998): 60,000 training + 10,000 test 28×28 grayscale digits.

    Args:
        data_dir: directory holding the four IDX files, or a parent of ``mnist/`` holding them, or holding
            Keras' ``mnist.npz``. When given, it is the only place searched; otherwise $TFHASH_DATA_DIR, then
            the Keras cache (``~/.keras/datasets``). For ``source="tfds"``: the TFDS data directory.
        source: "auto" (local files as above, never downloads), "idx" (IDX files only), "keras"
            (``keras.datasets.mnist.load_data()``: its cache, else a download) or "tfds" (a prepared TFDS
            set).

    Returns:
        ImageSet "mnist" of uint8 pixels (70000, 28, 28, 1), int64 labels 0–9, partition "train" (the first
        60,000) / "test".

    Raises:
        DatasetNotFoundError: not found; the message lists every place searched and how to provide the data.

    Example:
        >>> pool = load_mnist("/work/shared/data")  # doctest: +SKIP
        >>> pool.samples.shape  # doctest: +SKIP
        (70000, 28, 28, 1)

    Reference:
        Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. Gradient-based learning applied to document recognition.
        Proc. IEEE, 1998.
    """
    return _load_idx_dataset("mnist", ("mnist",), "mnist", MNIST_CLASSES, data_dir, source, "mnist.npz")


def load_fashion_mnist(data_dir=None, source="auto"):
    """Fashion-MNIST (Xiao et al. 2017): 60,000 training + 10,000 test 28×28 grayscale clothing images.

    Args:
        data_dir: directory holding the four IDX files, or a parent of ``fashion-mnist/`` holding them. When
            given, it is the only place searched; otherwise $TFHASH_DATA_DIR, the Keras cache
            (``~/.keras/datasets/fashion-mnist``), then Debian's ``/usr/share/datasets/fashion-mnist``
            (package ``dataset-fashion-mnist``). For ``source="tfds"``: the TFDS data directory.
        source: "auto" / "idx" (local IDX files, never downloads), "keras"
            (``keras.datasets.fashion_mnist.load_data()``: its cache, else a download) or "tfds".

    Returns:
        ImageSet "fashion-mnist" of uint8 pixels (70000, 28, 28, 1), int64 labels 0–9 (names in
        FASHION_MNIST_CLASSES), partition "train" (first 60,000) / "test".

    Raises:
        DatasetNotFoundError: not found; the message lists every place searched and how to provide the data.

    Example:
        >>> pool = load_fashion_mnist()  # doctest: +SKIP  (e.g. after apt-get install dataset-fashion-mnist)

    Reference:
        H. Xiao, K. Rasul, R. Vollgraf. Fashion-MNIST: a novel image dataset for benchmarking machine learning
        algorithms. arXiv:1708.07747, 2017.
    """
    return _load_idx_dataset(
        "fashion-mnist", ("fashion-mnist", "fashion_mnist"), "fashion_mnist", FASHION_MNIST_CLASSES, data_dir,
        source, extra_roots=(DEBIAN_DATASETS_DIR,),
    )
