import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.batches import INPUTS, LABELS, SAMPLE_INDEX
from tfhash.data.augment import ColorJitter, Compose, RandomHorizontalFlip, RandomResizedCrop
from tfhash.data.feature_bank import FeatureBank
from tfhash.data.image_set import ImageSet
from tfhash.data.pipelines import evaluation_dataset, training_dataset

RNG = np.random.default_rng(0)
POOL = ImageSet("toy", RNG.integers(0, 256, (40, 10, 10, 3)).astype(np.uint8), np.arange(40) % 4)
TRAIN, QUERY, DATABASE = np.arange(5, 22), np.arange(0, 5), np.arange(22, 40)
EVALUATION = {"query": QUERY, "database": DATABASE}
WEAK = Compose([RandomResizedCrop(12, scale=(0.5, 1.0)), RandomHorizontalFlip()], name="weak")
FLIP = RandomHorizontalFlip()  # the cheapest augmentation to trace, for the tests of the cache itself
STRONG = Compose(
    [RandomResizedCrop(12, scale=(0.2, 1.0)), ColorJitter(0.4, 0.4, 0.4, 0.1, random_order=False)],
    name="strong",
)


class CountingBackbone(keras.Model):
    """A tiny frozen backbone, uint8 (B, H, W, 3) -> (B, 6), that counts its calls.

    The counter is a plain tf.Variable attribute, deliberately not one of the model's weights (Keras 3 does
    not track it), so that counting does not change the weights fingerprint of the cache key.
    """

    def __init__(self, seed=0, **kwargs):
        super().__init__(name="counting", **kwargs)
        self.conv = keras.layers.Conv2D(6, 3, kernel_initializer=keras.initializers.GlorotUniform(seed))
        self.image_size = 12
        self.calls = tf.Variable(0, dtype=tf.int64, trainable=False)

    def call(self, images):
        self.calls.assign_add(1)
        return tf.reduce_mean(self.conv(tf.cast(images, tf.float32) / 255.0), axis=[1, 2])


@pytest.fixture
def backbone():
    model = CountingBackbone()
    model(np.zeros((1, 12, 12, 3), np.uint8))
    model.calls.assign(0)
    return model


@pytest.fixture(scope="module")
def reference_cache(tmp_path_factory):
    """A cache directory filled by `bank` with its default arguments, built once and copied by the tests."""
    directory = tmp_path_factory.mktemp("reference")
    model = CountingBackbone()  # same initial weights as the `backbone` fixture's
    model(np.zeros((1, 12, 12, 3), np.uint8))
    bank(model, directory)
    return directory


@pytest.fixture
def filled(reference_cache, tmp_path):
    """tmp_path holding the reference cache files."""
    shutil.copytree(reference_cache, tmp_path, dirs_exist_ok=True)
    return tmp_path


def bank(backbone, directory, **kwargs):
    arguments = dict(
        protocol="toy-protocol",
        train=TRAIN,
        evaluation=EVALUATION,
        augment=FLIP,
        views=2,
        seed=4,
        directory=str(directory),
        batch_size=7,
        verbose=0,
    )
    return FeatureBank(backbone, POOL, **{**arguments, **kwargs})


def encode(backbone, images):
    return backbone(images, training=False).numpy()


def as_pair(batch):
    """``(inputs, sample_index)`` of a training batch, ``(inputs, labels)`` of an evaluation batch."""
    assert set(batch) in ({INPUTS, SAMPLE_INDEX}, {INPUTS, LABELS}), sorted(batch)
    return batch[INPUTS], batch[SAMPLE_INDEX if SAMPLE_INDEX in batch else LABELS]


def first_batch(dataset):
    return as_pair(next(iter(dataset)))


def batches(dataset, epochs=2):
    """The batches of ``epochs`` epochs: a training stream (built with that many epochs) cut into equal parts,
    or an evaluation dataset iterated ``epochs`` times."""
    if SAMPLE_INDEX in dataset.element_spec:
        served = [tf.nest.map_structure(lambda t: t.numpy(), as_pair(batch)) for batch in dataset]
        steps = len(served) // epochs
        assert len(served) == len(dataset) == steps * epochs
        return [served[k * steps : (k + 1) * steps] for k in range(epochs)]
    return [
        [tf.nest.map_structure(lambda t: t.numpy(), as_pair(batch)) for batch in dataset] for _ in range(epochs)
    ]


