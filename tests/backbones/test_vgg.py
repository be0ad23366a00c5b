"""VGG16 / VGG19 fc7 backbones. The fully connected layers are big (~500 MB), so few networks are built."""

import keras
import numpy as np
import pytest

from tfhash.backbones import VGG


@pytest.mark.parametrize("depth", [16, 19])
def test_missing_weights_error_names_file_and_cache(tmp_path, monkeypatch, depth):
    # An empty cache and an unreachable server: keras.utils.get_file runs for real against a closed port.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    real_get_file = keras.utils.get_file

    def unreachable_get_file(fname, origin, **kwargs):
        return real_get_file(fname, "http://127.0.0.1:9/" + fname, **kwargs)

    monkeypatch.setattr(keras.utils, "get_file", unreachable_get_file)
    file_name = f"vgg{depth}_weights_tf_dim_ordering_tf_kernels.h5"

    with pytest.raises(FileNotFoundError) as error:
        VGG(depth)

    message = str(error.value)
    assert file_name in message
    assert str(tmp_path / "models" / file_name) in message
    assert "weights=None" in message
    assert not (tmp_path / "models" / file_name).exists()  # no partial download left behind


def test_rejects_unknown_weights_and_depth():
    with pytest.raises(ValueError, match="`weights` must be"):
        VGG(16, weights="imagenet21k")
    with pytest.raises(ValueError, match="`depth` must be 16 or 19"):
        VGG(11, weights=None)


@pytest.mark.slow
def test_fc7_features_from_weight_file_preprocessing_and_round_trip(tmp_path):
    """One reference network and one backbone: weight file, fc7, preprocessing, freezing, saving."""
    reference = keras.applications.VGG16(weights=None)
    weight_file = tmp_path / "vgg16.weights.h5"
    reference.save_weights(weight_file)
    images = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3)).astype("uint8")

    backbone = VGG(16, weights=str(weight_file))
    weight_file.unlink()  # 550 MB
    features = backbone(images).numpy()

    assert backbone.feature_size == 4096 and backbone.image_shape == (224, 224, 3)
    assert "BGR" in backbone.preprocessing
    fc7 = keras.Model(reference.input, reference.get_layer("fc2").output)
    expected = fc7(keras.applications.vgg16.preprocess_input(images.astype("float32"))).numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)
    assert features.shape == (2, 4096) and features.min() >= 0  # after fc7's ReLU

    # Frozen by default; trainable=True would expose all 30 kernels and biases up to fc7.
    assert backbone.trainable_weights == [] and len(backbone.non_trainable_weights) == 30
    with pytest.raises(ValueError, match="Resize them to `image_size`=224"):
        backbone(np.zeros((1, 112, 112, 3), "uint8"))

    path = tmp_path / "vgg16.keras"
    backbone.save(path)
    restored = keras.saving.load_model(path)
    path.unlink()
    assert isinstance(restored, VGG) and restored.get_config() == backbone.get_config()
    np.testing.assert_array_equal(restored(images).numpy(), features)
