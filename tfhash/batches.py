"""The named elements of a tfhash batch, and the one function that reads them.

Training data (`tfhash.data.training_dataset`, `FeatureBank.training_dataset`) yield dicts
``{"inputs": x, "sample_index": i}``: ``x`` is a batch of images or features, or a pair ``(view_a, view_b)``
of them for two-view methods, and ``i`` (int, shape (batch,)) is each row's position in the training set, the
key by which sample-indexed supervision (HQT pseudo bits, CIMON's pseudo-similarity, ...) is gathered.
Evaluation data (`tfhash.data.evaluation_dataset`, `FeatureBank.evaluation_dataset`) yield
``{"inputs": x, "labels": y}``. Models never guess which element is which.

Users' own data may also be ``inputs`` alone: ``model.fit(features)`` (Keras passes a batch of one array, or a
one-element tuple) trains a method that needs no per-sample state. A positional tuple of two or more
elements (``fit(x, y)``, a dataset of ``(x, index)`` pairs) is refused: tfhash hashers train without targets,
and a second element could be labels as easily as sample indices.
"""

import tensorflow as tf

INPUTS = "inputs"
SAMPLE_INDEX = "sample_index"
LABELS = "labels"
KEYS = (INPUTS, SAMPLE_INDEX, LABELS)
#: attribute of a training stream (`tfhash.data.training_dataset`, `FeatureBank.training_dataset`):
#: ``(initial_epoch, epochs, steps_per_epoch)`` it was built for; tfhash models' ``fit`` reads it.
EPOCH_STREAM = "tfhash_epoch_stream"


def unpack(data, owner, needs_index=False, views=1):
    """``(inputs, sample_index)`` of a batch, checked against what the model ``owner`` needs.

    Args:
        data: a batch as ``train_step`` / ``test_step`` / ``predict_step`` receive it: a dict with the keys
            of `KEYS` (``"inputs"`` required), a tensor of inputs, or a one-element tuple holding either.
        owner: str, the model's name for the messages (e.g. ``"BiHalfHasher"``).
        needs_index: bool, the model gathers per-sample state: ``"sample_index"`` is required.
        views: 1 (``inputs`` is one tensor), 2 (``inputs`` is a pair of views) or None (either).

    Returns:
        ``(inputs, sample_index)``, ``sample_index`` None when the batch has none.

    Raises:
        ValueError: naming what was received and what was expected.
    """
    if isinstance(data, tuple):  # Keras gives fit(x) as (x,), train_on_batch(x) as (x, None, None)
        while len(data) > 1 and data[-1] is None:
            data = data[:-1]
        if len(data) == 1:
            data = data[0]
    if isinstance(data, (tuple, list)):
        raise ValueError(
            f"{owner} got a batch of {len(data)} positional elements (e.g. from fit(x, y) or a dataset of "
            f"(x, y) pairs). tfhash hashers train without targets: pass the inputs alone (fit(x)), or name the "
            f"elements, {{'{INPUTS}': x, '{SAMPLE_INDEX}': i}} (tfhash.batches)."
        )
    if isinstance(data, dict):
        unknown = sorted(set(data) - set(KEYS))
        if unknown or INPUTS not in data:
            raise ValueError(
                f"{owner} got a batch with keys {sorted(data)}; expected '{INPUTS}' and optionally "
                f"'{SAMPLE_INDEX}' (training) or '{LABELS}' (evaluation)."
            )
        inputs, sample_index = data[INPUTS], data.get(SAMPLE_INDEX)
        has_labels = LABELS in data
    else:
        inputs, sample_index, has_labels = data, None, False
    _check_views(inputs, owner, views)
    if sample_index is None:
        if needs_index:
            found = (
                f"a batch with '{LABELS}' and no '{SAMPLE_INDEX}' (an evaluation dataset?)"
                if has_labels
                else f"no '{SAMPLE_INDEX}'"
            )
            raise ValueError(
                f"{owner} gathers per-sample state by sample index, but got {found}: train on "
                f"{{'{INPUTS}': ..., '{SAMPLE_INDEX}': ...}} batches (tfhash.data.training_dataset, "
                "FeatureBank.training_dataset)."
            )
        return inputs, None
    sample_index = tf.convert_to_tensor(sample_index)
    if not sample_index.dtype.is_integer or sample_index.shape.rank != 1:
        raise ValueError(
            f"{owner}: '{SAMPLE_INDEX}' must be an integer tensor of shape (batch,), got dtype "
            f"{sample_index.dtype.name} and shape {sample_index.shape}."
        )
    return inputs, sample_index


def inputs_of(data, owner):
    """The inputs of a batch for encoding (``predict_step``): any batch `unpack` reads, labels allowed."""
    return unpack(data, owner, views=None)[0]


def checked_sample_index(sample_index, num_samples, assigned, not_assigned, out_of_range):
    """A batch's sample indices as int32 (B,) for gathering sample-indexed state, and a guard to multiply the
    gathered values by: 1.0, or NaN when the state is unassigned or an index lies outside [0, num_samples).

    Run by TensorFlow (eagerly or in a graph), the checks raise ``InvalidArgumentError`` with the messages.
    XLA drops assertions (and its gather clamps out-of-range rows), so the guard turns a wrong index or an
    unassigned state into NaN targets, a NaN loss, and a stopped run, instead of training on wrong rows.

    Args:
        sample_index: int tensor, the batch's positions in the training set.
        num_samples: int, the rows of the state.
        assigned: the state's scalar ``assigned`` flag (1.0 once written).
        not_assigned: the message when the flag is not 1.
        out_of_range: the message when an index is outside [0, num_samples).

    Returns:
        ``(index, guard)``: int32 (B,) and a float32 scalar.
    """
    index = tf.cast(tf.reshape(sample_index, [-1]), tf.int32)
    checks = [
        tf.debugging.assert_equal(assigned, tf.ones_like(assigned), message=not_assigned),
        tf.debugging.assert_non_negative(index, message=out_of_range),
        tf.debugging.assert_less(index, num_samples, message=out_of_range),
    ]
    with tf.control_dependencies(checks):
        index = tf.identity(index)
    valid = (assigned > 0) & tf.reduce_all((index >= 0) & (index < num_samples))
    return index, tf.where(valid, 1.0, float("nan"))


def _check_views(inputs, owner, views):
    pair = isinstance(inputs, (tuple, list))
    if views == 2 and not (pair and len(inputs) == 2):
        found = f"{len(inputs)} tensors" if pair else f"one tensor of shape {getattr(inputs, 'shape', '?')}"
        raise ValueError(
            f"{owner} trains on two views of every sample: '{INPUTS}' must be a pair (view_a, view_b), got "
            f"{found} (a FeatureBank built with a pair of augmentations, or tfhash.data.training_dataset with "
            "augment=(a, b), gives pairs)."
        )
    if views == 1 and pair:
        raise ValueError(
            f"{owner} takes one view per sample: '{INPUTS}' must be one tensor, got {len(inputs)} tensors."
        )
