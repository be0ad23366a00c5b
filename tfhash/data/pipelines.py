"""tf.data pipelines over an ImageSet: training data with sample indices, evaluation data with labels.

Elements are named (`tfhash.batches`). Training data yields ``{"inputs": images, "sample_index": i}``, with
``inputs`` a pair ``(view_1, view_2)`` for two augmentations, where ``sample_index`` is the position in the
training index array (0 .. n_train - 1): the index by which sample-indexed model state is gathered.
Evaluation data yields ``{"inputs": images, "labels": labels}`` in index order. Pixels come out as uint8
(backbones do their own preprocessing); feature ImageSets come out as float32.

Determinism: the order comes from a seeded ``shuffle`` reshuffled at every iteration (epoch), and every random
draw of the augmentations from a stateless seed folded from (``seed``, an epoch key, the sample's position),
the epoch key coming from a seeded `tf.data.Dataset.random` re-drawn at every iteration. A given seed
therefore gives the same sequence of epochs, batches and augmentations in every build of the pipeline,
whatever the parallelism. (Like every seeded TensorFlow op, the order also depends on the global seed, if
`tf.random.set_seed` / `keras.utils.set_random_seed` set one.)

Distribution: the datasets set ``auto_shard_policy = DATA``. With `tf.distribute.MirroredStrategy`,
``strategy.experimental_distribute_dataset(dataset)`` splits each global batch between the replicas. With
`tf.distribute.MultiWorkerMirroredStrategy`, each worker then runs the same seeded pipeline and keeps its
share of the batches: the default policy, AUTO, would try to shard by input file, and the pipeline does not
read its samples from a file dataset, so DATA is what AUTO would fall back to, said explicitly. That sharding
makes every worker decode and augment every sample; with many workers, build the dataset in
``strategy.distribute_datasets_from_function(lambda context: training_dataset(..., input_context=context))``,
which shards the shuffled indices before decoding and batches per replica.
"""

import numpy as np
import tensorflow as tf

from tfhash._validation import check_int
from tfhash.batches import INPUTS, LABELS, SAMPLE_INDEX
from tfhash.data.augment.augmentation import Augmentation, check_size, fold_seed
from tfhash.data.image_set import ImageSet

AUTOTUNE = tf.data.AUTOTUNE

# Seed streams folded into the pipeline seed: fixed views, per-epoch augmentation, per-epoch view sampling.
FIXED_VIEW_STREAM, EPOCH_STREAM, VIEW_SAMPLING_STREAM = 1, 2, 3


