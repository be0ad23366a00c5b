import os

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
from tfhash.data.pipelines import evaluation_dataset, steps_per_epoch, training_dataset

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
    """The batches of ``count`` epochs as numpy arrays: [[(images..., indices), ...], ...].

    A training dataset is one stream of its epochs (built with ``epochs=count``), cut into ``count`` equal
    parts; an evaluation dataset is iterated ``count`` times.
    """
    if SAMPLE_INDEX in dataset.element_spec:
        batches = [tf.nest.map_structure(lambda t: t.numpy(), as_pair(batch)) for batch in dataset]
        assert len(batches) == len(dataset) and len(batches) % count == 0
        steps = len(batches) // count
        return [batches[k * steps : (k + 1) * steps] for k in range(count)]
    return [
        [tf.nest.map_structure(lambda t: t.numpy(), as_pair(batch)) for batch in dataset] for _ in range(count)
    ]


def test_elements_are_named():
    training = next(iter(training_dataset(POOL, TRAIN, batch_size=5, epochs=1, seed=0)))
    assert set(training) == {"inputs", "sample_index"} and training["sample_index"].dtype == tf.int64
    two_views = next(iter(training_dataset(POOL, TRAIN, batch_size=5, epochs=1, augment=(VIEW, VIEW))))
    assert isinstance(two_views["inputs"], tuple) and len(two_views["inputs"]) == 2
    evaluation = next(iter(evaluation_dataset(POOL, TRAIN, batch_size=5)))
    assert set(evaluation) == {"inputs", "labels"}


def assert_same_epochs(first, second):
    for a, b in zip(first, second, strict=True):
        for x, y in zip(a, b, strict=True):
            tf.nest.map_structure(np.testing.assert_array_equal, x, y)


def test_training_yields_images_and_sample_indices():
    data = training_dataset(POOL, TRAIN, batch_size=5, epochs=2, seed=0)
    for epoch in epochs(data):
        assert [len(index) for _, index in epoch] == [5, 5, 5, 5, 3]
        indices = np.concatenate([index for _, index in epoch])
        np.testing.assert_array_equal(np.sort(indices), np.arange(len(TRAIN)))  # positions, each once
        for images, index in epoch:
            assert images.dtype == np.uint8 and images.shape[1:] == (12, 12, 3) and index.dtype == np.int64
            np.testing.assert_array_equal(images, PIXELS[TRAIN[index]])  # unaugmented: the pool's pixels


def test_drop_remainder_and_no_shuffle():
    data = training_dataset(POOL, TRAIN, batch_size=5, epochs=1, shuffle=False, drop_remainder=True)
    epoch = epochs(data, 1)[0]
    np.testing.assert_array_equal(np.concatenate([index for _, index in epoch]), np.arange(20))


def test_same_seed_same_batches_and_new_epochs_differ():
    def build(seed, count=2):
        return training_dataset(POOL, TRAIN, batch_size=5, epochs=count, augment=VIEW, seed=seed)

    first, second = epochs(build(4)), epochs(build(4))
    assert_same_epochs(first, second)
    orders = [np.concatenate([index for _, index in epoch]) for epoch in first]
    assert not np.array_equal(orders[0], orders[1])  # reshuffled every epoch
    assert not np.array_equal(first[0][0][0], epochs(build(5, 1), 1)[0][0][0])  # another seed, other batches


def test_augmentation_is_fresh_every_epoch_unless_a_view_is_fixed():
    def by_index(epoch):
        images = np.concatenate([images for images, _ in epoch])
        return images[np.argsort(np.concatenate([index for _, index in epoch]))]

    fresh = epochs(training_dataset(POOL, TRAIN, batch_size=8, epochs=2, augment=VIEW, seed=0))
    assert not np.array_equal(by_index(fresh[0]), by_index(fresh[1]))
    fixed = epochs(training_dataset(POOL, TRAIN, batch_size=8, epochs=2, augment=VIEW, view=1, seed=0))
    np.testing.assert_array_equal(by_index(fixed[0]), by_index(fixed[1]))
    other = epochs(training_dataset(POOL, TRAIN, batch_size=8, epochs=1, augment=VIEW, view=2, seed=0), 1)
    assert not np.array_equal(by_index(fixed[0]), by_index(other[0]))
    # A fixed view does not depend on the order or the batch size.
    unshuffled = epochs(
        training_dataset(POOL, TRAIN, batch_size=3, epochs=1, augment=VIEW, view=1, seed=0, shuffle=False), 1
    )
    np.testing.assert_array_equal(by_index(fixed[0]), by_index(unshuffled[0]))


def test_augmentation_matches_the_layer_with_the_per_sample_seed():
    # The documented seed: fold(fold(fold([seed, 0], 1), view), position), then fold(., stream).
    flip = RandomHorizontalFlip()
    data = training_dataset(POOL, TRAIN, batch_size=23, epochs=1, augment=flip, view=3, seed=9, shuffle=False)
    images, _ = first_batch(data)
    for position in range(len(TRAIN)):
        seed = fold_seed(fold_seed(fold_seed(fold_seed(tf.constant([9, 0], tf.int64), 1), 3), position), 0)
        expected = flip(PIXELS[TRAIN[position]][None], training=True, seed=seed)[0]
        np.testing.assert_array_equal(images[position], expected)


