"""Keras callbacks: retrieval evaluation during training, and the refreshers of sample-indexed supervision.

- `SupervisionRefresher`: the base of the callbacks that write a model's label-free supervision (at the start
  of training when unassigned, optionally every n epochs, seeds derived from the epoch).
- `HQTPseudoBits`: HQT pseudo bits (`tfhash.supervision.HyperQuantizationTree`) into ``model.hqt``.
- `AdaptiveNeighborRefresher`: DSAH's neighbour similarity (W⁰, then Adaptive Neighbor Discovery rounds;
  `tfhash.supervision.AdaptiveNeighborDiscovery`) into a `tfhash.models.DSAHHasher`.
- `CIMONPseudoSimilarityRefresher`: CIMON's pseudo-similarity (`tfhash.supervision.CIMONPseudoSimilarity`)
  into a `tfhash.models.CIMONHasher`.
- `UCSHClusterRefresher`: UCSH's cluster codewords (K-means of the features, Hadamard rows) and similarity
  threshold into a `tfhash.models.UCSHHasher`.
- `RetrievalEvaluation`: mAP of the current codes every n epochs.

A model lists the refreshers it needs with ``model.supervision_refreshers(train_features)``.
"""

from tfhash.callbacks.adaptive_neighbor_refresher import AdaptiveNeighborRefresher
from tfhash.callbacks.cimon_pseudo_similarity_refresher import CIMONPseudoSimilarityRefresher
from tfhash.callbacks.hqt_pseudo_bits import HQTPseudoBits
from tfhash.callbacks.retrieval_evaluation import RetrievalEvaluation
from tfhash.callbacks.supervision_refresher import SupervisionRefresher
from tfhash.callbacks.ucsh_cluster_refresher import UCSHClusterRefresher

__all__ = [
    "AdaptiveNeighborRefresher",
    "CIMONPseudoSimilarityRefresher",
    "HQTPseudoBits",
    "RetrievalEvaluation",
    "SupervisionRefresher",
    "UCSHClusterRefresher",
]