def training_dataset(
    image_set,
    indices,
    batch_size,
    *,
    augment=None,
    view=None,
    seed=0,
    shuffle=True,
    drop_remainder=False,
    image_size=None,
    channels=3,
    cache=False,
    input_context=None,
):
    """Training data: ``{"inputs": images, "sample_index": i}``, ``inputs`` a pair ``(view_1, view_2)`` with
    two views.

    Per sample: read (a file path is decoded as JPEG / PNG / GIF / BMP, in parallel with deterministic order),
    augment, resize to ``image_size`` when the result has another size, round to uint8. ``sample_index`` is
    the sample's position in ``indices`` (int64).

    Args:
        image_set: the `ImageSet` to read.
        indices: int array, the training split (indices into ``image_set``), e.g. a protocol's train indices.
        batch_size: int, the global batch size (split between replicas under `tf.distribute`).
        augment: None, an `Augmentation` (one view) or a pair of them (two views, e.g. weak and strong, or the
            same layer twice for two independent views). Only `tfhash.data.augment` layers: they take the
            per-sample seeds that make the pipeline reproducible.
        view: None for a fresh augmentation of every sample at every epoch; an int ``v >= 0`` for the ``v``-th
            fixed augmentation, the same at every epoch (this is what `FeatureBank` stores as view ``v``).
        seed: int, seed of the order and of the augmentations.
        shuffle: reshuffle the samples at every epoch (False keeps index order).
        drop_remainder: drop the last, smaller batch of each epoch.
        image_size: None, an int or (height, width): resize images (after augmentation) to this size, e.g. the
            backbone's ``image_size``. Needed to batch files of different sizes.
        channels: channels to decode from image files (3 = RGB, 1 = gray).
        cache: for image files only: False; True to keep the decoded images in memory after the first epoch;
            or a file name prefix for `tf.data.Dataset.cache` on disk. Decoded images (before augmentation and
            resizing) pass through the shuffle buffer then, which holds all of them.
        input_context: a `tf.distribute.InputContext` (from ``distribute_datasets_from_function``): the
            indices are sharded between input pipelines after the shuffle, before decoding, and batches are
            per replica.

    Returns:
        A `tf.data.Dataset` of dicts ``{"inputs": ..., "sample_index": ...}`` (keys `tfhash.batches.INPUTS`,
        `tfhash.batches.SAMPLE_INDEX`).

    Example:

    >>> pool = ImageSet("toy", np.zeros((10, 32, 32, 3), np.uint8), np.arange(10) % 2)
    >>> view = cibhash_view(64)
    >>> data = training_dataset(pool, np.arange(8), batch_size=4, augment=(view, view), seed=0)
    >>> batch = next(iter(data))
    >>> (v1, v2), index = batch["inputs"], batch["sample_index"]
    >>> v1.shape, v1.dtype, index.dtype
    (TensorShape([4, 64, 64, 3]), tf.uint8, tf.int64)
    """
    indices = _check_indices(image_set, indices)
    augments = _check_augment(augment)
    _check_image_options(image_set, augments, image_size)
    check_int(view, "view", minimum=0, allow_none=True)
    seed = _check_seed(seed)
    _check_cache(cache)
    size = None if image_size is None else check_size(image_size, "image_size")
    read = _reader(image_set, indices, channels)
    base_seed = tf.constant([seed, 0], tf.int64)

    def example(position, epoch_key, sample=None):
        sample = read(position) if sample is None else sample
        if image_set.kind == "features" or not augments:
            return {INPUTS: _finish(sample, size), SAMPLE_INDEX: position}
        if view is not None:  # a fixed view: the same augmentation at every epoch
            draw = fold_seed(fold_seed(base_seed, FIXED_VIEW_STREAM), view)
        else:  # a fresh augmentation: the epoch key changes at every epoch
            draw = fold_seed(fold_seed(base_seed, EPOCH_STREAM), epoch_key)
        draw = fold_seed(draw, position)
        views = tuple(
            _finish(augment(sample[None], training=True, seed=fold_seed(draw, k))[0], size)
            for k, augment in enumerate(augments)
        )
        return {INPUTS: views if len(views) == 2 else views[0], SAMPLE_INDEX: position}

    if image_set.kind == "files" and cache:
        # Cache decoded images in index order, then shuffle (position, image) pairs: the same permutation as
        # shuffling positions alone, because shuffle's draws do not depend on the elements.
        decoded = tf.data.Dataset.from_tensor_slices(image_set.samples[indices]).map(
            tf.autograph.experimental.do_not_convert(lambda path: _decode(path, channels)),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
        source = tf.data.Dataset.zip(tf.data.Dataset.range(len(indices)), _cached(decoded, cache))
    else:
        source = tf.data.Dataset.range(len(indices))
    return _pipeline(source, example, batch_size, seed, shuffle, drop_remainder, input_context)


def evaluation_dataset(
    image_set, indices, batch_size, *, image_size=None, channels=3, cache=False, input_context=None
):
    """Evaluation data: ``{"inputs": images, "labels": labels}`` in the order of ``indices``, without
    augmentation.

    Args:
        image_set: the `ImageSet` to read.
        indices: int array, e.g. a protocol's query or database indices.
        batch_size: int, the global batch size.
        image_size: None, an int or (height, width): resize images to this size.
        channels: channels to decode from image files.
        cache: False; True to keep the final (decoded, resized) images in memory after the first pass; or a
            file name prefix for `tf.data.Dataset.cache` on disk.
        input_context: a `tf.distribute.InputContext`: shard the indices between input pipelines (each gets an
            interleaved part, in order) and batch per replica.

    Returns:
        A `tf.data.Dataset` of dicts ``{"inputs": images, "labels": labels}``, labels as the ImageSet holds
        them (ids or multi-hot).

    Example:

    >>> pool = ImageSet("toy", np.zeros((10, 32, 32, 3), np.uint8), np.arange(10) % 2)
    >>> batch = next(iter(evaluation_dataset(pool, np.arange(10), batch_size=4, image_size=64)))
    >>> batch["inputs"].shape, batch["labels"].numpy()
    (TensorShape([4, 64, 64, 3]), array([0, 1, 0, 1]))
    """
    indices = _check_indices(image_set, indices)
    _check_image_options(image_set, (), image_size)
    _check_cache(cache)
    size = None if image_size is None else check_size(image_size, "image_size")
    read = _reader(image_set, indices, channels)
    labels = tf.constant(image_set.labels[indices])
    data = tf.data.Dataset.range(len(indices))
    if input_context is not None:
        data = data.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    data = data.map(
        tf.autograph.experimental.do_not_convert(
            lambda position: {INPUTS: _finish(read(position), size), LABELS: tf.gather(labels, position)}
        ),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    if cache and image_set.kind == "files":
        data = _cached(data, cache)
    return data.batch(_check_batch_size(batch_size)).prefetch(AUTOTUNE).with_options(_options())


def _pipeline(source, example, batch_size, seed, shuffle, drop_remainder, input_context):
    """Shuffle, attach the per-element epoch key, shard, map ``example``, batch, prefetch.

    ``source`` yields positions, or (position, sample) pairs; ``example(position, epoch_key[, sample])`` makes
    an element from them. Shared with `FeatureBank`, whose data must come in the image pipeline's order.
    """
    batch_size = _check_batch_size(batch_size)
    if shuffle:
        count = int(source.cardinality())
        source = source.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    # One random int64 per element, different at every iteration and the same in every build for this seed.
    data = tf.data.Dataset.zip(source, tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True))
    if input_context is not None:
        # Every input pipeline shuffles identically (same seed), so taking every k-th element partitions them.
        data = data.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch_size = input_context.get_per_replica_batch_size(batch_size)

    # Plain TensorFlow code, no data-dependent Python control flow: AutoGraph would only slow tracing down.
    @tf.autograph.experimental.do_not_convert
    def element(head, epoch_key):
        return example(head[0], epoch_key, head[1]) if isinstance(head, tuple) else example(head, epoch_key)

    data = data.map(element, num_parallel_calls=AUTOTUNE, deterministic=True)
    return data.batch(batch_size, drop_remainder=drop_remainder).prefetch(AUTOTUNE).with_options(_options())


def _options():
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def _reader(image_set, indices, channels):
    """A function: position in ``indices`` -> its sample (uint8 image (H, W, C), or float32 features (D,))."""
    samples = image_set.samples[indices]
    if image_set.kind == "files":
        if isinstance(channels, bool) or channels not in (1, 3):
            raise ValueError(f"`channels` must be 1 or 3, got {channels!r}.")
        paths = tf.constant(samples.astype(str))
        return lambda position: _decode(tf.gather(paths, position), channels)
    # The selected samples become one tensor, gathered from by position: shuffling positions rather than the
    # samples keeps the shuffle buffer small.
    samples = tf.constant(samples.astype(np.float32) if image_set.kind == "features" else samples)
    return lambda position: tf.gather(samples, position)


def _decode(path, channels):
    image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    image.set_shape([None, None, channels])
    return image


def _finish(sample, size):
    """Resize an image to ``size`` if it has another size, and round it to uint8; features pass through."""
    if sample.dtype == tf.float32 and sample.shape.rank == 1:
        return sample
    if size is not None and tuple(sample.shape[:2]) != size:
        sample = tf.image.resize(sample, size, method="bilinear")
    if sample.dtype != tf.uint8:
        sample = tf.cast(tf.clip_by_value(tf.round(sample), 0.0, 255.0), tf.uint8)
    return sample


def _cached(data, cache):
    return data.cache("" if cache is True else cache)


def _check_cache(cache):
    if not isinstance(cache, (bool, str)):
        raise ValueError(f"`cache` must be a bool or a file name prefix (str), got {cache!r}.")


def _check_indices(image_set, indices):
    if not isinstance(image_set, ImageSet):
        raise ValueError(f"`image_set` must be a tfhash.data.ImageSet, got {type(image_set).__name__}.")
    indices = np.asarray(indices)
    if indices.ndim != 1 or len(indices) == 0 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(
            f"`indices` must be a non-empty 1-D int array, got dtype {indices.dtype}, "
            f"shape {indices.shape}."
        )
    if indices.min() < 0 or indices.max() >= len(image_set):
        raise ValueError(
            f"`indices` must be in [0, {len(image_set)}) for ImageSet {image_set.name!r}, got values "
            f"in [{indices.min()}, {indices.max()}]."
        )
    return indices.astype(np.int64)


def _check_augment(augment):
    augments = () if augment is None else tuple(augment) if isinstance(augment, (tuple, list)) else (augment,)
    if len(augments) > 2 or not all(isinstance(a, Augmentation) for a in augments):
        raise ValueError(
            "`augment` must be None, a tfhash.data.augment layer (one view) or a pair of them (two views), "
            f"got {augment!r}."
        )
    return augments


def _check_image_options(image_set, augments, image_size):
    if image_set.kind == "features" and (augments or image_size is not None):
        raise ValueError(
            f"ImageSet {image_set.name!r} holds features: `augment` and `image_size` apply to images only."
        )


def _check_seed(seed):
    return check_int(seed, "seed")


def _check_batch_size(batch_size):
    return check_int(batch_size, "batch_size", minimum=1)
