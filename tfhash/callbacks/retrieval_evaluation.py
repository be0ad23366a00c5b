"""Keras callback that evaluates retrieval mAP of the model's codes during training."""

import keras
import numpy as np
import tensorflow as tf

from tfhash._validation import check_int
from tfhash.batches import INPUTS, LABELS
from tfhash.metrics._inputs import check_ties
from tfhash.metrics.retrieval import mean_average_precision


def _labelled(element, name):
    """``(inputs, labels)`` of one evaluation element: a dict of ``"inputs"`` and ``"labels"``, or a pair."""
    if isinstance(element, dict):
        if INPUTS not in element or LABELS not in element:
            raise ValueError(
                f"`{name}` must yield {{'{INPUTS}': x, '{LABELS}': y}} batches (or (inputs, labels) pairs); "
                f"got an element with keys {sorted(element)}."
            )
        return element[INPUTS], element[LABELS]
    if isinstance(element, (tuple, list)) and len(element) == 2:
        return tuple(element)
    parts = f"{len(element)} parts" if isinstance(element, (tuple, list)) else f"a {type(element).__name__}"
    raise ValueError(
        f"`{name}` must yield {{'{INPUTS}': x, '{LABELS}': y}} batches or (inputs, labels) pairs; got an "
        f"element of {parts}."
    )


def _batches(data, batch_size, name):
    """Yields (inputs, labels) batches of a tf.data.Dataset, or of arrays (a dict or an (inputs, labels) pair).

    A dataset yields ``{"inputs": x, "labels": y}`` (`tfhash.data.evaluation_dataset`,
    `FeatureBank.evaluation_dataset`) or ``(x, y)``; arrays are ``{"inputs": x, "labels": y}`` or ``(x, y)``.
    """
    if isinstance(data, tf.data.Dataset):
        for element in data:
            yield _labelled(element, name)
        return
    if not isinstance(data, (dict, tuple, list)):
        raise ValueError(
            f"`{name}` must be a tf.data.Dataset of {{'{INPUTS}': x, '{LABELS}': y}} (or (inputs, labels)) "
            f"batches, or such a dict / pair of arrays; got a {type(data).__name__}."
        )
    inputs, labels = _labelled(data, name)
    if len(inputs) != len(labels):
        raise ValueError(f"`{name}` holds {len(inputs)} inputs but {len(labels)} labels: they must match.")
    for start in range(0, len(inputs), batch_size):
        yield inputs[start : start + batch_size], labels[start : start + batch_size]


def _signed(outputs):
    # sign with sign(0) = +1, the convention of every tfhash binarizer
    return np.where(np.asarray(outputs) >= 0, 1.0, -1.0).astype(np.float32)


class RetrievalEvaluation(keras.callbacks.Callback):
    """Writes the retrieval mAP of the model's codes into the epoch logs, e.g. ``logs["val_map@1000"]``.

    Both sets are encoded with the current model: ``model.encode(inputs)`` when the model has one (every tfhash
    hasher), otherwise the sign of ``model(inputs, training=False)``. The value lands in the logs before
    ``ModelCheckpoint``, ``EarlyStopping`` and Keras-Tuner read them when this callback is listed before those
    (Keras-Tuner's own callback always comes after the user's), so ``monitor="val_map@1000", mode="max"`` works.
    Keras's progress bar prints its epoch line before callbacks run, so the value shows in ``History`` and the
    next epoch's logs rather than on that line; with ``verbose=1`` this callback prints it.

    The figure is `tfhash.metrics.mean_average_precision` of the codes, the ``"map"`` (``ties="average"``) or
    ``"map_stable"`` (``ties="stable"``) of `tfhash.metrics.retrieval_report` for the same ``top_k``.

    Args:
        query_data: tf.data.Dataset yielding ``{"inputs": x, "labels": y}`` batches
            (`tfhash.data.evaluation_dataset`, `FeatureBank.evaluation_dataset`) or (inputs, labels) pairs; or
            such a dict or pair of arrays.
        database_data: the retrieval database, in the same form.
        top_k: mAP@top_k; None ranks the whole database (mAP@all).
        ties: tie rule, "average" or "stable" (see `tfhash.metrics.mean_average_precision`).
        every_n_epochs: evaluate after every n-th epoch (epochs n, 2n, …); other epochs carry no value.
        name: the log key; default ``"val_map@<top_k>"`` or ``"val_map@all"``.
        batch_size: batch size used to encode arrays (datasets keep their own batching).
        verbose: 1 prints the value after each evaluation.

    Example:
        >>> evaluation = RetrievalEvaluation((x_query, y_query), (x_db, y_db), top_k=1000)
        >>> train = bank.training_dataset(64, epochs=50)   # one stream over the 50 epochs
        >>> model.fit(train, epochs=50, callbacks=[evaluation,
        ...           keras.callbacks.EarlyStopping(monitor="val_map@1000", mode="max", patience=5)])
        >>> # a plain keras.Model is told the length of an epoch (a tfhash model takes it from the stream):
        >>> model.fit(train, epochs=50, steps_per_epoch=bank.steps_per_epoch(64), callbacks=[evaluation])
    """

    def __init__(
        self, query_data, database_data, top_k=None, ties="average", every_n_epochs=1, name=None, batch_size=256,
        verbose=0,
    ):
        super().__init__()
        check_int(top_k, "top_k", minimum=1, allow_none=True)
        check_int(every_n_epochs, "every_n_epochs", minimum=1)
        check_int(batch_size, "batch_size", minimum=1)
        check_ties(ties)
        self.query_data = query_data
        self.database_data = database_data
        self.top_k = top_k
        self.ties = ties
        self.every_n_epochs = every_n_epochs
        self.name = name or f"val_map@{'all' if top_k is None else top_k}"
        self.batch_size = batch_size
        self.verbose = verbose

    def __deepcopy__(self, memo):
        # Keras-Tuner deep-copies callbacks for every trial; the data are read-only, so the copies share them
        # (a tf.data.Dataset cannot be deep-copied).
        copy = RetrievalEvaluation(
            self.query_data, self.database_data, self.top_k, self.ties, self.every_n_epochs, self.name,
            self.batch_size, self.verbose,
        )
        memo[id(self)] = copy
        return copy

    def _encode(self, data, data_name):
        encode = getattr(self.model, "encode", None)
        codes, labels = [], []
        for inputs, batch_labels in _batches(data, self.batch_size, data_name):
            outputs = encode(inputs) if encode is not None else self.model(inputs, training=False)
            codes.append(_signed(outputs))
            labels.append(np.asarray(batch_labels))
        if not codes:
            raise ValueError(f"`{data_name}` yielded no data to encode.")
        return np.concatenate(codes), np.concatenate(labels)

    def evaluate(self):
        """Encodes both sets with the current model and returns mAP as a Python float."""
        query_codes, query_labels = self._encode(self.query_data, "query_data")
        db_codes, db_labels = self._encode(self.database_data, "database_data")
        return float(mean_average_precision(query_codes, db_codes, query_labels, db_labels, self.top_k, self.ties))

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        value = self.evaluate()
        if logs is not None:
            logs[self.name] = value
        if self.verbose:
            print(f"Epoch {epoch + 1}: {self.name} = {value:.4f}")
