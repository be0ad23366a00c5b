"""Dataset sources on small files and arrays the tests write; Keras and TFDS loaders replaced by fakes.

Every test runs with $TFHASH_DATA_DIR / $TFHASH_CACHE_DIR unset and $KERAS_HOME, $XDG_CACHE_HOME and the
Debian dataset directory pointed into its tmp_path, so nothing on the machine leaks in, nothing is written
outside tmp_path, and any attempt to reach Keras' real download fails the test.
"""

import dataclasses
import gzip
import io
import os
import struct
import sys
import tarfile
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfhash.data.sources.idx as idx_module
from tfhash.data.sources import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    DatasetNotFoundError,
    extract_archive,
    load_arrays,
    load_cifar10,
    load_digits,
    load_fashion_mnist,
    load_idx_directory,
    load_image_folder,
    load_list_file,
    load_mnist,
    load_npz,
    read_idx,
)

_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
              np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    for variable in ("TFHASH_DATA_DIR", "TFHASH_CACHE_DIR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(idx_module, "DEBIAN_DATASETS_DIR", tmp_path / "debian-datasets")

    def no_download(*args, **kwargs):
        pytest.fail("a source called a real keras.datasets loader (a download attempt)")

    for name in ("mnist", "fashion_mnist", "cifar10"):
        monkeypatch.setattr(getattr(keras.datasets, name), "load_data", no_download)


def write_idx(path, array, compress):
    """Write `array` as an IDX file (big-endian), gzipped when `compress`."""
    array = np.asarray(array)
    big_endian = array.astype(array.dtype.newbyteorder(">"))
    header = bytes([0, 0, _IDX_CODES[big_endian.dtype], array.ndim])
    data = header + struct.pack(f">{array.ndim}I", *array.shape) + big_endian.tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def write_idx_directory(directory, compress=True, train=6, test=3, names="{prefix}-{kind}-idx{rank}-ubyte"):
    """Four small IDX files (5×4 images); returns the images and labels written, train then test."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (train + test, 5, 4), dtype=np.uint8)
    labels = np.arange(train + test, dtype=np.uint8) % 10
    suffix = ".gz" if compress else ""
    for prefix, rows in (("train", slice(0, train)), ("t10k", slice(train, None))):
        for kind, rank, array in (("images", 3, images), ("labels", 1, labels)):
            name = names.format(prefix=prefix, kind=kind, rank=rank) + suffix
            write_idx(directory / name, array[rows], compress)
    return images, labels


# The smallest real images: load_image_folder checks that every listed file can be decoded.
TINY_JPEG = tf.io.encode_jpeg(np.zeros((2, 2, 3), np.uint8)).numpy()
TINY_PNG = tf.io.encode_png(np.zeros((2, 2, 3), np.uint8)).numpy()


def make_image_folder(root, classes=CIFAR10_CLASSES, per_split=(("train", 3), ("test", 1))):
    """<split>/<class>/NNNN.jpg tiny JPEG files, plus files to ignore."""
    for split, count in per_split:
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in reversed(range(count)):  # created out of order: the listing must sort
                (folder / f"{index:04d}.jpg").write_bytes(TINY_JPEG)
            (folder / "notes.txt").write_text("not an image")
            (folder / ".hidden.jpg").write_bytes(b"jpeg")
    return root


def make_tar(archive, folder, prefix=""):
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for split in sorted(os.listdir(folder)):
            tar.add(folder / split, arcname=prefix + split)
    return archive


# --- embedded default ---------------------------------------------------------------------------------------


def test_load_digits_is_uint8_pixels_scaled_to_255_all_train():
    pool = load_digits()
    assert pool.name == "digits" and pool.kind == "pixels"
    assert pool.samples.shape == (1797, 8, 8, 1) and pool.samples.dtype == np.uint8
    assert pool.samples.min() == 0 and pool.samples.max() == 255  # 16 → 255
    assert set(np.unique(pool.samples)) <= {round(level * 255 / 16) for level in range(17)}
    assert pool.labels.dtype == np.int64 and np.array_equal(np.unique(pool.labels), np.arange(10))
    assert set(pool.partition) == {"train"}
    assert pool.class_names == tuple("0123456789")


# --- IDX ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"])
def test_read_idx_round_trips_every_element_type(tmp_path, dtype, compress):
    values = np.arange(24).reshape(2, 3, 4)
    array = values.astype(dtype) if dtype == np.uint8 else (values - 5).astype(dtype)
    write_idx(tmp_path / "file", array, compress)
    result = read_idx(tmp_path / "file")
    assert result.shape == array.shape and result.dtype.isnative
    np.testing.assert_array_equal(result, array)


def test_read_idx_rejects_bad_magic_and_truncated_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + bytes(8))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "type").write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"x")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "type")
    write_idx(tmp_path / "short", np.zeros((4, 3), np.uint8), compress=False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"shape \(4, 3\).*truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "header").write_bytes(b"\x00\x00\x08\x03" + bytes(4))
    with pytest.raises(ValueError, match="truncated IDX header"):
        read_idx(tmp_path / "header")


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("names", ["{prefix}-{kind}-idx{rank}-ubyte", "{prefix}-{kind}.idx{rank}-ubyte"])
def test_load_idx_directory_gives_pixels_labels_and_partition(tmp_path, compress, names):
    images, labels = write_idx_directory(tmp_path / "set", compress, names=names)
    pool = load_idx_directory(tmp_path / "set", class_names=tuple("0123456789"))
    assert pool.name == "set" and pool.kind == "pixels"
    np.testing.assert_array_equal(pool.samples, images[..., None])
    np.testing.assert_array_equal(pool.labels, labels)
    assert pool.labels.dtype == np.int64
    assert list(pool.partition) == ["train"] * 6 + ["test"] * 3


def test_load_idx_directory_names_missing_files_and_rejects_mismatches(tmp_path):
    write_idx_directory(tmp_path / "set")
    (tmp_path / "set" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-labels") as error:
        load_idx_directory(tmp_path / "set")
    assert str(tmp_path / "set") in str(error.value)
    # 2 labels for the 3 test images
    write_idx(tmp_path / "set" / "t10k-labels-idx1-ubyte.gz", np.zeros(2, np.uint8), compress=True)
    with pytest.raises(ValueError, match="test images must be uint8"):
        load_idx_directory(tmp_path / "set")


@pytest.mark.parametrize("layout", ["parent", "direct"])
def test_load_mnist_from_data_dir(tmp_path, layout):
    directory = tmp_path / "data" / "mnist" if layout == "parent" else tmp_path / "data"
    images, _ = write_idx_directory(directory)
    pool = load_mnist(tmp_path / "data")
    assert pool.name == "mnist" and pool.class_names == tuple("0123456789")
    np.testing.assert_array_equal(pool.samples[..., 0], images)


def test_load_mnist_searches_env_then_keras_cache(tmp_path, monkeypatch):
    write_idx_directory(tmp_path / "keras-home" / "datasets" / "mnist", train=4)
    assert len(load_mnist()) == 7  # found in the Keras cache
    write_idx_directory(tmp_path / "env" / "mnist", train=2)
    monkeypatch.setenv("TFHASH_DATA_DIR", os.pathsep.join([str(tmp_path / "nowhere"), str(tmp_path / "env")]))
    assert len(load_mnist()) == 5  # $TFHASH_DATA_DIR comes first


def test_explicit_data_dir_is_the_only_place_searched(tmp_path):
    write_idx_directory(tmp_path / "keras-home" / "datasets" / "mnist")
    with pytest.raises(DatasetNotFoundError) as error:
        load_mnist(tmp_path / "typo")
    searched = str(error.value).split("To provide it")[0]
    assert str(tmp_path / "typo" / "mnist") in searched and "keras-home" not in searched


def test_missing_mnist_error_lists_every_place_and_how_to_provide(tmp_path, monkeypatch):
    monkeypatch.setenv("TFHASH_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as error:
        load_mnist()
    message = str(error.value)
    keras_cache = tmp_path / "keras-home" / "datasets"
    env = tmp_path / "env"
    for place in (env / "mnist", env, keras_cache / "mnist", keras_cache / "mnist.npz"):
        assert f"- {place}\n" in message + "\n"
    assert "train-images-idx3-ubyte" in message and "data_dir=" in message and "TFHASH_DATA_DIR" in message
    assert "source='keras'" in message
    assert isinstance(error.value, FileNotFoundError)


def test_fashion_mnist_found_in_debian_layout(tmp_path):
    write_idx_directory(tmp_path / "debian-datasets" / "fashion-mnist")
    pool = load_fashion_mnist()
    assert pool.name == "fashion-mnist" and pool.class_names == FASHION_MNIST_CLASSES and len(pool) == 9


def fake_keras_loader(calls, shape=(5, 4), train=6, test=2):
    def load_data():
        calls.append(True)
        rng = np.random.default_rng(1)
        x = rng.integers(0, 256, (train + test, *shape), dtype=np.uint8)
        y = (np.arange(train + test, dtype=np.uint8) % 10).reshape(-1, 1)  # CIFAR-style (N, 1) column
        return (x[:train], y[:train]), (x[train:], y[train:])

    return load_data


@pytest.mark.parametrize("loader, module", [(load_mnist, "mnist"), (load_fashion_mnist, "fashion_mnist")])
def test_keras_source_uses_keras_datasets(monkeypatch, loader, module):
    calls = []
    monkeypatch.setattr(getattr(keras.datasets, module), "load_data", fake_keras_loader(calls))
    pool = loader(source="keras")
    assert calls and pool.kind == "pixels" and pool.samples.shape == (8, 5, 4, 1)
    assert pool.labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7] and pool.labels.dtype == np.int64
    assert list(pool.partition) == ["train"] * 6 + ["test"] * 2


def test_keras_failure_is_a_clear_error(monkeypatch):
    def offline():
        raise Exception("URL fetch failure on https://example.invalid/mnist.npz: None -- [Errno -3]")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(DatasetNotFoundError, match=r"keras\.datasets\.mnist\.load_data\(\).*URL") as error:
        load_mnist(source="keras")
    assert "network" in str(error.value) and "data_dir" in str(error.value)


def test_auto_reads_the_keras_mnist_npz_cache_without_keras(tmp_path):
    (tmp_path / "keras-home" / "datasets").mkdir(parents=True)
    (train, y_train), (test, y_test) = fake_keras_loader([])()
    np.savez(tmp_path / "keras-home" / "datasets" / "mnist.npz", x_train=train, y_train=y_train[:, 0],
             x_test=test, y_test=y_test[:, 0])
    pool = load_mnist()  # the autouse fixture fails the test if a Keras loader is called
    assert pool.name == "mnist" and pool.class_names == tuple("0123456789")
    assert pool.samples.shape == (8, 5, 4, 1)
    assert list(pool.partition) == ["train"] * 6 + ["test"] * 2
    with pytest.raises(DatasetNotFoundError):
        load_mnist(source="idx")  # IDX files only


def test_bad_source_is_rejected():
    with pytest.raises(ValueError, match="`source` must be one of"):
        load_mnist(source="internet")
    with pytest.raises(ValueError, match="`source` must be one of"):
        load_cifar10(source="internet")


# --- TFDS (faked: tensorflow-datasets need not be installed) ------------------------------------------------


def fake_tfds(prepared=True):
    def load(name, split, data_dir, download, batch_size, as_supervised):
        assert download is False and batch_size == -1 and as_supervised and split == ["train", "test"]
        if not prepared:
            raise AssertionError(f"Dataset {name}: could not find data in {data_dir}.")
        images = np.full((5, 32, 32, 3), 7, np.uint8)
        return (images[:3], np.array([0, 1, 9])), (images[3:], np.array([2, 3]))

    return types.SimpleNamespace(load=load, as_numpy=lambda tensors: tensors)


def test_tfds_source_reads_a_prepared_set(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds())
    pool = load_cifar10(source="tfds")
    assert pool.name == "cifar10" and pool.class_names == CIFAR10_CLASSES
    assert pool.samples.shape == (5, 32, 32, 3)
    assert pool.labels.tolist() == [0, 1, 9, 2, 3] and list(pool.partition) == ["train"] * 3 + ["test"] * 2


def test_tfds_not_prepared_or_not_installed_are_clear_errors(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(prepared=False))
    with pytest.raises(DatasetNotFoundError, match="(?s)no prepared 'cifar10'.*download_and_prepare"):
        load_cifar10(tmp_path, source="tfds")
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install 'tfhash\\[tfds\\]'"):
        load_mnist(source="tfds")


# --- image folders, archives, CIFAR-10 ----------------------------------------------------------------------


def test_cifar10_classes_are_alphabetical_so_folder_ids_are_canonical():
    assert tuple(sorted(CIFAR10_CLASSES)) == CIFAR10_CLASSES and len(CIFAR10_CLASSES) == 10


def check_cifar_folder_pool(pool, root):
    assert pool.name == "cifar10" and pool.kind == "files" and pool.class_names == CIFAR10_CLASSES
    assert len(pool) == 40 and list(pool.partition) == ["train"] * 30 + ["test"] * 10
    expected = [str(root / split / name / f"{index:04d}.jpg")
                for split, count in (("train", 3), ("test", 1))
                for name in CIFAR10_CLASSES
                for index in range(count)]
    assert pool.samples.tolist() == expected
    assert pool.labels.tolist() == [CIFAR10_CLASSES.index(path.split(os.sep)[-2]) for path in expected]


def test_load_cifar10_from_image_folder(tmp_path):
    root = make_image_folder(tmp_path / "cifar10")
    check_cifar_folder_pool(load_cifar10(tmp_path), root)
    check_cifar_folder_pool(load_cifar10(root, source="folder"), root)


def test_load_cifar10_from_tar_gz_extracts_once_into_the_cache(tmp_path, monkeypatch):
    archive = make_tar(tmp_path / "data" / "cifar10-jpg.tar.gz", make_image_folder(tmp_path / "folder"))
    monkeypatch.setenv("TFHASH_DATA_DIR", str(tmp_path / "data"))
    pool = load_cifar10(cache_dir=tmp_path / "cache")
    extracted = next((tmp_path / "cache").iterdir())
    assert extracted.name.startswith("cifar10-jpg-") and [p.name for p in (tmp_path / "cache").iterdir()] == [
        extracted.name]
    check_cifar_folder_pool(pool, extracted)
    assert sorted(os.listdir(archive.parent)) == ["cifar10-jpg.tar.gz"]  # nothing written beside the archive

    def no_reopen(*args, **kwargs):
        raise AssertionError("the archive was extracted again")

    monkeypatch.setattr(tarfile, "open", no_reopen)
    assert load_cifar10(archive, cache_dir=tmp_path / "cache").samples.tolist() == pool.samples.tolist()


def test_extract_archive_cache_location_and_refresh(tmp_path, monkeypatch):
    archive = make_tar(tmp_path / "set.tgz", make_image_folder(tmp_path / "folder", classes=("a", "b")))
    default = extract_archive(archive)
    assert default.parent == tmp_path / "xdg-cache" / "tfhash" and default.name.startswith("set-")
    monkeypatch.setenv("TFHASH_CACHE_DIR", str(tmp_path / "env-cache"))
    assert extract_archive(archive).parent == tmp_path / "env-cache"
    assert extract_archive(archive, tmp_path / "arg-cache").parent == tmp_path / "arg-cache"
    os.utime(archive, ns=(0, 10**18))  # a replaced archive is extracted afresh
    assert extract_archive(archive, tmp_path / "arg-cache") != extract_archive(archive)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        extract_archive(tmp_path / "missing.tar.gz")
    (tmp_path / "fake.tar.gz").write_bytes(b"not a tar archive")
    with pytest.raises(ValueError, match="not a readable tar archive"):
        extract_archive(tmp_path / "fake.tar.gz", tmp_path / "arg-cache")


def test_interrupted_extraction_leaves_no_directory_and_a_retry_works(tmp_path, monkeypatch):
    archive = make_tar(tmp_path / "set.tar.gz", make_image_folder(tmp_path / "folder", classes=("a", "b")))
    extractall = tarfile.TarFile.extractall

    def interrupted(self, path, members, **kwargs):
        extractall(self, path, members=members[:4], **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(tarfile.TarFile, "extractall", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_archive(archive, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # neither a half target nor a staging directory
    monkeypatch.setattr(tarfile.TarFile, "extractall", extractall)
    assert len(load_image_folder(archive, cache_dir=tmp_path / "cache")) == 8


@pytest.mark.parametrize("name, kind", [("../evil.jpg", tarfile.REGTYPE), ("/tmp/evil.jpg", tarfile.REGTYPE),
                                        ("train/a/../../../evil.jpg", tarfile.REGTYPE),
                                        ("train/a/link.jpg", tarfile.SYMTYPE)])
def test_unsafe_archive_members_are_refused(tmp_path, name, kind):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        safe = tarfile.TarInfo("train/a/0000.jpg")
        safe.size = 4
        tar.addfile(safe, io.BytesIO(b"jpeg"))
        member = tarfile.TarInfo(name)
        member.type = kind
        member.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
        member.size = 4 if kind == tarfile.REGTYPE else 0
        tar.addfile(member, io.BytesIO(b"evil") if kind == tarfile.REGTYPE else None)
    with pytest.raises(ValueError, match="refusing to extract"):
        extract_archive(archive, tmp_path / "cache" / "deep")
    assert list((tmp_path / "cache" / "deep").iterdir()) == []
    assert not (tmp_path / "cache" / "evil.jpg").exists() and not (tmp_path / "evil.jpg").exists()


def test_load_image_folder_layouts(tmp_path):
    folder = make_image_folder(tmp_path / "folder", classes=("b", "a"))
    wrapped = make_tar(tmp_path / "wrapped.tar.gz", folder, prefix="top/")
    pool = load_image_folder(wrapped, cache_dir=tmp_path / "cache")  # one top folder is descended
    assert pool.name == "wrapped" and pool.class_names == ("a", "b") and len(pool) == 8
    flat = tmp_path / "flat"
    for name in ("dog", "cat"):
        (flat / name).mkdir(parents=True)
        (flat / name / "x.PNG").write_bytes(TINY_PNG)
    pool = load_image_folder(flat, name="pets")
    assert pool.class_names == ("cat", "dog") and pool.labels.tolist() == [0, 1]
    assert set(pool.partition) == {"train"}
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="no image files"):
        load_image_folder(tmp_path / "empty")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "absent")


def test_load_cifar10_rejects_other_class_folders(tmp_path):
    make_image_folder(tmp_path / "cifar10", classes=CIFAR10_CLASSES[:9])
    with pytest.raises(ValueError, match="CIFAR-10 needs exactly"):
        load_cifar10(tmp_path)


def test_missing_cifar10_error_lists_places_and_ways(tmp_path, monkeypatch):
    monkeypatch.setenv("TFHASH_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as error:
        load_cifar10()
    message = str(error.value)
    for place in (tmp_path / "env" / "cifar10-jpg.tar.gz", tmp_path / "env" / "cifar10",
                  tmp_path / "keras-home" / "datasets" / "cifar-10-batches-py-target"):
        assert str(place) in message
    assert "TFHASH_DATA_DIR" in message and "source='keras'" in message


def test_cifar10_keras_source_and_auto_keras_cache(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", fake_keras_loader(calls, shape=(32, 32, 3)))
    pool = load_cifar10(source="keras")
    assert pool.samples.shape == (8, 32, 32, 3) and pool.class_names == CIFAR10_CLASSES
    assert pool.labels.shape == (8,)
    calls.clear()
    with pytest.raises(DatasetNotFoundError):
        load_cifar10()
    assert not calls
    (tmp_path / "keras-home" / "datasets" / "cifar-10-batches-py-target").mkdir(parents=True)
    assert len(load_cifar10()) == 8 and calls


# --- list files ---------------------------------------------------------------------------------------------


def write_list(tmp_path, text, images=("im/a.jpg", "im/b.jpg", "im/c.jpg")):
    for image in images:
        (tmp_path / image).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / image).write_bytes(b"jpeg")
    (tmp_path / "list.txt").write_text(text)
    return tmp_path / "list.txt"


def test_load_list_file_reads_paths_and_multi_hot_labels(tmp_path):
    list_file = write_list(tmp_path, "im/a.jpg 0 1 0 1\n\nim/b.jpg 1 0 0 0\nim/c.jpg 0 0 0 0\n")
    pool = load_list_file(list_file, partition="test")
    assert pool.kind == "files" and pool.multi_label and pool.name == tmp_path.name
    assert pool.samples.tolist() == [str(tmp_path / "im" / name) for name in ("a.jpg", "b.jpg", "c.jpg")]
    np.testing.assert_array_equal(pool.labels, [[0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]])
    assert pool.labels.dtype == np.uint8 and set(pool.partition) == {"test"}
    other_root = load_list_file(list_file, root="/images", name="nus", check_files=False)
    assert other_root.name == "nus" and other_root.samples[0] == os.path.join("/images", "im/a.jpg")


@pytest.mark.parametrize("text, message", [
    ("im/a.jpg 0 1 0\nim/b.jpg 1 0\n", "line 2: 2 labels, but line 1 has 3"),
    ("im/a.jpg 0 1\n\nim/b.jpg 1 2\n", "line 3: labels must be 0 or 1, got '2'"),
    ("im/a.jpg 0 1\nim/b.jpg 1 10\n", "line 2: labels must be 0 or 1, got '10'"),
    ("im/a.jpg 0 x\n", "line 1: labels must be 0 or 1, got 'x'"),
    ("im/a.jpg 0 1\nim/b.jpg\n", "line 2: 'im/b.jpg' has no labels"),
    ("\n\n", "lists no images"),
])
def test_load_list_file_errors_name_the_line(tmp_path, text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        load_list_file(write_list(tmp_path, text))


def test_load_list_file_missing_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="list file .* does not exist"):
        load_list_file(tmp_path / "absent.txt")
    list_file = write_list(tmp_path, "im/a.jpg 1\nim/gone.jpg 1\n")
    with pytest.raises(DatasetNotFoundError, match="1 of the 2 images .* missing under root"):
        load_list_file(list_file)
    assert len(load_list_file(list_file, check_files=False)) == 2


# --- arrays and .npz ----------------------------------------------------------------------------------------


def test_load_arrays_accepts_the_usual_shapes():
    column = np.array([[0], [1], [2], [1]])
    pool = load_arrays(np.zeros((4, 5, 6), np.uint8), column, ["train"] * 3 + ["test"])
    assert pool.samples.shape == (4, 5, 6, 1) and pool.labels.tolist() == [0, 1, 2, 1]
    multi_hot = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    features = load_arrays(np.ones((3, 7), np.float32), multi_hot, name="f")
    assert features.kind == "features" and features.multi_label and features.labels.dtype == np.int64
    assert load_arrays(np.zeros((2, 3)), np.array([[True], [False]])).labels.tolist() == [1, 0]
    with pytest.raises(ValueError, match="uint8"):
        load_arrays(np.zeros((2, 4, 4, 3), np.float32), [0, 1])
    with pytest.raises(ValueError, match="integer"):
        load_arrays(np.zeros((2, 3)), [0.5, 1.0])


def test_load_npz_variants(tmp_path):
    features = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.savez(tmp_path / "feat.npz", features=features, labels=np.arange(5) % 2,
             partition=np.array(["train"] * 4 + ["test"]), class_names=np.array(["no", "yes"]))
    pool = load_npz(tmp_path / "feat.npz")
    assert pool.name == "feat" and pool.kind == "features" and pool.class_names == ("no", "yes")
    np.testing.assert_array_equal(pool.samples, features)
    assert list(pool.partition) == ["train"] * 4 + ["test"]
    np.savez(tmp_path / "keras.npz", x_train=np.zeros((3, 4, 4), np.uint8), y_train=np.arange(3),
             x_test=np.zeros((2, 4, 4), np.uint8), y_test=np.arange(2))
    pool = load_npz(tmp_path / "keras.npz", name="k")
    assert pool.samples.shape == (5, 4, 4, 1) and list(pool.partition) == ["train"] * 3 + ["test"] * 2
    np.savez(tmp_path / "bad.npz", pixels=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"holds arrays \['pixels'\]"):
        load_npz(tmp_path / "bad.npz")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_npz(tmp_path / "absent.npz")


# --- list files: paths with spaces (issue 12, item 11) ------------------------------------------------------


def test_load_list_file_paths_may_contain_spaces(tmp_path):
    images = ("my photos/a b.jpg", "my photos/scan 1.jpg", "im/c.jpg")
    list_file = write_list(
        tmp_path, "my photos/a b.jpg 0 1\nmy photos/scan 1.jpg  1 0\n\nim/c.jpg 1 1\n", images=images
    )
    pool = load_list_file(list_file)
    assert pool.samples.tolist() == [str(tmp_path / image) for image in images]
    np.testing.assert_array_equal(pool.labels, [[0, 1], [1, 0], [1, 1]])
    with pytest.raises(ValueError, match="line 1: labels must be 0 or 1, got '2'"):
        load_list_file(write_list(tmp_path, "my photos/a b.jpg 0 2\n", images=images))


# --- sources by name ----------------------------------------------------------------------------------------


def test_sources_by_name():
    from tfhash.data import sources

    assert sources.NAMES == ("digits", "mnist", "fashion_mnist", "cifar10", "flickr25k", "nuswide")
    digits = sources.get("digits")
    assert digits.name == "digits" and digits.samples.shape == (1797, 8, 8, 1)
    rgb = sources.get("digits", data_dir="/ignored", rgb=True)
    assert rgb.samples.shape == (1797, 8, 8, 3)
    np.testing.assert_array_equal(rgb.samples, np.repeat(digits.samples, 3, axis=-1))
    np.testing.assert_array_equal(rgb.labels, digits.labels)
    with pytest.raises(ValueError, match="digits, mnist, fashion_mnist, cifar10, flickr25k, nuswide"):
        sources.get("fashion-mnist")
    with pytest.raises(ValueError, match="`rgb` must be a bool"):
        sources.get("digits", rgb=1)


def test_sources_by_name_pass_data_dir_and_loader_arguments(tmp_path):
    from tfhash.data import sources

    images, _ = write_idx_directory(tmp_path / "data" / "mnist")
    pool = sources.get("mnist", tmp_path / "data", source="idx")
    np.testing.assert_array_equal(pool.samples[..., 0], images)
    assert sources.get("mnist", tmp_path / "data", rgb=True).samples.shape[-1] == 3
    for name in ("fashion_mnist", "cifar10", "flickr25k", "nuswide"):
        with pytest.raises(DatasetNotFoundError):
            sources.get(name, tmp_path / "empty")


@pytest.mark.parametrize("layout", ["all", "deephash"])
def test_list_file_datasets_by_name_read_the_whole_pool(tmp_path, layout):
    from tfhash.data import get_protocol, sources

    folder = tmp_path / "data" / "flickr25k"
    rng = np.random.default_rng(0)
    lines = []
    for index in range(40):
        image = folder / "images" / f"im {index}.jpg"  # a space in the name: the labels end the line
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(b"jpeg")
        labels = rng.integers(0, 2, 5)
        labels[index % 5] = 1
        lines.append(f"images/im {index}.jpg " + " ".join(map(str, labels)))
    if layout == "all":
        (folder / "all.txt").write_text("\n".join(lines) + "\n")
    else:  # DeepHash's files: the queries, the retrieval set, and a training subset of it (not read)
        (folder / "test.txt").write_text("\n".join(lines[:10]) + "\n")
        (folder / "database.txt").write_text("\n".join(lines[10:]) + "\n")
        (folder / "train.txt").write_text("\n".join(lines[10:20]) + "\n")
    pool = sources.get("flickr25k", tmp_path / "data")
    assert pool.name == "flickr25k" and pool.kind == "files" and pool.labels.shape == (40, 5)
    assert pool.multi_label and pool.samples[3] == str(folder / "images" / "im 3.jpg")
    expected = {"all": ["all"] * 40, "deephash": ["test"] * 10 + ["database"] * 30}[layout]
    assert pool.partition.tolist() == expected
    assert sources.get("flickr25k", folder).labels.shape == (40, 5)  # the folder itself works too
    # a multi-label protocol draws its own split from the pool
    protocol = get_protocol("flickr25k-dsah")
    small = dataclasses.replace(protocol, query_size=5, train_size=20, sizes=None)
    split = small.split(pool, seed=0)
    assert split.sizes == {"query": 5, "train": 20, "database": 35}


def test_a_list_file_dataset_with_two_label_sets_is_refused(tmp_path):
    from tfhash.data import sources

    folder = tmp_path / "nuswide"
    (folder / "im").mkdir(parents=True)
    (folder / "im" / "a.jpg").write_bytes(b"jpeg")
    (folder / "test.txt").write_text("im/a.jpg 0 1\n")
    (folder / "database.txt").write_text("im/a.jpg 0 1 1\n")
    with pytest.raises(ValueError, match="test.txt has 2 labels per image, database.txt 3"):
        sources.get("nuswide", tmp_path)
