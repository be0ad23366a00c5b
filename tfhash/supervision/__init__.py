"""Supervision signals computed from features rather than labels (pseudo labels for unsupervised hashing)."""

from tfhash.supervision.hyper_quantization_tree import HyperQuantizationTree, binary_kmeans

__all__ = ["HyperQuantizationTree", "binary_kmeans"]
