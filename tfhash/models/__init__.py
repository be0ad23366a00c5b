"""Hashing models: one subclassed `keras.Model` per method on the shared `Hasher` base, and the HQT regulariser.

- `BiHalfHasher` (Bi-half), `GreedyHasher` (GreedyHash), `CIBHasher` (CIBHash), `CIMONHasher` (CIMON).
- `HQTRegularizer`: the Hyper-Quantization-Tree BCE term any of them takes as ``hqt=``.
"""

from tfhash.models.bi_half_hasher import BiHalfHasher
from tfhash.models.cib_hasher import CIBHasher
from tfhash.models.cimon_hasher import CIMONHasher
from tfhash.models.greedy_hasher import GreedyHasher
from tfhash.models.hasher import Hasher
from tfhash.models.hqt_regularizer import HQTRegularizer

__all__ = ["BiHalfHasher", "CIBHasher", "CIMONHasher", "GreedyHasher", "Hasher", "HQTRegularizer"]