@pytest.mark.parametrize("augment", [WEAK, (WEAK, STRONG)], ids=["one view", "weak and strong"])
def test_same_batches_as_the_backbone_on_the_image_pipeline(backbone, tmp_path, augment):
    # One stored view: every epoch serves view 0, which is the image pipeline's fixed view 0 for this seed.
    features = bank(backbone, tmp_path, augment=augment, views=1)
    served = batches(features.training_dataset(batch_size=5, epochs=2))
    images = batches(
        training_dataset(POOL, TRAIN, 5, epochs=2, augment=augment, view=0, seed=4, image_size=12)
    )
    for served_epoch, image_epoch in zip(served, images, strict=True):
        for (feature, index), (image, image_index) in zip(served_epoch, image_epoch, strict=True):
            np.testing.assert_array_equal(index, image_index)
            expected = tf.nest.map_structure(lambda x: encode(backbone, x), image)
            tf.nest.map_structure(
                lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), feature, expected
            )
            assert tf.nest.flatten(feature)[0].dtype == np.float32


def stored_views(backbone, views, augment):
    """(views, n, D) features of the image pipeline's fixed views, computed directly."""
    result = []
    for view in range(views):
        images, _ = first_batch(
            training_dataset(
                POOL, TRAIN, len(TRAIN), epochs=1, augment=augment, view=view, seed=4, shuffle=False,
                image_size=12,
            )
        )
        result.append(encode(backbone, images))
    return np.stack(result)


def test_each_epoch_samples_one_stored_view_per_sample(backbone, tmp_path):
    features = bank(backbone, tmp_path, augment=WEAK, views=3)
    expected = stored_views(backbone, 3, WEAK)
    np.testing.assert_allclose(features.train[0], expected, rtol=1e-5, atol=1e-6)
    used = set()
    for epoch in batches(features.training_dataset(batch_size=6, epochs=4), epochs=4):
        for feature, index in epoch:
            distances = np.abs(expected[:, index] - feature[None]).max(axis=-1)  # (views, batch)
            assert np.all(distances.min(axis=0) < 1e-5)
            used.update(zip(index, distances.argmin(axis=0)))
    assert {view for _, view in used} == {0, 1, 2}
    # Deterministic: another bank object with the same seed serves the same batches.
    again = bank(backbone, tmp_path, augment=WEAK, views=3)
    tf.nest.map_structure(
        np.testing.assert_array_equal,
        batches(features.training_dataset(batch_size=6, epochs=2)),
        batches(again.training_dataset(batch_size=6, epochs=2)),
    )


def test_a_resumed_stream_serves_the_uninterrupted_runs_views(backbone, tmp_path):
    features = bank(backbone, tmp_path, augment=(WEAK, WEAK), views=3)
    uninterrupted = batches(features.training_dataset(batch_size=5, epochs=4), epochs=4)
    tf.random.set_seed(5)  # the global seed plays no part
    resumed = batches(features.training_dataset(batch_size=5, epochs=4, initial_epoch=2), epochs=2)
    tf.nest.map_structure(np.testing.assert_array_equal, uninterrupted[2:], resumed)
    assert features.steps_per_epoch(5) == 4 and features.steps_per_epoch(5, drop_remainder=True) == 3
    assert len(features.training_dataset(5, epochs=3, drop_remainder=True)) == 9


def test_two_views_of_one_augmentation_are_different_stored_views(backbone, tmp_path):
    features = bank(backbone, tmp_path, augment=(WEAK, WEAK), views=2)
    assert features.train.shape == (1, 2, len(TRAIN), 6) and features.shared_views
    expected = stored_views(backbone, 2, WEAK)
    for epoch in batches(features.training_dataset(batch_size=6, epochs=2)):
        for (first, second), index in epoch:
            first_view = np.abs(expected[:, index] - first[None]).max(axis=-1).argmin(axis=0)
            second_view = np.abs(expected[:, index] - second[None]).max(axis=-1).argmin(axis=0)
            np.testing.assert_array_equal(second_view, 1 - first_view)  # with 2 views: the other one


def test_weak_and_strong_views_are_stored_apart(backbone, tmp_path):
    features = bank(backbone, tmp_path, augment=(WEAK, STRONG), views=2)
    assert features.train.shape == (2, 2, len(TRAIN), 6) and not features.shared_views


