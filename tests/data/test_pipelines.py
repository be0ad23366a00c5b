import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.batches import INPUTS, LABELS, SAMPLE_INDEX
from tfhash.data.augment import (
    Compose,
    GaussianNoise,
    RandomHorizontalFlip,
    RandomResizedCrop,
    cimon_strong_view,
    cimon_weak_view,
)
from tfhash.data.augment.augmentation import fold_seed
from tfhash.data.image_set import ImageSet
from tfhash.data.pipelines import evaluation_dataset, training_dataset

RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, (30, 12, 12, 3)).astype(np.uint8)
POOL = ImageSet("toy", PIXELS, np.arange(30) % 3)
TRAIN = np.arange(3, 26)  # 23 samples: batches of 5 leave a remainder of 3
# Cheap to trace; the papers' presets run through the pipeline in test_two_views.
VIEW = Compose([RandomResizedCrop(16, scale=(0.5, 1.0)), RandomHorizontalFlip(), GaussianNoise(8.0)])


def as_pair(batch):
    """``(inputs, sample_index)`` of a training batch, ``(inputs, labels)`` of an evaluation batch."""
    assert set(batch) in ({INPUTS, SAMPLE_INDEX}, {INPUTS, LABELS}), sorted(batch)
    return batch[INPUTS], batch[SAMPLE_INDEX if SAMPLE_INDEX in batch else LABELS]


def first_batch(dataset):
    return as_pair(next(iter(dataset)))


def epochs(dataset, count=2):
    """The batches of ``count`` epochs as numpy arrays: [[(images..., indices), ...], ...]."""
    return [
        [tf.nest.map_structure(lambda t: t.numpy(), as_pair(batch)) for batch in dataset] for _ in range(count)
    ]


def test_elements_are_named():
    training = next(iter(training_dataset(POOL, TRAIN, batch_size=5, seed=0)))
    assert set(training) == {"inputs", "sample_index"} and training["sample_index"].dtype == tf.int64
    two_views = next(iter(training_dataset(POOL, TRAIN, batch_size=5, augment=(VIEW, VIEW))))
    assert isinstance(two_views["inputs"], tuple) and len(two_views["inputs"]) == 2
    evaluation = next(iter(evaluation_dataset(POOL, TRAIN, batch_size=5)))
    assert set(evaluation) == {"inputs", "labels"}


def assert_same_epochs(first, second):
    for a, b in zip(first, second, strict=True):
        for x, y in zip(a, b, strict=True):
            tf.nest.map_structure(np.testing.assert_array_equal, x, y)


def test_training_yields_images_and_sample_indices():
    data = training_dataset(POOL, TRAIN, batch_size=5, seed=0)
    for epoch in epochs(data):
        assert [len(index) for _, index in epoch] == [5, 5, 5, 5, 3]
        indices = np.concatenate([index for _, index in epoch])
        np.testing.assert_array_equal(np.sort(indices), np.arange(len(TRAIN)))  # positions, each once
        for images, index in epoch:
            assert images.dtype == np.uint8 and images.shape[1:] == (12, 12, 3) and index.dtype == np.int64
            np.testing.assert_array_equal(images, PIXELS[TRAIN[index]])  # unaugmented: the pool's pixels


def test_drop_remainder_and_no_shuffle():
    data = training_dataset(POOL, TRAIN, batch_size=5, shuffle=False, drop_remainder=True)
    epoch = epochs(data, 1)[0]
    np.testing.assert_array_equal(np.concatenate([index for _, index in epoch]), np.arange(20))


def test_same_seed_same_batches_and_new_epochs_differ():
    def build(seed):
        return training_dataset(POOL, TRAIN, batch_size=5, augment=VIEW, seed=seed)

    first, second = epochs(build(4)), epochs(build(4))
    assert_same_epochs(first, second)
    orders = [np.concatenate([index for _, index in epoch]) for epoch in first]
    assert not np.array_equal(orders[0], orders[1])  # reshuffled every epoch
    assert not np.array_equal(first[0][0][0], epochs(build(5), 1)[0][0][0])  # another seed, other batches


def test_augmentation_is_fresh_every_epoch_unless_a_view_is_fixed():
    def by_index(epoch):
        images = np.concatenate([images for images, _ in epoch])
        return images[np.argsort(np.concatenate([index for _, index in epoch]))]

    fresh = epochs(training_dataset(POOL, TRAIN, batch_size=8, augment=VIEW, seed=0))
    assert not np.array_equal(by_index(fresh[0]), by_index(fresh[1]))
    fixed = epochs(training_dataset(POOL, TRAIN, batch_size=8, augment=VIEW, view=1, seed=0))
    np.testing.assert_array_equal(by_index(fixed[0]), by_index(fixed[1]))
    other = epochs(training_dataset(POOL, TRAIN, batch_size=8, augment=VIEW, view=2, seed=0), 1)
    assert not np.array_equal(by_index(fixed[0]), by_index(other[0]))
    # A fixed view does not depend on the order or the batch size.
    unshuffled = epochs(
        training_dataset(POOL, TRAIN, batch_size=3, augment=VIEW, view=1, seed=0, shuffle=False), 1
    )
    np.testing.assert_array_equal(by_index(fixed[0]), by_index(unshuffled[0]))


