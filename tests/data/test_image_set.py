"""ImageSet: the three sample forms, its derived properties, subsets and the validation of its fields."""

import dataclasses

import numpy as np
import pytest

from tfhash.data import ImageSet

LABELS = np.array([0, 2, 1, 2])


def pixels(n=4, channels=1):
    return np.arange(n * 8 * 8 * channels, dtype=np.uint8).reshape(n, 8, 8, channels)


@pytest.mark.parametrize(
    "samples, kind",
    [
        (pixels(), "pixels"),
        (pixels(channels=3), "pixels"),
        (np.array(["a.jpg", "b.jpg", "c.png", "d.jpg"]), "files"),
        (np.array([b"a.jpg", b"b.jpg", b"c.png", b"d.jpg"]), "files"),
        (np.zeros((4, 5), np.float32), "features"),
        (np.zeros((4, 5), np.float64), "features"),
    ],
)
def test_the_three_sample_forms(samples, kind):
    pool = ImageSet("toy", samples, LABELS)
    assert pool.kind == kind and len(pool) == 4
    assert not pool.multi_label and pool.num_classes == 3
    assert pool.partition.tolist() == ["train"] * 4 and pool.class_names == ()


def test_fields_are_converted_and_frozen():
    pool = ImageSet(
        "toy",
        list(pixels()),
        [0, 1, 0, 1],
        partition=["train", "test", "test", "train"],
        class_names=["zero", "one"],
    )
    assert isinstance(pool.samples, np.ndarray) and pool.samples.shape == (4, 8, 8, 1)
    assert isinstance(pool.labels, np.ndarray) and pool.partition.dtype.kind == "U"
    assert pool.class_names == ("zero", "one")
    with pytest.raises(dataclasses.FrozenInstanceError):
        pool.name = "other"


def test_multi_hot_labels():
    labels = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 1]])
    pool = ImageSet("multi", pixels(), labels)
    assert pool.multi_label and pool.num_classes == 3


def test_subset_keeps_name_classes_and_partition():
    pool = ImageSet(
        "toy", pixels(), LABELS, partition=["train", "train", "test", "test"], class_names=("a", "b", "c")
    )
    part = pool.subset([3, 0])
    assert isinstance(part, ImageSet) and part.name == "toy" and part.class_names == ("a", "b", "c")
    np.testing.assert_array_equal(part.samples, pool.samples[[3, 0]])
    assert part.labels.tolist() == [2, 0] and part.partition.tolist() == ["test", "train"]
    assert len(pool.subset(np.array([True, False, True, False]))) == 2  # a boolean mask works too
    assert len(pool) == 4  # the pool itself is untouched


@pytest.mark.parametrize(
    "samples, labels, kwargs, match",
    [
        (np.zeros((0, 8, 8, 1), np.uint8), np.zeros(0, int), {}, "empty"),
        (np.array(5.0), np.zeros(1, int), {}, "empty"),
        (pixels(), np.array([0, 1, 0]), {}, "4 samples but 3 labels"),
        (pixels(), np.array([0.0, 1.0, 0.0, 1.0]), {}, "integer class ids"),
        (pixels(), np.zeros((4, 2, 2), int), {}, "integer class ids"),
        (pixels(), LABELS, {"partition": ["train"] * 3}, r"partition.*\(4,\)"),
        (pixels().astype(np.float32), LABELS, {}, "must be uint8"),
        (np.zeros((4, 5), np.int64), LABELS, {}, "file paths"),
        (np.zeros((4, 2, 2), np.uint8), LABELS, {}, "float features"),
    ],
    ids=[
        "no samples",
        "scalar",
        "label count",
        "float labels",
        "rank-3 labels",
        "partition shape",
        "float pixels",
        "integer features",
        "rank-3 samples",
    ],
)
def test_invalid_fields_are_refused(samples, labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImageSet("bad", samples, labels, **kwargs)
