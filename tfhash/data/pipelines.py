"""tf.data pipelines over an ImageSet: training data with sample indices, evaluation data with labels.

Elements are named (`tfhash.batches`). Training data yields ``{"inputs": images, "sample_index": i}``, with
``inputs`` a pair ``(view_1, view_2)`` for two augmentations, where ``sample_index`` is the position in the
training index array (0 .. n_train - 1): the index by which sample-indexed model state is gathered.
Evaluation data yields ``{"inputs": images, "labels": labels}`` in index order. Pixels come out as uint8
(backbones do their own preprocessing); feature ImageSets come out as float32.

Epochs: a training dataset is the stream of the epochs ``initial_epoch .. epochs - 1`` of one training run,
each epoch a whole pass over the samples (its last batch smaller unless ``drop_remainder``). Train on it with
Keras' own ``epochs`` and ``initial_epoch``, and ``steps_per_epoch`` (`steps_per_epoch` gives it) so that
every Keras epoch takes exactly one epoch of the stream::

    steps = steps_per_epoch(len(train), 64, drop_remainder=True)
    data = training_dataset(pool, train, 64, epochs=60, seed=0, drop_remainder=True)
    model.fit(data, epochs=60, steps_per_epoch=steps)

Without ``steps_per_epoch`` Keras would take the whole stream as its first epoch; tfhash models
(`tfhash.models.HashingModel.fit`) take it from the stream themselves and refuse ``epochs`` / ``initial_epoch``
other than the stream's (the dataset carries them as ``tfhash.batches.EPOCH_STREAM``). With
``compile(steps_per_execution=k)``, ``k`` must divide ``steps_per_epoch``: Keras runs whole executions, and
one that crosses the end of an epoch takes the next epoch's first batches.

Determinism and exact resume: each epoch's order is a seeded permutation, and every random draw of the
augmentations comes from a stateless seed folded from (``seed``, the epoch's number, the sample's position):
all of it is a function of (``seed``, epoch) alone, not of how many iterators were created before, nor of
TensorFlow's global seed. A run saved after epoch ``e`` and continued in a new process therefore sees the
batches the uninterrupted run would have seen::

    model.save("run.keras")   # at the end of epoch 29 (keras.callbacks.ModelCheckpoint, or a fit that ended)
    # ... a new process:
    model = keras.saving.load_model("run.keras")
    data = training_dataset(pool, train, 64, epochs=60, initial_epoch=30, seed=0, drop_remainder=True)
    model.fit(data, epochs=60, initial_epoch=30, steps_per_epoch=steps,
              callbacks=model.supervision_refreshers(train_features))   # they redraw by epoch too

(tests/test_resume.py checks this for every method, bit for bit.)

Distribution: the datasets set ``auto_shard_policy = DATA``. With `tf.distribute.MirroredStrategy`,
``strategy.experimental_distribute_dataset(dataset)`` splits each global batch between the replicas. With
`tf.distribute.MultiWorkerMirroredStrategy`, each worker then runs the same seeded pipeline and keeps its
share of the batches: the default policy, AUTO, would try to shard by input file, and the pipeline does not
read its samples from a file dataset, so DATA is what AUTO would fall back to, said explicitly. That sharding
makes every worker decode and augment every sample; with many workers, build the dataset in
``strategy.distribute_datasets_from_function(lambda context: training_dataset(..., input_context=context))``,
which shards each epoch's shuffled indices before decoding and batches per replica; each global step then
takes one global batch of the epoch, so the batch size must divide the number of samples, or
``drop_remainder=True``. Under a strategy, prefer ``drop_remainder=True`` anyway: a last, smaller global
batch leaves some replicas a smaller (or empty) share.
"""

import numpy as np
import tensorflow as tf

from tfhash._validation import check_int
from tfhash import batches
from tfhash.batches import INPUTS, LABELS, SAMPLE_INDEX
from tfhash.data.augment.augmentation import Augmentation, check_size, fold_seed
from tfhash.data.image_set import ImageSet

