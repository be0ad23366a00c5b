"""Shared checks every public tfhash layer, loss and model passes, in the spirit of keras-hub's
``run_layer_test`` / ``run_serialization_test``.

- `run_config_test`: ``get_config`` is JSON-serialisable, ``from_config`` (and
  ``keras.saving.deserialize_keras_object`` by the registered name) rebuilds an object of the same class with
  the same config, and, given the same state, the same outputs; with ``seeded=True`` the same config also
  gives the same initial weights and random draws.
- `run_keras_file_test`: a ``.keras`` file written by ``keras.saving.save_model`` loads into the same class,
  config, weights (sample-indexed state included) and outputs. A loss travels inside a tiny
  compiled model (a loss alone is not a ``.keras`` object).
- `run_serialization_test`: both.
- `run_training_test`: one ``fit`` step of a model on one batch, eagerly (``run_eagerly=True``) or with
  ``jit_compile=True``: every logged loss is finite and some trainable weight moves.

`tests/test_registered_classes.py` applies them to every class registered under the ``"tfhash>"`` prefix.
"""

import dataclasses
import importlib
import json
import pkgutil
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

PREFIX = "tfhash>"


# --- what is registered -------------------------------------------------------------------------------------


def import_all_modules():
    """Imports every module of the tfhash package, so that every class it registers is registered."""
    import tfhash

    for module in pkgutil.walk_packages(tfhash.__path__, "tfhash."):
        importlib.import_module(module.name)


def registered_classes():
    """``{class name: class}`` of the classes registered with ``package="tfhash"``."""
    return {
        name[len(PREFIX) :]: cls
        for name, cls in keras.saving.get_custom_objects().items()
        if name.startswith(PREFIX)
    }


