"""Losses: pure functions of a batch and Keras `Loss` wrappers (each method's losses join here).

`tfhash.losses.hashgan` holds HashGAN's terms (Eq. 2–5) as functions.
"""

from tfhash.losses import hashgan  # noqa: F401
from tfhash.losses.bernoulli_kl import symmetric_bernoulli_kl
from tfhash.losses.nt_xent import NTXentLoss, nt_xent_loss
from tfhash.losses.similarity_preserving import SimilarityPreservingLoss, cosine_similarity_matrix

__all__ = [
    "NTXentLoss",
    "SimilarityPreservingLoss",
    "cosine_similarity_matrix",
    "nt_xent_loss",
    "symmetric_bernoulli_kl",
]
