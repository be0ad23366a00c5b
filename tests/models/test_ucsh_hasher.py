"""UCSHHasher: each term of Eq. 7 against a NumPy reference of its equation, the ablations, the STE gradient
in closed form, the cluster refresher against sklearn's K-means and the threshold function, saving, errors."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.cluster import KMeans

from tfhash.callbacks.ucsh_cluster_refresher import UCSHClusterRefresher, match_clusters
from tfhash.models.ucsh_hasher import UCSHHasher
from tfhash.supervision.hadamard_codebook import hadamard_codebook
from tfhash.supervision.similarity_threshold import ucsh_similarity_threshold_from_features

N, D, K, C = 24, 10, 8, 3  # samples, feature width, code length, clusters
rng = np.random.default_rng(0)
FEATURES = rng.normal(size=(N, D)).astype("float32")
CLUSTER_IDS = rng.integers(0, C, size=N)
THRESHOLD = 0.3
WEIGHTS = {"vae_weight": 0.3, "cluster_weight": 2.0, "separation_weight": 0.5}
INDEX = np.array([5, 0, 17, 3, 3, 22, 9, 11])  # unordered, with a repeated sample


def build(**kwargs):
    settings = {"num_bits": K, "num_samples": N, "num_clusters": C, "feature_size": D, "decoder_units": (6,),
                "seed": 0, **WEIGHTS, **kwargs}
    return UCSHHasher(**settings)


def assigned(**kwargs):
    model = build(**kwargs)
    model.assign_clusters(CLUSTER_IDS, THRESHOLD)
    return model


def batch(index=INDEX):
    index = np.asarray(index)
    return {"inputs": tf.constant(FEATURES[index]), "sample_index": tf.constant(index)}


def reference_terms(codes, features, targets, threshold):
    """Eq. 2–3, 5 and 6 straight from the paper (normalised as documented), in float64."""
    b = np.asarray(codes, np.float64)
    x = np.asarray(features, np.float64)
    size, bits = b.shape
    cosine = (x @ x.T) / np.outer(np.linalg.norm(x, axis=1), np.linalg.norm(x, axis=1))
    s = 1.0 - 2.0 * (1.0 - cosine)  # S_ij = 1 − 2 d_ij
    inner = b @ b.T / bits
    similarity = np.mean((s - inner) ** 2)
    cluster = np.mean(np.sum((b - targets) ** 2, axis=1) / bits)
    off_diagonal = ~np.eye(size, dtype=bool)
    separation = -np.sum((inner - threshold)[off_diagonal] ** 2) / (size * (size - 1))
    return {"similarity": similarity, "cluster": cluster, "separation": separation}


def reference_total(terms, weights=WEIGHTS):
    weighted = {"similarity": 1.0, "vae": weights["vae_weight"], "cluster": weights["cluster_weight"],
                "separation": weights["separation_weight"]}
    return sum(weight * terms[name] for name, weight in weighted.items())


def training_codes(model, x):
    """b from the encoder's logits as the paper defines it: sign (STE), or 2q − 1 (relaxation, training)."""
    logits = model.head.logits(x).numpy().astype(np.float64)
    return np.tanh(logits / 2) if model.relaxation else np.where(logits >= 0, 1.0, -1.0)


# --- the loss -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("relaxation", [False, True])
def test_each_term_and_the_total_equal_the_papers_equations(relaxation):
    model = assigned(relaxation=relaxation)
    losses = model.compute_losses(batch(), training=True)
    x = FEATURES[INDEX]
    codes = training_codes(model, x)
    expected = reference_terms(codes, x, hadamard_codebook(C, K)[CLUSTER_IDS[INDEX]], THRESHOLD)
    expected["vae"] = float(model.head.elbo_terms(x, training=True)["loss"])  # the layer's own −ELBO
    expected["loss"] = reference_total(expected)
    assert set(losses) == {"loss", "similarity", "vae", "cluster", "separation"}
    for name, value in expected.items():
        np.testing.assert_allclose(float(losses[name]), value, rtol=2e-5, atol=1e-6, err_msg=name)


