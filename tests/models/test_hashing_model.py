"""`HashingModel`: the shared base of `Hasher` and `HashGAN` (encode, predict, trackers, serving, export)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash import load_encoder
from tfhash.models import BiHalfHasher, HashGAN, Hasher, HashingModel
from tfhash.serving import ServingInterface

SHARED = ("encode", "predict_step", "metrics", "_track", "_create_trackers", "export")


class SignHasher(HashingModel):
    """The docstring's minimal head-only model."""

    def __init__(self, num_bits, feature_size, **kwargs):
        super().__init__(num_bits, **kwargs)
        self.feature_size = feature_size
        self.head = keras.layers.Dense(num_bits, kernel_initializer=keras.initializers.GlorotUniform(seed=0))
        self.head.build((None, feature_size))
        self._create_trackers(("loss", "part"))
        self.built = True

    def call(self, inputs, training=False):
        return self.head(inputs)

    def serving_interface(self):
        self._check_built()
        return ServingInterface(self.num_bits, type(self).__name__, self.name, feature_size=self.feature_size,
                                encode_features=self.encode, variables=self.variables)


def features(n, width=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, width)).astype(np.float32)


def test_hasher_and_hashgan_share_the_base_and_do_not_repeat_it():
    for cls in (Hasher, HashGAN):
        assert issubclass(cls, HashingModel)
        assert not set(SHARED) & set(vars(cls)), cls
    assert "serving_interface" in vars(Hasher) and "serving_interface" in vars(HashGAN)
    assert not {"_seed_states", "save_own_variables", "load_own_variables"} & set(vars(HashGAN))
    assert isinstance(BiHalfHasher(8, feature_size=6, seed=0).serving_interface(), ServingInterface)


def test_encode_is_the_sign_with_sign_of_zero_plus_one():
    model = SignHasher(4, 6)
    model.head.kernel.assign(np.zeros((6, 4), np.float32))
    model.head.bias.assign(np.array([0.0, 1.0, -1.0, 0.0], np.float32))
    codes = model.encode(features(3)).numpy()
    assert codes.dtype == np.float32
    np.testing.assert_array_equal(codes, np.tile([1.0, 1.0, -1.0, 1.0], (3, 1)))


def test_predict_reads_named_and_bare_batches():
    model = SignHasher(5, 6)
    x = features(10)
    expected = model.encode(x).numpy()
    labelled = tf.data.Dataset.from_tensor_slices({"inputs": x, "labels": np.arange(10) % 2}).batch(4)
    indexed = tf.data.Dataset.from_tensor_slices({"inputs": x, "sample_index": np.arange(10)}).batch(3)
    for data in (x, labelled, indexed, tf.data.Dataset.from_tensor_slices(x).batch(4)):
        np.testing.assert_array_equal(model.predict(data, verbose=0), expected)
    pairs = tf.data.Dataset.from_tensor_slices((x, np.arange(10))).batch(4)
    with pytest.raises(ValueError, match="SignHasher got a batch of 2 positional elements"):
        model.predict(pairs, verbose=0)
    # The same holds for a Hasher.
    hasher = BiHalfHasher(8, feature_size=6, seed=0)
    np.testing.assert_array_equal(hasher.predict(labelled, verbose=0), hasher.encode(x).numpy())


def test_trackers_are_the_metrics_and_must_match_the_terms():
    model = SignHasher(4, 6)
    assert [metric.name for metric in model.metrics] == ["loss", "part"]
    logs = model._track({"loss": tf.constant(2.0), "part": tf.constant(1.0)})
    logs = model._track({"part": tf.constant(3.0), "loss": tf.constant(4.0)})
    assert list(logs) == ["loss", "part"] and float(logs["loss"]) == 3.0 and float(logs["part"]) == 2.0
    with pytest.raises(ValueError, match=r"computed the loss terms \['loss'\], but tracks \['loss', 'part'\]"):
        model._track({"loss": tf.constant(1.0)})
    with pytest.raises(ValueError, match="each term needs exactly one tracker"):
        model._track({"loss": 1.0, "part": 1.0, "extra": 1.0})


def test_num_bits_is_checked():
    with pytest.raises(ValueError, match="num_bits"):
        SignHasher(0, 6)


