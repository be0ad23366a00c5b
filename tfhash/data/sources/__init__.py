"""Dataset sources: each returns an ImageSet (pixels, file paths or features, labels, train/test partition).

| source | function |
|---|---|
| scikit-learn's 8×8 digits (embedded, the offline default) | ``load_digits()`` |
| MNIST / Fashion-MNIST: IDX files, Keras, TFDS | ``load_mnist(data_dir, source)``, ``load_fashion_mnist`` |
| any directory of the four IDX files, one IDX file | ``load_idx_directory(path)``, ``read_idx(path)`` |
| CIFAR-10 image folder / .tar.gz, Keras, TFDS | ``load_cifar10(data_dir, source, cache_dir)`` |
| any ``<split>/<class>/<image>`` folder or archive | ``load_image_folder(path)``, ``extract_archive(path)`` |
| multi-label list files (Flickr25k, NUS-WIDE, MS-COCO) | ``load_list_file(list_file, root)`` |
| a folder of list files as a pool (``flickr25k``, ``nuswide`` by name) | ``load_list_dataset(name, data_dir)`` |
| arrays, .npz, user features | ``load_arrays(samples, labels)``, ``load_npz(path)`` |
| Keras / TFDS loaders for any dataset | ``load_keras_dataset(name)``, ``load_tfds_dataset(name)`` |
| the recipes' datasets by name (``NAMES``) | ``get(name, data_dir, rgb=False)`` |

Search order where no ``data_dir`` is given: $TFHASH_DATA_DIR, then the Keras cache (``~/.keras/datasets``),
then (Fashion-MNIST) Debian's ``/usr/share/datasets``. Nothing downloads unless asked (``source="keras"``).
A dataset that is not found raises DatasetNotFoundError (a FileNotFoundError) listing every place searched.
"""

from tfhash.data.sources._search import CACHE_DIR_ENV, DATA_DIR_ENV, DatasetNotFoundError
from tfhash.data.sources.archives import extract_archive
from tfhash.data.sources.arrays import load_arrays, load_npz
from tfhash.data.sources.embedded import load_digits
from tfhash.data.sources.factory import NAMES, get
from tfhash.data.sources.frameworks import load_keras_dataset, load_tfds_dataset
from tfhash.data.sources.idx import (
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    load_fashion_mnist,
    load_idx_directory,
    load_mnist,
    read_idx,
)
from tfhash.data.sources.image_folder import CIFAR10_CLASSES, load_cifar10, load_image_folder
from tfhash.data.sources.list_file import load_list_dataset, load_list_file

__all__ = [
    "CACHE_DIR_ENV",
    "CIFAR10_CLASSES",
    "DATA_DIR_ENV",
    "DatasetNotFoundError",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "NAMES",
    "extract_archive",
    "get",
    "load_arrays",
    "load_cifar10",
    "load_digits",
    "load_fashion_mnist",
    "load_idx_directory",
    "load_image_folder",
    "load_keras_dataset",
    "load_list_dataset",
    "load_list_file",
    "load_mnist",
    "load_npz",
    "load_tfds_dataset",
    "read_idx",
]
