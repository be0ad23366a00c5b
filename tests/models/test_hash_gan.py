"""HashGAN: wiring of the loss terms, the alternating step, the warm-up, saving, serving and errors."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from tfhash import load_encoder
from tfhash.__main__ import main as cli_main
from tfhash.layers import ConsistencyTransform
from tfhash.models import HashGAN

K = 8
BATCH = 16


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(4 * BATCH, 28, 28, 1), dtype=np.uint8)


def sgd_model(d_rate=0.05, g_rate=0.05, **kwargs):
    model = HashGAN(K, seed=0, **kwargs)
    model.compile(
        d_optimizer=keras.optimizers.SGD(d_rate), g_optimizer=keras.optimizers.SGD(g_rate), jit_compile=False
    )
    return model


def snapshot(variables):
    return [v.numpy().copy() for v in variables]


def changed(before, variables):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables)]


def bernoulli_entropy(p):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


@pytest.mark.parametrize("sum_over_images", [True, False])
def test_encoder_losses_match_numpy_on_the_models_own_outputs(images, sum_over_images):
    # Eq. 3 sums the minimum-entropy and consistency terms over the images; Eq. 4 and f_k are means.
    model = HashGAN(
        K, seed=3, min_entropy_weight=0.01, collaborative_weight=0.1, sum_over_images=sum_over_images
    )
    over_images = np.sum if sum_over_images else np.mean
    real = model.preprocess(images[:BATCH])
    transformed = model.preprocess(images[BATCH : 2 * BATCH])
    generated = model.generator(tf.random.uniform((BATCH, 100 + K), seed=1), training=False)
    bits = (np.arange(BATCH * K).reshape(BATCH, K) % 3 == 0).astype(np.float32)
    terms = model.encoder_losses(real, transformed, generated, bits, hash_weight=1.0, training=False)

    def probabilities(x):
        return tf.sigmoid(model.encoder_head(model.trunk(x, training=False))).numpy().astype(np.float64)

    def real_logit(x):
        return model.discriminator_head(model.trunk(x, training=False)).numpy()[:, 0].astype(np.float64)

    t, t_tilde, t_generated = probabilities(real), probabilities(transformed), probabilities(generated)
    d_real, d_fake = real_logit(real), real_logit(generated)
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    kernel = model.encoder_head.kernel.numpy().astype(np.float64)
    w = model.encoder_head.g.numpy() * kernel / np.linalg.norm(kernel, axis=0)
    frequency = t.mean(axis=0)
    expected = {
        "adversarial": -np.mean(np.log(sigmoid(d_real))) - np.mean(np.log(1 - sigmoid(d_fake))),
        "min_entropy": over_images(bernoulli_entropy(t).sum(axis=1)),
        "uniform_frequency": -bernoulli_entropy(frequency).sum(),
        "consistency": over_images(((t - t_tilde) ** 2).sum(axis=1)),
        "independence": ((w.T @ w - np.eye(K)) ** 2).sum(),
        "collaborative": ((t_generated - bits) ** 2).sum(axis=1).mean(),
    }
    for name, value in expected.items():
        np.testing.assert_allclose(float(terms[name]), value, rtol=2e-4, atol=1e-5, err_msg=name)
    hashing = (
        0.01 * expected["min_entropy"]
        + expected["uniform_frequency"]
        + expected["consistency"]
        + expected["independence"]
        + 0.1 * expected["collaborative"]
    )
    np.testing.assert_allclose(float(terms["encoder_loss"]), expected["adversarial"] + hashing, rtol=2e-4)
    off = model.encoder_losses(real, transformed, generated, bits, hash_weight=0.0, training=False)
    np.testing.assert_allclose(float(off["encoder_loss"]), expected["adversarial"], rtol=2e-4)


def test_feature_matching_matches_numpy(images):
    model = HashGAN(K, seed=1)
    real = model.preprocess(images[:BATCH])
    generated = model.generator(tf.random.uniform((BATCH, 100 + K), seed=2), training=False)
    loss = model.generator_loss(real, generated, training=False)
    f_real = model.trunk(real, training=False).numpy().astype(np.float64)
    f_fake = model.trunk(generated, training=False).numpy().astype(np.float64)
    np.testing.assert_allclose(float(loss), ((f_real.mean(0) - f_fake.mean(0)) ** 2).sum(), rtol=1e-4)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_one_alternating_step_trains_each_network_with_its_own_optimizer(images, jit_compile):
    model = HashGAN(K, seed=0)
    model.compile(
        d_optimizer=keras.optimizers.Adam(1e-3),
        g_optimizer=keras.optimizers.Adam(1e-3),
        jit_compile=jit_compile,
    )
    encoder_before, generator_before = snapshot(model.encoder_variables), snapshot(
        model.generator.trainable_variables
    )
    logs = model.train_on_batch(images[:BATCH], return_dict=True)
    assert set(logs) == {"encoder_loss", *HashGAN.loss_terms}
    assert all(np.isfinite(value) for value in logs.values())
    assert all(changed(encoder_before, model.encoder_variables))
    assert all(changed(generator_before, model.generator.trainable_variables))
    assert int(model.d_optimizer.iterations) == 1 and int(model.g_optimizer.iterations) == 1


def test_the_d_step_leaves_the_generator_and_the_g_step_leaves_d_and_e(images):
    frozen_generator = sgd_model(g_rate=0.0)
    before = snapshot(frozen_generator.generator.trainable_variables)
    frozen_generator.train_on_batch(images[:BATCH])
    assert not any(changed(before, frozen_generator.generator.trainable_variables))

    frozen_encoder = sgd_model(d_rate=0.0)
    before = snapshot(frozen_encoder.encoder_variables)
    generator_before = snapshot(frozen_encoder.generator.trainable_variables)
    frozen_encoder.train_on_batch(images[:BATCH])
    assert not any(changed(before, frozen_encoder.encoder_variables))
    assert all(changed(generator_before, frozen_encoder.generator.trainable_variables))


def test_hash_and_l2_losses_are_off_during_the_warm_up(images):
    # Before the warm-up ends only the adversarial loss trains D/E: the encoder's last layer gets no gradient.
    model = sgd_model(hash_warmup_steps=2)
    head = model.encoder_head.trainable_variables
    for step in range(2):
        before = snapshot(head)
        logs = model.train_on_batch(images[:BATCH], return_dict=True)
        assert not any(changed(before, head)), step
        assert float(model.hash_weight()) == float(step + 1 >= 2)
    before = snapshot(head)
    model.train_on_batch(images[:BATCH])
    assert all(changed(before, head))
    assert logs["encoder_loss"] == pytest.approx(logs["adversarial"], rel=1e-6)


def test_zero_weights_remove_terms(images):
    model = HashGAN(
        K,
        seed=0,
        min_entropy_weight=0.0,
        uniform_frequency_weight=0.0,
        consistency_weight=0.0,
        independence_weight=0.0,
        collaborative_weight=0.0,
    )
    real = model.preprocess(images[:BATCH])
    terms = model.encoder_losses(real, real, real, tf.zeros((BATCH, K)), 1.0, training=False)
    assert float(terms["encoder_loss"]) == pytest.approx(float(terms["adversarial"]), rel=1e-6)


def test_encode_thresholds_the_probabilities_at_one_half(images):
    model = HashGAN(K, seed=2)
    probabilities = model(images[:BATCH]).numpy()
    assert probabilities.shape == (BATCH, K) and np.all((probabilities > 0) & (probabilities < 1))
    expected = np.where(probabilities > 0.5, 1.0, -1.0)
    np.testing.assert_array_equal(model.encode(images[:BATCH]).numpy(), expected)
    np.testing.assert_array_equal(model.predict(images[:BATCH], verbose=0), expected)
    # uint8 and float pixels in [0, 255] are the same input.
    np.testing.assert_array_equal(model.encode(images[:BATCH].astype("float32")).numpy(), expected)


def test_generator_inputs_and_generated_images():
    model = HashGAN(K, seed=0)
    uniform, bits = model.sample_generator_inputs(64)
    assert uniform.shape == (64, 100) and bits.shape == (64, K)
    assert 0 <= float(tf.reduce_min(uniform)) and float(tf.reduce_max(uniform)) < 1
    assert set(np.unique(bits.numpy())) <= {0.0, 1.0} and 0.3 < float(tf.reduce_mean(bits)) < 0.7
    generated = model.generate(bits[:4], uniform[:4]).numpy()
    assert generated.shape == (4, 28, 28, 1) and generated.min() >= 0 and generated.max() <= 255
    assert model.generate(bits[:3]).shape == (3, 28, 28, 1)
    with pytest.raises(ValueError, match="generator_bits"):
        model.generate(np.zeros((2, K + 1)))
    with pytest.raises(ValueError, match="uniform_noise"):
        model.generate(bits[:2], np.zeros((2, 5)))


def test_preprocess_maps_pixels_to_the_generators_range():
    mnist, cifar = HashGAN(K, seed=0), HashGAN(K, architecture="cifar10", seed=0)
    pixels = np.array([0.0, 127.5, 255.0])
    np.testing.assert_allclose(mnist.preprocess(pixels).numpy(), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(cifar.preprocess(pixels).numpy(), [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(cifar.postprocess(cifar.preprocess(pixels)).numpy(), pixels, atol=1e-4)


def test_initialize_from_batch_normalises_the_first_layer(images):
    model = HashGAN(K, seed=0)
    model.initialize_from_batch(images)
    first = next(layer for layer in model.trunk.layers if hasattr(layer, "initialize_from_batch"))
    x = tf.reshape(model.preprocess(images), (len(images), -1))
    pre_activations = (tf.matmul(x, first.normalized_kernel()) + first.bias).numpy()
    np.testing.assert_allclose(pre_activations.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(pre_activations.std(axis=0), 1.0, rtol=1e-3)
    with pytest.raises(ValueError, match="images"):
        model.initialize_from_batch(np.zeros((4, 32, 32, 3)))


def test_cifar10_architecture_trains_one_step():
    model = HashGAN(K, architecture="cifar10", seed=0)
    model.compile(jit_compile=False)
    images = np.random.default_rng(1).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    model.initialize_from_batch(images)
    logs = model.train_on_batch(images, return_dict=True)
    assert all(np.isfinite(value) for value in logs.values())
    assert model.generator.output_shape == (None, 32, 32, 3) and model.trunk.output_shape == (None, 192)
    assert model.encode(images).shape == (4, K)


def test_pipeline_batches_with_indices_or_labels_train(images):
    model = sgd_model()
    index = np.arange(len(images))
    data = tf.data.Dataset.from_tensor_slices({"inputs": images, "sample_index": index}).batch(BATCH)
    history = model.fit(data, epochs=1, verbose=0)
    assert len(history.history["feature_matching"]) == 1
    labelled = tf.data.Dataset.from_tensor_slices({"inputs": images, "labels": index % 3}).batch(BATCH)
    evaluation = model.evaluate(labelled, verbose=0, return_dict=True)
    assert set(evaluation) == {"encoder_loss", *HashGAN.loss_terms}
    np.testing.assert_array_equal(model.predict(labelled, verbose=0), model.encode(images).numpy())
    # A positional (images, second element) pair is ambiguous: refused with a message naming the model.
    pairs = tf.data.Dataset.from_tensor_slices((images, index)).batch(BATCH)
    with pytest.raises(ValueError, match="HashGAN got a batch of 2 positional elements"):
        model.fit(pairs, epochs=1, verbose=0)


def test_same_seed_same_training(images):
    histories = []
    for _ in range(2):
        model = sgd_model()
        model.fit(images, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
        histories.append(model.encode(images).numpy())
    np.testing.assert_array_equal(*histories)


def test_save_load_then_train_one_more_step_identically(tmp_path, images):
    model = HashGAN(K, seed=5, hash_warmup_steps=1, min_entropy_weight=0.01)
    model.compile(
        d_optimizer=HashGAN.paper_optimizer(10), g_optimizer=HashGAN.paper_optimizer(10), jit_compile=False
    )
    model.fit(images, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    path = tmp_path / "hashgan.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, HashGAN) and loaded.min_entropy_weight == 0.01 and loaded.hash_warmup_steps == 1
    assert int(loaded.d_optimizer.iterations) == int(model.d_optimizer.iterations) == 4
    assert loaded.d_optimizer is not loaded.g_optimizer
    np.testing.assert_array_equal(loaded.encode(images).numpy(), model.encode(images).numpy())
    for m in (model, loaded):
        m.train_on_batch(images[:BATCH])
    for name, a, b in ((v.path, v, w) for v, w in zip(model.weights, loaded.weights)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


def test_config_round_trip():
    transform = ConsistencyTransform(max_shift=1, horizontal_flip=True, seed=9)
    model = HashGAN(
        16,
        architecture="cifar10",
        noise_dim=32,
        consistency_weight=0.5,
        hash_warmup_steps=7,
        input_noise_stddev=0.1,
        consistency_transform=transform,
        seed=4,
    )
    clone = HashGAN.from_config(model.get_config())
    config = clone.get_config()
    assert config == model.get_config()
    assert clone.consistency_transform.max_shift == 1 and clone.noise_dim == 32


def test_export_serves_the_same_codes(tmp_path, images, capsys):
    model = HashGAN(K, seed=6)
    path = model.export(tmp_path / "encoder", verbose=False)
    encoder = load_encoder(path)
    assert encoder.image_shape == (28, 28, 1) and encoder.feature_size is None
    assert encoder.metadata["model_class"] == "HashGAN" and "[0, 1]" in encoder.metadata["preprocessing"]
    np.testing.assert_array_equal(encoder.encode(images), model.encode(images).numpy())
    with pytest.raises(ValueError, match="encode"):
        encoder.encode_features(np.zeros((2, 250), np.float32))
    # The command line encodes a .npy of gray images with it; asking for features is a clear error.
    np.save(tmp_path / "images.npy", images)
    encode = ["encode", "--model", path, "--input", str(tmp_path / "images.npy")]
    assert cli_main([*encode, "--output", str(tmp_path / "codes.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "codes.npy"), model.encode(images).numpy())
    with pytest.raises(SystemExit):
        cli_main([*encode, "--features", "--output", str(tmp_path / "features.npy")])
    assert "use `encode`" in capsys.readouterr().err


def test_trains_under_mirrored_strategy(mirrored_strategy, images):
    with mirrored_strategy.scope():
        model = sgd_model()
    history = model.fit(images, batch_size=BATCH, epochs=1, verbose=0)
    assert np.isfinite(history.history["encoder_loss"][0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_bits": 0}, "num_bits"),
        ({"architecture": "svhn"}, "architecture"),
        ({"noise_dim": 0}, "noise_dim"),
        ({"min_entropy_weight": -1.0}, "min_entropy_weight"),
        ({"hash_warmup_steps": -1}, "hash_warmup_steps"),
        ({"input_noise_stddev": float("nan")}, "input_noise_stddev"),
        ({"sum_over_images": 1}, "sum_over_images"),
        ({"consistency_transform": "noise"}, "consistency_transform"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HashGAN(**{"num_bits": K, **kwargs})


def test_one_optimizer_object_for_both_networks_is_refused():
    adam = keras.optimizers.Adam()
    with pytest.raises(ValueError, match="g_optimizer"):
        HashGAN(K).compile(d_optimizer=adam, g_optimizer=adam)


def test_paper_optimizer_decays_linearly_from_9e_4_to_3e_4():
    optimizer = HashGAN.paper_optimizer(100)
    schedule = optimizer.learning_rate if callable(optimizer.learning_rate) else optimizer._learning_rate
    rates = [float(schedule(step)) for step in (0, 50, 100, 200)]
    np.testing.assert_allclose(rates, [9e-4, 6e-4, 3e-4, 3e-4], rtol=1e-5)
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.5, 0.999, 1e-8)


def test_paper_optimizer_takes_another_initial_rate_and_keeps_the_decay_to_a_third():
    schedule = HashGAN.paper_optimizer(100, 3e-3)._learning_rate
    np.testing.assert_allclose([float(schedule(step)) for step in (0, 50, 100)], [3e-3, 2e-3, 1e-3], rtol=1e-5)
    for rate in (0.0, -1e-3, "fast"):
        with pytest.raises(ValueError, match="learning_rate"):
            HashGAN.paper_optimizer(100, rate)
