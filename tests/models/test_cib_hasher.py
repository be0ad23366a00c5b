"""CIBHasher: its loss against the numpy references, training (eager, jit, HQT, backbone), binarizer modes,
encoding, saving and errors."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.losses.test_bernoulli_kl import reference as kl_reference
from tests.losses.test_nt_xent import reference as nt_xent_reference
from tfhash import backbones
from tfhash.losses import nt_xent_loss, symmetric_bernoulli_kl
from tfhash.models import CIBHasher, HQTRegularizer

N, D, K, HIDDEN = 64, 12, 8, 32


@pytest.fixture(scope="module")
def views():
    """Two slightly noisy views of N random samples (float32, (2, N, D))."""
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(N, D))
    return (samples + 0.1 * rng.normal(size=(2, N, D))).astype("float32")


def paired(views, batch_size=16):
    """{"inputs": (view_a, view_b), "sample_index": i} batches, as FeatureBank.training_dataset yields them."""
    elements = {"inputs": (views[0], views[1]), "sample_index": np.arange(N)}
    return tf.data.Dataset.from_tensor_slices(elements).batch(batch_size)


def model_with(hqt=False, **kwargs):
    kwargs = {"hidden_units": HIDDEN, "feature_size": D, "seed": 0, **kwargs}
    if hqt:
        kwargs["hqt"] = HQTRegularizer(N, alpha=0.5)
    model = CIBHasher(K, **kwargs)
    if hqt:
        model.hqt.assign(np.random.default_rng(1).integers(0, 2, size=(N, K)))
    return model


def probabilities(model, x):
    """σ(relu(x W₁ + b₁) W₂ + b₂) and its logit, in float64 from the head's weights."""
    hidden, hash_layer = model.head.layers
    h = np.maximum(x @ hidden.kernel.numpy() + hidden.bias.numpy(), 0)
    logits = h.astype(np.float64) @ hash_layer.kernel.numpy() + hash_layer.bias.numpy()
    return 1 / (1 + np.exp(-logits)), logits


@pytest.mark.parametrize("kl_weight", [0.001, 0.5])
def test_loss_matches_the_references(views, kl_weight):
    model = model_with(stochastic=False, kl_weight=kl_weight, temperature=0.3)
    a, b = views[0][:10], views[1][:10]
    loss, terms, (codes_a, codes_b) = model.self_loss((tf.constant(a), tf.constant(b)), None, training=True)
    (p_a, _), (p_b, _) = probabilities(model, a), probabilities(model, b)
    np.testing.assert_array_equal(codes_a, np.where(p_a >= 0.5, 1.0, -1.0))
    np.testing.assert_array_equal(codes_b, np.where(p_b >= 0.5, 1.0, -1.0))
    contrastive = nt_xent_reference(codes_a.numpy(), codes_b.numpy(), 0.3)
    kl = kl_reference(p_a, p_b)
    np.testing.assert_allclose(float(terms["contrastive"]), contrastive, rtol=1e-5)
    np.testing.assert_allclose(float(terms["kl"]), kl, rtol=1e-4)
    np.testing.assert_allclose(float(loss), contrastive + kl_weight * kl, rtol=1e-5)


# XLA compilation is the slow part: jit runs once, with the HQT term (a superset of the plain step).
@pytest.mark.parametrize("mode, hqt", [("eager", False), ("eager", True), ("graph", False), ("jit", True)])
def test_fit_eager_and_jit(views, mode, hqt):
    model = model_with(hqt=hqt)
    optimizer = keras.optimizers.Adam(1e-3)
    model.compile(optimizer=optimizer, run_eagerly=mode == "eager", jit_compile=mode == "jit")
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(paired(views), epochs=1, verbose=0).history
    expected = {"loss", "contrastive", "kl"} | ({"self_loss", "hqt_loss"} if hqt else set())
    assert set(history) == expected
    assert all(np.isfinite(v).all() for v in history.values())
    assert all(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))


def test_hqt_total_is_eq_3_with_the_mean_over_both_views(views):
    model = model_with(hqt=True, stochastic=False)
    index = np.arange(10) * 3
    batch = {"inputs": (tf.constant(views[0][index]), tf.constant(views[1][index])), "sample_index": index}
    losses = model.compute_losses(batch, training=True)
    _, _, codes = model.self_loss(batch["inputs"], None, training=True)
    targets = model.hqt.pseudo_bits.numpy()[index]
    bce = [np.mean(np.log1p(np.exp(-c.numpy())) + (1 - targets) * c.numpy()) for c in codes]
    np.testing.assert_allclose(float(losses["hqt_loss"]), np.mean(bce), rtol=1e-5)
    np.testing.assert_allclose(float(losses["loss"]), 0.5 * float(losses["self_loss"]) + 0.5 * np.mean(bce),
                               rtol=1e-5)


