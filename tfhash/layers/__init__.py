"""Binarizers: layers that map a hash head's continuous output to binary codes; weight-normalised blocks.

- `SignSTE`: sign with a straight-through gradient (GreedyHash).
- `BiHalf`: per-bit half/half ranking over the batch with a pull term in the gradient (Bi-half).
- `StochasticBinary`: Bernoulli sampling of sigmoid probabilities with a straight-through gradient (CIBHash).
- `BinaryLatentVAE`: variational autoencoder with ±1 latent codes and its negative ELBO (UCSH).
- `ConsistencyTransform`: random translation, flip and noise inside a training step (HashGAN's consistent bits).
- `WeightNormDense`: fully connected layer with weight normalisation w = g v / ||v|| (Improved-GAN / HashGAN).
- `WeightNormConv2D`: 2-D convolution with weight normalisation per filter (Improved-GAN / HashGAN).
- `WeightNormConv2DTranspose`: transposed 2-D convolution with weight normalisation (Improved-GAN generator).
"""

from tfhash.layers.bi_half import BiHalf
from tfhash.layers.binary_latent_vae import BinaryLatentVAE
from tfhash.layers.consistency_transform import ConsistencyTransform
from tfhash.layers.sign_ste import SignSTE
from tfhash.layers.stochastic_binary import StochasticBinary
from tfhash.layers.weight_norm_conv2d import WeightNormConv2D
from tfhash.layers.weight_norm_conv2d_transpose import WeightNormConv2DTranspose
from tfhash.layers.weight_norm_dense import WeightNormDense

__all__ = [
    "BiHalf",
    "BinaryLatentVAE",
    "ConsistencyTransform",
    "SignSTE",
    "StochasticBinary",
    "WeightNormConv2D",
    "WeightNormConv2DTranspose",
    "WeightNormDense",
]
