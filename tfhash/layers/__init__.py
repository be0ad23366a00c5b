"""Binarizers: layers that map a hash head's continuous output to binary codes.

- `SignSTE`: sign with a straight-through gradient (GreedyHash).
- `BiHalf`: per-bit half/half ranking over the batch with a pull term in the gradient (Bi-half).
- `StochasticBinary`: Bernoulli sampling of sigmoid probabilities with a straight-through gradient (CIBHash).
"""

from tfhash.layers.bi_half import BiHalf
from tfhash.layers.sign_ste import SignSTE
from tfhash.layers.stochastic_binary import StochasticBinary

__all__ = ["BiHalf", "SignSTE", "StochasticBinary"]
