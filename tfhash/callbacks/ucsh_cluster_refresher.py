"""Keras callback that clusters the training features (K-means) and fits UCSH's similarity threshold."""

import time

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans

from tfhash._validation import check_int
from tfhash.callbacks.supervision_refresher import SupervisionRefresher
from tfhash.supervision.similarity_threshold import ucsh_similarity_threshold_from_features

#: K-means restarts per refresh (sklearn's ``n_init``), the best inertia kept
N_INIT = 10


class UCSHClusterRefresher(SupervisionRefresher):
    """Writes UCSH's cluster targets and similarity threshold into a `tfhash.models.UCSHHasher`.

    A `SupervisionRefresher`: at the start of training, when the model holds no state yet (or with
    ``refit_on_train_begin=True``), and after every n-th epoch with ``every_n_epochs=n`` (the paper clusters
    "during each iteration"), it

    1. clusters the current training features into ``num_clusters`` clusters with K-means (sklearn ``KMeans``,
       ``n_init=10``, ``random_state = seed + refresh_index(epoch)``, so a run resumed with a new callback
       redraws exactly as the uninterrupted one), giving each sample's cluster C(x_i) (Eq. 5); skipped for a
       model without the clustering loss (``use_clustering=False``);
    2. fits the similarity threshold ``s_t = 1 − 2·d_t``, ``d_t = m₁ − 2σ₁`` of the half-Gaussian fit of the
       features' cosine distances (`tfhash.supervision.ucsh_similarity_threshold_from_features`, over
       ``max_pairs`` random pairs drawn with the same seed; text of Eq. 6);
    3. writes both with ``model.assign_clusters(cluster_ids, s_t)``: the model's cluster targets are the
       Hadamard codewords of the ids (`tfhash.supervision.hadamard_codebook`, Eq. 4).

    K-means numbers its clusters arbitrarily, so a redraw of the same partition would give every cluster
    another codeword and every code a new target. With ``match_previous=True`` (the default) a refresh into a
    model that already holds cluster targets renumbers the new clusters to overlap the model's current ones
    as much as possible (the Hungarian assignment on the clusters' contingency table): an unchanged partition
    keeps its codewords, and only samples that changed cluster get a new target. The paper does not say how
    it numbers the clusters of later iterations. The first assignment keeps K-means' own numbering. Since the
    previous ids are read from the model's state, a resumed run matches exactly as the uninterrupted one.

    Every refresh appends one entry to `log` (and prints it as one line with ``verbose=1``): the epoch, the
    round (``refresh_index(epoch)``), the similarity and distance thresholds, the smallest and largest
    cluster sizes (None without clustering), the number of samples whose cluster changed (None at the first
    assignment), and the seconds it took.

    `tfhash.models.UCSHHasher.supervision_refreshers` builds this callback from the model's configuration.

    Args:
        features: (n, D) training features in sample-index order (the deep features x the model hashes: the
            backbone's, e.g. ``bank.train[0, 0]``), or a callable ``model -> features`` called at each refresh
            (with a fine-tuned backbone the clusters then follow the current features).
        num_clusters: int >= 1, the number of K-means clusters N (the model's ``num_clusters``; paper 10 on
            CIFAR-10, 30 on NUS-WIDE and MIRFLICKR-25K). At most the number of training samples.
        seed: int >= 0, the seed of the first refresh's K-means and pair sample; refresh r uses ``seed + r``.
        every_n_epochs: None (once) or int >= 1, refresh after every n-th epoch.
        refit_on_train_begin: bool, refresh at the start of training even if the model holds a state.
        max_pairs: None (all n(n − 1)/2 pairs) or int >= 1, the random pairs of the threshold's fit.
        verbose: 0 silent, 1 one line per refresh.
        match_previous: bool, renumber new clusters to match the model's current ones (see above).

    Attributes:
        log: list of dicts, one per refresh (see above).

    Example:

    >>> model = UCSHHasher(64, num_samples=len(split.train), feature_size=bank.feature_size, seed=0)
    >>> refresher = UCSHClusterRefresher(bank.train[0, 0], num_clusters=10, seed=0, verbose=1)
    >>> model.fit(bank.training_dataset(24, epochs=50), epochs=50, callbacks=[refresher])
    >>> refresher.log[-1]["similarity_threshold"], refresher.log[-1]["max_cluster_size"]

    Reference:
        Zhang et al., "Clustering and Separating Similarities for Deep Unsupervised Hashing" (UCSH), Sec. 2.4:
        K-means classes C of the deep features (Eq. 5), the Hadamard codewords (Eq. 4), the threshold s_t of
        the separating loss "updated adaptively during each iteration" (Eq. 6); the half-Gaussians follow
        Yang et al., SSDH, IJCAI 2018.
    """

    def __init__(self, features, num_clusters, seed=0, every_n_epochs=None, refit_on_train_begin=False,
                 max_pairs=200_000, verbose=0, match_previous=True):
        super().__init__(features, every_n_epochs=every_n_epochs, refit_on_train_begin=refit_on_train_begin,
                         verbose=verbose)
        self.num_clusters = check_int(num_clusters, "num_clusters", minimum=1)
        self.seed = check_int(seed, "seed", minimum=0)
        self.max_pairs = check_int(max_pairs, "max_pairs", minimum=1, allow_none=True)
        if not isinstance(match_previous, bool):
            raise ValueError(f"`match_previous` must be a bool, got {match_previous!r}.")
        self.match_previous = match_previous
        self.log = []

    def check(self, model):
        if not hasattr(model, "assign_clusters") or not hasattr(model, "supervision_is_assigned"):
            raise ValueError(
                f"UCSHClusterRefresher needs a tfhash.models.UCSHHasher, got {type(model).__name__}."
            )
        if self.num_clusters != model.num_clusters:
            raise ValueError(
                f"UCSHClusterRefresher has num_clusters={self.num_clusters}, but the model has num_clusters="
                f"{model.num_clusters} (its Hadamard codebook): build the refresher with the model's "
                "(model.supervision_refreshers(train_features))."
            )

    def is_assigned(self, model):
        self.check(model)
        return model.supervision_is_assigned()

    def seed_for(self, epoch):
        """The seed of the K-means and of the threshold's pair sample of the state used from ``epoch`` on."""
        return self.seed + self.refresh_index(epoch)

    def cluster(self, features, epoch):
        """K-means cluster ids (n,) of ``features`` for ``epoch``: sklearn ``KMeans(num_clusters, n_init=10,
        random_state=seed_for(epoch))``, numbered as K-means numbers them."""
        kmeans = KMeans(n_clusters=self.num_clusters, n_init=N_INIT, random_state=self.seed_for(epoch))
        return kmeans.fit_predict(features).astype(np.int64)

    def refresh(self, model, epoch):
        """Clusters the current features, fits s_t, and assigns both to ``model``; logs the refresh."""
        self.check(model)
        started = time.perf_counter()
        features = np.asarray(self.current_features(model))
        if features.ndim != 2:
            raise ValueError(f"`features` must be an (n, D) array, got shape {features.shape}.")
        n = len(features)
        if self.num_clusters > n:
            raise ValueError(
                f"num_clusters={self.num_clusters} is larger than the training set ({n} feature rows): "
                "K-means cannot make more clusters than samples (the paper's N must be at most n)."
            )
        if n != model.num_samples:
            raise ValueError(f"`features` has {n} rows; the model has num_samples={model.num_samples}.")
        seed = self.seed_for(epoch)
        entry = {"epoch": int(epoch), "round": self.refresh_index(epoch)}
        cluster_ids, changed = None, None
        if model.use_clustering:
            cluster_ids = self.cluster(features, epoch)
            if self.match_previous and model.supervision_is_assigned():
                previous = model.assigned_cluster_ids()
                cluster_ids = match_clusters(cluster_ids, previous, self.num_clusters)
                changed = int(np.sum(cluster_ids != previous))
        threshold = ucsh_similarity_threshold_from_features(features, max_pairs=self.max_pairs, seed=seed)
        model.assign_clusters(cluster_ids, threshold["similarity_threshold"])
        sizes = None if cluster_ids is None else np.bincount(cluster_ids, minlength=self.num_clusters)
        entry.update({
            "similarity_threshold": float(threshold["similarity_threshold"]),
            "distance_threshold": float(threshold["distance_threshold"]),
            "min_cluster_size": None if sizes is None else int(sizes.min()),
            "max_cluster_size": None if sizes is None else int(sizes.max()),
            "changed": changed,
            "seconds": round(time.perf_counter() - started, 2),
        })
        self.log.append(entry)
        if self.verbose:
            print(_describe(entry, self.num_clusters), flush=True)