@pytest.mark.parametrize("stochastic", [True, False])
def test_loss_decreases_on_an_easy_problem(views, stochastic):
    model = model_with(stochastic=stochastic)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = model.evaluate(paired(views), verbose=0, return_dict=True)["contrastive"]
    # 16 epochs: from the default (PyTorch) init, narrower than Glorot, 8 epochs drop the sampled codes' loss
    # by only 0.3-0.9 (seeds 0-3)
    history = model.fit(paired(views), epochs=16, verbose=0).history["contrastive"]
    after = model.evaluate(paired(views), verbose=0, return_dict=True)["contrastive"]
    if stochastic:  # the sampled codes' loss, the one trained (seeds 0-3 drop it by 1.2-1.7)
        assert history[-1] < history[0] - 0.5, history
    else:  # thresholded codes, in training and evaluation alike (seeds 0-3: drops of 0.7-1.0)
        assert after < before - 0.3, (before, after)
    # The two views of a sample mostly get the same code.
    assert np.mean(model.predict(views[0], verbose=0) == model.predict(views[1], verbose=0)) > 0.9


def test_save_load_gives_identical_codes(tmp_path, views):
    model = model_with(hqt=True, temperature=0.5, kl_weight=0.01, stochastic=False, kl_stop_gradient=True)
    model.compile(optimizer="adam")
    model.fit(paired(views), epochs=1, verbose=0)
    path = tmp_path / "cib.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, CIBHasher)
    settings = (loaded.temperature, loaded.kl_weight, loaded.stochastic, loaded.kl_stop_gradient)
    assert settings == (0.5, 0.01, False, True)
    np.testing.assert_array_equal(loaded.predict(views[0], verbose=0), model.predict(views[0], verbose=0))
    np.testing.assert_array_equal(loaded.hqt.pseudo_bits.numpy(), model.hqt.pseudo_bits.numpy())


def test_config_round_trips_through_json():
    model = CIBHasher(K, hidden_units=16, temperature=0.2, kl_weight=0.0, stochastic=False, feature_size=D,
                      hqt=HQTRegularizer(N, alpha=0.3), seed=4)
    config = json.loads(json.dumps(model.get_config()))
    clone = CIBHasher.from_config(config)
    assert json.loads(json.dumps(clone.get_config())) == config
    assert (clone.hidden_units, clone.temperature, clone.kl_weight, clone.stochastic) == (16, 0.2, 0.0, False)
    assert clone.hqt.alpha == 0.3 and clone.binarizer.seed == model.binarizer.seed
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]


def test_deterministic_and_stochastic_binarizers(views):
    x = tf.constant(views[0][:16])
    deterministic, stochastic = model_with(stochastic=False), model_with(stochastic=True)
    p, _ = probabilities(stochastic, views[0][:16])
    threshold = np.where(p >= 0.5, 1.0, -1.0)
    # Thresholding in training (the released code) and in inference for both.
    np.testing.assert_array_equal(deterministic(x, training=True), threshold)
    np.testing.assert_array_equal(deterministic(x, training=False), threshold)
    np.testing.assert_array_equal(stochastic(x, training=False), threshold)
    # Sampling (the paper): fresh draws at each call, +1 at the rate p.
    draws = np.stack([stochastic(x, training=True).numpy() for _ in range(200)])
    assert set(np.unique(draws)) == {-1.0, 1.0}
    assert not np.array_equal(draws[0], draws[1])
    rate = (draws == 1).mean(axis=0)
    assert np.abs(rate - p).max() < 5 * np.sqrt(0.25 / 200)


def test_kl_stop_gradient_changes_the_gradient_not_the_value(views):
    batch = (tf.constant(views[0][:8]), tf.constant(views[1][:8]))
    results = []
    for stop in (False, True):
        model = model_with(stochastic=False, kl_stop_gradient=stop)
        with tf.GradientTape() as tape:
            _, terms, _ = model.self_loss(batch, None, training=True)
        results.append((float(terms["kl"]), tape.gradient(terms["kl"], model.head.layers[1].kernel).numpy()))
    assert results[0][0] == pytest.approx(results[1][0])
    assert not np.allclose(results[0][1], results[1][1])


