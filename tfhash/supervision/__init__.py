"""Supervision signals computed from features rather than labels (pseudo labels for unsupervised hashing)."""

from tfhash.supervision.adaptive_neighbor_discovery import AdaptiveNeighborDiscovery
from tfhash.supervision.cimon_pseudo_similarity import CIMONPseudoSimilarity, half_gaussian_confidence
from tfhash.supervision.hyper_quantization_tree import HyperQuantizationTree, binary_kmeans

__all__ = [
    "AdaptiveNeighborDiscovery",
    "CIMONPseudoSimilarity",
    "HyperQuantizationTree",
    "binary_kmeans",
    "half_gaussian_confidence",
]
