"""Retrieval evaluation and code statistics as TensorFlow ops.

Retrieval metrics rank a database by Hamming distance to each query; see `tfhash.metrics.retrieval` for the
relevance, AP@k and tie conventions (``ties="average"`` and ``ties="stable"``) and the memory bound.
`retrieval_report` gathers the figures the recipes report into one dict.

Codes are ±1 matrices (any real dtype), bool bit matrices, or packed uint8 codes (`tfhash.codes.pack_codes`):
a uint8 matrix is always read as packed bytes. {0, 1} bits are refused, in a uint8 matrix too (whose 0/1 bytes
could be either): pass bits as bool or as ±1 (``2 * bits - 1``).
"""

from tfhash.metrics.clustering import (
    clustering_accuracy,
    kmeans_code_clustering,
    normalized_mutual_information,
)
from tfhash.metrics.code_statistics import (
    bit_balance,
    bit_correlation,
    bit_entropy,
    correlation_ratio,
    entropy_ratio,
    fisher_score,
    mean_bit_correlation,
)
from tfhash.metrics.hamming import hamming_distance
from tfhash.metrics.report import retrieval_report
from tfhash.metrics.retrieval import (
    TIE_RULES,
    average_precision,
    distance_histograms,
    mean_average_precision,
    precision_at_n,
    precision_recall_by_radius,
    precision_recall_by_rank,
    precision_within_radius,
)

__all__ = [
    "TIE_RULES",
    "average_precision",
    "bit_balance",
    "bit_correlation",
    "bit_entropy",
    "clustering_accuracy",
    "correlation_ratio",
    "distance_histograms",
    "entropy_ratio",
    "fisher_score",
    "hamming_distance",
    "kmeans_code_clustering",
    "mean_average_precision",
    "mean_bit_correlation",
    "normalized_mutual_information",
    "precision_at_n",
    "precision_recall_by_radius",
    "precision_recall_by_rank",
    "precision_within_radius",
    "retrieval_report",
]
