"""The Improved-GAN networks of HashGAN: shapes and ranges, weight-normalised layers, seeded determinism."""

import keras
import numpy as np
import pytest

from tfhash.layers import WeightNormConv2D, WeightNormConv2DTranspose, WeightNormDense
from tfhash.models import improved_gan

INPUT = 12  # z′ ⊕ b′


def count(network, layer_class):
    return sum(type(layer) is layer_class for layer in network.layers)


def weights_of(network):
    return [w.numpy() for w in network.weights]


@pytest.mark.parametrize("architecture", ["mnist", "cifar10"])
def test_generator_shapes_and_output_range(architecture):
    image_shape, (low, high) = improved_gan.ARCHITECTURES[architecture]
    generator = improved_gan.generator(architecture, INPUT, seed=0)
    assert generator.input_shape == (None, INPUT) and generator.output_shape == (None, *image_shape)
    z = np.random.default_rng(0).uniform(-3, 3, size=(3, INPUT)).astype("float32")
    images = generator(z, training=False).numpy()
    assert images.shape == (3, *image_shape)
    assert images.min() >= low and images.max() <= high


@pytest.mark.parametrize("architecture", ["mnist", "cifar10"])
def test_trunk_shapes(architecture):
    image_shape, _ = improved_gan.ARCHITECTURES[architecture]
    trunk = improved_gan.trunk(architecture, input_noise_stddev=0.15, seed=0)
    width = improved_gan.feature_size(architecture)
    assert trunk.input_shape == (None, *image_shape) and trunk.output_shape == (None, width)
    features = trunk(np.zeros((2, *image_shape), "float32"), training=True).numpy()
    assert features.shape == (2, width) and np.isfinite(features).all()
    assert improved_gan.feature_size("mnist") == 250 and improved_gan.feature_size("cifar10") == 192


def test_mnist_layers():
    generator = improved_gan.generator("mnist", INPUT, seed=0)
    dense = [layer for layer in generator.layers if type(layer) is keras.layers.Dense]
    assert [layer.units for layer in dense] == [500, 500] and count(generator, WeightNormDense) == 1
    assert all(
        not layer.scale for layer in generator.layers if isinstance(layer, keras.layers.BatchNormalization)
    )
    trunk = improved_gan.trunk("mnist", input_noise_stddev=0.3, seed=0)
    weight_norm = [layer for layer in trunk.layers if isinstance(layer, WeightNormDense)]
    assert [layer.units for layer in weight_norm] == [1000, 500, 250, 250, 250]
    noise = [layer.stddev for layer in trunk.layers if isinstance(layer, keras.layers.GaussianNoise)]
    assert noise == [0.3, 0.5, 0.5, 0.5, 0.5]  # the input noise, then 0.5 between the hidden layers


def test_mnist_generator_normalises_after_the_nonlinearity():
    # The order documented in the module (kept because Improved-GAN's BN-before-softplus did not train HashGAN
    # here): softplus(z W + c), normalised by the batch with Keras's ε 1e-3 and shifted, twice; then the
    # weight-normalised sigmoid layer.
    generator = improved_gan.generator("mnist", INPUT, seed=0)
    rng = np.random.default_rng(1)
    for variable in generator.trainable_variables:  # non-trivial biases, shifts and gains
        variable.assign(variable.numpy() + rng.normal(0.0, 0.1, variable.shape).astype("float32"))
    z = rng.uniform(0, 1, size=(16, INPUT))
    dense = [layer for layer in generator.layers if type(layer) is keras.layers.Dense]
    norms = [layer for layer in generator.layers if isinstance(layer, keras.layers.BatchNormalization)]
    x = z
    for layer, norm in zip(dense, norms):
        h = np.logaddexp(0.0, x @ layer.kernel.numpy() + layer.bias.numpy())
        centred = h - h.mean(axis=0)
        x = centred / np.sqrt((centred**2).mean(axis=0) + 1e-3) + norm.beta.numpy()
    last = next(layer for layer in generator.layers if isinstance(layer, WeightNormDense))
    kernel = last.kernel.numpy()
    logits = x @ (kernel / np.linalg.norm(kernel, axis=0) * last.g.numpy()) + last.bias.numpy()
    expected = (1 / (1 + np.exp(-logits))).reshape(-1, 28, 28, 1)
    np.testing.assert_allclose(generator(z.astype("float32"), training=True).numpy(), expected, atol=2e-5)


def test_cifar10_layers():
    generator = improved_gan.generator("cifar10", INPUT, seed=0)
    transposed = [layer for layer in generator.layers if type(layer) is keras.layers.Conv2DTranspose]
    assert [layer.filters for layer in transposed] == [256, 128]
    assert count(generator, WeightNormConv2DTranspose) == 1
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in generator.layers) == 3
    assert all(
        not layer.scale for layer in generator.layers if isinstance(layer, keras.layers.BatchNormalization)
    )
    trunk = improved_gan.trunk("cifar10", input_noise_stddev=0.15, seed=0)
    convolutions = [layer for layer in trunk.layers if isinstance(layer, WeightNormConv2D)]
    assert [layer.filters for layer in convolutions] == [96, 96, 96, 192, 192, 192, 192, 192, 192]
    assert [layer.strides for layer in convolutions].count((2, 2)) == 2
    assert [layer.rate for layer in trunk.layers if isinstance(layer, keras.layers.Dropout)] == [0.5, 0.5]
    assert isinstance(trunk.layers[0], keras.layers.GaussianNoise) and trunk.layers[0].stddev == 0.15


@pytest.mark.parametrize("architecture", ["mnist", "cifar10"])
def test_the_same_seed_builds_the_same_networks(architecture):
    image_shape, _ = improved_gan.ARCHITECTURES[architecture]
    images = np.random.default_rng(1).uniform(size=(2, *image_shape)).astype("float32")
    z = np.random.default_rng(2).uniform(size=(2, INPUT)).astype("float32")
    first, second, other = (
        (improved_gan.generator(architecture, INPUT, seed=s), improved_gan.trunk(architecture, 0.15, seed=s))
        for s in (3, 3, 4)
    )
    for a, b in zip(
        weights_of(first[0]) + weights_of(first[1]), weights_of(second[0]) + weights_of(second[1])
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first[0](z).numpy(), second[0](z).numpy())
    # The trunk's noise and dropout layers draw from their own seeds: training outputs repeat too.
    np.testing.assert_array_equal(
        first[1](images, training=True).numpy(), second[1](images, training=True).numpy()
    )
    assert not np.array_equal(first[0](z).numpy(), other[0](z).numpy())
    assert not np.array_equal(first[1](images).numpy(), other[1](images).numpy())


def test_layers_of_one_network_get_distinct_seeds():
    trunk = improved_gan.trunk("mnist", 0.15, seed=0)
    seeds = [layer.seed for layer in trunk.layers if getattr(layer, "seed", None) is not None]
    assert len(seeds) == len(set(seeds)) == 10  # 5 noise layers and 5 weight-normalised layers
