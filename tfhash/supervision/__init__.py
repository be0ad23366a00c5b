"""Supervision signals computed from features rather than labels (pseudo labels for unsupervised hashing)."""

from tfhash.supervision.adaptive_neighbor_discovery import AdaptiveNeighborDiscovery
from tfhash.supervision.cimon_pseudo_similarity import CIMONPseudoSimilarity, half_gaussian_confidence
from tfhash.supervision.hadamard_codebook import hadamard_codebook
from tfhash.supervision.hyper_quantization_tree import HyperQuantizationTree, binary_kmeans
from tfhash.supervision.similarity_threshold import (
    cosine_distances,
    half_gaussian_fit,
    ucsh_similarity_threshold,
    ucsh_similarity_threshold_from_features,
)

__all__ = [
    "AdaptiveNeighborDiscovery",
    "CIMONPseudoSimilarity",
    "HyperQuantizationTree",
    "binary_kmeans",
    "cosine_distances",
    "hadamard_codebook",
    "half_gaussian_confidence",
    "half_gaussian_fit",
    "ucsh_similarity_threshold",
    "ucsh_similarity_threshold_from_features",
]