def test_two_views():
    weak, strong = cimon_weak_view(16), cimon_strong_view(16)
    data = training_dataset(POOL, TRAIN, batch_size=6, epochs=1, augment=(weak, strong), seed=0)
    (first, second), index = first_batch(data)
    assert first.shape == second.shape == (6, 16, 16, 3) and first.dtype == second.dtype == tf.uint8
    assert index.shape == (6,)
    # The same layer twice gives two independent views.
    (a, b), _ = first_batch(training_dataset(POOL, TRAIN, 6, epochs=1, augment=(VIEW, VIEW), seed=0))
    assert not np.array_equal(a, b)
    # Deterministic too.
    (c, d), _ = first_batch(training_dataset(POOL, TRAIN, 6, epochs=1, augment=(VIEW, VIEW), seed=0))
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(b, d)


def test_resize_to_image_size():
    data = training_dataset(POOL, TRAIN, batch_size=4, epochs=1, image_size=(20, 24), shuffle=False)
    images, index = first_batch(data)
    expected = tf.cast(tf.round(tf.image.resize(PIXELS[TRAIN[:4]].astype(np.float32), (20, 24))), tf.uint8)
    np.testing.assert_array_equal(images, expected)
    # The crop's own size wins unless image_size differs, then the crop is resized.
    images, _ = first_batch(
        training_dataset(POOL, TRAIN, batch_size=4, epochs=1, augment=RandomResizedCrop(8), image_size=10)
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
    training, index = first_batch(training_dataset(image_files, indices, batch_size=12, epochs=1, seed=2))
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
        return training_dataset(
            image_files, indices, batch_size=4, epochs=2, augment=(VIEW, VIEW), seed=1, cache=cache
        )

    def evaluation(cache):
        return evaluation_dataset(image_files, indices, 4, image_size=16, cache=cache)

    assert_same_epochs(epochs(training(False)), epochs(training(training_cache)))
    assert_same_epochs(epochs(evaluation(False)), epochs(evaluation(evaluation_cache)))


def test_cached_files_are_read_once(image_files, tmp_path):
    image_files, decoded = image_files
    copies = []
    for path in image_files.samples[:10]:
        copy = tmp_path / os.path.basename(path)
        copy.write_bytes(open(path, "rb").read())
        copies.append(str(copy))
    pool = ImageSet("copies", np.array(copies), np.arange(10) % 3)
    served = iter(training_dataset(pool, np.arange(10), 4, epochs=6, seed=1, cache=True))
    first = [next(served) for _ in range(3)]  # epoch 0: the cache is filled
    for copy in copies:
        os.remove(copy)
    later = list(served)  # epochs 1 - 5 read the cache, not the (removed) files
    assert len(later) == 15
    for batch in first + later:
        np.testing.assert_array_equal(batch[INPUTS], decoded[:10][batch[SAMPLE_INDEX].numpy()])


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
    images, index = first_batch(training_dataset(pool, TRAIN, batch_size=23, epochs=1, shuffle=False))
    assert images.dtype == tf.float32
    np.testing.assert_allclose(images, features[TRAIN].astype(np.float32))
    evaluated, labels = first_batch(evaluation_dataset(pool, TRAIN, batch_size=23))
    np.testing.assert_array_equal(evaluated, images)
    with pytest.raises(ValueError, match="`augment` and `image_size`"):
        training_dataset(pool, TRAIN, batch_size=4, epochs=1, augment=VIEW)


def test_distribution_options():
    for data in (training_dataset(POOL, TRAIN, 4, epochs=1), evaluation_dataset(POOL, TRAIN, 4)):
        policy = data.options().experimental_distribute.auto_shard_policy
        assert policy == tf.data.experimental.AutoShardPolicy.DATA
        assert data.options().deterministic


def test_mirrored_strategy_sees_every_sample_once_per_epoch(mirrored_strategy):
    strategy = mirrored_strategy
    data = training_dataset(POOL, TRAIN, batch_size=6, epochs=2, augment=(VIEW, VIEW), seed=0)
    steps = steps_per_epoch(len(TRAIN), 6)
    seen = []
    for batch in strategy.experimental_distribute_dataset(data):
        (first, _), index = batch[INPUTS], batch[SAMPLE_INDEX]
        parts = strategy.experimental_local_results(index)
        assert len(parts) == 2
        seen.append(np.concatenate([part.numpy() for part in parts]))
        assert strategy.experimental_local_results(first)[0].shape[1:] == (16, 16, 3)
    assert len(seen) == 2 * steps
    orders = [np.concatenate(seen[:steps]), np.concatenate(seen[steps:])]
    for order in orders:  # the last, smaller batch of an epoch is split too: epochs do not mix
        np.testing.assert_array_equal(np.sort(order), np.arange(len(TRAIN)))
    assert not np.array_equal(*orders)


def test_input_context_shards_each_global_batch_before_decoding():
    contexts = [
        tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=4)
        for i in range(2)
    ]
    # 23 samples, global batches of 8: 2 steps per epoch, each pipeline 2 replica batches of 2 per step.
    shards = [
        epochs(training_dataset(POOL, TRAIN, 8, epochs=2, seed=3, drop_remainder=True, input_context=c), 2)
        for c in contexts
    ]
    whole = epochs(training_dataset(POOL, TRAIN, 8, epochs=2, seed=3, drop_remainder=True), 2)
    for epoch in range(2):
        assert [len(index) for shard in shards for _, index in shard[epoch]] == [2] * 8  # 8 / 4 replicas
        for step, (_, global_batch) in enumerate(whole[epoch]):
            # Each step takes one batch per replica: together, the step's global batch of the unsharded data.
            local = [index for shard in shards for _, index in shard[epoch][2 * step : 2 * step + 2]]
            np.testing.assert_array_equal(np.sort(np.concatenate(local)), np.sort(global_batch))
    with pytest.raises(ValueError, match="must divide the number of samples"):
        training_dataset(POOL, TRAIN, 8, epochs=1, input_context=contexts[0])
    evaluation = [epochs(evaluation_dataset(POOL, TRAIN, 8, input_context=c), 1)[0] for c in contexts]
    images = np.concatenate([images for shard in evaluation for images, _ in shard])
    assert len(images) == len(TRAIN)


