"""FeatureBank: frozen-backbone features computed once, cached on disk, served like the image pipelines.

Its datasets have the named elements of `tfhash.batches`, as the image pipelines: training data yields
``{"inputs": features, "sample_index": i}`` (``inputs`` a pair of views for two augmentations), evaluation
data ``{"inputs": features, "labels": labels}``.
"""

import concurrent.futures
import copy
import hashlib
import json
import os
import re

import keras
import numpy as np
import tensorflow as tf

from tfhash._atomic import write_atomically, write_text
from tfhash._validation import check_int
from tfhash.batches import INPUTS, LABELS, SAMPLE_INDEX
from tfhash.data.augment.augmentation import check_size, fold_seed
from tfhash.data.image_set import ImageSet
from tfhash.data.pipelines import (
    AUTOTUNE,
    VIEW_SAMPLING_STREAM,
    _check_augment,
    _check_batch_size,
    _check_indices,
    _check_seed,
    _options,
    _pipeline,
    steps_per_epoch,
    training_dataset,
)
from tfhash.data.sources.image_folder import decode_error, describe_bad_images, find_bad_images

# Bump when the stored content or its meaning changes: old cache files are then simply not found.
_FORMAT = 2  # 2: image files keyed by their contents (1: by their paths)
# Keys of an augmentation's serialized config that do not change its output in the pipelines: names, and the
# layers' own seeds (the pipelines pass per-sample seeds).
_IRRELEVANT_CONFIG_KEYS = ("name", "seed", "build_config")


