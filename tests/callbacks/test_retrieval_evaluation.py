import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.callbacks import RetrievalEvaluation
from tfhash.metrics import mean_average_precision


def clustered(rng, rows, dim=8, classes=3):
    labels = rng.integers(0, classes, rows)
    centres = rng.normal(size=(classes, dim)) * 3
    return (centres[labels] + rng.normal(size=(rows, dim))).astype(np.float32), labels


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return clustered(rng, 40), clustered(rng, 120)


def tanh_model(dim=8, bits=6):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((dim,)), keras.layers.Dense(bits, activation="tanh")])


def test_writes_map_into_logs_equal_to_direct_computation(data):
    query, database = data
    model = tanh_model()
    model.compile(optimizer="sgd", loss="mse")
    evaluation = RetrievalEvaluation(query, database, top_k=50, batch_size=16)
    history = model.fit(database[0], np.zeros((120, 6)), epochs=2, verbose=0, callbacks=[evaluation])
    assert evaluation.name == "val_map@50"
    assert len(history.history["val_map@50"]) == 2
    sign = lambda x: np.where(model.predict(x, verbose=0) >= 0, 1.0, -1.0)  # noqa: E731
    expected = mean_average_precision(sign(query[0]), sign(database[0]), query[1], database[1], top_k=50)
    np.testing.assert_allclose(history.history["val_map@50"][-1], float(expected))


# ModelCheckpoint warns on the epochs that carry no value: that is the behaviour under test.
@pytest.mark.filterwarnings("ignore:Can save best model only with val_map@all available")
def test_datasets_every_n_epochs_and_model_checkpoint(data, tmp_path):
    query, database = data
    model = tanh_model()
    model.compile(optimizer="sgd", loss="mse")
    evaluation = RetrievalEvaluation(
        tf.data.Dataset.from_tensor_slices(query).batch(7),
        tf.data.Dataset.from_tensor_slices(database).batch(32),
        every_n_epochs=2,
    )
    seen = []
    recorder = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append("val_map@all" in logs))
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "best.keras"), monitor="val_map@all", mode="max", save_best_only=True
    )
    model.fit(database[0], np.zeros((120, 6)), epochs=4, verbose=0, callbacks=[evaluation, recorder, checkpoint])
    assert seen == [False, True, False, True]
    assert (tmp_path / "best.keras").exists()


def test_uses_model_encode_when_present(data):
    query, database = data

    class Encoder(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(4)
            self.encode_calls = 0

        def call(self, x):
            return self.dense(x)

        def encode(self, x):
            self.encode_calls += 1
            return -tf.sign(self.dense(x)) - 0.5  # differs from sign(call) so the test can tell which ran

    model = Encoder()
    model(query[0])
    evaluation = RetrievalEvaluation(query, database)
    evaluation.set_model(model)
    value = evaluation.evaluate()
    codes = lambda x: np.where(-np.sign(model.dense(x).numpy()) - 0.5 >= 0, 1.0, -1.0)  # noqa: E731
    np.testing.assert_allclose(value, float(mean_average_precision(codes(query[0]), codes(database[0]), query[1], database[1])))
    assert model.encode_calls == 2


def test_bad_arguments_are_named(data):
    query, database = data
    for kwargs, name in [({"top_k": 0}, "top_k"), ({"every_n_epochs": 0}, "every_n_epochs"), ({"ties": "x"}, "ties")]:
        with pytest.raises(ValueError, match=name):
            RetrievalEvaluation(query, database, **kwargs)
    evaluation = RetrievalEvaluation((query[0], query[1][:5]), database)
    evaluation.set_model(tanh_model())
    with pytest.raises(ValueError, match="query_data"):
        evaluation.evaluate()


def test_keras_tuner_can_maximise_the_logged_map(data, tmp_path):
    keras_tuner = pytest.importorskip("keras_tuner", reason="keras-tuner is a dependency of tfhash")
    query, database = data

    def build(hp):
        model = tanh_model()
        model.compile(optimizer=keras.optimizers.SGD(hp.Choice("learning_rate", [0.01, 0.1])), loss="mse")
        return model

    tuner = keras_tuner.RandomSearch(
        build,
        objective=keras_tuner.Objective("val_map@all", direction="max"),
        max_trials=2,
        seed=0,
        directory=str(tmp_path),
        project_name="retrieval",
    )
    query_dataset = tf.data.Dataset.from_tensor_slices(query).batch(16)  # datasets must survive the tuner's copy
    tuner.search(
        database[0], np.zeros((120, 6)), epochs=2, verbose=0,
        callbacks=[RetrievalEvaluation(query_dataset, database)],
    )
    best = tuner.oracle.get_best_trials(1)[0]
    assert 0.0 < best.score <= 1.0
    assert best.metrics.get_best_value("val_map@all") == best.score


def test_named_evaluation_batches_give_the_same_value_as_pairs(data):
    # The pipelines and the feature bank yield {"inputs": x, "labels": y} (tfhash.batches).
    query, database = data
    model = tanh_model()

    def named(pair, batch):
        return tf.data.Dataset.from_tensor_slices({"inputs": pair[0], "labels": pair[1]}).batch(batch)

    values = []
    for query_data, database_data in [
        (query, database),
        (named(query, 7), named(database, 32)),
        ({"inputs": query[0], "labels": query[1]}, {"inputs": database[0], "labels": database[1]}),
    ]:
        evaluation = RetrievalEvaluation(query_data, database_data, top_k=50, batch_size=16)
        evaluation.set_model(model)
        values.append(evaluation.evaluate())
    sign = lambda x: np.where(model.predict(x, verbose=0) >= 0, 1.0, -1.0)  # noqa: E731
    expected = float(mean_average_precision(sign(query[0]), sign(database[0]), query[1], database[1], top_k=50))
    np.testing.assert_allclose(values, [expected] * 3)


def test_batches_without_labels_are_refused(data):
    query, database = data
    training_like = tf.data.Dataset.from_tensor_slices(
        {"inputs": query[0], "sample_index": np.arange(len(query[0]))}
    ).batch(8)
    for query_data, match in [
        (training_like, r"must yield \{'inputs': x, 'labels': y\}.*keys \['inputs', 'sample_index'\]"),
        (tf.data.Dataset.from_tensor_slices(query[0]).batch(8), "must yield .*got an element of a"),
        ({"inputs": query[0]}, "keys \\['inputs'\\]"),
        (query[0], "query_data` must be a tf.data.Dataset"),
    ]:
        evaluation = RetrievalEvaluation(query_data, database)
        evaluation.set_model(tanh_model())
        with pytest.raises(ValueError, match=match):
            evaluation.evaluate()
