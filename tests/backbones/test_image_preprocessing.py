import keras
import numpy as np
import pytest

from tfhash.backbones import ImagePreprocessing


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3)).astype("uint8")


@pytest.mark.parametrize("application", [keras.applications.vgg16, keras.applications.vgg19])
def test_vgg_preprocessing_equals_keras_applications(images, application):
    layer = ImagePreprocessing(mean=[103.939, 116.779, 123.68], reverse_channels=True)
    expected = application.preprocess_input(images.astype("float32"))
    np.testing.assert_allclose(layer(images).numpy(), expected, rtol=0, atol=1e-5)


def test_scalar_and_per_channel_statistics(images):
    expected = (images - 127.0) / 128.0
    np.testing.assert_allclose(ImagePreprocessing(127.0, 128.0)(images).numpy(), expected, atol=1e-6)
    mean, std = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]
    expected = (images - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(ImagePreprocessing(mean, std)(images).numpy(), expected, rtol=1e-6)


def test_serialization_round_trip(images, tmp_path):
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, ImagePreprocessing([1.0, 2.0, 3.0], 2.0, reverse_channels=True)(inputs))
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(restored.layers[-1], ImagePreprocessing)
    assert restored.layers[-1].get_config() == model.layers[-1].get_config()
    np.testing.assert_array_equal(restored(images.astype("float32")), model(images.astype("float32")))
