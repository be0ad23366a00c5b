"""Every class registered under "tfhash>" round-trips through get_config and .keras, and every model trains
one step eagerly and with jit_compile (tests/harness.py).

`CASES` holds small constructor arguments and inputs for each registered class; a class registered without an
entry fails `test_every_registered_class_has_a_case`, so a new public class gets these checks by adding a row.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import harness
from tfhash import layers
from tfhash.data import augment
from tfhash.models import HQTRegularizer

harness.import_all_modules()  # every module of tfhash, so that every class it registers is registered

N, D, K = 16, 12, 8  # samples, feature width, code length
rng = np.random.default_rng(0)
FEATURES = rng.normal(size=(N, D)).astype("float32")
VIEWS = tuple((FEATURES + 0.1 * rng.normal(size=(N, D))).astype("float32") for _ in range(2))
CODES = rng.normal(size=(N, K)).astype("float32")
PROBABILITIES = rng.uniform(0.05, 0.95, size=(N, K)).astype("float32")
IMAGES = rng.integers(0, 256, size=(4, 16, 16, 3)).astype("uint8")
PIXELS = IMAGES.astype("float32")
MNIST_IMAGES = rng.integers(0, 256, size=(N, 28, 28, 1)).astype("uint8")
PSEUDO_BITS = rng.integers(0, 2, size=(N, K))
INDEX = np.arange(N)


# --- per-class hooks ----------------------------------------------------------------------------------------


def features():
    return (FEATURES,)


def pixels():
    return (PIXELS,)


def refreshers(model):
    """The callbacks that write the label-free supervision the model declares (HQT bits, CIMON's S, DSAH's W)."""
    return model.supervision_refreshers(FEATURES)


def assign_supervision(model):
    """Writes that supervision now, as the refreshers do at the start of training."""
    callbacks = refreshers(model)
    assert callbacks, f"{type(model).__name__} declares no supervision refresher"
    for refresher in callbacks:
        refresher.refresh(model, 0)
        assert refresher.is_assigned(model)


def indexed_features():
    return harness.batches(FEATURES, INDEX)


def indexed_views():
    return harness.batches(VIEWS, INDEX)


def indexed_images():
    return harness.batches(MNIST_IMAGES, INDEX)


def gan_optimizers():
    return {"d_optimizer": keras.optimizers.Adam(1e-3), "g_optimizer": keras.optimizers.Adam(1e-3)}


def mse_to_zeros(width, images):
    """Plain (images, targets) batches: a backbone trains as any Keras model, on an MSE to zero features."""

    def data():
        targets = np.zeros((len(images), width), "float32")
        return tf.data.Dataset.from_tensor_slices((images, targets)).batch(len(images))

    return data


def backbone_compile():
    return {"optimizer": keras.optimizers.SGD(1e-2), "loss": "mse"}


def hqt(num_samples=N):
    return HQTRegularizer(num_samples, alpha=0.5)


CASES = {
    # abstract
    "Augmentation": harness.Case(
        skip="abstract base class of the augmentations: each subclass has its own case"
    ),
    # augmentations: random, active with training=True
    "ColorJitter": harness.Case(
        {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.05, "seed": 0},
        inputs=pixels,
        call_kwargs={"training": True},
        rtol=1e-5,
        atol=1e-3,
    ),
    "Compose": harness.Case(
        lambda: {
            "layers": [augment.RandomHorizontalFlip(seed=1), augment.GaussianNoise(5.0, seed=2)],
            "seed": 0,
        },
        inputs=pixels,
        call_kwargs={"training": True},
        rtol=1e-5,
        atol=1e-4,
    ),
    "GaussianBlur": harness.Case(
        {"kernel_size": 3, "sigma": (0.5, 1.5), "seed": 0},
        inputs=pixels,
        call_kwargs={"training": True},
        rtol=1e-5,
        atol=1e-4,
    ),
    "GaussianNoise": harness.Case(
        {"stddev": 5.0, "p": 0.5, "seed": 0}, inputs=pixels, call_kwargs={"training": True}, atol=1e-4
    ),
    "RandomAffine": harness.Case(
        {"degrees": 10.0, "translate": (0.1, 0.1), "seed": 0},
        inputs=pixels,
        call_kwargs={"training": True},
        rtol=1e-5,
        atol=1e-3,
    ),
    "RandomGrayscale": harness.Case(
        {"p": 0.5, "seed": 0}, inputs=pixels, call_kwargs={"training": True}, atol=1e-4
    ),
    "RandomHorizontalFlip": harness.Case(
        {"p": 0.5, "seed": 0}, inputs=pixels, call_kwargs={"training": True}
    ),
    "RandomResizedCrop": harness.Case(
        {"size": 8, "scale": (0.3, 1.0), "seed": 0},
        inputs=pixels,
        call_kwargs={"training": True},
        rtol=1e-5,
        atol=1e-3,
    ),
    # layers
    "BiHalf": harness.Case({"gamma": 3.0}, inputs=lambda: (CODES,), call_kwargs={"training": True}),
    "SignSTE": harness.Case({"clip_gradient": True}, inputs=lambda: (CODES,)),
    "StochasticBinary": harness.Case(
        {"stochastic": True, "signed": True, "seed": 0},
        inputs=lambda: (PROBABILITIES,),
        call_kwargs={"training": True},
    ),
    "BinaryLatentVAE": harness.Case(
        {"num_bits": K, "decoder_units": [6], "sampling": "stochastic", "kl_weight": 0.5, "seed": 0},
        inputs=features,
        call_kwargs={"training": True},
        atol=1e-5,
    ),
    "ConsistencyTransform": harness.Case(
        {"max_shift": 1, "horizontal_flip": True, "noise_stddev": 0.1, "seed": 0},
        inputs=pixels,
        call_kwargs={"training": True},
        atol=1e-4,
    ),
    "ImagePreprocessing": harness.Case(
        {"mean": [1.0, 2.0, 3.0], "std": 2.0, "reverse_channels": True}, inputs=pixels
    ),
    "WeightNormDense": harness.Case(
        {"units": 3, "activation": "relu", "seed": 0}, inputs=features, atol=1e-5
    ),
    "WeightNormConv2D": harness.Case(
        {"filters": 4, "kernel_size": 3, "seed": 0}, inputs=pixels, rtol=1e-5, atol=1e-3
    ),
    "WeightNormConv2DTranspose": harness.Case(
        {"filters": 2, "kernel_size": 3, "strides": 2, "seed": 0}, inputs=pixels, rtol=1e-5, atol=1e-3
    ),
    "HQTRegularizer": harness.Case(
        lambda: {
            "num_samples": N,
            "alpha": 0.3,
            "signed_targets": False,
            "tree": {"depth_range": [3, 4], "seed": 3},
            "every_n_epochs": 2,
        },
        inputs=lambda: (CODES, INDEX),
        setup=lambda layer: (layer.build((None, K)), layer.assign(PSEUDO_BITS)),
    ),
    # losses: inputs are (y_true, y_pred)
    "SimilarityPreservingLoss": harness.Case({"name": "sp"}, inputs=lambda: (FEATURES, CODES)),
    "NTXentLoss": harness.Case({"temperature": 0.3}, inputs=lambda: (VIEWS[0], VIEWS[1]), rtol=1e-5),
    # backbones
    "SmallCNN": harness.Case(
        {"image_size": 16, "channels": 3, "filters": (4, 8), "feature_size": 8},
        inputs=lambda: (IMAGES,),
        seeded=False,
        train_data=mse_to_zeros(8, IMAGES),
        compile_kwargs=backbone_compile,
        atol=1e-5,
    ),
    "MLP": harness.Case(
        {"image_size": 16, "channels": 3, "hidden_units": (8, 4)},
        inputs=lambda: (IMAGES,),
        seeded=False,
        train_data=mse_to_zeros(4, IMAGES),
        compile_kwargs=backbone_compile,
        atol=1e-5,
    ),
    "EfficientNetLite0": harness.Case(
        {"weights": None, "image_size": 32},
        inputs=lambda: (np.zeros((2, 32, 32, 3), "uint8") + 100,),
        seeded=False,
        rtol=1e-5,
        atol=1e-4,
    ),
    "VGG": harness.Case(  # 138M parameters at 224 x 224: several copies of them
        {"depth": 16, "weights": None},
        inputs=lambda: (np.full((1, 224, 224, 3), 100, "uint8"),),
        seeded=False,
        rtol=1e-4,
        atol=1e-3,
        marks=(pytest.mark.slow,),
    ),
    # hashers: frozen-feature heads on (N, D) features, with HQT, trained on dict batches
    "BiHalfHasher": harness.Case(
        lambda: {"num_bits": K, "gamma": 3.0, "feature_size": D, "hqt": hqt(), "seed": 0},
        inputs=features,
        setup=assign_supervision,
        train_callbacks=refreshers,
        train_data=indexed_features,
    ),
    "GreedyHasher": harness.Case(
        lambda: {"num_bits": K, "quantization_weight": 0.2, "feature_size": D, "hqt": hqt(), "seed": 0},
        inputs=features,
        setup=assign_supervision,
        train_callbacks=refreshers,
        train_data=indexed_features,
    ),
    "CIBHasher": harness.Case(
        lambda: {"num_bits": K, "hidden_units": 16, "feature_size": D, "hqt": hqt(), "seed": 0},
        inputs=features,
        setup=assign_supervision,
        train_callbacks=refreshers,
        train_data=indexed_views,
    ),
    "CIMONHasher": harness.Case(
        lambda: {
            "num_bits": K,
            "num_samples": N,
            "feature_size": D,
            "pseudo_similarity": {"num_clusters": 2},
            "hqt": hqt(),
            "seed": 0,
        },
        inputs=features,
        setup=assign_supervision,
        train_callbacks=refreshers,
        train_data=indexed_views,
    ),
    "DSAHHasher": harness.Case(
        lambda: {
            "num_bits": K,
            "num_samples": N,
            "feature_size": D,
            "hidden_units": 6,
            "neighbor_discovery": {"num_neighbors": 3, "num_shared_neighbors": 3},
            "hqt": hqt(),
            "seed": 0,
        },
        inputs=features,
        setup=assign_supervision,
        train_callbacks=refreshers,
        train_data=indexed_features,
    ),
    "UCSHHasher": harness.Case(
        lambda: {"num_bits": K, "num_samples": N, "feature_size": D, "num_clusters": 3, "decoder_units": [6],
                 "hqt": hqt(), "seed": 0},
        inputs=features,
        setup=assign_supervision,
        train_callbacks=refreshers,
        train_data=indexed_features,
    ),
    "HashGAN": harness.Case(
        {"num_bits": K, "architecture": "mnist", "noise_dim": 8, "seed": 0},
        inputs=lambda: (MNIST_IMAGES[:4],),
        train_data=indexed_images,
        compile_kwargs=gan_optimizers,
        # XLA compiles both GAN steps (15-50 s on 2 busy cores); test_hash_gan.py trains a jit step too
        jit_marks=(pytest.mark.slow,),
        atol=1e-5,
    ),
}

REGISTERED = harness.registered_classes()


def params(names):
    for name in sorted(names):
        case = CASES.get(name)
        yield pytest.param(name, marks=() if case is None else case.marks, id=name)


def training_params(names):
    for name in sorted(names):
        case = CASES[name]
        for jit_compile in (False, True):
            marks = (*case.marks, *case.train_marks, *(case.jit_marks if jit_compile else ()))
            yield pytest.param(
                name, jit_compile, marks=marks, id=f"{name}-{'jit' if jit_compile else 'eager'}"
            )


def case_of(name):
    if name not in CASES:
        pytest.fail(f"{name} is registered under '{harness.PREFIX}' but has no entry in CASES")
    case = CASES[name]
    if case.skip:
        pytest.skip(case.skip)
    return REGISTERED[name], case


def test_every_registered_class_has_a_case():
    missing = sorted(set(REGISTERED) - set(CASES))
    assert (
        not missing
    ), f"registered tfhash classes without an entry in tests/test_registered_classes.py: {missing}"


def test_every_case_is_a_registered_class():
    stale = sorted(set(CASES) - set(REGISTERED))
    assert not stale, f"entries of CASES that name no registered class: {stale}"


def test_the_base_layers_are_covered():
    # A guard against an import of the registry that missed the packages (the table would then look complete).
    expected = {"BiHalf", "BiHalfHasher", "HashGAN", "SimilarityPreservingLoss", "RandomResizedCrop"}
    assert expected <= set(REGISTERED)
    assert REGISTERED["BiHalf"] is layers.BiHalf


@pytest.mark.parametrize("name", params(REGISTERED))
def test_config_round_trip(name):
    harness.run_config_test(*case_of(name))


@pytest.mark.parametrize("name", params(REGISTERED))
def test_keras_file_round_trip(name, tmp_path):
    harness.run_keras_file_test(*case_of(name), tmp_path / f"{name}.keras")


TRAINABLE = [name for name, case in CASES.items() if case.train_data is not None]


@pytest.mark.parametrize("name, jit_compile", training_params(TRAINABLE))
def test_one_training_step(name, jit_compile):
    harness.run_training_test(*case_of(name), jit_compile=jit_compile)
