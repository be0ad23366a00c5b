"""SupervisionRefresher (the lifecycle every refresher shares) and CIMONPseudoSimilarityRefresher."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.callbacks import CIMONPseudoSimilarityRefresher, SupervisionRefresher
from tfhash.models import CIMONHasher, GreedyHasher
from tfhash.supervision import CIMONPseudoSimilarity

N, D, K = 24, 16, 8


class Recorder(SupervisionRefresher):
    """Records the epochs it refreshes for; ``assigned`` plays the model's flag."""

    def __init__(self, assigned=False, features=None, **kwargs):
        super().__init__(features=features, **kwargs)
        self.assigned, self.epochs = assigned, []

    def is_assigned(self, model):
        return self.assigned

    def refresh(self, model, epoch):
        self.epochs.append(epoch)
        self.assigned = True


@pytest.fixture(scope="module")
def data():
    features = np.random.default_rng(0).normal(size=(N, D)).astype("float32")
    return tf.data.Dataset.from_tensor_slices(features).batch(8)


@pytest.fixture
def model():
    model = GreedyHasher(K, feature_size=D, seed=0)
    model.compile(optimizer="sgd")
    return model


@pytest.mark.parametrize(
    "kwargs, initial_epoch, epochs",
    [
        ({}, 0, [0]),  # once, before the first epoch
        ({"every_n_epochs": 2}, 0, [0, 2, 4]),  # and after epochs 1 and 3 (for epochs 2 and 4)
        ({"every_n_epochs": 1}, 2, [2, 3, 4]),  # resumed: the first refresh is for epoch 2
        ({"assigned": True}, 0, []),  # a state already there is kept
        ({"assigned": True, "refit_on_train_begin": True}, 0, [0]),
        ({"assigned": True, "every_n_epochs": 3}, 1, [3]),
    ],
)
def test_lifecycle(model, data, kwargs, initial_epoch, epochs):
    recorder = Recorder(**kwargs)
    model.fit(data, epochs=4, initial_epoch=initial_epoch, verbose=0, callbacks=[recorder])
    assert recorder.epochs == epochs and recorder.refreshes == len(epochs)


def test_refresh_index_and_features():
    assert [Recorder(every_n_epochs=3).refresh_index(e) for e in range(7)] == [0, 0, 0, 1, 1, 1, 2]
    assert Recorder().refresh_index(10) == 0
    assert Recorder(features=lambda m: m * 2).current_features(3) == 6
    assert Recorder(features=[1, 2]).current_features(None) == [1, 2]


def test_subclass_interface_and_arguments():
    with pytest.raises(TypeError, match="abstract"):  # a subclass must implement is_assigned and refresh
        SupervisionRefresher(np.zeros((2, 2)))

    class OnlyAssigned(SupervisionRefresher):
        def is_assigned(self, model):
            return False

    with pytest.raises(TypeError, match="refresh"):
        OnlyAssigned(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="every_n_epochs"):
        Recorder(every_n_epochs=0)
    with pytest.raises(ValueError, match="refit_on_train_begin"):
        Recorder(refit_on_train_begin=1)


# --- CIMONPseudoSimilarityRefresher ---------------------------------------------------------------------------