def test_epochs_are_a_function_of_seed_and_epoch_so_a_resumed_stream_continues_exactly():
    def build(**kwargs):
        return training_dataset(POOL, TRAIN, 5, epochs=4, augment=(VIEW, VIEW), seed=7, **kwargs)

    uninterrupted = epochs(build(), 4)
    assert len(build()) == 4 * steps_per_epoch(len(TRAIN), 5) == 20
    # Iterating other datasets and setting the global seed first changes nothing.
    first_batch(build())
    tf.random.set_seed(123)
    resumed = epochs(build(initial_epoch=2), 2)
    assert_same_epochs(uninterrupted[2:], resumed)
    # A stream started at epoch 3, and the epoch seen alone, are the same again.
    assert_same_epochs(uninterrupted[3:], epochs(build(initial_epoch=3), 1))
    orders = [np.concatenate([index for _, index in epoch]) for epoch in uninterrupted]
    assert len({tuple(order) for order in orders}) == 4  # every epoch its own permutation


def test_steps_per_epoch():
    assert steps_per_epoch(23, 5) == 5 and steps_per_epoch(23, 5, drop_remainder=True) == 4
    assert steps_per_epoch(20, 5) == steps_per_epoch(20, 5, drop_remainder=True) == 4
    data = training_dataset(POOL, TRAIN, 5, epochs=3, initial_epoch=1, drop_remainder=True)
    assert len(data) == 2 * 4 and len(list(data)) == 8
    with pytest.raises(ValueError, match="`num_samples`"):
        steps_per_epoch(0, 5)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(epochs=0), "epochs"),
        (dict(epochs=2, initial_epoch=2), "initial_epoch"),
        (dict(initial_epoch=-1), "initial_epoch"),
        (dict(batch_size=24, drop_remainder=True), "batch_size"),
        (dict(shuffle=1), "shuffle"),
    ],
)
def test_invalid_epoch_arguments(kwargs, argument):
    arguments = {**dict(image_set=POOL, indices=TRAIN, batch_size=4, epochs=1), **kwargs}
    with pytest.raises(ValueError, match=f"`{argument}`"):
        training_dataset(**arguments)


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
    arguments = {**dict(image_set=POOL, indices=TRAIN, batch_size=4, epochs=1), **kwargs}
    with pytest.raises(ValueError, match=f"`{argument}`"):
        first_batch(training_dataset(**arguments))


def test_invalid_cache_and_channels(image_files):
    image_files, _ = image_files
    with pytest.raises(ValueError, match="`cache`"):
        training_dataset(image_files, np.arange(4), 2, epochs=1, cache=1)
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
    steps = steps_per_epoch(len(TRAIN), 6, drop_remainder=True)
    counter = keras.callbacks.LambdaCallback()
    counter.batches = 0
    counter.on_train_batch_end = lambda batch, logs: setattr(counter, "batches", counter.batches + 1)
    history = model.fit(
        training_dataset(POOL, TRAIN, 6, epochs=2, augment=VIEW, drop_remainder=True).map(as_pair),
        epochs=2,
        steps_per_epoch=steps,
        callbacks=[counter],
        verbose=0,
        shuffle=False,
    )
    assert len(history.history["loss"]) == 2 and np.all(np.isfinite(history.history["loss"]))
    assert counter.batches == 2 * steps

