"""MLP and SmallCNN, the from-scratch encoders for 28x28 / 32x32 images."""

import keras
import numpy as np
import pytest

from tfhash.backbones import MLP, SmallCNN

CASES = [
    (MLP, dict(image_size=28, channels=1), 512),
    (MLP, dict(image_size=32, channels=3, hidden_units=(64, 32)), 32),
    (SmallCNN, dict(image_size=28, channels=1), 256),
    (SmallCNN, dict(image_size=32, channels=3, filters=(8, 16), feature_size=64), 64),
]


def random_images(shape, n=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape)).astype("uint8")


@pytest.mark.parametrize("cls, kwargs, feature_size", CASES)
def test_feature_size_and_input_types(cls, kwargs, feature_size):
    encoder = cls(**kwargs)
    images = random_images(encoder.image_shape)
    features = encoder(images).numpy()
    assert encoder.feature_size == feature_size and features.shape == (4, feature_size)
    assert encoder.image_shape == (kwargs["image_size"],) * 2 + (kwargs["channels"],)
    np.testing.assert_array_equal(encoder(images.astype("float32")).numpy(), features)  # uint8 or float


@pytest.mark.parametrize("cls", [MLP, SmallCNN])
def test_preprocessing_scales_to_unit_interval(cls):
    encoder = cls(image_size=28, channels=1)
    assert encoder.preprocessing == "[0, 255] -> [0, 1] (x / 255)"
    scaled = encoder.network.get_layer("preprocessing")(np.array([[[[0], [51], [255]]]], "uint8")).numpy()
    np.testing.assert_allclose(scaled.ravel(), [0.0, 0.2, 1.0])


def test_trainable_by_default_and_freezable():
    images = random_images((32, 32, 3))
    trained = SmallCNN()
    assert len(trained.trainable_weights) == 3 * 3 + 2  # (conv kernel, BN gamma, beta) per stage + dense
    assert not np.allclose(trained(images, training=True), trained(images, training=False))

    frozen = SmallCNN(trainable=False)
    assert frozen.trainable_weights == []
    np.testing.assert_array_equal(frozen(images, training=True), frozen(images, training=False))
    assert MLP(trainable=False).trainable_weights == []


@pytest.mark.parametrize("cls", [MLP, SmallCNN])
def test_wrong_image_shape_raises(cls):
    encoder = cls(image_size=28, channels=1)
    with pytest.raises(ValueError, match=r"\(batch, 28, 28, 1\).*got shape \(2, 32, 32, 3\)"):
        encoder(np.zeros((2, 32, 32, 3), "uint8"))


def test_invalid_configurations():
    with pytest.raises(ValueError, match="pooling stages"):
        SmallCNN(image_size=8, filters=(8, 8, 8, 8))
    with pytest.raises(ValueError, match="at least one"):
        MLP(hidden_units=())


@pytest.mark.parametrize("cls, kwargs, feature_size", CASES)
def test_serialization_round_trip(tmp_path, cls, kwargs, feature_size):
    encoder = cls(trainable=False, **kwargs)
    images = random_images(encoder.image_shape)
    encoder.save(tmp_path / "encoder.keras")
    restored = keras.saving.load_model(tmp_path / "encoder.keras")
    assert type(restored) is cls and restored.get_config() == encoder.get_config()
    assert restored.feature_size == feature_size and not restored.trainable
    np.testing.assert_array_equal(restored(images).numpy(), encoder(images).numpy())
