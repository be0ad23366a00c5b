"""The Hasher base: training step, trackers, encoding, data formats, saving, jit and tf.distribute."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash import backbones
from tfhash.models import BiHalfHasher, GreedyHasher, HQTRegularizer
from tfhash.supervision import HyperQuantizationTree

N, D, K = 64, 10, 8


@pytest.fixture(scope="module")
def features():
    return np.random.default_rng(0).normal(size=(N, D)).astype("float32")


def indexed(features, batch_size=16):
    return tf.data.Dataset.from_tensor_slices((features, np.arange(len(features)))).batch(batch_size)


def with_hqt(model_class, features, alpha=0.5, **kwargs):
    model = model_class(K, feature_size=D, hqt=HQTRegularizer(N, alpha=alpha), seed=0, **kwargs)
    model.hqt.assign(HyperQuantizationTree(K, seed=0).pseudo_bits(features))
    return model


def test_train_step_applies_the_gradient_of_the_total_loss(features):
    model = with_hqt(BiHalfHasher, features)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    batch = (tf.constant(features[:16]), tf.constant(np.arange(16)))
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
    model = with_hqt(model_class, features)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=jit_compile, run_eagerly=False)
    history = model.fit(indexed(features), epochs=8, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert all(np.isfinite(v).all() for v in history.values())
    evaluation = model.evaluate(indexed(features), verbose=0, return_dict=True)
    assert set(evaluation) == set(history)


def test_run_eagerly(features):
    model = with_hqt(GreedyHasher, features)
    model.compile(optimizer="adam", run_eagerly=True)
    model.fit(indexed(features), epochs=1, verbose=0)


def test_encode_and_predict_give_signed_codes(features):
    model = GreedyHasher(K, feature_size=D, seed=0)
    codes = model.predict(features, verbose=0)
    assert set(np.unique(codes)) <= {-1.0, 1.0}
    h = features @ model.head.kernel.numpy() + model.head.bias.numpy()
    np.testing.assert_array_equal(codes, np.where(h >= 0, 1.0, -1.0))
    np.testing.assert_array_equal(model.encode(features).numpy(), codes)
    # predict on (inputs, labels) batches encodes the inputs
    labelled = tf.data.Dataset.from_tensor_slices((features, np.zeros(N, "int64"))).batch(7)
    np.testing.assert_array_equal(model.predict(labelled, verbose=0), codes)


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
    model.fit(tf.data.Dataset.from_tensor_slices((images, np.arange(8))).batch(4), epochs=1, verbose=0)
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, backbone.trainable_weights))
    assert model.predict(images, verbose=0).shape == (8, 12)
    assert model.input_shape_ == (None, 28, 28, 1) and model.feature_size == backbone.feature_size


def test_inputs_alone_train_without_hqt(features):
    model = GreedyHasher(K, feature_size=D, seed=0)
    model.compile(optimizer="adam")
    model.fit(tf.data.Dataset.from_tensor_slices(features).batch(16), epochs=1, verbose=0)


def test_hqt_needs_sample_indices(features):
    model = with_hqt(GreedyHasher, features)
    with pytest.raises(ValueError, match="sample_index"):
        model.compute_losses(tf.constant(features[:4]), training=True)


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
    head_only.fit(tf.data.Dataset.from_tensor_slices((features, np.arange(16))).batch(8), epochs=1, verbose=0)
    image_model = head_only.with_backbone(backbone)
    assert image_model.hqt is None and image_model.backbone is backbone
    np.testing.assert_array_equal(image_model.predict(images, verbose=0), head_only.predict(features, verbose=0))
    image_model.head.kernel.assign(image_model.head.kernel * 0)  # a copy: the trained model is untouched
    assert np.any(head_only.head.kernel.numpy())
    with pytest.raises(ValueError, match="already has a backbone"):
        image_model.with_backbone(backbone)
    with pytest.raises(ValueError, match="feature_size"):
        BiHalfHasher(K, feature_size=3).with_backbone(backbone)
