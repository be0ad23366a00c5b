"""Keras callbacks: retrieval evaluation during training (state refreshers join here with the methods)."""

from tfhash.callbacks.retrieval_evaluation import RetrievalEvaluation

__all__ = ["RetrievalEvaluation"]