def test_encode_is_the_sign_of_the_logit(views):
    model = model_with()
    codes = model.predict(views[0], verbose=0)
    _, logits = probabilities(model, views[0])
    clear = np.abs(logits) > 1e-5  # float32 sigmoid rounds to exactly 0.5 within ~1e-7 of 0
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(codes[clear], np.where(logits >= 0, 1.0, -1.0)[clear])
    np.testing.assert_array_equal(model.encode(views[0]).numpy(), codes)
    # A zero logit is p = 0.5 exactly: +1, as sign(0) = +1 everywhere in tfhash.
    model.head.layers[1].kernel.assign(tf.zeros_like(model.head.layers[1].kernel))
    model.head.layers[1].bias.assign(tf.zeros_like(model.head.layers[1].bias))
    np.testing.assert_array_equal(model.predict(views[0][:4], verbose=0), np.ones((4, K)))


def test_a_single_view_is_refused_with_the_expected_format(views):
    model = model_with()
    single = {"inputs": tf.constant(views[0][:4]), "sample_index": tf.constant(np.arange(4))}
    with pytest.raises(ValueError, match=r"two views.*\(view_a, view_b\)"):
        model.compute_losses(single, training=True)
    with pytest.raises(ValueError, match=r"\{'inputs': \(view_a, view_b\), 'sample_index': i\}"):
        model.self_loss(single["inputs"], None, training=True)
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="two views"):
        model.fit(tf.data.Dataset.from_tensor_slices(single).batch(2), epochs=1, verbose=0)
    # A positional pair of views is ambiguous with fit(x, y): refused, naming the named form.
    with pytest.raises(ValueError, match="positional"):
        model.fit(tf.data.Dataset.from_tensor_slices((views[0], views[1])).batch(16), epochs=1, verbose=0)


def test_views_without_sample_index_train_without_hqt(views):
    model = model_with(stochastic=False)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    data = tf.data.Dataset.from_tensor_slices({"inputs": (views[0], views[1])}).batch(16)
    history = model.fit(data, epochs=6, verbose=0).history
    assert all(np.isfinite(values).all() for values in history.values()), history
    assert history["loss"][-1] < history["loss"][0] and history["contrastive"][-1] < history["contrastive"][0]
    with pytest.raises(ValueError, match="sample_index"):  # with HQT the index is required
        model_with(hqt=True).compute_losses({"inputs": (views[0][:4], views[1][:4])}, training=True)


def test_trainable_small_cnn_backbone_on_uint8_images():
    backbone = backbones.get("small_cnn", trainable=True, image_size=28, channels=1)
    model = CIBHasher(K, hidden_units=HIDDEN, backbone=backbone, seed=0)
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(2, 8, 28, 28, 1), dtype=np.uint8)
    data = tf.data.Dataset.from_tensor_slices({"inputs": (images[0], images[1]), "sample_index": np.arange(8)})
    data = data.batch(8)
    model.compile(optimizer="adam")
    before = [w.numpy().copy() for w in backbone.trainable_weights]
    logs = model.fit(data, epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"]).all()
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, backbone.trainable_weights))
    codes = model.predict(images[0], verbose=0)
    assert codes.shape == (8, K) and set(np.unique(codes)) <= {-1.0, 1.0}


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"hidden_units": 0}, "hidden_units"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"kl_weight": -0.1}, "kl_weight"),
        ({"kl_weight": True}, "kl_weight"),
        ({"stochastic": 1}, "stochastic"),
        ({"kl_stop_gradient": "yes"}, "kl_stop_gradient"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        CIBHasher(K, feature_size=D, **kwargs)


def test_gradient_is_that_of_the_released_sign_with_identity_backward(views):
    # Released code: z = sign(p − 0.5) with d z / d p = 1, NT-Xent on z plus β·KL(p).
    model = model_with(stochastic=False)
    view_a, view_b = (tf.constant(v[:16]) for v in views)
    weights = model.head.trainable_weights
    with tf.GradientTape(persistent=True) as tape:
        loss, _, _ = model.self_loss((view_a, view_b), None, training=True)
        p_a, p_b = model.head(view_a), model.head(view_b)
        z_a, z_b = (p + tf.stop_gradient(tf.where(p >= 0.5, 1.0, -1.0) - p) for p in (p_a, p_b))
        released = nt_xent_loss(z_a, z_b, 0.3) + 0.001 * symmetric_bernoulli_kl(p_a, p_b)
    np.testing.assert_allclose(float(loss), float(released), rtol=1e-5)
    for ours, theirs in zip(tape.gradient(loss, weights), tape.gradient(released, weights)):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-7)