class FeatureBank:
    """Backbone features of an ImageSet, computed once per key and cached on disk, served as tf.data.

    For a frozen backbone, training on cached features is the same computation as training on images, minus
    the backbone. The bank stores, for the training split, the features of ``views`` fixed augmentations of
    every image (view ``v`` is exactly what ``training_dataset(..., view=v)`` yields for that seed), and for
    each evaluation split the features of the plain (resized) images. `training_dataset` then serves
    ``{"inputs": features, "sample_index": i}``, ``inputs`` a pair ``(features_a, features_b)`` for a pair of
    augmentations, with the same seeded order as the image pipeline; each epoch, each sample gets one of its
    stored views, drawn per (seed, epoch, sample):
    - one augmentation: a view uniformly from the ``views`` stored;
    - a pair of identical augmentations (e.g. ``(cibhash_view(), cibhash_view())``): one set of views is
      stored and each sample gets two different views of it (``views >= 2``);
    - a pair of different augmentations (e.g. CIMON's weak and strong): ``views`` views of each are stored and
      each sample gets one of each.

    Each array is one ``.npy`` file, named after a SHA-256 of its key, with the key beside it as ``.json``.
    The key holds everything that changes the features: dataset name, protocol, split, a fingerprint of the
    selected samples (pixel bytes, or the image files' contents, so that a moved or copied dataset hits and
    an image changed in place misses; hashing CIFAR-10's 60,000 files takes about 1 s) and of their
    indices, backbone name and a fingerprint of its weights, image size, decoded channels, storage dtype
    and, for the training split, the augmentation configs (layer names and layer seeds aside), ``views`` and
    ``seed``. Any change
    recomputes; evaluation features do not depend on the augmentation, ``views`` or ``seed``. Files are
    written to a temporary file and renamed (``os.replace``), so an interrupted extraction leaves no partial
    cache file. Image files that cannot be decoded (empty, truncated, not an image) are named in a ValueError
    before a split's extraction starts (`tfhash.data.sources.image_folder.find_bad_images`), and damage that
    check cannot see is named when extraction meets it; nothing is cached then.

    The backbone runs with ``training=False`` on uint8 images resized to ``image_size`` (a last, smaller batch
    is padded to ``batch_size``); its features are served as float32. The arrays are held in memory: A x views
    x n_train x D values for training (e.g. 5,000 x 5 x 4,096 VGG fc7 features: 410 MB in float32);
    ``dtype="float16"`` halves the files and the memory, at about 3 significant digits.

    Args:
        backbone: a `keras.Model` (or callable) mapping images (B, H, W, C) to features (B, D), e.g.
            ``tfhash.backbones.get(name)``.
        image_set: the `ImageSet` (pixels or image files) to extract from.
        protocol: str, the protocol's name (part of the cache key).
        train: int array, the training split (indices into ``image_set``), or None for no training features.
        evaluation: dict split name -> int array (e.g. ``{"query": ..., "database": ...}``), or None.
        augment: None, an `Augmentation` or a pair of them (see above), applied to the training split.
        views: int >= 1, number of stored augmented views of each training image (1 without ``augment``).
        seed: int, seed of the augmentations (and the default seed of `training_dataset`).
        backbone_name: str, the backbone's name in the key; defaults to ``backbone.name``.
        image_size: int or (height, width); defaults to ``backbone.image_size``; None keeps the images' size.
        directory: where the cache files go; defaults to ``$KERAS_HOME/tfhash/feature_bank``
            (``~/.keras/tfhash/feature_bank``).
        batch_size: int, images per backbone call during extraction.
        dtype: "float32" or "float16", the storage dtype.
        channels: channels decoded from image files.
        verbose: 0 silent, 1 a progress bar (`keras.utils.Progbar`), 2 one line per extraction.

    Attributes:
        train: (A, views, n_train, D) array (A = 2 for two different augmentations, else 1), or None.
        evaluation: dict split name -> (n, D) array.
        files: dict split name -> path of its cache file.
        extracted: the splits computed by this instance (the others were loaded from the cache).
        indices: dict split name -> its int64 indices into ``image_set`` ("train" for the training split).
        shared_views: True when a pair of identical augmentations shares one set of stored views.

    Example:

    >>> split = get_protocol("cifar10-cib").split(pool, seed=0)   # a tfhash.data.protocols Split
    >>> bank = FeatureBank(tfhash.backbones.get("vgg16"), pool, protocol=split.protocol, train=split.train,
    ...                    evaluation={"query": split.query, "database": split.database},
    ...                    augment=(cibhash_view(224), cibhash_view(224)), views=5, seed=0)
    >>> data = bank.training_dataset(batch_size=64, epochs=60)     # {"inputs": (f1, f2), "sample_index"}
    >>> model.fit(data, epochs=60, steps_per_epoch=bank.steps_per_epoch(64))
    >>> # Resumed in a new process after epoch 30, exactly as the uninterrupted run continues:
    >>> model = keras.saving.load_model("run.keras")
    >>> data = bank.training_dataset(batch_size=64, epochs=60, initial_epoch=30)
    >>> model.fit(data, epochs=60, initial_epoch=30, steps_per_epoch=bank.steps_per_epoch(64))
    >>> database_codes = model.predict(bank.evaluation_dataset("database", batch_size=256))

    Reference:
        DESIGN.md, "Frozen backbones are computed once"; the augmented-feature caching follows the frozen-VGG
        setting of Bi-half, GreedyHash, CIBHash and HQT (see papers/README.md).
    """

    def __init__(
        self,
        backbone,
        image_set,
        *,
        protocol,
        train=None,
        evaluation=None,
        augment=None,
        views=1,
        seed=0,
        backbone_name=None,
        image_size=None,
        directory=None,
        batch_size=64,
        dtype="float32",
        channels=3,
        verbose=1,
    ):
        if not callable(backbone):
            raise ValueError(
                f"`backbone` must be a keras.Model mapping images to features, got {backbone!r}."
            )
        if not isinstance(image_set, ImageSet) or image_set.kind == "features":
            raise ValueError(
                "`image_set` must be an ImageSet of pixels or image files (a FeatureBank extracts "
                "features from images)."
            )
        if not isinstance(protocol, str) or not protocol:
            raise ValueError(f"`protocol` must be the protocol's name (a non-empty str), got {protocol!r}.")
        if train is None and not evaluation:
            raise ValueError("Give `train` indices, `evaluation` splits, or both.")
        if "train" in (evaluation or {}):
            raise ValueError(
                "`evaluation` split names must differ from 'train', the training split's name in the "
                "cache (a database that equals the training set is named e.g. 'database')."
            )
        check_int(views, "views", minimum=1)
        self.augments = _check_augment(augment)
        if not self.augments and views != 1:
            raise ValueError(
                f"Without `augment` every view is the same image: `views` must be 1, got {views}."
            )
        seed = _check_seed(seed)
        if dtype not in ("float32", "float16"):
            raise ValueError(f"`dtype` must be 'float32' or 'float16', got {dtype!r}.")
        if verbose not in (0, 1, 2):
            raise ValueError(f"`verbose` must be 0, 1 or 2, got {verbose!r}.")
        self.backbone, self.image_set, self.protocol = backbone, image_set, protocol
        self.views, self.seed, self.dtype = int(views), seed, dtype
        self.channels, self.verbose = channels, verbose
        self.batch_size = _check_batch_size(batch_size)
        self.backbone_name = backbone_name or getattr(backbone, "name", None)
        if not isinstance(self.backbone_name, str) or not self.backbone_name:
            raise ValueError(f"`backbone_name` must be a non-empty str, got {backbone_name!r}.")
        image_size = getattr(backbone, "image_size", None) if image_size is None else image_size
        self.image_size = None if image_size is None else check_size(image_size, "image_size")
        keras_home = os.environ.get("KERAS_HOME", os.path.join("~", ".keras"))
        self.directory = os.path.expanduser(directory or os.path.join(keras_home, "tfhash", "feature_bank"))

        # A pair of identical augmentations shares one set of views; two different ones get a set each.
        configs = [_augmentation_key(a) for a in self.augments]
        self.shared_views = len(configs) == 2 and configs[0] == configs[1]
        self.two_view = len(configs) == 2
        if self.shared_views and views < 2:
            raise ValueError(
                "Two views of one augmentation are drawn from different stored views: `views` must "
                f"be >= 2, got {views}."
            )
        if isinstance(backbone, keras.Model):
            # Keras's own predict step, as `backbone.predict` runs it: traced once per model (banks of one
            # backbone share the trace) and compiled with XLA where Keras's jit_compile="auto" picks it (a GPU).
            self._encode = backbone.predict_on_batch
        else:
            self._encode = tf.function(lambda images: backbone(images, training=False), autograph=False)
        self._weights_fingerprint = _weights_fingerprint(backbone)

        self.files, self.extracted, self.evaluation, self.indices = {}, [], {}, {}
        for split, indices in (evaluation or {}).items():
            self.indices[split] = _check_indices(image_set, indices)
            self.evaluation[split] = self._load_or_extract(split, self._key(split, self.indices[split]))
        self.train = None
        if train is not None:
            self.indices["train"] = _check_indices(image_set, train)
            extra = {"augment": configs[:1] if self.shared_views else configs, "views": views, "seed": seed}
            self.train = self._load_or_extract("train", self._key("train", self.indices["train"], extra))

    def select(self, *, train=None, evaluation=None):
        """A bank of some of the images this one holds, nothing extracted (e.g. a validation carve-out of the
        training set, `tfhash.tuning`).

        Args:
            train: image-set indices, all in this bank's training split: the new training split (every stored
                view and augmentation of each); None: no training split.
            evaluation: dict, split name -> image-set indices, each set held whole by one evaluation split of
                this bank: the new evaluation splits (e.g. ``{"query": ..., "database": ...}``).

        Returns:
            A `FeatureBank` sharing this one's backbone, settings and cache files, with those splits.

        Raises:
            ValueError: an index this bank does not hold where it is asked for.

        Example:

        >>> held_out = bank.select(train=rest, evaluation={"query": validation, "database": rest})  # doctest: +SKIP
        """
        chosen = copy.copy(self)
        chosen.indices, chosen.evaluation, chosen.files, chosen.extracted, chosen.train = {}, {}, {}, [], None
        if train is not None:
            if self.train is None:
                raise ValueError("`train`: this FeatureBank has no training split to select from.")
            chosen.indices["train"] = _check_indices(self.image_set, train)
            chosen.train = self.train[:, :, positions_of(chosen.indices["train"], self.indices["train"], "train")]
            chosen.files["train"] = self.files["train"]
        for split, indices in (evaluation or {}).items():
            indices = _check_indices(self.image_set, indices)
            source = next((name for name in self.evaluation if np.isin(indices, self.indices[name]).all()), None)
            if source is None:
                raise ValueError(
                    f"`evaluation[{split!r}]`: no evaluation split of this FeatureBank ({sorted(self.evaluation)}) "
                    "holds all of these images."
                )
            chosen.indices[split] = indices
            chosen.evaluation[split] = self.evaluation[source][positions_of(indices, self.indices[source], split)]
            chosen.files[split] = self.files[source]
        return chosen

    @property
    def feature_size(self):
        """D, the number of features per image."""
        return (self.train if self.train is not None else next(iter(self.evaluation.values()))).shape[-1]

    def training_dataset(
        self,
        batch_size,
        *,
        epochs,
        initial_epoch=0,
        seed=None,
        shuffle=True,
        drop_remainder=False,
        input_context=None,
    ):
        """Training features as `training_dataset` would give the backbone's outputs on augmented images.

        Yields ``{"inputs": features, "sample_index": i}``, ``inputs`` a pair ``(features_a, features_b)``
        when the bank was built with a pair of augmentations; float32 features, int64 positions in the
        training split; the epochs ``initial_epoch .. epochs - 1`` one after the other. The order is that of
        `tfhash.data.pipelines.training_dataset` with the same ``seed``, ``shuffle`` and epochs, and the
        stored view each sample gets is drawn from (``seed``, epoch, sample): a run resumed at
        ``initial_epoch`` in a new process gets the batches of the uninterrupted run. Train with
        ``fit(data, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=bank.steps_per_epoch(...))``.

        Args:
            batch_size: int, the global batch size.
            epochs: int >= 1, the epoch at which the run ends (exclusive), as Keras' ``fit(epochs=...)``.
            initial_epoch: int, the first epoch served, as ``fit(initial_epoch=...)``.
            seed: int, seed of the order and of the per-epoch choice of views; defaults to the bank's seed.
            shuffle: a new seeded permutation every epoch (False keeps index order).
            drop_remainder: drop the last, smaller batch of each epoch.
            input_context: a `tf.distribute.InputContext`, as in `training_dataset`.

        Returns:
            A `tf.data.Dataset` of ``(epochs - initial_epoch) * steps_per_epoch(batch_size, drop_remainder)``
            batches.
        """
        if self.train is None:
            raise ValueError("This FeatureBank has no training features: build it with `train` indices.")
        seed = _check_seed(self.seed if seed is None else seed)
        features = tf.constant(self.train)
        count, views = features.shape[2], self.views
        base_seed = fold_seed(tf.constant([seed, 0], tf.int64), VIEW_SAMPLING_STREAM)

        def draw(key, maxval):
            return tf.random.stateless_uniform([count], key, minval=0, maxval=maxval, dtype=tf.int64)

        # Every sample's views of an epoch are drawn at once, indexed by position: a function of (seed, epoch,
        # position) alone, whatever the order, the sharding or the epoch the run resumed at.
        def epoch_batches(epoch):
            key = fold_seed(base_seed, epoch)
            first = draw(fold_seed(key, 0), views)
            if self.shared_views:  # a different view: shift by 1 .. views - 1
                second, source = (first + 1 + draw(fold_seed(key, 1), views - 1)) % views, 0
            elif self.two_view:
                second, source = draw(fold_seed(key, 1), views), 1

            def gather(source, chosen, positions):
                at = tf.stack([tf.gather(chosen, positions), positions], axis=1)
                return tf.cast(tf.gather_nd(features[source], at), tf.float32)

            def batch(positions):
                if not self.two_view:
                    return {INPUTS: gather(0, first, positions), SAMPLE_INDEX: positions}
                pair = (gather(0, first, positions), gather(source, second, positions))
                return {INPUTS: pair, SAMPLE_INDEX: positions}

            return batch

        return _pipeline(
            count, None, batch_size, seed=seed, shuffle=shuffle, drop_remainder=drop_remainder,
            input_context=input_context, epochs=epochs, initial_epoch=initial_epoch, batch_example=epoch_batches,
        )

    def steps_per_epoch(self, batch_size, *, drop_remainder=False):
        """Batches per epoch of `training_dataset` with this ``batch_size``: Keras' ``steps_per_epoch``."""
        if self.train is None:
            raise ValueError("This FeatureBank has no training features: build it with `train` indices.")
        return steps_per_epoch(self.train.shape[2], batch_size, drop_remainder=drop_remainder)

    def evaluation_dataset(self, split, batch_size, *, input_context=None):
        """``{"inputs": features, "labels": labels}`` of an evaluation split, in index order (float32 features).

        Args:
            split: name of a split given in ``evaluation``.
            batch_size: int, the global batch size.
            input_context: a `tf.distribute.InputContext`, as in `evaluation_dataset`.

        Returns:
            A `tf.data.Dataset`.
        """
        if split not in self.evaluation:
            raise ValueError(
                f"`split` must be one of the evaluation splits {sorted(self.evaluation)}, got {split!r}."
            )
        data = tf.data.Dataset.from_tensor_slices(
            {
                INPUTS: self.evaluation[split].astype(np.float32),
                LABELS: self.image_set.labels[self.indices[split]],
            }
        )
        if input_context is not None:
            data = data.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
            batch_size = input_context.get_per_replica_batch_size(batch_size)
        return data.batch(_check_batch_size(batch_size)).prefetch(AUTOTUNE).with_options(_options())

    def _key(self, split, indices, extra=None):
        samples = self.image_set.samples[indices]
        digest = hashlib.sha256()
        if self.image_set.kind == "files":
            # The files' contents, not their paths: a moved or copied dataset hits, an edited file misses.
            for file_digest in _file_digests(samples.astype(str)):
                digest.update(file_digest)
        else:
            digest.update(np.ascontiguousarray(samples).tobytes())
        return {
            "format": _FORMAT,
            "dataset": self.image_set.name,
            "protocol": self.protocol,
            "split": split,
            "samples": {
                "kind": self.image_set.kind,
                "shape": list(samples.shape),
                "sha256": digest.hexdigest(),
            },
            "indices_sha256": hashlib.sha256(indices.tobytes()).hexdigest(),
            "backbone": {"name": self.backbone_name, "weights_sha256": self._weights_fingerprint},
            "image_size": self.image_size,
            "channels": self.channels,
            "dtype": self.dtype,
            **(extra or {}),
        }

    def _load_or_extract(self, split, key):
        text = json.dumps(key, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()[:32]
        stem = "_".join(
            re.sub(r"[^A-Za-z0-9.-]+", "-", part) for part in (key["dataset"], self.protocol, split)
        )
        path = os.path.join(self.directory, f"{stem}_{digest}.npy")
        self.files[split] = path
        if os.path.exists(path):
            return np.load(path)
        features = self._extract(split)
        os.makedirs(self.directory, exist_ok=True)
        write_text(path[: -len(".npy")] + ".json", text)
        write_atomically(path, lambda file: np.save(file, features), mode="wb")
        self.extracted.append(split)
        return features

    def _extract(self, split):
        # Evaluation images go through the same reading and resizing as training ones, without augmentation.
        indices = self.indices[split]
        if self.image_set.kind == "files":  # before any image is read: files that cannot be decoded
            bad = find_bad_images(self.image_set.samples[indices])
            if bad:
                where = f"{self.image_set.name!r} / {split}"
                raise ValueError(
                    f"FeatureBank: {describe_bad_images(bad, where)}\nRepair or remove them "
                    "(tfhash.data.sources.load_image_folder(..., on_bad_image=\"skip\") leaves "
                    "them out); nothing was cached."
                )
        augments = () if split != "train" else self.augments[:1] if self.shared_views else self.augments
        streams, views = max(len(augments), 1), self.views if augments else 1
        total = streams * views * len(indices)
        if self.verbose:
            print(
                f"FeatureBank: {self.image_set.name} / {self.protocol} / {split}: features of {total} images "
                f"through {self.backbone_name}"
            )
        progress = keras.utils.Progbar(total, unit_name="image", verbose=self.verbose)
        features = None
        for view in range(views):
            data = training_dataset(
                self.image_set,
                indices,
                self.batch_size,
                augment=augments or None,
                epochs=1,
                view=view,
                seed=self.seed,
                shuffle=False,
                image_size=self.image_size,
                channels=self.channels,
            )
            for batch in self._batches(data, indices, split):
                images, positions = batch[INPUTS], batch[SAMPLE_INDEX]
                for stream, batch in enumerate(images if streams == 2 else (images,)):
                    output = self._run_backbone(batch)
                    if output.ndim != 2:
                        raise ValueError(
                            f"`backbone` must map images to features (B, D), got {output.shape}."
                        )
                    if features is None:
                        features = np.empty((streams, views, len(indices), output.shape[1]), self.dtype)
                    features[stream, view, positions.numpy()] = output
                    progress.add(len(batch))
        return features if split == "train" else features[0, 0]

    def _batches(self, data, indices, split):
        """The batches of ``data`` (in index order); a file that fails to decode is named in the error."""
        done, iterator = 0, iter(data)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except tf.errors.InvalidArgumentError as error:
                if self.image_set.kind != "files":
                    raise
                # Batches come in index order: the failure is in the batch after the ``done`` images.
                for path in self.image_set.samples[indices[done : done + self.batch_size]]:
                    problem = decode_error(str(path))
                    if problem is not None:
                        raise ValueError(
                            f"FeatureBank: image {path} ({self.image_set.name!r} / {split}) cannot be "
                            f"decoded: {problem}. Nothing was cached."
                        ) from error
                raise
            done += len(batch[SAMPLE_INDEX])
            yield batch

    def _run_backbone(self, images):
        # A last, smaller batch is padded to the full batch size, so the backbone is traced for one shape: a
        # trace per remainder size costs seconds each, and a shape-generic trace ran ~8 % slower here.
        # In inference mode every image is encoded on its own, so padding leaves the features unchanged.
        count = images.shape[0]
        if count < self.batch_size:
            padding = tf.zeros([self.batch_size - count, *images.shape[1:]], images.dtype)
            images = tf.concat([images, padding], axis=0)
        return np.asarray(self._encode(images))[:count]


def positions_of(indices, held, what="indices"):
    """Where each of ``indices`` sits in ``held`` (int arrays of image-set indices, ``held`` without repeats).

    Raises:
        ValueError: an index not in ``held`` (the message names ``what``).
    """
    order = np.argsort(held, kind="stable")
    found = np.searchsorted(held[order], indices).clip(0, max(len(held) - 1, 0))
    missing = held[order][found] != indices if len(held) else np.ones(len(indices), bool)
    if missing.any():
        raise ValueError(
            f"`{what}`: {int(missing.sum())} of the {len(indices)} images (e.g. index {indices[missing][0]}) are "
            "not held here."
        )
    return order[found]


def _file_digests(paths):
    """SHA-256 digests of the files' contents, in order (read by threads: about 1 s for CIFAR-10's 60,000)."""

    def digest(path):
        try:
            with open(path, "rb") as file:
                return hashlib.sha256(file.read()).digest()
        except OSError:  # named by find_bad_images before anything is extracted
            return b"unreadable"

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(digest, paths))


def _augmentation_key(layer):
    """The layer's config without what does not change its output in the pipelines."""

    def strip(config):
        if isinstance(config, dict):
            return {k: strip(v) for k, v in config.items() if k not in _IRRELEVANT_CONFIG_KEYS}
        if isinstance(config, (list, tuple)):
            return [strip(v) for v in config]
        return config

    return strip(json.loads(json.dumps(keras.saving.serialize_keras_object(layer))))


def _weights_fingerprint(model):
    """SHA-256 over the backbone's weights (shapes and values, in order): other weights, other features.

    Variable paths are left out: they hold Keras' auto-numbered layer names, which depend on how many layers
    the process created before, not on the features.
    """
    digest = hashlib.sha256()
    for weight in getattr(model, "weights", []):
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{value.dtype}:{value.shape};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()
