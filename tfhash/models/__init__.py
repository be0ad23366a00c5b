"""Hashing models: one subclassed `keras.Model` per method on the shared `Hasher` base, and the HQT regulariser.

- `BiHalfHasher` (Bi-half), `GreedyHasher` (GreedyHash), `CIBHasher` (CIBHash), `CIMONHasher` (CIMON),
  `DSAHHasher` (DSAH), `UCSHHasher` (UCSH).
- `HashGAN`: generative adversarial hashing trained from scratch on images (its own G / D / E and step).
- `HQTRegularizer`: the Hyper-Quantization-Tree BCE term any of them takes as ``hqt=``.
- `HashingModel`: the base of `Hasher` and `HashGAN` (``num_bits``, ``encode``, ``predict``, loss trackers,
  ``serving_interface()`` and ``export``).
- `get(name, **config)`: a model by name (`NAMES`: "bihalf", "greedyhash", "cibhash", "cimon", "dsah", "ucsh", "hashgan").
"""

from tfhash.models.bi_half_hasher import BiHalfHasher
from tfhash.models.cib_hasher import CIBHasher
from tfhash.models.cimon_hasher import CIMONHasher
from tfhash.models.dsah_hasher import DSAHHasher
from tfhash.models.factory import NAMES, get, get_class
from tfhash.models.greedy_hasher import GreedyHasher
from tfhash.models.hash_gan import HashGAN
from tfhash.models.hasher import Hasher
from tfhash.models.hashing_model import HashingModel
from tfhash.models.hqt_regularizer import HQTRegularizer
from tfhash.models.ucsh_hasher import UCSHHasher

__all__ = [
    "BiHalfHasher",
    "CIBHasher",
    "CIMONHasher",
    "DSAHHasher",
    "GreedyHasher",
    "HashGAN",
    "Hasher",
    "HashingModel",
    "HQTRegularizer",
    "UCSHHasher",
    "NAMES",
    "get",
    "get_class",
]
