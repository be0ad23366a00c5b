"""DSAHHasher: the PIC-weighted loss against a NumPy reference of Eq. 13–17, its gradient against finite
differences, the dense and neighbour-list states, the refresher's lifecycle, saving, and the errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.callbacks import AdaptiveNeighborRefresher
from tfhash.models import DSAHHasher
from tfhash.supervision import AdaptiveNeighborDiscovery

N, D, K = 24, 10, 6
rng = np.random.default_rng(0)
FEATURES = rng.normal(size=(N, D)).astype("float32")
LABELS = np.repeat(np.arange(4), N // 4)
DISCOVERY = {"num_neighbors": 4, "num_shared_neighbors": 4, "gamma": 0.5}


def build(**kwargs):
    settings = {"num_bits": K, "num_samples": N, "feature_size": D, "hidden_units": 8,
                "neighbor_discovery": DISCOVERY, "seed": 0, **kwargs}
    return DSAHHasher(**settings)


def random_similarity(seed=1):
    signs = np.random.default_rng(seed).choice(np.array([-1, 1], np.int8), size=(N, N), p=[0.7, 0.3])
    np.fill_diagonal(signs, 1)
    return signs


def reference_losses(codes, w, pair_weights, temperature, quantization_weight):
    """Eq. 13–17 straight from the paper, in float64: (loss, similarity term, quantisation term)."""
    z = np.asarray(codes, np.float64)
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    s = unit @ unit.T
    p = np.exp(s / temperature) / np.exp(s / temperature).sum()  # over all B² pairs, diagonal included
    a = {"pic": -np.log(p), "uniform": np.ones_like(p), "pic_complement": -np.log(1 - p)}[pair_weights]
    similarity = np.mean(a * (s - w) ** 2)
    quantization = np.mean((np.where(z >= 0, 1.0, -1.0) - z) ** 2)
    return similarity + quantization_weight * quantization, similarity, quantization


def batch(index):
    index = np.asarray(index)
    return {"inputs": tf.constant(FEATURES[index]), "sample_index": tf.constant(index)}


@pytest.mark.parametrize("pair_weights", ["pic", "uniform", "pic_complement"])
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_the_loss_equals_the_papers_equations(pair_weights, temperature):
    model = build(pair_weights=pair_weights, temperature=temperature, quantization_weight=10.0)
    w = random_similarity()
    model.assign_neighbor_similarity(w)
    index = np.array([5, 0, 17, 3, 3, 22, 9, 11])  # unordered, with a repeated sample
    losses = model.compute_losses(batch(index), training=False)
    codes = model(FEATURES[index], training=False).numpy()
    expected = reference_losses(codes, w[index][:, index], pair_weights, temperature, 10.0)
    for name, value in zip(("loss", "similarity", "quantization"), expected):
        np.testing.assert_allclose(float(losses[name]), value, rtol=2e-5, atol=1e-7)


def test_pic_weighs_dissimilar_pairs_more_and_its_complement_the_reverse():
    model = build()
    cosine = tf.constant([[1.0, 0.5, -0.5], [0.5, 1.0, 0.0], [-0.5, 0.0, 1.0]])
    pic = model.pair_weight(cosine).numpy()
    assert pic[0, 2] > pic[1, 2] > pic[0, 1] > pic[0, 0]
    model.pair_weights = "pic_complement"
    complement = model.pair_weight(cosine).numpy()
    assert complement[0, 2] < complement[1, 2] < complement[0, 1] < complement[0, 0]
    model.pair_weights = "uniform"
    np.testing.assert_array_equal(model.pair_weight(cosine).numpy(), np.ones((3, 3)))


def _forward(weights, x):
    """The head in float64: linear Dense(hidden) → Dense(K) → tanh."""
    hidden_kernel, hidden_bias, kernel, bias = weights
    return np.tanh((x @ hidden_kernel + hidden_bias) @ kernel + bias)


@pytest.mark.parametrize("pair_weights", ["pic", "pic_complement"])
def test_the_gradient_matches_finite_differences_of_the_reference(pair_weights):
    # head_init="glorot": codes well away from 0, so that sign(z) is constant around the point
    model = build(pair_weights=pair_weights, head_init="glorot", quantization_weight=0.5)
    w = random_similarity(seed=3)
    model.assign_neighbor_similarity(w)
    index = np.array([1, 4, 7, 8, 13, 20])
    with tf.GradientTape() as tape:
        loss = model.compute_losses(batch(index), training=True)["loss"]
    gradients = [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]
    weights = [v.numpy().astype(np.float64) for v in model.trainable_variables]
    x = FEATURES[index].astype(np.float64)

    def reference(values):
        return reference_losses(_forward(values, x), w[index][:, index], pair_weights, 1.0, 0.5)[0]

    probe = np.random.default_rng(4)
    for position, gradient in enumerate(gradients):
        for _ in range(4):
            entry = tuple(probe.integers(0, size) for size in weights[position].shape)
            step = 1e-4 * max(1.0, abs(weights[position][entry]))
            shifted = [value.copy() for value in weights]
            shifted[position][entry] += step
            upper = reference(shifted)
            shifted[position][entry] -= 2 * step
            numeric = (upper - reference(shifted)) / (2 * step)
            np.testing.assert_allclose(gradient[entry], numeric, rtol=2e-3, atol=2e-6)


def test_dense_and_neighbour_list_states_give_the_same_targets_and_loss():
    discovery = AdaptiveNeighborDiscovery(**DISCOVERY)
    w0 = discovery.initial_neighbors(FEATURES)
    dense, lists = build(similarity_storage="dense"), build(similarity_storage="lists", max_neighbors=9)
    assert dense.storage == "dense" and lists.storage == "lists"
    assert tuple(lists.neighbor_similarity.shape) == (N, 9)
    for model in (dense, lists):
        model.assign_neighbor_similarity(w0)
    index = np.array([3, 3, 0, 23, 12, 7, 8, 19, 1, 2])
    np.testing.assert_array_equal(dense.batch_neighbor_similarity(index).numpy(),
                                  lists.batch_neighbor_similarity(index).numpy())
    np.testing.assert_array_equal(dense.batch_neighbor_similarity(index).numpy(),
                                  AdaptiveNeighborDiscovery.to_dense(w0, N)[index][:, index])
    for name, value in dense.compute_losses(batch(index), training=False).items():
        np.testing.assert_allclose(float(lists.compute_losses(batch(index), training=False)[name]), float(value),
                                   rtol=1e-6)
    # either form is accepted for either storage
    np.testing.assert_array_equal(lists.neighbor_similarity_array(), AdaptiveNeighborDiscovery.to_lists(
        AdaptiveNeighborDiscovery.to_dense(w0, N)))
    dense.assign_neighbor_similarity(AdaptiveNeighborDiscovery.to_dense(w0, N))
    lists.assign_neighbor_similarity(AdaptiveNeighborDiscovery.to_dense(w0, N))
    np.testing.assert_array_equal(dense.batch_neighbor_similarity(index).numpy(),
                                  lists.batch_neighbor_similarity(index).numpy())


def test_auto_storage_is_dense_up_to_the_limit():
    from tfhash.models import dsah_hasher

    assert build().storage == "dense"
    assert dsah_hasher.DENSE_LIMIT == 20_000
    assert build(similarity_storage="lists").storage == "lists"


def test_lists_wider_than_max_neighbors_are_refused():
    model = build(similarity_storage="lists", max_neighbors=3)
    with pytest.raises(ValueError, match="more than max_neighbors=3"):
        model.assign_neighbor_similarity(random_similarity())


@pytest.mark.parametrize("bad", [np.zeros((N, N), np.int8), np.ones((N, N), np.float32), np.ones((N - 1, 3), np.int32),
                                 np.full((N, 2), N, np.int32)])
def test_a_malformed_similarity_is_refused(bad):
    with pytest.raises(ValueError, match="`similarity`"):
        build().assign_neighbor_similarity(bad)


def test_training_without_sample_indices_is_refused_with_a_clear_error():
    model = build()
    model.assign_neighbor_similarity(random_similarity())
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="sample_index"):
        model.fit(FEATURES, epochs=1, batch_size=8, verbose=0)


def test_training_without_a_similarity_or_its_refresher_is_refused():
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = tf.data.Dataset.from_tensor_slices({"inputs": FEATURES, "sample_index": np.arange(N)}).batch(8)
    with pytest.raises(ValueError, match="no neighbour similarity yet.*AdaptiveNeighborRefresher"):
        model.fit(data, epochs=1, verbose=0)


def test_an_out_of_range_index_is_an_error_eagerly_and_nan_under_xla():
    model = build()
    model.assign_neighbor_similarity(random_similarity())
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside \\[0, num_samples\\)"):
        model.batch_neighbor_similarity(np.array([0, N]))
    compiled = tf.function(model.batch_neighbor_similarity, jit_compile=True)
    assert np.all(np.isnan(compiled(tf.constant([0, N])).numpy()))


def data(epochs):
    # NumPy orders the epochs (N = 3 batches of 8): a tf.data shuffle with an op seed still follows the global
    # seed, which earlier tests in the same worker may have set, and that once left the rounds with no pair to add
    order = np.concatenate([np.random.default_rng(epoch).permutation(N) for epoch in range(epochs)])
    return tf.data.Dataset.from_tensor_slices({"inputs": FEATURES[order], "sample_index": order}).batch(8)


def test_the_refresher_builds_w0_then_grows_it_only_through_assign(monkeypatch):
    model = build(update_every_n_epochs=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    state = model.neighbor_similarity
    writes = []
    original = state.assign
    monkeypatch.setattr(state, "assign", lambda value: writes.append(np.array(value)) or original(value))
    [refresher] = model.supervision_refreshers(FEATURES, labels=LABELS)
    model.fit(data(3), epochs=3, steps_per_epoch=3, callbacks=[refresher], verbose=0)
    assert model.neighbor_similarity is state and len(writes) == 4  # W⁰, then after epochs 1, 2, 3
    expected = AdaptiveNeighborDiscovery.to_dense(AdaptiveNeighborDiscovery(**DISCOVERY).initial_neighbors(FEATURES), N)
    np.testing.assert_array_equal(writes[0], expected)
    for before, after in zip(writes, writes[1:]):
        assert np.all(after[before == 1] == 1)  # positives are only added
    np.testing.assert_array_equal(writes[-1], model.neighbor_similarity_array())
    assert [entry["round"] for entry in refresher.log] == [0, 1, 2, 3]
    assert [entry["epoch"] for entry in refresher.log] == [0, 1, 2, 3]
    positives = [entry["positives"] for entry in refresher.log]
    assert positives == sorted(positives) and positives[0] == int(np.sum(expected == 1))
    assert all({"precision", "recall", "f_w"} <= set(entry) for entry in refresher.log)
    assert all({"threshold", "mean", "std", "added"} <= set(entry) for entry in refresher.log[1:])


def test_without_updates_w0_stays_fixed():
    model = build(update_every_n_epochs=None)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    refreshers = model.supervision_refreshers(FEATURES)
    model.fit(data(3), epochs=3, steps_per_epoch=3, callbacks=refreshers, verbose=0)
    assert len(refreshers[0].log) == 1
    expected = AdaptiveNeighborDiscovery(**DISCOVERY).initial_neighbors(FEATURES)
    np.testing.assert_array_equal(model.neighbor_similarity_array(), AdaptiveNeighborDiscovery.to_dense(expected, N))


def test_a_restored_model_keeps_its_grown_similarity_and_steps_identically(tmp_path):
    model = build(update_every_n_epochs=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(data(2), epochs=2, steps_per_epoch=3, callbacks=model.supervision_refreshers(FEATURES), verbose=0)
    grown = model.neighbor_similarity_array()
    w0 = AdaptiveNeighborDiscovery.to_dense(AdaptiveNeighborDiscovery(**DISCOVERY).initial_neighbors(FEATURES), N)
    assert np.sum(grown == 1) > np.sum(w0 == 1)  # the rounds added pairs
    model.save(tmp_path / "dsah.keras")
    restored = keras.saving.load_model(tmp_path / "dsah.keras")
    np.testing.assert_array_equal(restored.neighbor_similarity_array(), grown)
    step = next(iter(data(1)))
    for each in (model, restored):
        each.train_on_batch(step)
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_a_model_with_a_backbone_needs_the_training_inputs_for_a_round():
    model = build()
    model.assign_neighbor_similarity(random_similarity())
    refresher = AdaptiveNeighborRefresher(AdaptiveNeighborDiscovery(**DISCOVERY), FEATURES,
                                          inputs=tf.data.Dataset.from_tensor_slices(FEATURES[:10]).batch(4))
    with pytest.raises(ValueError, match="gave 10 codes; the model has num_samples=24"):
        refresher.refresh(model, 1)
    refresher = AdaptiveNeighborRefresher(AdaptiveNeighborDiscovery(**DISCOVERY), FEATURES,
                                          inputs=tf.data.Dataset.from_tensor_slices(FEATURES).batch(5))
    refresher.refresh(model, 1)
    np.testing.assert_allclose(refresher.training_codes(model), model(FEATURES, training=False).numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pair_weights": "pic0"}, "`pair_weights` must be one of"),
        ({"temperature": 0.0}, "`temperature`"),
        ({"quantization_weight": -1.0}, "`quantization_weight`"),
        ({"num_samples": 0}, "`num_samples`"),
        ({"update_every_n_epochs": 0}, "`update_every_n_epochs`"),
        ({"similarity_storage": "sparse"}, "`similarity_storage`"),
        ({"neighbor_discovery": {"k1": 5}}, "`neighbor_discovery` has unknown keys"),
        ({"max_neighbors": 0}, "`max_neighbors`"),
    ],
)
def test_bad_arguments_are_refused_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(**kwargs)


def test_config_round_trip_keeps_every_setting():
    model = build(pair_weights="uniform", update_every_n_epochs=None, similarity_storage="lists", max_neighbors=7)
    restored = DSAHHasher.from_config(model.get_config())
    for key in ("pair_weights", "update_every_n_epochs", "similarity_storage", "max_neighbors", "neighbor_discovery",
                "hidden_units", "head_init"):
        assert getattr(restored, key) == getattr(model, key)
    assert model.head_init == "normal_1e-3"