def test_augmentation_matches_the_layer_with_the_per_sample_seed():
    # The documented seed: fold(fold(fold([seed, 0], 1), view), position), then fold(., stream).
    flip = RandomHorizontalFlip()
    data = training_dataset(POOL, TRAIN, batch_size=23, augment=flip, view=3, seed=9, shuffle=False)
    images, _ = first_batch(data)
    for position in range(len(TRAIN)):
        seed = fold_seed(fold_seed(fold_seed(fold_seed(tf.constant([9, 0], tf.int64), 1), 3), position), 0)
        expected = flip(PIXELS[TRAIN[position]][None], training=True, seed=seed)[0]
        np.testing.assert_array_equal(images[position], expected)


def test_two_views():
    weak, strong = cimon_weak_view(16), cimon_strong_view(16)
    data = training_dataset(POOL, TRAIN, batch_size=6, augment=(weak, strong), seed=0)
    (first, second), index = first_batch(data)
    assert first.shape == second.shape == (6, 16, 16, 3) and first.dtype == second.dtype == tf.uint8
    assert index.shape == (6,)
    # The same layer twice gives two independent views.
    (a, b), _ = first_batch(training_dataset(POOL, TRAIN, batch_size=6, augment=(VIEW, VIEW), seed=0))
    assert not np.array_equal(a, b)
    # Deterministic too.
    (c, d), _ = first_batch(training_dataset(POOL, TRAIN, batch_size=6, augment=(VIEW, VIEW), seed=0))
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(b, d)


def test_resize_to_image_size():
    data = training_dataset(POOL, TRAIN, batch_size=4, image_size=(20, 24), shuffle=False)
    images, index = first_batch(data)
    expected = tf.cast(tf.round(tf.image.resize(PIXELS[TRAIN[:4]].astype(np.float32), (20, 24))), tf.uint8)
    np.testing.assert_array_equal(images, expected)
    # The crop's own size wins unless image_size differs, then the crop is resized.
    images, _ = first_batch(
        training_dataset(POOL, TRAIN, batch_size=4, augment=RandomResizedCrop(8), image_size=10)
    )
    assert images.shape == (4, 10, 10, 3)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """The first 12 pool images written as PNG and JPEG files, alternately, and their decoded pixels."""
    folder = tmp_path_factory.mktemp("images")
    paths, decoded = [], []
    for i, image in enumerate(PIXELS[:12]):
        if i % 2:
            path, encoded = folder / f"{i}.jpg", tf.io.encode_jpeg(image, quality=95)
        else:
            path, encoded = folder / f"{i}.png", tf.io.encode_png(image)
        tf.io.write_file(str(path), encoded)
        paths.append(str(path))
        decoded.append(tf.io.decode_image(encoded).numpy())
    return ImageSet("files", np.array(paths), np.arange(12) % 3), np.stack(decoded)


def test_files_are_decoded(image_files):
    image_files, decoded = image_files
    indices = np.arange(12)
    images, labels = first_batch(evaluation_dataset(image_files, indices, batch_size=12))
    np.testing.assert_array_equal(images.numpy()[::2], PIXELS[:12:2])  # PNG: lossless
    np.testing.assert_array_equal(images, decoded)
    np.testing.assert_array_equal(labels, np.arange(12) % 3)
    training, index = first_batch(training_dataset(image_files, indices, batch_size=12, seed=2))
    np.testing.assert_array_equal(training, decoded[index])
    gray, _ = first_batch(evaluation_dataset(image_files, indices, batch_size=2, channels=1))
    assert gray.shape == (2, 12, 12, 1)


@pytest.mark.parametrize("cache", [True, "file"])
def test_cached_files_give_the_same_batches(image_files, cache, tmp_path):
    image_files, _ = image_files
    training_cache, evaluation_cache = (
        (True, True) if cache is True else (str(tmp_path / "training"), str(tmp_path / "evaluation"))
    )
    indices = np.arange(1, 11)

    def training(cache):
        return training_dataset(image_files, indices, batch_size=4, augment=(VIEW, VIEW), seed=1, cache=cache)

    def evaluation(cache):
        return evaluation_dataset(image_files, indices, 4, image_size=16, cache=cache)

    assert_same_epochs(epochs(training(False)), epochs(training(training_cache)))
    assert_same_epochs(epochs(evaluation(False)), epochs(evaluation(evaluation_cache)))


def test_evaluation_yields_images_and_labels_in_order():
    multi_hot = (
        np.eye(4, dtype=np.int64)[np.arange(30) % 4] | np.eye(4, dtype=np.int64)[(np.arange(30) + 1) % 4]
    )
    pool = ImageSet("multi", PIXELS, multi_hot)
    indices = np.array([7, 2, 29, 0, 11])
    batches = epochs(evaluation_dataset(pool, indices, batch_size=2), 1)[0]
    np.testing.assert_array_equal(np.concatenate([images for images, _ in batches]), PIXELS[indices])
    np.testing.assert_array_equal(np.concatenate([labels for _, labels in batches]), multi_hot[indices])