def test_inference_terms_use_the_sign_of_the_logits_and_encode_gives_it():
    model = assigned(relaxation=True)
    losses = model.compute_losses(batch(), training=False)
    x = FEATURES[INDEX]
    signs = np.where(model.head.logits(x).numpy() >= 0, 1.0, -1.0)
    expected = reference_terms(signs, x, hadamard_codebook(C, K)[CLUSTER_IDS[INDEX]], THRESHOLD)
    for name, value in expected.items():
        np.testing.assert_allclose(float(losses[name]), value, rtol=2e-5, atol=1e-6)
    np.testing.assert_array_equal(model.encode(x).numpy(), signs)
    np.testing.assert_array_equal(model.predict(x, verbose=0), signs)


def test_a_batch_of_one_has_no_separation():
    model = assigned()
    losses = model.compute_losses(batch([4]), training=True)
    assert float(losses["separation"]) == 0.0
    assert np.isfinite(float(losses["loss"]))


ABLATIONS = {"use_vae": "vae", "use_clustering": "cluster", "use_separation": "separation"}


@pytest.mark.parametrize("flag", sorted(ABLATIONS))
def test_each_ablation_removes_exactly_its_term(flag):
    full = assigned()
    ablated = assigned(**{flag: False})
    removed = ABLATIONS[flag]
    assert ablated.loss_terms == tuple(name for name in full.loss_terms if name != removed)
    assert set(ablated.trackers) == {"loss", *ablated.loss_terms}
    # the same seed gives the same encoder, hence the same codes
    np.testing.assert_array_equal(ablated.head.encoder.kernel.numpy(), full.head.encoder.kernel.numpy())
    expected = {name: float(value) for name, value in full.compute_losses(batch(), training=True).items()}
    losses = ablated.compute_losses(batch(), training=True)
    assert set(losses) == {"loss", *ablated.loss_terms}
    for name in ablated.loss_terms:
        np.testing.assert_allclose(float(losses[name]), expected[name], rtol=1e-6)
    weight = {"vae": WEIGHTS["vae_weight"], "cluster": WEIGHTS["cluster_weight"],
              "separation": WEIGHTS["separation_weight"]}[removed]
    np.testing.assert_allclose(float(losses["loss"]), expected["loss"] - weight * expected[removed],
                               rtol=1e-5)


def test_ucsh_v_has_no_decoder():
    model = build(use_vae=False)
    assert not model.head.decoder and model.head.decoder_layers == []
    paths = [v.path.split("/", 1)[1] for v in model.trainable_variables]
    assert paths == ["head/encoder/kernel", "head/encoder/bias"]
    assert not any("decoder" in v.path for v in model.weights)


def test_ucsh_r_trains_on_continuous_codes_and_encodes_signs():
    model = build(relaxation=True)
    logits = model.head.logits(FEATURES).numpy()
    relaxed = model(FEATURES, training=True).numpy()
    np.testing.assert_allclose(relaxed, np.tanh(logits / 2), rtol=1e-5, atol=1e-7)
    assert np.all(np.abs(relaxed) < 1)
    np.testing.assert_array_equal(model(FEATURES, training=False).numpy(), np.where(logits >= 0, 1.0, -1.0))
    ste = build()
    assert set(np.unique(ste(FEATURES, training=True).numpy())) == {-1.0, 1.0}


def test_without_clustering_and_separation_there_is_no_state_to_refresh():
    model = build(use_clustering=False, use_separation=False)
    assert not model.needs_sample_index and not model.needs_supervision
    assert model.supervision_refreshers(FEATURES) == []
    assert not hasattr(model, "cluster_targets")
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(FEATURES, epochs=1, batch_size=8, verbose=0).history  # no index, no refresher
    assert set(history) == {"loss", "similarity", "vae"}


def test_separation_alone_needs_the_threshold_but_no_sample_index():
    model = build(use_clustering=False)
    assert not model.needs_sample_index and model.needs_supervision
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="no cluster targets and similarity threshold yet"):
        model.fit(FEATURES, epochs=1, batch_size=8, verbose=0)
    [refresher] = model.supervision_refreshers(FEATURES)
    model.fit(FEATURES, epochs=1, batch_size=8, verbose=0, callbacks=[refresher])
    assert refresher.log[0]["min_cluster_size"] is None  # no K-means for a model without clustering
    expected = ucsh_similarity_threshold_from_features(FEATURES, max_pairs=200_000, seed=0)
    np.testing.assert_allclose(float(model.similarity_threshold.numpy()), expected["similarity_threshold"],
                               rtol=1e-6)


# --- the straight-through gradient --------------------------------------------------------------------------