def test_cache_hit_runs_no_backbone(backbone, tmp_path):
    first = bank(backbone, tmp_path)
    assert sorted(first.extracted) == ["database", "query", "train"]
    batches = [
        -(-count // 7) for count in (len(QUERY), len(DATABASE), len(TRAIN), len(TRAIN))
    ]  # batch_size 7
    assert int(backbone.calls) == sum(batches)
    backbone.calls.assign(0)
    second = bank(backbone, tmp_path)
    assert second.extracted == [] and int(backbone.calls) == 0
    np.testing.assert_array_equal(second.train, first.train)
    np.testing.assert_array_equal(second.evaluation["database"], first.evaluation["database"])
    for split, path in second.files.items():
        key = json.loads(open(path[: -len(".npy")] + ".json").read())
        assert key["dataset"] == "toy" and key["protocol"] == "toy-protocol" and key["split"] == split
        assert key["backbone"]["name"] == "counting" and key["image_size"] == [12, 12]
    assert json.loads(open(second.files["train"][:-4] + ".json").read())["views"] == 2


class TraceCountingBackbone(CountingBackbone):
    """Counts the Python executions of `call`: one per trace inside a tf.function."""

    traces = 0

    def call(self, images):
        type(self).traces += 1
        return super().call(images)


def test_banks_of_one_backbone_share_keras_predict_trace(tmp_path):
    # The bank encodes through Keras's own predict step (traced once per model, XLA where Keras picks it), so
    # a second bank of the same backbone traces nothing new.
    model = TraceCountingBackbone()
    first = bank(model, tmp_path / "first", train=None)
    traced = TraceCountingBackbone.traces
    second = bank(model, tmp_path / "second", train=None, evaluation={"database": DATABASE})
    assert second.extracted == ["database"] and TraceCountingBackbone.traces == traced
    np.testing.assert_array_equal(first.evaluation["database"], second.evaluation["database"])


def test_a_plain_callable_backbone_is_traced_by_the_bank(tmp_path):
    model = CountingBackbone()
    model(np.zeros((1, 12, 12, 3), np.uint8))

    def features(images, training=False):
        return model(images, training=training)

    features.name = "counting"
    held = bank(features, tmp_path, train=None)
    np.testing.assert_allclose(held.evaluation["database"], encode(model, POOL.samples[DATABASE]), atol=1e-6)


@pytest.mark.parametrize(
    "change, recomputed",
    [
        (dict(seed=5), ["train"]),
        (dict(views=3), ["train"]),
        (dict(augment=STRONG), ["train"]),
        (dict(protocol="other"), ["database", "query", "train"]),
        (dict(image_size=14), ["database", "query", "train"]),
        (dict(backbone_name="renamed"), ["database", "query", "train"]),
        (dict(train=TRAIN[:-1]), ["train"]),
        (dict(dtype="float16"), ["database", "query", "train"]),
    ],
)
def test_key_change_recomputes(backbone, filled, change, recomputed):
    assert sorted(bank(backbone, filled, **change).extracted) == recomputed


def test_an_identical_backbone_built_later_hits_the_cache(filled):
    # Its layers get other auto-numbered names than the reference's: names are not part of the key.
    same = CountingBackbone()
    same(np.zeros((1, 12, 12, 3), np.uint8))
    assert bank(same, filled).extracted == [] and int(same.calls) == 1


def test_other_weights_recompute(filled):
    other = CountingBackbone(seed=1)
    other(np.zeros((1, 12, 12, 3), np.uint8))
    assert sorted(bank(other, filled).extracted) == ["database", "query", "train"]


def test_layer_names_and_seeds_are_not_part_of_the_key(backbone, filled):
    assert bank(backbone, filled, augment=RandomHorizontalFlip(name="x", seed=3)).extracted == []
    renamed = Compose([RandomResizedCrop(12, scale=(0.5, 1.0), seed=8), RandomHorizontalFlip()], name="x")
    assert bank(backbone, filled, augment=WEAK).extracted == ["train"]
    assert bank(backbone, filled, augment=renamed).extracted == []


def test_interrupted_extraction_leaves_no_cache_file(backbone, tmp_path):
    class Failing(CountingBackbone):
        def call(self, images):
            tf.debugging.assert_less(self.calls, tf.constant(2, tf.int64), message="interrupted")
            return super().call(images)

    failing = Failing()
    failing(np.zeros((1, 12, 12, 3), np.uint8))
    failing.calls.assign(0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="interrupted"):
        bank(failing, tmp_path, evaluation=None)
    assert os.listdir(tmp_path) == []
    failing.calls.assign(-1000)
    resumed = bank(failing, tmp_path, evaluation=None)
    assert resumed.extracted == ["train"]
    stem = os.path.basename(resumed.files["train"])[: -len(".npy")]
    assert sorted(os.listdir(tmp_path)) == [stem + ".json", stem + ".npy"]


def test_float16_storage_is_served_as_float32(backbone, tmp_path):
    features = bank(backbone, tmp_path, dtype="float16")
    assert features.train.dtype == np.float16 and np.load(features.files["train"]).dtype == np.float16
    feature, _ = first_batch(features.training_dataset(batch_size=4, epochs=1))
    assert feature.dtype == tf.float32


def test_evaluation_features_and_dataset(backbone, tmp_path):
    features = bank(backbone, tmp_path)
    images, labels = first_batch(evaluation_dataset(POOL, DATABASE, len(DATABASE), image_size=12))
    np.testing.assert_allclose(
        features.evaluation["database"], encode(backbone, images), rtol=1e-5, atol=1e-6
    )
    served = batches(features.evaluation_dataset("database", batch_size=7), epochs=1)[0]
    np.testing.assert_array_equal(np.concatenate([f for f, _ in served]), features.evaluation["database"])
    np.testing.assert_array_equal(np.concatenate([y for _, y in served]), POOL.labels[DATABASE])
    assert features.feature_size == 6
    with pytest.raises(ValueError, match="`split`"):
        features.evaluation_dataset("train", 4)


def test_progress_bar(backbone, tmp_path, capsys):
    bank(backbone, tmp_path, verbose=1, evaluation=None)
    out = capsys.readouterr().out
    assert "FeatureBank: toy / toy-protocol / train: features of 34 images through counting" in out
    assert "34/34" in out


def test_training_with_cached_features_under_mirrored_strategy(backbone, tmp_path, mirrored_strategy):
    features = bank(backbone, tmp_path, augment=(WEAK, WEAK), views=2)
    strategy = mirrored_strategy
    seen = []
    for batch in strategy.experimental_distribute_dataset(features.training_dataset(batch_size=4, epochs=1)):
        (first, _), index = batch[INPUTS], batch[SAMPLE_INDEX]
        seen.extend(np.concatenate([i.numpy() for i in strategy.experimental_local_results(index)]))
        assert strategy.experimental_local_results(first)[0].shape[1] == 6
    np.testing.assert_array_equal(np.sort(seen), np.arange(len(TRAIN)))


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(views=0), "views"),
        (dict(augment=None, views=2), "views"),
        (dict(augment=(WEAK, WEAK), views=1), "views"),
        (dict(protocol=""), "protocol"),
        (dict(dtype="int8"), "dtype"),
        (dict(augment=keras.layers.RandomFlip()), "augment"),
        (dict(train=None, evaluation=None), "train"),
        (dict(evaluation={"train": QUERY}), "evaluation"),
        (dict(image_size=-1), "image_size"),
        (dict(verbose=3), "verbose"),
    ],
)
def test_invalid_arguments(backbone, tmp_path, kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        bank(backbone, tmp_path, **kwargs)


def test_rejects_feature_image_sets(backbone, tmp_path):
    features = ImageSet("features", RNG.normal(size=(40, 5)), np.arange(40) % 4)
    with pytest.raises(ValueError, match="`image_set`"):
        FeatureBank(backbone, features, protocol="p", train=TRAIN, directory=str(tmp_path))


def test_select_serves_a_subset_of_the_held_features_without_extracting(backbone, tmp_path):
    features = bank(backbone, tmp_path)
    before = features.train.copy()
    backbone.calls.assign(0)
    chosen = features.select(train=[7, 12, 20], evaluation={"query": [23, 30], "database": [22, 25, 39]})
    assert int(backbone.calls.numpy()) == 0
    np.testing.assert_array_equal(chosen.train, features.train[:, :, [2, 7, 15]])
    np.testing.assert_array_equal(chosen.evaluation["query"], features.evaluation["database"][[1, 8]])
    np.testing.assert_array_equal(chosen.evaluation["database"], features.evaluation["database"][[0, 3, 17]])
    np.testing.assert_array_equal(features.train, before)  # the source bank is unchanged
    _, labels = first_batch(chosen.evaluation_dataset("query", 8))
    np.testing.assert_array_equal(labels, POOL.labels[[23, 30]])
    served = batches(chosen.training_dataset(batch_size=3, epochs=1, shuffle=False), epochs=1)[0]
    np.testing.assert_array_equal(served[0][1], [0, 1, 2])
    assert chosen.steps_per_epoch(3) == 1 and chosen.feature_size == features.feature_size
    with pytest.raises(ValueError, match=r"`train`: 1 of the 2 images \(e.g. index 3\)"):
        features.select(train=[3, 7])
    with pytest.raises(ValueError, match=r"`evaluation\['query'\]`: no evaluation split"):
        features.select(evaluation={"query": [0, 22]})  # one query and one database image
    with pytest.raises(ValueError, match="no training split"):
        bank(backbone, tmp_path, train=None).select(train=[7])