def test_feature_sets_pass_through_as_float32():
    features = RNG.normal(size=(30, 7))
    pool = ImageSet("features", features, np.arange(30) % 3)
    images, index = first_batch(training_dataset(pool, TRAIN, batch_size=23, shuffle=False))
    assert images.dtype == tf.float32
    np.testing.assert_allclose(images, features[TRAIN].astype(np.float32))
    evaluated, labels = first_batch(evaluation_dataset(pool, TRAIN, batch_size=23))
    np.testing.assert_array_equal(evaluated, images)
    with pytest.raises(ValueError, match="`augment` and `image_size`"):
        training_dataset(pool, TRAIN, batch_size=4, augment=VIEW)


def test_distribution_options():
    for data in (training_dataset(POOL, TRAIN, 4), evaluation_dataset(POOL, TRAIN, 4)):
        policy = data.options().experimental_distribute.auto_shard_policy
        assert policy == tf.data.experimental.AutoShardPolicy.DATA
        assert data.options().deterministic


def test_mirrored_strategy_sees_every_sample_once_per_epoch(mirrored_strategy):
    strategy = mirrored_strategy
    data = training_dataset(POOL, TRAIN, batch_size=6, augment=(VIEW, VIEW), seed=0)
    distributed = strategy.experimental_distribute_dataset(data)
    orders = []
    for _ in range(2):
        seen = []
        for batch in distributed:
            (first, _), index = batch[INPUTS], batch[SAMPLE_INDEX]
            parts = strategy.experimental_local_results(index)
            assert len(parts) == 2
            seen.extend(np.concatenate([part.numpy() for part in parts]))
            assert strategy.experimental_local_results(first)[0].shape[1:] == (16, 16, 3)
        np.testing.assert_array_equal(np.sort(seen), np.arange(len(TRAIN)))
        orders.append(seen)
    assert orders[0] != orders[1]


def test_input_context_shards_before_decoding():
    contexts = [
        tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=4)
        for i in range(2)
    ]
    shards = [
        epochs(training_dataset(POOL, TRAIN, batch_size=8, seed=3, input_context=c), 2) for c in contexts
    ]
    for epoch in range(2):
        parts = [np.concatenate([index for _, index in shard[epoch]]) for shard in shards]
        assert all(len(index) <= 2 for shard in shards for _, index in shard[epoch])  # 8 / 4 replicas
        np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(TRAIN)))
    evaluation = [epochs(evaluation_dataset(POOL, TRAIN, 8, input_context=c), 1)[0] for c in contexts]
    images = np.concatenate([images for shard in evaluation for images, _ in shard])
    assert len(images) == len(TRAIN)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(indices=np.array([0, 30])), "indices"),
        (dict(indices=np.array([[0, 1]])), "indices"),
        (dict(indices=np.array([0.5])), "indices"),
        (dict(batch_size=0), "batch_size"),
        (dict(augment=keras.layers.RandomFlip()), "augment"),
        (dict(augment=(VIEW, VIEW, VIEW)), "augment"),
        (dict(view=-1, augment=VIEW), "view"),
        (dict(seed=None), "seed"),
        (dict(image_size=(0, 4)), "image_size"),
        (dict(image_set="pool"), "image_set"),
    ],
)
def test_invalid_arguments(kwargs, argument):
    arguments = {**dict(image_set=POOL, indices=TRAIN, batch_size=4), **kwargs}
    with pytest.raises(ValueError, match=f"`{argument}`"):
        first_batch(training_dataset(**arguments))


def test_invalid_cache_and_channels(image_files):
    image_files, _ = image_files
    with pytest.raises(ValueError, match="`cache`"):
        training_dataset(image_files, np.arange(4), 2, cache=1)
    with pytest.raises(ValueError, match="`channels`"):
        evaluation_dataset(image_files, np.arange(4), 2, channels=4)


def test_keras_fit_under_mirrored_strategy(mirrored_strategy):
    strategy = mirrored_strategy
    with strategy.scope():
        model = keras.Sequential(
            [
                keras.Input((16, 16, 3)),
                keras.layers.Rescaling(1 / 255),
                keras.layers.Flatten(),
                keras.layers.Dense(4),
            ]
        )
        # The pipeline's targets are sample indices; this loss ignores them.
        model.compile(optimizer="sgd", loss=lambda _, h: keras.ops.mean(keras.ops.square(h), axis=-1))
    history = model.fit(
        training_dataset(POOL, TRAIN, 6, augment=VIEW, drop_remainder=True).map(as_pair),
        epochs=2,
        verbose=0,
        shuffle=False,
    )
    assert len(history.history["loss"]) == 2 and np.all(np.isfinite(history.history["loss"]))