def test_serving_interface_and_export(tmp_path):
    model = SignHasher(12, 6)
    interface = model.serving_interface()
    assert (interface.num_bits, interface.feature_size, interface.image_shape) == (12, 6, None)
    assert (interface.model_class, interface.model_name) == ("SignHasher", model.name)
    encoder = load_encoder(model.export(tmp_path / "sign", verbose=False))
    x = features(7)
    np.testing.assert_array_equal(encoder.encode_features(x), model.encode(x).numpy())
    assert encoder.metadata["model_class"] == "SignHasher"
    with pytest.raises(ValueError, match="SignHasher.export writes format='tf_saved_model' only"):
        model.export(tmp_path / "other", format="onnx")

    with pytest.raises(NotImplementedError, match="must implement serving_interface"):
        HashingModel(4).serving_interface()
    unbuilt = SignHasher(4, 6)
    unbuilt.built = False
    with pytest.raises(ValueError, match="is not built"):
        unbuilt.export(tmp_path / "unbuilt")


def test_hashgan_serves_images_with_its_threshold():
    model = HashGAN(8, seed=1)
    interface = model.serving_interface()
    assert interface.image_shape == (28, 28, 1) and interface.feature_size is None
    assert interface.preprocessing == "pixels / 255 scaled to [0, 1]" and interface.backbone_class is None
    np.testing.assert_array_equal(model.binarize_outputs(tf.constant([[0.5, 0.50001, 0.2]])), [[-1, 1, -1]])


# --- fit on a tfhash training stream -----------------------------------------------------------------------


def _stream_and_model(epochs, initial_epoch=0):
    from tfhash.data import training_dataset
    from tfhash.data.sources import load_arrays
    from tfhash.models import BiHalfHasher

    rng = np.random.default_rng(0)
    pool = load_arrays(rng.normal(size=(40, 6)).astype("float32"), np.arange(40) % 4)
    data = training_dataset(pool, np.arange(40), 8, epochs=epochs, initial_epoch=initial_epoch, seed=0)
    model = BiHalfHasher(4, feature_size=6, seed=0)
    model.compile(optimizer="sgd")
    return data, model


class _Steps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = []

    def on_epoch_end(self, epoch, logs=None):
        self.batches.append(self.params["steps"])


def test_fit_takes_steps_per_epoch_from_the_stream():
    data, model = _stream_and_model(epochs=3)
    steps = _Steps()
    history = model.fit(data, epochs=3, verbose=0, callbacks=[steps])
    # Without steps_per_epoch Keras would read the whole 15-batch stream as epoch 0: 5 batches per epoch here.
    assert steps.batches == [5, 5, 5] and len(history.history["loss"]) == 3


@pytest.mark.parametrize(
    "fit_kwargs, match",
    [({"epochs": 4}, "epochs=3"), ({"epochs": 3, "initial_epoch": 1}, "initial_epoch=0"),
     ({"epochs": 3, "steps_per_epoch": 4}, "5 steps per epoch")],
)
def test_fit_refuses_epochs_that_are_not_the_streams(fit_kwargs, match):
    data, model = _stream_and_model(epochs=3)
    with pytest.raises(ValueError, match=match):
        model.fit(data, verbose=0, **fit_kwargs)


def test_fit_refuses_a_steps_per_execution_that_does_not_divide_the_epoch():
    data, model = _stream_and_model(epochs=3)  # 5 steps per epoch
    model.compile(optimizer="sgd", steps_per_execution=2)
    with pytest.raises(ValueError, match="steps_per_execution=2: it must divide the steps per epoch"):
        model.fit(data, epochs=3, verbose=0)


def test_one_execution_per_epoch_trains_as_one_step_per_call():
    # The recipes compile a whole epoch per execution on cached features: the same weights and losses, each
    # epoch's logs still one per epoch; predict then runs one batch per call (Keras would unroll 5 steps).
    runs = []
    for steps_per_execution in (1, 5):
        data, model = _stream_and_model(epochs=3)
        model.compile(optimizer=keras.optimizers.SGD(0.1), steps_per_execution=steps_per_execution)
        history = model.fit(data, epochs=3, verbose=0)
        codes = model.predict(tf.data.Dataset.from_tensor_slices(features(24)).batch(4), verbose=0)
        assert model.steps_per_execution == steps_per_execution
        assert model.predict_function.experimental_get_tracing_count() == 1
        runs.append((history.history["loss"], [w.numpy() for w in model.trainable_weights], codes))
    (losses, weights, codes), (losses_k, weights_k, codes_k) = runs
    assert len(losses_k) == 3
    np.testing.assert_allclose(losses_k, losses, rtol=1e-5)
    for w, w_k in zip(weights, weights_k):
        np.testing.assert_allclose(w_k, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(codes_k, codes)
