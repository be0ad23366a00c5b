"""Keras callback that builds DSAH's neighbour similarity W⁰ and grows it by Adaptive Neighbor Discovery."""

import time

import numpy as np
import tensorflow as tf

from tfhash import batches
from tfhash.callbacks.supervision_refresher import SupervisionRefresher
from tfhash.supervision.adaptive_neighbor_discovery import AdaptiveNeighborDiscovery

_CODE_BATCH = 4096  # training samples encoded per call at each round


class AdaptiveNeighborRefresher(SupervisionRefresher):
    """Writes W⁰ into a `tfhash.models.DSAHHasher`, then runs an AND round every n epochs (DSAH Alg. 1).

    A `SupervisionRefresher`: at the start of training, when the model holds no similarity yet (or with
    ``refit_on_train_begin=True``), W⁰ is built from ``features`` (`AdaptiveNeighborDiscovery.initial_neighbors`,
    Eq. 7–9) and assigned; after every n-th epoch (``every_n_epochs``, the paper's T = 10), the model's
    continuous codes of the whole training set are computed and W grows by Eq. 10–12
    (`AdaptiveNeighborDiscovery.update`). A round depends only on the model's current weights and W, so a
    run resumed from a saved model (which keeps W) continues exactly as the uninterrupted one.

    Every refresh appends one entry to `log` (and prints it as one line with ``verbose=1``): the epoch, the
    round (0 for W⁰), the number of positive pairs, and for a round the threshold m, μ, σ, the pairs added and
    (lists storage) dropped; with ``labels`` (for analysis only, never used for training) the precision,
    recall and F_w of W against them (the paper's Fig. 7).

    `tfhash.models.DSAHHasher.supervision_refreshers` builds this callback from the model's configuration.

    Args:
        discovery: an `AdaptiveNeighborDiscovery` (k1, k2, γ and the block size).
        features: (n, D) training features in sample-index order, the input of W⁰ (the paper: the pretrained
            network's relu7 features), or a callable ``model -> features``.
        inputs: what the model encodes at each round, the training set in sample-index order: None (the
            ``features``, for a model that takes features), an array, or a ``tf.data.Dataset`` of input batches
            or of named batches (`tfhash.batches`), unshuffled (e.g. ``tfhash.data.evaluation_dataset(pool,
            split.train, 64)`` for a model with a backbone).
        labels: None, or the training labels in sample-index order (class ids (n,) or multi-hot (n, C)), to
            log W's quality.
        every_n_epochs: None (W⁰ only: AND⁰) or int >= 1, a round after every n-th epoch.
        refit_on_train_begin: bool, rebuild W⁰ at the start of training even if the model holds a W.
        verbose: 1 prints one line per refresh.

    Attributes:
        log: list of dicts, one per refresh (see above).

    Example:

    >>> model = DSAHHasher(64, num_samples=len(split.train), feature_size=bank.feature_size, seed=0)
    >>> refresher = AdaptiveNeighborRefresher(AdaptiveNeighborDiscovery(gamma=1.0), bank.train[0, 0],
    ...                                       labels=pool.labels[split.train], every_n_epochs=10, verbose=1)
    >>> model.fit(bank.training_dataset(50, epochs=30, drop_remainder=True), epochs=30, callbacks=[refresher])
    >>> [entry["f_w"] for entry in refresher.log]   # W⁰ and after rounds 1, 2, 3

    Reference:
        Lin et al., "Deep Self-Adaptive Hashing for Image Retrieval", CIKM 2021: Sec. 4.2, Eq. 7–12, Alg. 1
        (R rounds of T epochs, W updated after each), Sec. 5.4.2 and Fig. 7 (n+, m and F_w per round).
    """

    def __init__(self, discovery, features, inputs=None, labels=None, every_n_epochs=10,
                 refit_on_train_begin=False, verbose=0):
        if not isinstance(discovery, AdaptiveNeighborDiscovery):
            raise ValueError(
                f"`discovery` must be a tfhash.supervision.AdaptiveNeighborDiscovery, got {discovery!r}."
            )
        super().__init__(
            features, every_n_epochs=every_n_epochs, refit_on_train_begin=refit_on_train_begin, verbose=verbose
        )
        self.discovery = discovery
        self.inputs = inputs
        self.labels = None if labels is None else np.asarray(labels)
        self.log = []
        self._starting = False

    def check(self, model):
        if not hasattr(model, "assign_neighbor_similarity") or not hasattr(model, "neighbor_similarity_array"):
            raise ValueError(f"AdaptiveNeighborRefresher needs a tfhash.models.DSAHHasher, got {type(model).__name__}.")
        if self.labels is not None and len(self.labels) != model.num_samples:
            raise ValueError(
                f"`labels` has {len(self.labels)} rows; the model has num_samples={model.num_samples}."
            )

    def is_assigned(self, model):
        self.check(model)
        return model.neighbor_similarity_is_assigned()

    def on_epoch_begin(self, epoch, logs=None):
        # the refresh at the start of training builds W⁰; those after an epoch are AND rounds
        self._starting = True
        try:
            super().on_epoch_begin(epoch, logs)
        finally:
            self._starting = False

    def refresh(self, model, epoch):
        """W⁰ at the start of training (or into a model without W), otherwise one AND round on the current
        codes; logs either."""
        self.check(model)
        started = time.perf_counter()
        if self._starting or not model.neighbor_similarity_is_assigned():
            features = np.asarray(self.current_features(model))
            if len(features) != model.num_samples:
                raise ValueError(
                    f"`features` has {len(features)} rows; the model has num_samples={model.num_samples}."
                )
            similarity = self.discovery.initial_neighbors(features)
            entry = {"epoch": int(epoch), "round": 0}
        else:
            codes = self.training_codes(model)
            similarity, report = self.discovery.update(
                model.neighbor_similarity_array(), codes,
                max_neighbors=model.max_neighbors if model.storage == "lists" else None,
            )
            entry = {"epoch": int(epoch), "round": self.refresh_index(epoch), **report}
        model.assign_neighbor_similarity(similarity)
        if self.labels is not None:
            quality = self.discovery.quality(similarity, self.labels, block_size=self.discovery.block_size)
            entry.update({key: quality[key] for key in ("precision", "recall", "f_w")})
        entry.setdefault("positives", int(np.sum(similarity >= 0) if similarity.dtype != np.int8
                                          else np.sum(similarity > 0)))
        entry["seconds"] = round(time.perf_counter() - started, 2)
        self.log.append(entry)
        if self.verbose:
            print(_describe(entry), flush=True)

    def training_codes(self, model):
        """The model's continuous codes (tanh outputs) of the training set, (n, K) float32, in inference mode."""
        source = self.features if self.inputs is None else self.inputs
        if callable(source) and not isinstance(source, tf.data.Dataset):
            source = source(model)
        if isinstance(source, tf.data.Dataset):
            parts = [model(batches.inputs_of(batch, "AdaptiveNeighborRefresher"), training=False) for batch in source]
        else:
            source = np.asarray(source)
            parts = [model(source[start:start + _CODE_BATCH], training=False)
                     for start in range(0, len(source), _CODE_BATCH)]
        codes = np.concatenate([np.asarray(part, np.float32) for part in parts])
        if len(codes) != model.num_samples:
            raise ValueError(
                f"The training inputs gave {len(codes)} codes; the model has num_samples={model.num_samples} "
                "(pass `inputs` as the whole training set in sample-index order, unshuffled)."
            )
        return codes


def _describe(entry):
    """One plain line of a log entry."""
    if entry["round"] == 0 and "threshold" not in entry:
        text = f"AdaptiveNeighborRefresher: W0 at epoch {entry['epoch']}: {entry['positives']} positive pairs"
    else:
        text = (
            f"AdaptiveNeighborRefresher: round {entry['round']} after epoch {entry['epoch']}: threshold m = "
            f"{entry['threshold']:.4f} (mu {entry['mean']:.4f}, sigma {entry['std']:.4f}), {entry['added']} pairs "
            f"added{', ' + str(entry['dropped']) + ' dropped' if entry.get('dropped') else ''}, "
            f"{entry['positives']} positive pairs"
        )
    if "f_w" in entry:
        text += f"; against the labels: precision {entry['precision']:.4f}, recall {entry['recall']:.4f}, " \
                f"F_w {entry['f_w']:.4f}"
    return text + f" ({entry['seconds']:.1f} s)"