def analytic_code_gradient(b, x, targets, threshold, weights):
    """d(L_2 + β L_C + γ L_S)/db in closed form (float64), b (B, K)."""
    size, bits = b.shape
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = 2 * unit @ unit.T - 1
    inner = b @ b.T / bits
    similarity = -4.0 / (size**2 * bits) * (s - inner) @ b
    cluster = 2.0 * (b - targets) / (size * bits)
    off_diagonal = 1.0 - np.eye(size)
    separation = -4.0 / (size * (size - 1) * bits) * (off_diagonal * (inner - threshold)) @ b
    return similarity + weights["cluster_weight"] * cluster + weights["separation_weight"] * separation


@pytest.mark.parametrize("relaxation", [False, True])
def test_the_gradient_of_the_logits_is_the_straight_through_closed_form(relaxation):
    # Through sign, finite differences are 0 almost everywhere: check dL/dl = dL/db · 2q(1 − q) instead.
    model = assigned(use_vae=False, relaxation=relaxation)
    x = FEATURES[INDEX]
    logits = tf.Variable(model.head.logits(x))
    with tf.GradientTape() as tape:
        codes = model.head.binarize(logits, training=True)
        terms = model.code_losses(codes, x, tf.constant(INDEX))
        loss = terms["similarity"] + 2.0 * terms["cluster"] + 0.5 * terms["separation"]
    values = logits.numpy().astype(np.float64)
    b = np.tanh(values / 2) if relaxation else np.where(values >= 0, 1.0, -1.0)
    q = 1 / (1 + np.exp(-values))
    targets = hadamard_codebook(C, K)[CLUSTER_IDS[INDEX]]
    expected = analytic_code_gradient(b, x.astype(np.float64), targets, THRESHOLD, WEIGHTS) * 2 * q * (1 - q)
    np.testing.assert_allclose(tape.gradient(loss, logits).numpy(), expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("use_vae", [False, True])
def test_the_encoder_receives_the_code_terms_gradient_and_the_vaes(use_vae):
    model = assigned(use_vae=use_vae)
    x = FEATURES[INDEX]
    with tf.GradientTape() as tape:
        loss = model.compute_losses(batch(), training=True)["loss"]
    encoder = model.head.encoder
    kernel_gradient, bias_gradient = tape.gradient(loss, [encoder.kernel, encoder.bias])
    values = model.head.logits(x).numpy().astype(np.float64)
    q = 1 / (1 + np.exp(-values))
    b = np.where(values >= 0, 1.0, -1.0)
    d_logits = analytic_code_gradient(b, x.astype(np.float64), hadamard_codebook(C, K)[CLUSTER_IDS[INDEX]],
                                      THRESHOLD, WEIGHTS) * 2 * q * (1 - q)
    expected_kernel, expected_bias = x.T.astype(np.float64) @ d_logits, d_logits.sum(axis=0)
    if use_vae:  # α times the layer's own −ELBO gradient (reconstruction through the STE, and the KL)
        with tf.GradientTape() as tape:
            vae = model.head.elbo_terms(x, training=True)["loss"]
        vae_kernel, vae_bias = tape.gradient(vae, [encoder.kernel, encoder.bias])
        expected_kernel = expected_kernel + WEIGHTS["vae_weight"] * vae_kernel.numpy()
        expected_bias = expected_bias + WEIGHTS["vae_weight"] * vae_bias.numpy()
    assert np.abs(expected_kernel).max() > 1e-3  # the codes' terms do reach the encoder
    np.testing.assert_allclose(kernel_gradient.numpy(), expected_kernel, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(bias_gradient.numpy(), expected_bias, rtol=1e-4, atol=1e-7)


def test_the_target_similarities_and_reconstructions_pass_no_gradient_to_the_features():
    # S (L_2's target) and the decoder's target are constants of the step: with a fine-tuned backbone the
    # features are moved only through the codes
    model = assigned()
    x = tf.Variable(FEATURES[INDEX])
    codes = tf.constant(np.where(FEATURES[INDEX, :K] >= 0, 1.0, -1.0), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        terms = model.code_losses(codes, x, tf.constant(INDEX))
        reconstruction = model.self_loss(x, tf.constant(INDEX), training=True)[1]["vae"]
    assert tape.gradient(terms["similarity"], x) is None
    encoder_path = tape.gradient(reconstruction, x)
    assert encoder_path is not None
    with tf.GradientTape() as tape:  # the same gradient with the target held constant by hand
        elbo = model.head.elbo_terms(x, training=True, targets=tf.constant(FEATURES[INDEX]))["loss"]
    np.testing.assert_allclose(encoder_path.numpy(), tape.gradient(elbo, x).numpy(), rtol=1e-5, atol=1e-8)


# --- the cluster refresher ----------------------------------------------------------------------------------


def test_the_refresher_matches_kmeans_the_codebook_and_the_threshold_function(capsys):
    model = build(kmeans_seed=4)
    [refresher] = model.supervision_refreshers(FEATURES, verbose=1)
    assert isinstance(refresher, UCSHClusterRefresher) and refresher.seed == 4
    refresher.refresh(model, 0)
    ids = KMeans(n_clusters=C, n_init=10, random_state=4).fit_predict(FEATURES)
    np.testing.assert_array_equal(model.assigned_cluster_ids(), ids)
    np.testing.assert_array_equal(model.cluster_targets.numpy(), hadamard_codebook(C, K)[ids])
    threshold = ucsh_similarity_threshold_from_features(FEATURES, max_pairs=200_000, seed=4)
    np.testing.assert_allclose(float(model.similarity_threshold.numpy()), threshold["similarity_threshold"],
                               rtol=1e-6)
    [entry] = refresher.log
    sizes = np.bincount(ids, minlength=C)
    assert entry["epoch"] == 0 and entry["round"] == 0 and entry["changed"] is None
    assert (entry["min_cluster_size"], entry["max_cluster_size"]) == (sizes.min(), sizes.max())
    assert entry["similarity_threshold"] == pytest.approx(threshold["similarity_threshold"])
    assert entry["distance_threshold"] == pytest.approx(threshold["distance_threshold"])
    assert "seconds" in entry
    line = capsys.readouterr().out.strip()
    assert line.startswith("UCSHClusterRefresher: round 0 at epoch 0") and "s_t" in line and "\n" not in line


def test_a_redraw_uses_the_epochs_seed_and_keeps_the_codewords_of_matching_clusters():
    model = build()
    refresher = UCSHClusterRefresher(FEATURES, C, seed=2, every_n_epochs=3, max_pairs=50)
    refresher.refresh(model, 0)
    first = model.assigned_cluster_ids()
    refresher.refresh(model, 7)  # round 7 // 3 = 2: seed 4
    drawn = KMeans(n_clusters=C, n_init=10, random_state=4).fit_predict(FEATURES)
    np.testing.assert_array_equal(model.assigned_cluster_ids(), match_clusters(drawn, first, C))
    assert refresher.log[-1]["round"] == 2
    assert refresher.log[-1]["changed"] == int(np.sum(model.assigned_cluster_ids() != first))
    threshold = ucsh_similarity_threshold_from_features(FEATURES, max_pairs=50, seed=4)
    np.testing.assert_allclose(float(model.similarity_threshold.numpy()), threshold["similarity_threshold"],
                               rtol=1e-6)
    # without matching, K-means' own numbering
    UCSHClusterRefresher(FEATURES, C, seed=2, every_n_epochs=3, match_previous=False).refresh(model, 7)
    np.testing.assert_array_equal(model.assigned_cluster_ids(), drawn)


def test_match_clusters_undoes_a_renumbering():
    ids = np.random.default_rng(1).integers(0, 5, size=40)
    renumbered = np.array([3, 0, 4, 1, 2])[ids]
    np.testing.assert_array_equal(match_clusters(renumbered, ids, 5), ids)


def data(epochs):
    # NumPy orders the epochs (N = 3 batches of 8): a tf.data shuffle with an op seed still follows the global
    # seed, which earlier tests in the same worker may have set
    order = np.concatenate([np.random.default_rng(epoch).permutation(N) for epoch in range(epochs)])
    return tf.data.Dataset.from_tensor_slices({"inputs": FEATURES[order], "sample_index": order}).batch(8)


def test_the_state_changes_only_through_assign(monkeypatch):
    model = build(refresh_every_n_epochs=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    writes = {"cluster_targets": [], "similarity_threshold": []}
    for name, log in writes.items():
        state = getattr(model, name)
        original = state.assign

        def recording(value, log=log, original=original):
            log.append(np.array(value))
            return original(value)

        monkeypatch.setattr(state, "assign", recording)
    refreshers = model.supervision_refreshers(FEATURES)
    model.fit(data(3), epochs=3, steps_per_epoch=3, callbacks=refreshers, verbose=0)
    assert [len(log) for log in writes.values()] == [4, 4]  # at the start, then after epochs 1, 2, 3
    assert [entry["epoch"] for entry in refreshers[0].log] == [0, 1, 2, 3]
    np.testing.assert_array_equal(writes["cluster_targets"][-1], model.cluster_targets.numpy())
    # training steps alone leave the state as assigned
    targets, threshold = model.cluster_targets.numpy().copy(), model.similarity_threshold.numpy()
    model.fit(data(2), epochs=2, steps_per_epoch=3, verbose=0)
    np.testing.assert_array_equal(model.cluster_targets.numpy(), targets)
    assert model.similarity_threshold.numpy() == threshold and len(writes["cluster_targets"]) == 4


@pytest.mark.parametrize("sampling", ["deterministic", "stochastic"])
def test_a_restored_model_keeps_its_clusters_and_steps_identically(tmp_path, sampling):
    model = build(sampling=sampling, refresh_every_n_epochs=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    refreshers = model.supervision_refreshers(FEATURES)
    model.fit(data(2), epochs=2, steps_per_epoch=3, callbacks=refreshers, verbose=0)
    model.save(tmp_path / "ucsh.keras")
    restored = keras.saving.load_model(tmp_path / "ucsh.keras")
    assert type(restored) is UCSHHasher and restored.supervision_is_assigned()
    np.testing.assert_array_equal(restored.assigned_cluster_ids(), model.assigned_cluster_ids())
    assert restored.similarity_threshold.numpy() == model.similarity_threshold.numpy()
    step = next(iter(data(1)))
    for each in (model, restored):
        each.train_on_batch(step)
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b),
                                      err_msg=a.path)


def test_training_eagerly_and_under_xla_gives_the_same_losses():
    histories = []
    for jit_compile in (False, True):
        model = build(refresh_every_n_epochs=1)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=jit_compile,
                      run_eagerly=not jit_compile)
        assert bool(model.jit_compile) == jit_compile
        histories.append(model.fit(data(2), epochs=2, steps_per_epoch=3, verbose=0,
                                   callbacks=model.supervision_refreshers(FEATURES)).history)
    eager, xla = histories
    assert set(eager) == {"loss", "similarity", "vae", "cluster", "separation"}
    for name, values in eager.items():
        assert np.all(np.isfinite(values))
        np.testing.assert_allclose(xla[name], values, rtol=1e-4, atol=1e-6, err_msg=name)


# --- errors -------------------------------------------------------------------------------------------------


def test_training_without_sample_indices_is_refused_with_a_clear_error():
    model = assigned()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="sample_index"):
        model.fit(FEATURES, epochs=1, batch_size=8, verbose=0)


def test_training_without_the_state_or_its_refresher_is_refused():
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="no cluster targets and similarity threshold yet.*UCSHCluster"):
        model.fit(data(1), epochs=1, verbose=0)


