import pytest

from tfhash import models


def test_every_name_gives_its_class():
    expected = {
        "bihalf": models.BiHalfHasher,
        "greedyhash": models.GreedyHasher,
        "cibhash": models.CIBHasher,
        "cimon": models.CIMONHasher,
        "dsah": models.DSAHHasher,
        "ucsh": models.UCSHHasher,
        "hashgan": models.HashGAN,
    }
    assert models.NAMES == tuple(expected)
    for name, cls in expected.items():
        assert models.get_class(name) is cls


def test_get_builds_the_model_with_its_config():
    model = models.get("greedyhash", num_bits=8, feature_size=12, quantization_weight=0.5, seed=3)
    assert isinstance(model, models.GreedyHasher)
    assert model.num_bits == 8 and model.quantization_weight == 0.5
    gan = models.get("hashgan", num_bits=8)
    assert isinstance(gan, models.HashGAN) and gan.num_bits == 8


def test_unknown_name_lists_the_valid_ones():
    for name in ("bi_half", "BiHalfHasher", None):
        with pytest.raises(ValueError, match="bihalf, greedyhash, cibhash, cimon, dsah, ucsh, hashgan"):
            models.get(name, num_bits=8)


def test_unknown_argument_is_named():
    with pytest.raises((TypeError, ValueError), match="gama"):
        models.get("bihalf", num_bits=8, feature_size=4, gama=6.0)