# --- one class's test case ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    """How to build and exercise one registered class with small arguments.

    Attributes:
        kwargs: constructor arguments, or a callable returning them (nested objects, built fresh each time).
        inputs: callable returning the positional call arguments (a tuple); for a loss ``(y_true, y_pred)``.
        call_kwargs: keyword arguments of the call (e.g. ``{"training": True}`` for random layers).
        setup: callable ``(instance) -> None`` run on a new instance before its first call (e.g. build it and
            assign pseudo bits); deterministic, so that two instances of one config stay alike.
        seeded: the same config gives the same initial weights and random draws.
        train_data: callable returning a one-batch `tf.data.Dataset` in the tfhash batch format; models only.
        compile_kwargs: callable returning ``compile`` arguments (fresh optimizers) for the training test.
        train_callbacks: callable ``(model) -> callbacks`` for the training test (e.g. the model's own
            `supervision_refreshers`, which then write its state instead of ``setup``).
        skip: a reason: the class is not instantiable here (e.g. an abstract base); its subclasses are tested.
        marks: pytest marks of every test of this class (``pytest.mark.slow``, an xfail while it is ported).
        train_marks: extra pytest marks of the training tests only; jit_marks: of the jit training test only.
        rtol, atol: tolerances of the output comparisons.
    """

    kwargs: object = dataclasses.field(default_factory=dict)
    inputs: Callable = None
    call_kwargs: dict = dataclasses.field(default_factory=dict)
    setup: Callable = None
    seeded: bool = True
    train_data: Callable = None
    compile_kwargs: Callable = None
    train_callbacks: Callable = None
    skip: str = None
    marks: tuple = ()
    train_marks: tuple = ()
    jit_marks: tuple = ()
    rtol: float = 1e-6
    atol: float = 1e-6

    def build(self, cls):
        kwargs = self.kwargs() if callable(self.kwargs) else dict(self.kwargs)
        return cls(**kwargs)


# --- the checks ---------------------------------------------------------------------------------------------


def json_config(obj):
    """``obj.get_config()`` after a JSON round trip (fails if the config is not JSON-serialisable)."""
    return json.loads(json.dumps(obj.get_config()))


def run_config_test(cls, case):
    """get_config → JSON → from_config: same class, same config and (given the same state) same outputs."""
    instance = case.build(cls)
    config = json_config(instance)
    revived = cls.from_config(config)
    assert type(revived) is cls
    assert json_config(revived) == config, "from_config(get_config()) has another config"
    by_name = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(keras.saving.serialize_keras_object(instance)))
    )
    assert type(by_name) is cls and json_config(by_name) == config, "not restored by its registered name"
    if isinstance(instance, keras.losses.Loss):
        assert_all_close(revived(*case.inputs()), instance(*case.inputs()), case, "loss values")
        return
    if case.inputs is None:
        return
    if case.setup is not None:
        case.setup(instance)
        case.setup(revived)
    first, revived_first = _call(instance, case), _call(revived, case)  # builds both
    if case.seeded:
        assert_all_close(revived_first, first, case, "the first outputs of two objects of the same config")
    copy_variables(instance, revived)
    assert_all_close(_call(revived, case), _call(instance, case), case, "outputs after from_config")


def run_keras_file_test(cls, case, path):
    """save_model → load_model: same class, config, weights and outputs."""
    instance = case.build(cls)
    if isinstance(instance, keras.losses.Loss):
        _run_loss_file_test(cls, case, instance, path)
        return
    if case.setup is not None:
        case.setup(instance)
    if case.inputs is not None:
        _call(instance, case)  # builds it, and advances its random state
    keras.saving.save_model(instance, path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is cls
    assert json_config(loaded) == json_config(instance)
    assert_same_weights(loaded, instance)
    if case.inputs is not None:
        # Keras saves a layer's weights, not the states of its seed generators: continue both from one state.
        copy_seed_states(instance, loaded)
        assert_all_close(_call(loaded, case), _call(instance, case), case, "outputs after load_model")


def run_serialization_test(cls, case, path):
    """`run_config_test` and `run_keras_file_test` (a ``.keras`` file at ``path``)."""
    run_config_test(cls, case)
    run_keras_file_test(cls, case, path)


def run_training_test(cls, case, jit_compile):
    """One step of ``fit`` on one batch (with the case's callbacks), eagerly or under XLA: finite losses, and
    trainable weights move."""
    model = case.build(cls)
    callbacks = case.train_callbacks(model) if case.train_callbacks else []
    if case.setup is not None and not callbacks:
        case.setup(model)
    compile_kwargs = (
        case.compile_kwargs() if case.compile_kwargs else {"optimizer": keras.optimizers.Adam(1e-2)}
    )
    model.compile(**compile_kwargs, jit_compile=jit_compile, run_eagerly=not jit_compile)
    assert bool(model.jit_compile) == jit_compile, "Keras turned XLA off for this model (an op XLA lacks?)"
    before = [variable.numpy().copy() for variable in model.trainable_variables]
    assert before, f"{cls.__name__} has no trainable variables"
    logs = model.fit(case.train_data().take(1), epochs=1, verbose=0, callbacks=callbacks).history
    assert logs, "fit logged nothing"
    for name, values in logs.items():
        assert np.isfinite(values).all(), f"{name} is not finite: {values}"
    moved = [not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables)]
    assert any(moved), "no trainable variable changed in the training step"
    return logs


# --- helpers ------------------------------------------------------------------------------------------------


def _call(instance, case):
    return keras.tree.map_structure(lambda x: np.asarray(x), instance(*case.inputs(), **case.call_kwargs))


def _run_loss_file_test(cls, case, loss, path):
    y_true, y_pred = case.inputs()
    model = keras.Sequential([keras.Input(tuple(np.shape(y_pred)[1:])), keras.layers.Identity()])
    model.compile(optimizer="sgd", loss=loss)
    keras.saving.save_model(model, path)
    loaded = keras.saving.load_model(path).loss
    assert type(loaded) is cls, f"the compiled loss came back as {loaded!r}"
    assert json_config(loaded) == json_config(loss)
    assert_all_close(loaded(y_true, y_pred), loss(y_true, y_pred), case, "loss values after load_model")


def copy_variables(source, target):
    """Assigns every variable of ``source`` (weights, state, seed states) to the same one of ``target``."""
    pairs = list(zip(source.variables, target.variables, strict=True))
    for a, b in pairs:
        assert tuple(a.shape) == tuple(b.shape), f"{a.path} {a.shape} vs {b.path} {b.shape}"
        b.assign(a)


def copy_seed_states(source, target):
    """Assigns the seed-generator states of ``source`` (its variables that are no weights) to ``target``."""
    weights = {id(w) for w in source.weights}
    states = [v for v in source.variables if id(v) not in weights]
    target_weights = {id(w) for w in target.weights}
    target_states = [v for v in target.variables if id(v) not in target_weights]
    for a, b in zip(states, target_states, strict=True):
        b.assign(a)


def assert_same_weights(actual, expected):
    """Same number, shapes and values of weights (trainable or not, sample-indexed state too), in order."""
    count, expected_count = len(actual.weights), len(expected.weights)
    assert count == expected_count, f"{count} weights vs {expected_count}"
    for a, e in zip(actual.weights, expected.weights):
        assert tuple(a.shape) == tuple(e.shape), f"{a.path} {a.shape} vs {e.path} {e.shape}"
        np.testing.assert_array_equal(np.asarray(a), np.asarray(e), err_msg=e.path)


def assert_all_close(actual, expected, case, what):
    actual, expected = keras.tree.flatten(actual), keras.tree.flatten(expected)
    assert len(actual) == len(expected), f"{what}: {len(actual)} vs {len(expected)} outputs"
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=case.rtol, atol=case.atol, err_msg=what)


def batches(inputs, sample_index=None, batch_size=None):
    """A one-batch tf.data.Dataset of ``{"inputs": ..., "sample_index": ...}`` dicts (`tfhash.batches`)."""
    element = {"inputs": inputs}
    if sample_index is not None:
        element["sample_index"] = np.asarray(sample_index, np.int64)
    size = len(keras.tree.flatten(inputs)[0])
    return tf.data.Dataset.from_tensor_slices(element).batch(batch_size or size)