def test_more_clusters_than_training_samples_is_refused():
    with pytest.raises(ValueError, match="`num_clusters`=25 is larger than the training set"):
        build(num_clusters=25)
    refresher = UCSHClusterRefresher(FEATURES[:2], C)
    with pytest.raises(ValueError, match="num_clusters=3 is larger than the training set \\(2 feature rows"):
        refresher.refresh(build(), 0)
    with pytest.raises(ValueError, match="`features` has 10 rows; the model has num_samples=24"):
        UCSHClusterRefresher(FEATURES[:10], C).refresh(build(), 0)
    with pytest.raises(ValueError, match="the model has num_clusters=3"):
        UCSHClusterRefresher(FEATURES, 4).refresh(build(), 0)


def test_an_unassigned_state_or_out_of_range_index_is_an_error_eagerly_and_nan_under_xla():
    model = build()
    with pytest.raises(tf.errors.InvalidArgumentError, match="no cluster targets"):
        model.batch_cluster_targets(np.array([0, 1]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="no cluster targets"):
        model.batch_similarity_threshold()
    assert np.isnan(tf.function(model.batch_similarity_threshold, jit_compile=True)().numpy())
    model.assign_clusters(CLUSTER_IDS, THRESHOLD)
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside \\[0, num_samples\\)"):
        model.batch_cluster_targets(np.array([0, N]))
    compiled = tf.function(model.batch_cluster_targets, jit_compile=True)
    assert np.all(np.isnan(compiled(tf.constant([0, N])).numpy()))
    np.testing.assert_array_equal(compiled(tf.constant([2, 0])).numpy(),
                                  hadamard_codebook(C, K)[CLUSTER_IDS[[2, 0]]])


@pytest.mark.parametrize(
    "ids, threshold, match",
    [
        (CLUSTER_IDS[:-1], THRESHOLD, "`cluster_ids` must be an integer array of shape"),
        (CLUSTER_IDS.astype("float32"), THRESHOLD, "`cluster_ids` must be an integer array"),
        (np.full(N, C), THRESHOLD, "`cluster_ids` must lie in \\[0, num_clusters\\)"),
        (None, THRESHOLD, "`cluster_ids` is required"),
        (CLUSTER_IDS, float("nan"), "`similarity_threshold`"),
        (CLUSTER_IDS, None, "`similarity_threshold` is required"),
    ],
)
def test_malformed_assignments_are_refused_naming_the_argument(ids, threshold, match):
    model = build()
    with pytest.raises(ValueError, match=match):
        model.assign_clusters(ids, threshold)
    assert not model.supervision_is_assigned()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_clusters": 17}, "`num_clusters`=17 with num_bits=8"),  # the codebook holds 2 · 8 codewords
        ({"num_clusters": 0}, "`num_clusters`"),
        ({"num_samples": 0}, "`num_samples`"),
        ({"vae_weight": -1.0}, "`vae_weight`"),
        ({"cluster_weight": float("inf")}, "`cluster_weight`"),
        ({"separation_weight": -0.1}, "`separation_weight`"),
        ({"use_vae": 1}, "`use_vae` must be a bool"),
        ({"use_separation": None}, "`use_separation` must be a bool"),
        ({"relaxation": "yes"}, "`relaxation` must be a bool"),
        ({"sampling": "gumbel"}, "`sampling` must be one of"),
        ({"relaxation": True, "sampling": "stochastic"}, "`sampling` must be 'deterministic' with relax"),
        ({"decoder_units": 64}, "`decoder_units`"),
        ({"decoder_units": (0,)}, "`decoder_units\\[0\\]`"),
        ({"refresh_every_n_epochs": 0}, "`refresh_every_n_epochs`"),
        ({"kmeans_seed": -1}, "`kmeans_seed`"),
        ({"head_init": "he"}, "`head_init`"),
    ],
)
def test_bad_arguments_are_refused_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(**kwargs)


