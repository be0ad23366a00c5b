"""Keras callback that fits CIMON's pseudo-similarity on training features and writes it into a CIMONHasher."""

import numpy as np

from tfhash.callbacks.supervision_refresher import SupervisionRefresher
from tfhash.supervision.cimon_pseudo_similarity import CIMONPseudoSimilarity


class CIMONPseudoSimilarityRefresher(SupervisionRefresher):
    """Fits a `CIMONPseudoSimilarity` on training features and assigns it to a `tfhash.models.CIMONHasher`.

    A `SupervisionRefresher`: at the start of training (unless the model already holds a pseudo-similarity,
    or with ``refit_on_train_begin=True``) the pseudo-similarity is fitted on ``features`` and written with
    ``model.assign_pseudo_similarity``; with ``every_n_epochs=n`` it is refitted after every n-th epoch (useful
    with a callable ``features`` that follows a fine-tuned backbone), the spectral clustering then seeded
    ``pseudo_similarity.seed + e // n`` for the state used from epoch ``e`` on (so a resumed run refits as an
    uninterrupted one).

    For a model with ``per_view_similarity=True`` the features are a pair ``(weak_view_features,
    strong_view_features)`` of the same samples in the same order, and one pseudo-similarity is fitted on each
    (the released code's setting); otherwise one (n, D) array.

    `tfhash.models.CIMONHasher.supervision_refreshers` builds this callback from the model's own
    ``pseudo_similarity`` settings; it is the template of the refreshers of later methods (a configuration
    object, the features, and the model's assign method).

    Args:
        pseudo_similarity: an unfitted `CIMONPseudoSimilarity` giving the settings and the first seed (it is
            not modified: each refresh fits a copy).
        features: (n, D) array of the training set's features in sample-index order, a pair of them
            (``per_view_similarity=True``), or a callable ``model -> either``.
        every_n_epochs: None (fit once) or int >= 1, refit after every n-th epoch.
        refit_on_train_begin: bool, fit at the start of training even if the model already holds a state.
        verbose: 1 prints one line per fit.

    Example:

    >>> model = CIMONHasher(64, num_samples=len(split.train), feature_size=bank.feature_size, seed=0)
    >>> refresher = CIMONPseudoSimilarityRefresher(CIMONPseudoSimilarity(num_clusters=70, seed=0),
    ...                                            bank.train[0, 0])
    >>> model.fit(bank.training_dataset(batch_size=24, epochs=150), epochs=150, callbacks=[refresher])
    >>> # the same, built from the model's configuration:
    >>> model.fit(..., callbacks=model.supervision_refreshers(bank.train[0, 0]))

    Reference:
        Luo et al., "CIMON: Towards High-quality Hash Codes", IJCAI 2021 (the pseudo-similarity and its
        confidence are computed once from the training features before training); released code cimon.py /
        run.py (``generate_similarity_weight_matrix``, fitted per view).
    """

    def __init__(self, pseudo_similarity, features, every_n_epochs=None, refit_on_train_begin=False, verbose=0):
        if not isinstance(pseudo_similarity, CIMONPseudoSimilarity):
            raise ValueError(
                "`pseudo_similarity` must be a tfhash.supervision.CIMONPseudoSimilarity, got "
                f"{pseudo_similarity!r}."
            )
        super().__init__(
            features, every_n_epochs=every_n_epochs, refit_on_train_begin=refit_on_train_begin, verbose=verbose
        )
        self.pseudo_similarity = pseudo_similarity

    def similarity_for(self, epoch):
        """An unfitted copy of ``pseudo_similarity`` seeded ``seed + refresh_index(epoch)``."""
        config = self.pseudo_similarity.get_config()
        return CIMONPseudoSimilarity(**{**config, "seed": config["seed"] + self.refresh_index(epoch)})

    def check(self, model):
        if not hasattr(model, "assign_pseudo_similarity") or not hasattr(model, "pseudo_similarity_assigned"):
            raise ValueError(
                f"CIMONPseudoSimilarityRefresher needs a tfhash.models.CIMONHasher, got {type(model).__name__}."
            )

    def is_assigned(self, model):
        self.check(model)
        return float(np.asarray(model.pseudo_similarity_assigned.numpy())) == 1.0

    def refresh(self, model, epoch):
        """Fits the pseudo-similarity for ``epoch`` on the features and assigns it to ``model``."""
        self.check(model)
        features = self.current_features(model)
        pair = isinstance(features, (tuple, list))
        if model.per_view_similarity and not (pair and len(features) == 2):
            raise ValueError(
                "This CIMONHasher has per_view_similarity=True: the features must be a pair "
                "(weak_view_features, strong_view_features) of the training samples, one pseudo-similarity "
                "each."
            )
        if not model.per_view_similarity and pair:
            raise ValueError(
                "This CIMONHasher shares one pseudo-similarity (per_view_similarity=False): the features must "
                f"be one (n, D) array, got {len(features)} arrays."
            )
        fitted = [self.similarity_for(epoch).fit(part) for part in (features if pair else [features])]
        model.assign_pseudo_similarity(*fitted[:1], **({"second_view": fitted[1]} if pair else {}))
        if self.verbose:
            print(
                f"CIMONPseudoSimilarityRefresher: pseudo-similarity fitted on {len(fitted[0].features_)} "
                f"training features (clustering seed {fitted[0].seed})."
            )