AUTOTUNE = tf.data.AUTOTUNE

# Seed streams folded into the pipeline seed: fixed views, per-epoch augmentation, per-epoch view sampling,
# per-epoch order.
FIXED_VIEW_STREAM, EPOCH_STREAM, VIEW_SAMPLING_STREAM, ORDER_STREAM = 1, 2, 3, 4


def steps_per_epoch(num_samples, batch_size, *, drop_remainder=False):
    """The number of (global) batches in one epoch of ``num_samples`` samples: Keras' ``steps_per_epoch``.

    Args:
        num_samples: int >= 1, the size of the training split (``len(indices)``).
        batch_size: int >= 1, the global batch size.
        drop_remainder: whether the last, smaller batch of each epoch is dropped.

    Returns:
        ``num_samples // batch_size`` with ``drop_remainder``, else ``ceil(num_samples / batch_size)``.

    Example:

    >>> steps_per_epoch(23, 5), steps_per_epoch(23, 5, drop_remainder=True)
    (5, 4)
    """
    num_samples = check_int(num_samples, "num_samples", minimum=1)
    batch_size = _check_batch_size(batch_size)
    if not isinstance(drop_remainder, bool):
        raise ValueError(f"`drop_remainder` must be a bool, got {drop_remainder!r}.")
    return num_samples // batch_size if drop_remainder else -(-num_samples // batch_size)