# --- configuration and initialisation -----------------------------------------------------------------------


def test_config_round_trip_keeps_every_setting_and_the_initial_weights():
    model = build(num_clusters=4, use_separation=False, relaxation=True, decoder_units=(5, 7),
                  refresh_every_n_epochs=2, kmeans_seed=9, head_init="glorot")
    config = json.loads(json.dumps(model.get_config()))
    restored = UCSHHasher.from_config(config)
    keys = ("num_samples", "num_clusters", "vae_weight", "cluster_weight", "separation_weight", "use_vae",
            "use_clustering", "use_separation", "relaxation", "sampling", "decoder_units",
            "refresh_every_n_epochs", "kmeans_seed", "head_init", "seed", "feature_size", "loss_terms")
    for key in keys:
        assert getattr(restored, key) == getattr(model, key), key
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_every_dense_layer_of_the_head_has_the_torch_initialisation_by_default():
    model = build(seed=3, feature_size=512, decoder_units=(256,))
    assert UCSHHasher.default_head_init == model.head_init == "torch"
    layers = [model.head.encoder, *model.head.decoder_layers]
    assert [int(layer.kernel.shape[0]) for layer in layers] == [512, K, 256]
    for layer in layers:
        bound = 1.0 / np.sqrt(int(layer.kernel.shape[0]))
        kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
        assert np.all(np.abs(kernel) <= bound) and np.abs(kernel).max() > 0.95 * bound
        assert np.all(np.abs(bias) <= bound) and np.all(bias != 0)
    # the seeded draws of `head_initializers` for each layer's fan-in, at offsets 0, 1, 2
    for offset, layer in enumerate(layers):
        initializers = model.head_initializers(int(layer.kernel.shape[0]), offset)
        for name in ("kernel", "bias"):
            weight = getattr(layer, name)
            expected = initializers[f"{name}_initializer"](tuple(weight.shape))
            np.testing.assert_array_equal(weight.numpy(), keras.ops.convert_to_numpy(expected), layer.name)
    again = build(seed=3, feature_size=512, decoder_units=(256,))
    for a, b in zip(model.trainable_weights, again.trainable_weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