def match_clusters(cluster_ids, previous, num_clusters):
    """``cluster_ids`` renumbered so that cluster c overlaps ``previous`` cluster c as much as possible.

    The one-to-one renumbering maximising the number of samples that keep their id (the Hungarian assignment
    on the (num_clusters, num_clusters) contingency table; ties go to scipy's ``linear_sum_assignment``).

    Args:
        cluster_ids, previous: int arrays (n,) of ids in [0, num_clusters).
        num_clusters: int, the number of clusters.

    Returns:
        int64 array (n,): the same partition as ``cluster_ids``, renumbered.
    """
    contingency = np.zeros((num_clusters, num_clusters), np.int64)
    np.add.at(contingency, (cluster_ids, previous), 1)
    new, old = linear_sum_assignment(contingency, maximize=True)
    renumber = np.empty(num_clusters, np.int64)
    renumber[new] = old
    return renumber[cluster_ids]


def _describe(entry, num_clusters):
    """One plain line of a log entry."""
    text = (
        f"UCSHClusterRefresher: round {entry['round']} at epoch {entry['epoch']}: similarity threshold s_t = "
        f"{entry['similarity_threshold']:.4f} (d_t = {entry['distance_threshold']:.4f})"
    )
    if entry["min_cluster_size"] is not None:
        text += (
            f"; {num_clusters} clusters of {entry['min_cluster_size']} to {entry['max_cluster_size']} samples"
        )
    if entry["changed"] is not None:
        text += f", {entry['changed']} samples changed cluster"
    return text + f" ({entry['seconds']:.1f} s)"
