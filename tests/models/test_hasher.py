"""The Hasher base: training step, trackers, encoding, data formats, saving, jit and tf.distribute."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash import backbones
from tfhash.callbacks import HQTPseudoBits
from tfhash.models import BiHalfHasher, CIBHasher, GreedyHasher, HQTRegularizer
from tfhash.supervision import HyperQuantizationTree

N, D, K = 64, 10, 8


@pytest.fixture(scope="module")
def features():
    return np.random.default_rng(0).normal(size=(N, D)).astype("float32")


def indexed(features, batch_size=16, index=None):
    index = np.arange(len(features)) if index is None else index
    return tf.data.Dataset.from_tensor_slices({"inputs": features, "sample_index": index}).batch(batch_size)


def assert_trained(history, terms=("loss",)):
    """Every logged value finite, and each of ``terms`` lower at the last epoch than at the first."""
    assert all(np.isfinite(values).all() for values in history.values()), history
    for term in terms:
        assert history[term][-1] < history[term][0], (term, history[term])


def with_hqt(model_class, features, alpha=0.5, **kwargs):
    model = model_class(K, feature_size=D, hqt=HQTRegularizer(N, alpha=alpha), seed=0, **kwargs)
    model.hqt.assign(HyperQuantizationTree(K, seed=0).pseudo_bits(features))
    return model


def test_train_step_applies_the_gradient_of_the_total_loss(features):
    model = with_hqt(BiHalfHasher, features)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    batch = {"inputs": tf.constant(features[:16]), "sample_index": tf.constant(np.arange(16))}
    with tf.GradientTape() as tape:
        loss = model.compute_losses(batch, training=True)["loss"]
    gradient = tape.gradient(loss, model.head.kernel).numpy()
    before = model.head.kernel.numpy()
    logs = model.train_step(batch)
    np.testing.assert_allclose(model.head.kernel.numpy(), before - 0.5 * gradient, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(logs["loss"]), float(loss), rtol=1e-6)
    assert set(logs) == {"loss", "similarity", "self_loss", "hqt_loss"}


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("model_class", [BiHalfHasher, GreedyHasher])
def test_fit_eager_and_jit_lowers_the_loss(model_class, jit_compile, features):
    # Bi-half with γ = 1: at the paper's γ = 6 the pull term holds the 8-bit codes of these 10-d random features
    # in place and the loss only fluctuates (it "fell" over 8 epochs by chance from the Glorot init)
    model = with_hqt(model_class, features, **({"gamma": 1.0} if model_class is BiHalfHasher else {}))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=jit_compile, run_eagerly=False)
    history = model.fit(indexed(features), epochs=8, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert all(np.isfinite(v).all() for v in history.values())
    evaluation = model.evaluate(indexed(features), verbose=0, return_dict=True)
    assert set(evaluation) == set(history)


def test_run_eagerly(features):
    model = with_hqt(GreedyHasher, features)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), run_eagerly=True)
    history = model.fit(indexed(features), epochs=4, verbose=0).history
    assert_trained(history, ("loss", "self_loss", "hqt_loss"))


def test_encode_and_predict_give_signed_codes(features):
    model = GreedyHasher(K, feature_size=D, seed=0)
    codes = model.predict(features, verbose=0)
    assert set(np.unique(codes)) <= {-1.0, 1.0}
    h = features @ model.head.kernel.numpy() + model.head.bias.numpy()
    np.testing.assert_array_equal(codes, np.where(h >= 0, 1.0, -1.0))
    np.testing.assert_array_equal(model.encode(features).numpy(), codes)
    # predict on {"inputs", "labels"} (evaluation) and {"inputs", "sample_index"} (training) batches
    labelled = tf.data.Dataset.from_tensor_slices({"inputs": features, "labels": np.zeros(N, "int64")}).batch(7)
    np.testing.assert_array_equal(model.predict(labelled, verbose=0), codes)
    np.testing.assert_array_equal(model.predict(indexed(features), verbose=0), codes)


def test_bi_half_encodes_single_queries_with_the_sign(features):
    model = BiHalfHasher(K, feature_size=D, seed=0)
    one = model.encode(features[:1]).numpy()
    np.testing.assert_array_equal(one, np.where(features[:1] @ model.head.kernel.numpy() >= 0, 1.0, -1.0))


def test_save_load_resumes_with_state_and_identical_codes(tmp_path, features):
    model = with_hqt(BiHalfHasher, features, gamma=3.0)
    model.compile(optimizer=keras.optimizers.SGD(1e-2, momentum=0.9))
    model.fit(indexed(features), epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, BiHalfHasher) and loaded.gamma == 3.0 and loaded.hqt.alpha == 0.5
    np.testing.assert_array_equal(loaded.predict(features, verbose=0), model.predict(features, verbose=0))
    np.testing.assert_array_equal(loaded.hqt.pseudo_bits.numpy(), model.hqt.pseudo_bits.numpy())
    # Both continue identically from the restored optimizer state.
    for m in (model, loaded):
        m.fit(indexed(features), epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(loaded.head.kernel.numpy(), model.head.kernel.numpy(), rtol=1e-5, atol=1e-7)


def test_config_round_trip(features):
    model = GreedyHasher(K, feature_size=D, quantization_weight=0.2, hqt=HQTRegularizer(N, alpha=0.3), seed=4)
    clone = GreedyHasher.from_config(model.get_config())
    assert (clone.num_bits, clone.feature_size, clone.seed, clone.quantization_weight) == (K, D, 4, 0.2)
    assert clone.hqt.alpha == 0.3 and clone.hqt.num_samples == N


def test_same_seed_same_initial_codes(features):
    first, second = (BiHalfHasher(K, feature_size=D, seed=7) for _ in range(2))
    np.testing.assert_array_equal(first.predict(features, verbose=0), second.predict(features, verbose=0))


def test_backbone_model_trains_on_uint8_images():
    backbone = backbones.get("small_cnn", trainable=True, image_size=28, channels=1)
    model = GreedyHasher(12, backbone=backbone, seed=0)
    images = np.random.default_rng(1).integers(0, 256, size=(8, 28, 28, 1), dtype=np.uint8)
    model.compile(optimizer="adam")
    before = [w.numpy().copy() for w in backbone.trainable_weights]
    data = tf.data.Dataset.from_tensor_slices({"inputs": images, "sample_index": np.arange(8)}).batch(4)
    model.fit(data, epochs=1, verbose=0)
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, backbone.trainable_weights))
    assert model.predict(images, verbose=0).shape == (8, 12)
    assert model.input_shape_ == (None, 28, 28, 1) and model.feature_size == backbone.feature_size


@pytest.mark.parametrize("form", ["dataset", "array", "named"])
def test_inputs_alone_train_without_hqt(features, form):
    model = GreedyHasher(K, feature_size=D, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    data = {
        "dataset": tf.data.Dataset.from_tensor_slices(features).batch(16),
        "array": features,
        "named": tf.data.Dataset.from_tensor_slices({"inputs": features}).batch(16),
    }[form]
    history = model.fit(data, epochs=4, verbose=0, batch_size=None if form != "array" else 16).history
    assert_trained(history, ("loss", "similarity", "quantization"))


def test_hqt_needs_sample_indices(features):
    model = with_hqt(GreedyHasher, features)
    with pytest.raises(ValueError, match="sample_index"):
        model.compute_losses(tf.constant(features[:4]), training=True)
    # An evaluation batch (labels, no index) is refused rather than gathering by class label.
    labelled = {"inputs": tf.constant(features[:4]), "labels": tf.constant([0, 1, 1, 0])}
    with pytest.raises(ValueError, match="evaluation dataset"):
        model.compute_losses(labelled, training=True)
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="evaluation dataset"):
        model.evaluate(tf.data.Dataset.from_tensor_slices(labelled).batch(4), verbose=0)
    with pytest.raises(ValueError, match="integer"):
        model.compute_losses({"inputs": tf.constant(features[:4]), "sample_index": tf.zeros(4)}, training=True)


# Issue 12 item 1: the old `_unpack` took the (x, y) tuple of fit(x, y) as the inputs (BiHalf then ranked over
# an axis of size 2) and class labels as sample indices; both trained silently on garbage.
@pytest.mark.parametrize("model_class", [BiHalfHasher, GreedyHasher])
def test_fit_with_targets_is_refused(model_class, features):
    model = model_class(K, feature_size=D, seed=0)
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="without targets"):
        model.fit(features, features, epochs=1, verbose=0)
    labels = np.arange(N) % 4
    with pytest.raises(ValueError, match="without targets"):
        model.fit(features, labels, epochs=1, verbose=0)
    hqt_model = with_hqt(model_class, features)
    hqt_model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="without targets"):
        hqt_model.fit(features, labels, epochs=1, verbose=0)
    # A dataset of positional (x, y) pairs reaches the step: refused there, naming the named form.
    pairs = tf.data.Dataset.from_tensor_slices((features, labels)).batch(16)
    with pytest.raises(ValueError, match="positional"):
        hqt_model.fit(pairs, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="positional"):
        model.evaluate(features, features, verbose=0)
    # fit(x) keeps working
    assert np.isfinite(model.fit(features, epochs=1, verbose=0, batch_size=16).history["loss"]).all()


@pytest.mark.parametrize("bad_index", [N, -1])
def test_out_of_range_sample_index_fails_eagerly_and_in_graph(features, bad_index):
    # Issue 12 item 3: the error names num_samples.
    model = with_hqt(BiHalfHasher, features)
    index = np.arange(16)
    index[3] = bad_index
    batch = {"inputs": tf.constant(features[:16]), "sample_index": tf.constant(index)}
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"num_samples={N}"):
        model.compute_losses(batch, training=True)
    model.compile(optimizer="sgd")
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"num_samples={N}"):
        model.fit(indexed(features[:16], index=index), epochs=1, verbose=0)


def test_out_of_range_sample_index_gives_nan_under_xla(features):
    # XLA drops assertions and clamps the gather: the loss and the weights must not stay plausible.
    model = with_hqt(BiHalfHasher, features)
    model.compile(optimizer=keras.optimizers.SGD(1e-2), jit_compile=True)
    index = np.arange(16) + N - 8  # half of them out of range
    history = model.fit(indexed(features[:16], index=index), epochs=1, verbose=0).history
    assert np.isnan(history["loss"]).all() and np.isnan(history["hqt_loss"]).all()
    assert np.isnan(model.head.kernel.numpy()).all()


def test_fit_refuses_unassigned_hqt_bits_without_a_refresher(features):
    model = BiHalfHasher(K, feature_size=D, hqt=HQTRegularizer(N), seed=0)
    model.compile(optimizer="sgd", jit_compile=True)  # XLA would drop the in-graph check
    with pytest.raises(ValueError, match="no HQT pseudo bits yet.*supervision_refreshers"):
        model.fit(indexed(features), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="no HQT pseudo bits yet"):
        model.fit(indexed(features), epochs=1, verbose=0, callbacks=[keras.callbacks.History()])
    # With the refresher among the callbacks, training starts (and the bits are drawn first).
    model.fit(indexed(features), epochs=1, verbose=0, callbacks=model.supervision_refreshers(features))
    assert float(model.hqt.assigned.numpy()) == 1.0


def test_supervision_refreshers_follow_the_model_configuration(features):
    assert GreedyHasher(K, feature_size=D, seed=0).supervision_refreshers(features) == []
    # Defaults: the recipes' HyperQuantizationTree(bits, (3, 5), shared, seed=model seed), drawn once.
    model = BiHalfHasher(K, feature_size=D, hqt=HQTRegularizer(N), seed=7)
    (refresher,) = model.supervision_refreshers(features, verbose=1)
    assert isinstance(refresher, HQTPseudoBits) and refresher.every_n_epochs is None and refresher.verbose == 1
    expected = HyperQuantizationTree(K, depth_range=(3, 5), shared_tree=True, seed=7, projection_dim=None)
    assert refresher.tree.get_config() == expected.get_config()
    np.testing.assert_array_equal(refresher.tree.depths, expected.depths)
    # Configured: tree settings and redraws from the regulariser's config, its own seed winning.
    tree = {"depth_range": (2, 4), "shared_tree": False, "projection_dim": 3, "seed": 11}
    model = BiHalfHasher(K, feature_size=D, hqt=HQTRegularizer(N, tree=tree, every_n_epochs=2), seed=7)
    (refresher,) = model.supervision_refreshers(features)
    assert refresher.every_n_epochs == 2
    assert refresher.tree.get_config() == HyperQuantizationTree(K, **tree).get_config()
    model.compile(optimizer="sgd")
    model.fit(indexed(features), epochs=1, verbose=0, callbacks=[refresher])
    np.testing.assert_array_equal(model.hqt.pseudo_bits.numpy(), HyperQuantizationTree(K, **tree).pseudo_bits(features))
    # A model without a seed: the tree's own default seed, 0.
    unseeded = BiHalfHasher(K, feature_size=D, hqt=HQTRegularizer(N))
    assert unseeded.supervision_refreshers(features)[0].tree.seed == 0


def test_hqt_settings_round_trip_and_old_configs_load(tmp_path, features):
    hqt = HQTRegularizer(N, alpha=0.3, tree={"depth_range": (2, 6), "kmeans_iterations": 5}, every_n_epochs=3)
    model = GreedyHasher(K, feature_size=D, hqt=hqt, seed=1)
    config = json.loads(json.dumps(model.get_config()))
    clone = GreedyHasher.from_config(config)
    assert clone.hqt.tree == {"depth_range": [2, 6], "kmeans_iterations": 5} and clone.hqt.every_n_epochs == 3
    # A .keras file written before `tree` / `every_n_epochs` existed: the config lacks them.
    del config["hqt"]["config"]["tree"], config["hqt"]["config"]["every_n_epochs"]
    old = GreedyHasher.from_config(config)
    assert old.hqt.tree is None and old.hqt.every_n_epochs is None
    model.hqt.assign(np.ones((N, K)))
    model.save(tmp_path / "m.keras")
    assert keras.saving.load_model(tmp_path / "m.keras").hqt.tree == {"depth_range": [2, 6], "kmeans_iterations": 5}


@pytest.mark.parametrize(
    "tree, message",
    [("deep", "dict"), ({"num_bits": 4}, "unknown keys"), ({"depth_range": (4, 2)}, "depth_range"),
     ({"seed": -1}, "seed")],
)
def test_bad_tree_settings_name_themselves(tree, message):
    with pytest.raises(ValueError, match=message):
        HQTRegularizer(N, tree=tree)
    with pytest.raises(ValueError, match="every_n_epochs"):
        HQTRegularizer(N, every_n_epochs=0)


def test_seed_generator_state_is_saved_so_a_stochastic_model_resumes_exactly(tmp_path):
    # Issue 12 item 6: CIBHasher's stochastic binarizer draws from a SeedGenerator; a reloaded model must
    # continue with the draws the original would have made.
    rng = np.random.default_rng(0)
    views = rng.normal(size=(2, 32, D)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices({"inputs": (views[0], views[1])}).batch(8)

    def build():
        model = CIBHasher(K, hidden_units=16, feature_size=D, seed=3)
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        return model

    uninterrupted = build()
    uninterrupted.fit(data, epochs=2, verbose=0)
    interrupted = build()
    interrupted.fit(data, epochs=1, verbose=0)
    interrupted.save(tmp_path / "cib.keras")
    resumed = keras.saving.load_model(tmp_path / "cib.keras")
    resumed.fit(data, epochs=2, initial_epoch=1, verbose=0)
    for ours, theirs in zip(resumed.weights, uninterrupted.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    states = [v.numpy() for v in resumed.variables if v.path.endswith("seed_generator_state")]
    assert states and all(np.array_equal(a, b.numpy()) for a, b in zip(
        states, [v for v in uninterrupted.variables if v.path.endswith("seed_generator_state")]))


@pytest.mark.parametrize(
    "kwargs, name",
    [({"num_bits": 0, "feature_size": 3}, "num_bits"), ({"num_bits": 4}, "feature_size"),
     ({"num_bits": 4, "feature_size": 3, "backbone": "vgg16"}, "backbone"),
     ({"num_bits": 4, "feature_size": 3, "hqt": 0.5}, "hqt"), ({"num_bits": 4, "feature_size": 3, "seed": 1.5}, "seed"),
     ({"num_bits": 4, "feature_size": 3, "quantization_weight": -1}, "quantization_weight")],
)
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GreedyHasher(**kwargs)


def test_mirrored_strategy_fit(features, mirrored_strategy):
    with mirrored_strategy.scope():
        model = with_hqt(BiHalfHasher, features)
        model.compile(optimizer=keras.optimizers.SGD(1e-2))
    data = indexed(features, batch_size=16)
    history = model.fit(data, epochs=2, verbose=0).history
    assert np.isfinite(history["loss"]).all()
    assert model.predict(features, verbose=0).shape == (N, K)


def test_mirrored_loss_scaling_matches_single_device(features, mirrored_strategy):
    # The HQT term is a mean over rows, so one SGD step on the global batch split over 2 replicas must equal
    # the single-device step (a check of the base's 1/replicas scaling); alpha = 1 leaves only that term.
    kernels = []
    for strategy in (tf.distribute.get_strategy(), mirrored_strategy):
        with strategy.scope():
            model = with_hqt(GreedyHasher, features, alpha=1.0)
            model.compile(optimizer=keras.optimizers.SGD(1.0))
        model.fit(indexed(features[:16], batch_size=16), epochs=1, verbose=0, shuffle=False)
        kernels.append(model.head.kernel.numpy())
    np.testing.assert_allclose(kernels[1], kernels[0], rtol=1e-5, atol=1e-6)


def test_with_backbone_encodes_images_as_the_head_encodes_their_features():
    backbone = backbones.get("small_cnn", trainable=False, image_size=28, channels=1)
    images = np.random.default_rng(2).integers(0, 256, size=(16, 28, 28, 1), dtype=np.uint8)
    features = backbone(images).numpy()
    head_only = BiHalfHasher(K, feature_size=backbone.feature_size, hqt=HQTRegularizer(16), seed=0)
    head_only.hqt.assign(np.zeros((16, K)))
    head_only.compile(optimizer="adam")
    head_only.fit(indexed(features, batch_size=8), epochs=1, verbose=0)
    image_model = head_only.with_backbone(backbone)
    assert image_model.hqt is None and image_model.backbone is backbone
    np.testing.assert_array_equal(image_model.predict(images, verbose=0), head_only.predict(features, verbose=0))
    image_model.head.kernel.assign(image_model.head.kernel * 0)  # a copy: the trained model is untouched
    assert np.any(head_only.head.kernel.numpy())
    with pytest.raises(ValueError, match="already has a backbone"):
        image_model.with_backbone(backbone)
    with pytest.raises(ValueError, match="feature_size"):
        BiHalfHasher(K, feature_size=3).with_backbone(backbone)

