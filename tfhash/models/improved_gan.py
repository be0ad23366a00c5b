"""The Improved-GAN networks (Salimans et al. 2016) that HashGAN builds on, as Keras 3 Sequential models.

HashGAN (Ghasedi Dizaji et al., CVPR 2018, §4 "Implementation details") uses "almost similar architectures
to the Improved-GAN networks": strided convolutions instead of pooling, weight normalisation, ReLU /
leaky-ReLU, Gaussian noise of standard deviation 0.15 on the discriminator / encoder input, and a sigmoid or
tanh generator output matching the input range. The layer sizes below are those of Improved-GAN's released
feature-matching models (``train_mnist_feature_matching.py``, ``train_cifar_feature_matching.py``), with
HashGAN's input noise in place of Improved-GAN's (σ = 0.3 on MNIST, dropout 0.2 on CIFAR-10).

- ``"mnist"`` (images 28 × 28 × 1 in [0, 1]): generator z → Dense(500, softplus) → BN → Dense(500, softplus)
  → BN → WN-Dense(784, sigmoid); trunk x → noise(σ) → WN-Dense(1000) → noise(.5) → WN-Dense(500) → noise(.5)
  → WN-Dense(250) → noise(.5) → WN-Dense(250) → noise(.5) → WN-Dense(250), ReLU, F of width 250.
- ``"cifar10"`` (images 32 × 32 × 3 in [−1, 1]): generator z → Dense(4·4·512, ReLU) → BN → ConvT(256, 5, /2)
  → BN → ConvT(128, 5, /2) → BN → WN-ConvT(3, 5, /2, tanh); trunk x → noise(σ) → 2 × WN-Conv(96, 3) →
  WN-Conv(96, 3, /2) → dropout(.5) → 2 × WN-Conv(192, 3) → WN-Conv(192, 3, /2) → dropout(.5) →
  WN-Conv(192, 3, valid) → 2 × WN-Conv(192, 1) → global average, leaky-ReLU (0.2), F of width 192.

Batch normalisation in the generator has no scale (Improved-GAN's ``batch_norm(g=None)``) and follows the
layer's nonlinearity, with Keras's ε (1e-3). That differs from Improved-GAN's code, where ``nn.batch_norm`` takes
the layer's bias and nonlinearity: linear layer without bias → BN (ε 1e-6) → nonlinearity. Built that way here
(with this generator's data-dependent initialisation and trainable gain of its last layer, where Improved-GAN's
MNIST generator keeps that gain at 1), HashGAN's MNIST paper preset did not train: over 8 epochs (seed 0, 16 bits)
the discriminator's adversarial loss fell to 0.003 after the first epoch, feature matching grew from 944 to 2,904,
the codes stayed at probability 0.5, and mAP was 12.0 % against 38.8 % with the order kept here (2026-12-05).
The trunk is the part the discriminator and the encoder share; each adds its own weight-normalised last layer.
"""

import keras

from tfhash.layers import WeightNormConv2D, WeightNormConv2DTranspose, WeightNormDense

#: name -> (image shape, pixel range of the model's images and of the generator's output)
ARCHITECTURES = {
    "mnist": ((28, 28, 1), (0.0, 1.0)),
    "cifar10": ((32, 32, 3), (-1.0, 1.0)),
}


class _Seeds:
    """Distinct, reproducible seeds for the layers of one network (None stays None)."""

    def __init__(self, seed):
        self.seed, self.count = seed, 0

    def __call__(self):
        self.count += 1
        return None if self.seed is None else self.seed + self.count


def generator(architecture, input_size, seed=None):
    """The generator G: inputs ``(batch, input_size)`` (z′ ⊕ b′) → images in the architecture's range."""
    seeds = _Seeds(seed)
    image_shape, _ = ARCHITECTURES[architecture]
    if architecture == "mnist":
        layers = [
            keras.layers.Dense(500, activation="softplus", kernel_initializer=_glorot(seeds())),
            keras.layers.BatchNormalization(scale=False),
            keras.layers.Dense(500, activation="softplus", kernel_initializer=_glorot(seeds())),
            keras.layers.BatchNormalization(scale=False),
            WeightNormDense(28 * 28, activation="sigmoid", seed=seeds()),
            keras.layers.Reshape(image_shape),
        ]
    else:
        layers = [
            keras.layers.Dense(4 * 4 * 512, activation="relu", kernel_initializer=_normal(seeds())),
            keras.layers.BatchNormalization(scale=False),
            keras.layers.Reshape((4, 4, 512)),
        ]
        for filters in (256, 128):
            layers += [
                keras.layers.Conv2DTranspose(
                    filters,
                    5,
                    strides=2,
                    padding="same",
                    activation="relu",
                    kernel_initializer=_normal(seeds()),
                ),
                keras.layers.BatchNormalization(scale=False),
            ]
        layers.append(WeightNormConv2DTranspose(3, 5, strides=2, activation="tanh", seed=seeds()))
    return keras.Sequential([keras.Input((input_size,)), *layers], name="generator")


def trunk(architecture, input_noise_stddev, seed=None):
    """The layers D and E share: images → the last hidden features F (``feature_size(architecture)`` wide)."""
    seeds = _Seeds(seed)
    image_shape, _ = ARCHITECTURES[architecture]
    layers = [keras.layers.GaussianNoise(input_noise_stddev, seed=seeds())]
    if architecture == "mnist":
        layers.append(keras.layers.Flatten())
        for position, units in enumerate((1000, 500, 250, 250, 250)):
            if position:
                layers.append(keras.layers.GaussianNoise(0.5, seed=seeds()))
            layers.append(WeightNormDense(units, activation="relu", seed=seeds()))
    else:
        for filters in (96, 192):
            layers += [
                WeightNormConv2D(filters, 3, activation="leaky_relu", seed=seeds()),
                WeightNormConv2D(filters, 3, activation="leaky_relu", seed=seeds()),
                WeightNormConv2D(filters, 3, strides=2, activation="leaky_relu", seed=seeds()),
                keras.layers.Dropout(0.5, seed=seeds()),
            ]
        layers += [
            WeightNormConv2D(192, 3, padding="valid", activation="leaky_relu", seed=seeds()),
            WeightNormConv2D(192, 1, activation="leaky_relu", seed=seeds()),
            WeightNormConv2D(192, 1, activation="leaky_relu", seed=seeds()),
            keras.layers.GlobalAveragePooling2D(),
        ]
    return keras.Sequential([keras.Input(image_shape), *layers], name="trunk")


def feature_size(architecture):
    """Width of the shared last hidden layer F."""
    return {"mnist": 250, "cifar10": 192}[architecture]


def _glorot(seed):
    return keras.initializers.GlorotUniform(seed=seed)


def _normal(seed):
    # Improved-GAN's CIFAR-10 generator: W ~ Normal(0, 0.05).
    return keras.initializers.RandomNormal(stddev=0.05, seed=seed)
