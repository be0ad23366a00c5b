"""Losses: pure functions of a batch and Keras `Loss` wrappers (each method's losses join here)."""

from tfhash.losses.similarity_preserving import SimilarityPreservingLoss, cosine_similarity_matrix

__all__ = ["SimilarityPreservingLoss", "cosine_similarity_matrix"]
