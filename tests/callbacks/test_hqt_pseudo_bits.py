"""HQTPseudoBits: assigns the tree's pseudo bits at the start of training, keeps restored bits, redraws with
seeds derived from the epoch (so a resumed run redraws as an uninterrupted one)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.callbacks import HQTPseudoBits
from tfhash.models import BiHalfHasher, HQTRegularizer
from tfhash.supervision import HyperQuantizationTree

N, D, K = 48, 6, 8


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10, size=(4, D))
    return (centres[np.arange(N) % 4] + rng.normal(size=(N, D))).astype("float32")


def model_and_data(features, **hqt_kwargs):
    model = BiHalfHasher(K, feature_size=D, hqt=HQTRegularizer(N, **hqt_kwargs), seed=0)
    model.compile(optimizer=keras.optimizers.SGD(1e-3))
    data = tf.data.Dataset.from_tensor_slices({"inputs": features, "sample_index": np.arange(N)}).batch(16)
    return model, data


def test_assigns_the_trees_bits_before_the_first_step(features):
    model, data = model_and_data(features)
    tree = HyperQuantizationTree(K, seed=3)
    model.fit(data, epochs=1, verbose=0, callbacks=[HQTPseudoBits(tree, features)])
    expected = HyperQuantizationTree(K, seed=3).pseudo_bits(features)
    np.testing.assert_array_equal(model.hqt.pseudo_bits.numpy(), expected)


def test_keeps_bits_already_assigned_unless_asked(features):
    model, data = model_and_data(features)
    bits = np.random.default_rng(1).integers(0, 2, size=(N, K))
    model.hqt.assign(bits)
    model.fit(data, epochs=1, verbose=0, callbacks=[HQTPseudoBits(HyperQuantizationTree(K), features)])
    np.testing.assert_array_equal(model.hqt.pseudo_bits.numpy(), bits)
    refit = HQTPseudoBits(HyperQuantizationTree(K, seed=0), features, refit_on_train_begin=True)
    model.fit(data, epochs=1, verbose=0, callbacks=[refit])
    np.testing.assert_array_equal(model.hqt.pseudo_bits.numpy(), HyperQuantizationTree(K).pseudo_bits(features))


def test_redraws_with_the_next_seeds(features):
    model, data = model_and_data(features)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(self.model.hqt.pseudo_bits.numpy().copy())

    callback = HQTPseudoBits(HyperQuantizationTree(K, seed=10), features, every_n_epochs=2)
    model.fit(data, epochs=5, verbose=0, callbacks=[callback, Record()])
    draws = [HyperQuantizationTree(K, seed=s).pseudo_bits(features) for s in (10, 11, 12)]
    for epoch, expected in zip(range(5), [draws[0], draws[0], draws[1], draws[1], draws[2]]):
        np.testing.assert_array_equal(seen[epoch], expected)
    assert callback.draws == 3
    assert not np.array_equal(draws[0], draws[1])


class RecordSeeds(keras.callbacks.Callback):
    """The tree seed whose bits the model holds at the start of each epoch and at the end of training."""

    def __init__(self, draws):
        super().__init__()
        self.draws, self.seeds = draws, []

    def _seed(self):
        bits = self.model.hqt.pseudo_bits.numpy()
        return next(seed for seed, drawn in self.draws.items() if np.array_equal(bits, drawn))

    def on_epoch_begin(self, epoch, logs=None):
        self.seeds.append(self._seed())

    def on_train_end(self, logs=None):
        self.seeds.append(self._seed())


@pytest.mark.parametrize("every_n_epochs", [1, 2])
def test_a_resumed_run_redraws_as_an_uninterrupted_one(features, tmp_path, every_n_epochs):
    # Issue 12 item 2: the old callback counted its own draws (seed + draws), so a run resumed at epoch 2 with
    # every_n_epochs=1 and a new callback ended on tree seed 1 instead of 4.
    draws = {seed: HyperQuantizationTree(K, seed=seed).pseudo_bits(features) for seed in range(5)}
    model, data = model_and_data(features)
    uninterrupted = RecordSeeds(draws)
    callback = HQTPseudoBits(HyperQuantizationTree(K, seed=0), features, every_n_epochs=every_n_epochs)
    model.fit(data, epochs=4, verbose=0, callbacks=[callback, uninterrupted])
    expected = [epoch // every_n_epochs for epoch in range(5)]
    assert uninterrupted.seeds == expected  # the bits of epochs 0-3, then after the last redraw
    # Interrupted after epoch 2 (saved), resumed in a new model and a new callback.
    model, data = model_and_data(features)
    first = HQTPseudoBits(HyperQuantizationTree(K, seed=0), features, every_n_epochs=every_n_epochs)
    model.fit(data, epochs=2, verbose=0, callbacks=[first])
    model.save(tmp_path / "interrupted.keras")
    restored = keras.saving.load_model(tmp_path / "interrupted.keras")
    resumed = RecordSeeds(draws)
    second = HQTPseudoBits(HyperQuantizationTree(K, seed=0), features, every_n_epochs=every_n_epochs)
    restored.fit(data, epochs=4, initial_epoch=2, verbose=0, callbacks=[second, resumed])
    assert resumed.seeds == expected[2:]
    assert resumed.seeds[-1] == (4 if every_n_epochs == 1 else 2)


def test_a_resumed_run_without_bits_draws_those_of_its_epoch(features):
    # A fresh (unassigned) model started at initial_epoch=3 with every_n_epochs=2 gets the bits an
    # uninterrupted run uses in epoch 3: those drawn after epoch 1, tree seed 0 + 3 // 2.
    draws = {seed: HyperQuantizationTree(K, seed=seed).pseudo_bits(features) for seed in range(4)}
    model, data = model_and_data(features)
    record = RecordSeeds(draws)
    callback = HQTPseudoBits(HyperQuantizationTree(K, seed=0), features, every_n_epochs=2)
    model.fit(data, epochs=4, initial_epoch=3, verbose=0, callbacks=[callback, record])
    assert record.seeds == [1, 2]


def test_features_may_come_from_the_model(features):
    model, data = model_and_data(features)
    calls = []

    def current_features(m):
        calls.append(m)
        return features * 2.0

    model.fit(data, epochs=1, verbose=0, callbacks=[HQTPseudoBits(HyperQuantizationTree(K), current_features)])
    assert calls == [model]
    np.testing.assert_array_equal(model.hqt.pseudo_bits.numpy(), HyperQuantizationTree(K).pseudo_bits(features * 2))


def test_clear_errors(features):
    model = BiHalfHasher(K, feature_size=D)
    model.compile(optimizer="sgd")
    data = tf.data.Dataset.from_tensor_slices({"inputs": features, "sample_index": np.arange(N)}).batch(16)
    with pytest.raises(ValueError, match="HQT regulariser"):
        model.fit(data, epochs=1, verbose=0, callbacks=[HQTPseudoBits(HyperQuantizationTree(K), features)])
    model, data = model_and_data(features)
    with pytest.raises(ValueError, match="num_bits"):
        model.fit(data, epochs=1, verbose=0, callbacks=[HQTPseudoBits(HyperQuantizationTree(K + 1), features)])
    with pytest.raises(ValueError, match="tree"):
        HQTPseudoBits("tree", features)
    with pytest.raises(ValueError, match="every_n_epochs"):
        HQTPseudoBits(HyperQuantizationTree(K), features, every_n_epochs=0)