def blobs(seed=0):
    rng = np.random.default_rng(seed)
    centres = 1.0 / np.sqrt(D) + np.eye(4, D)
    return (centres[np.repeat(np.arange(4), N // 4)] + 0.041 * rng.standard_normal((N, D))).astype(np.float32)


@pytest.fixture(scope="module")
def views():
    features = blobs()
    rng = np.random.default_rng(1)
    return tuple(features + s * rng.standard_normal(features.shape).astype(np.float32) for s in (0.01, 0.03))


def cimon_data(views):
    elements = {"inputs": views, "sample_index": np.arange(N)}
    return tf.data.Dataset.from_tensor_slices(elements).batch(8)


def cimon(per_view=False):
    model = CIMONHasher(K, N, feature_size=D, per_view_similarity=per_view, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(1e-2))
    return model


def state(model):
    names = ("similarity_features", "cluster_ids", "similarity_statistics", "pseudo_similarity_assigned")
    return [getattr(model, name).numpy().copy() for name in names]


def assert_same_state(first, second):
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def reference(fitted, per_view=False):
    model = cimon(per_view)
    model.assign_pseudo_similarity(*fitted[:1], **({"second_view": fitted[1]} if per_view else {}))
    return state(model)


def test_fits_and_assigns_before_training(views):
    model = cimon()
    template = CIMONPseudoSimilarity(num_clusters=4, seed=5)
    model.fit(cimon_data(views), epochs=1, verbose=0,
              callbacks=[CIMONPseudoSimilarityRefresher(template, views[0])])
    assert_same_state(state(model), reference([CIMONPseudoSimilarity(num_clusters=4, seed=5).fit(views[0])]))
    assert not hasattr(template, "features_")  # the template is not fitted itself


def test_per_view_similarity_takes_a_pair(views):
    model = cimon(per_view=True)
    refresher = CIMONPseudoSimilarityRefresher(CIMONPseudoSimilarity(num_clusters=4), views)
    model.fit(cimon_data(views), epochs=1, verbose=0, callbacks=[refresher])
    fitted = [CIMONPseudoSimilarity(num_clusters=4).fit(view) for view in views]
    assert_same_state(state(model), reference(fitted, per_view=True))
    with pytest.raises(ValueError, match="must be a pair"):
        cimon(per_view=True).fit(cimon_data(views), epochs=1, verbose=0, callbacks=[
            CIMONPseudoSimilarityRefresher(CIMONPseudoSimilarity(num_clusters=4), views[0])])
    with pytest.raises(ValueError, match="one \\(n, D\\) array"):
        cimon().fit(cimon_data(views), epochs=1, verbose=0, callbacks=[
            CIMONPseudoSimilarityRefresher(CIMONPseudoSimilarity(num_clusters=4), views)])


def test_keeps_a_restored_state_and_refits_with_epoch_seeds(views, tmp_path):
    model = cimon()
    model.assign_pseudo_similarity(CIMONPseudoSimilarity(num_clusters=4, seed=0).fit(views[1]))
    model.save(tmp_path / "cimon.keras")
    restored = keras.saving.load_model(tmp_path / "cimon.keras")
    before = state(restored)
    refresher = CIMONPseudoSimilarityRefresher(CIMONPseudoSimilarity(num_clusters=4, seed=0), views[0])
    restored.fit(cimon_data(views), epochs=1, verbose=0, callbacks=[refresher])
    assert_same_state(state(restored), before)
    # every_n_epochs: refitted after epoch 1 with the clustering seed 0 + 2 // 2, as a resumed run would.
    seeds = []
    redraw = CIMONPseudoSimilarityRefresher(CIMONPseudoSimilarity(num_clusters=4, seed=0), views[0],
                                            every_n_epochs=2)
    original = redraw.similarity_for
    redraw.similarity_for = lambda epoch: seeds.append(original(epoch).seed) or original(epoch)
    restored.fit(cimon_data(views), epochs=2, verbose=0, callbacks=[redraw])
    assert seeds == [1]
    assert_same_state(state(restored), reference([CIMONPseudoSimilarity(num_clusters=4, seed=1).fit(views[0])]))


def test_features_may_come_from_the_model(views):
    model, calls = cimon(), []

    def features(m):
        calls.append(m)
        return views[0]

    refresher = CIMONPseudoSimilarityRefresher(CIMONPseudoSimilarity(num_clusters=4), features, verbose=1)
    model.fit(cimon_data(views), epochs=1, verbose=0, callbacks=[refresher])
    assert calls == [model]


def test_clear_errors(views):
    with pytest.raises(ValueError, match="CIMONPseudoSimilarity"):
        CIMONPseudoSimilarityRefresher({"num_clusters": 4}, views[0])
    model = GreedyHasher(K, feature_size=D)
    model.compile(optimizer="sgd")
    refresher = CIMONPseudoSimilarityRefresher(CIMONPseudoSimilarity(num_clusters=4), views[0])
    with pytest.raises(ValueError, match="needs a tfhash.models.CIMONHasher"):
        model.fit(views[0], epochs=1, verbose=0, callbacks=[refresher])