def training_dataset(
    image_set,
    indices,
    batch_size,
    *,
    epochs,
    initial_epoch=0,
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
    two views, for the epochs ``initial_epoch .. epochs - 1`` one after the other (see the module's
    docstring: fit with ``steps_per_epoch``).

    Per sample: read (a file path is decoded as JPEG / PNG / GIF / BMP, in parallel with deterministic order),
    augment, resize to ``image_size`` when the result has another size, round to uint8. ``sample_index`` is
    the sample's position in ``indices`` (int64).

    Args:
        image_set: the `ImageSet` to read.
        indices: int array, the training split (indices into ``image_set``), e.g. a protocol's train indices.
        batch_size: int, the global batch size (split between replicas under `tf.distribute`).
        epochs: int >= 1, the epoch at which the run ends (exclusive), as Keras' ``fit(epochs=...)``.
        initial_epoch: int, the first epoch served, as ``fit(initial_epoch=...)`` (e.g. when resuming).
        augment: None, an `Augmentation` (one view) or a pair of them (two views, e.g. weak and strong, or the
            same layer twice for two independent views). Only `tfhash.data.augment` layers: they take the
            per-sample seeds that make the pipeline reproducible.
        view: None for a fresh augmentation of every sample at every epoch; an int ``v >= 0`` for the ``v``-th
            fixed augmentation, the same at every epoch (this is what `FeatureBank` stores as view ``v``).
        seed: int, seed of the order and of the augmentations.
        shuffle: a new seeded permutation of the samples at every epoch (False keeps index order).
        drop_remainder: drop the last, smaller batch of each epoch.
        image_size: None, an int or (height, width): resize images (after augmentation) to this size, e.g. the
            backbone's ``image_size``. Needed to batch files of different sizes.
        channels: channels to decode from image files (3 = RGB, 1 = gray).
        cache: for image files only: False; True to keep the decoded images in memory after the first epoch;
            or a file name prefix for `tf.data.Dataset.cache` on disk. Each epoch then gathers its samples
            from all the decoded images (before augmentation and resizing), held in memory together.
        input_context: a `tf.distribute.InputContext` (from ``distribute_datasets_from_function``): the
            indices are sharded between input pipelines after the shuffle, before decoding, and batches are
            per replica.

    Returns:
        A `tf.data.Dataset` of dicts ``{"inputs": ..., "sample_index": ...}`` (keys `tfhash.batches.INPUTS`,
        `tfhash.batches.SAMPLE_INDEX`): ``(epochs - initial_epoch) * steps_per_epoch(len(indices), batch_size,
        drop_remainder=drop_remainder)`` batches (its known cardinality).

    Raises:
        ValueError: an invalid argument, naming it.

    Example:

    >>> pool = ImageSet("toy", np.zeros((10, 32, 32, 3), np.uint8), np.arange(10) % 2)
    >>> view = cibhash_view(64)
    >>> data = training_dataset(pool, np.arange(8), batch_size=4, epochs=3, augment=(view, view), seed=0)
    >>> len(data)  # 3 epochs of 2 batches
    6
    >>> batch = next(iter(data))
    >>> (v1, v2), index = batch["inputs"], batch["sample_index"]
    >>> v1.shape, v1.dtype, index.dtype
    (TensorShape([4, 64, 64, 3]), tf.uint8, tf.int64)
    >>> # Epochs 1 and 2 alone (a run resumed after epoch 0) are the last 4 batches of the above.
    >>> resumed = training_dataset(pool, np.arange(8), 4, epochs=3, initial_epoch=1, augment=(view, view))
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

    def example(position, epoch, sample=None):
        sample = read(position) if sample is None else sample
        if image_set.kind == "features" or not augments:
            return {INPUTS: _finish(sample, size), SAMPLE_INDEX: position}
        if view is not None:  # a fixed view: the same augmentation at every epoch
            draw = fold_seed(fold_seed(base_seed, FIXED_VIEW_STREAM), view)
        else:  # a fresh augmentation at every epoch
            draw = fold_seed(fold_seed(base_seed, EPOCH_STREAM), epoch)
        draw = fold_seed(draw, position)
        views = tuple(
            _finish(augment(sample[None], training=True, seed=fold_seed(draw, k))[0], size)
            for k, augment in enumerate(augments)
        )
        return {INPUTS: views if len(views) == 2 else views[0], SAMPLE_INDEX: position}

    samples = None
    if image_set.kind == "files" and cache:
        # Decoded images are cached in index order; each epoch gathers its samples from all of them at once
        # (a batch of n + 1 reads the cache to its end, which completes it in the first epoch).
        decoded = tf.data.Dataset.from_tensor_slices(image_set.samples[indices].astype(str)).map(
            tf.autograph.experimental.do_not_convert(lambda path: _decode(path, channels)),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
        samples = _cached(decoded, cache).ragged_batch(len(indices) + 1)
    return _pipeline(
        len(indices), example, batch_size, seed=seed, shuffle=shuffle, drop_remainder=drop_remainder,
        input_context=input_context, epochs=epochs, initial_epoch=initial_epoch, samples=samples,
    )


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


def _pipeline(
    count, example, batch_size, *, seed, shuffle, drop_remainder, input_context, epochs, initial_epoch,
    samples=None, batch_example=None,
):
    """The stream of epochs ``initial_epoch .. epochs - 1`` over ``count`` positions: per epoch, a seeded
    permutation (or index order), sharded, mapped through ``example``, batched; then prefetched.

    ``example(position, epoch[, sample])`` makes an element; ``samples``, when given, is a dataset of one
    element holding every sample (a RaggedTensor (count, ...)), from which ``sample`` is taken. Or, with
    ``example=None``, ``batch_example(epoch)`` gives, once per epoch, the function that makes a whole batch
    from its positions (one map call per batch: about 9× less input work per sample where an element is a
    gather). Shared with `FeatureBank`, whose data must come in the image pipeline's order.
    """
    batch_size = _check_batch_size(batch_size)
    epochs = check_int(epochs, "epochs", minimum=1)
    initial_epoch = check_int(initial_epoch, "initial_epoch", minimum=0)
    if initial_epoch >= epochs:
        raise ValueError(
            f"`initial_epoch` must be smaller than `epochs` (the epoch at which the run ends, as in Keras' "
            f"fit), got initial_epoch={initial_epoch}, epochs={epochs}."
        )
    for name, value in (("shuffle", shuffle), ("drop_remainder", drop_remainder)):
        if not isinstance(value, bool):
            raise ValueError(f"`{name}` must be a bool, got {value!r}.")
    steps = steps_per_epoch(count, batch_size, drop_remainder=drop_remainder)
    if steps == 0:
        raise ValueError(
            f"`batch_size` {batch_size} with `drop_remainder=True` leaves no batch of the {count} samples."
        )
    used = steps * batch_size if drop_remainder else count  # the positions of each epoch that are served
    local_batch_size, batches_per_step = batch_size, 1
    if input_context is not None:
        if count % batch_size and not drop_remainder:
            raise ValueError(
                f"With `input_context`, every step takes one global batch of an epoch: `batch_size` "
                f"({batch_size}) must divide the number of samples ({count}), or set `drop_remainder=True`."
            )
        local_batch_size = input_context.get_per_replica_batch_size(batch_size)
        batches_per_step = input_context.num_replicas_in_sync // input_context.num_input_pipelines
    order_seed = fold_seed(tf.constant([seed, 0], tf.int64), ORDER_STREAM)

    def order(epoch):
        if not shuffle:
            return tf.range(used, dtype=tf.int64)
        # A permutation drawn from (seed, epoch) alone: 64-bit keys, ties (about n^2 / 2^65) broken stably.
        keys = tf.random.stateless_uniform(
            [count], fold_seed(order_seed, epoch), minval=None, maxval=None, dtype=tf.int64
        )
        return tf.cast(tf.argsort(keys, stable=True)[:used], tf.int64)

    # Plain TensorFlow code, no data-dependent Python control flow: AutoGraph would only slow tracing down.
    @tf.autograph.experimental.do_not_convert
    def one_epoch(epoch, every_sample=None):
        data = tf.data.Dataset.from_tensor_slices(order(epoch))
        if input_context is not None:
            # Every input pipeline draws the same permutation, so taking every k-th position partitions it;
            # with whole global batches, each pipeline's share of each is one batch per local replica.
            data = data.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)

        @tf.autograph.experimental.do_not_convert
        def element(position):
            if every_sample is None:
                return example(position, epoch)
            return example(position, epoch, _row(every_sample, position))

        if batch_example is not None:
            data = data.batch(local_batch_size, drop_remainder=drop_remainder)
            return data.map(batch_example(epoch), num_parallel_calls=AUTOTUNE, deterministic=True)
        data = data.map(element, num_parallel_calls=AUTOTUNE, deterministic=True)
        return data.batch(local_batch_size, drop_remainder=drop_remainder)

    data = tf.data.Dataset.range(initial_epoch, epochs)
    if samples is None:
        data = data.flat_map(one_epoch)
    else:
        data = data.flat_map(
            tf.autograph.experimental.do_not_convert(
                lambda epoch: samples.flat_map(lambda every_sample: one_epoch(epoch, every_sample))
            )
        )
    if input_context is None:
        total = (epochs - initial_epoch) * steps
    else:  # this pipeline's batches: one per local replica and step
        total = (epochs - initial_epoch) * steps * batches_per_step
    data = data.apply(tf.data.experimental.assert_cardinality(total))
    data = data.prefetch(AUTOTUNE).with_options(_options())
    # tfhash models' fit takes steps_per_epoch from here, and refuses other epochs than the stream's.
    setattr(data, batches.EPOCH_STREAM, (initial_epoch, epochs, steps))
    return data


def _row(every_sample, position):
    """Sample ``position`` of a batch of all samples (a RaggedTensor of images of different sizes)."""
    row = every_sample[position]
    if isinstance(row, tf.RaggedTensor):
        row = row.to_tensor()
    return row


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
