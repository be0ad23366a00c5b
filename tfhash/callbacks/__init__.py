"""Keras callbacks: retrieval evaluation during training and state refreshers (HQT pseudo bits)."""

from tfhash.callbacks.hqt_pseudo_bits import HQTPseudoBits
from tfhash.callbacks.retrieval_evaluation import RetrievalEvaluation

__all__ = ["HQTPseudoBits", "RetrievalEvaluation"]
