"""CIMON: similarity-preserving tanh codes of two views under a confidence-weighted pseudo-similarity."""

import math

import keras
import numpy as np
import tensorflow as tf

from tfhash import batches
from tfhash._validation import check_builder_settings, check_int, check_number
from tfhash.callbacks.cimon_pseudo_similarity_refresher import CIMONPseudoSimilarityRefresher
from tfhash.losses.nt_xent import nt_xent_loss
from tfhash.models.hasher import Hasher
from tfhash.supervision.cimon_pseudo_similarity import CIMONPseudoSimilarity

_TWO_VIEWS = (
    "CIMONHasher trains on two augmented views of every sample (weak and strong): the data must yield "
    "{{'inputs': (weak_view, strong_view), 'sample_index': i}} batches (a FeatureBank built with a pair of "
    "augmentations, or tfhash.data.training_dataset with augment=(weak, strong)); got {}."
)
_NEEDS_INDEX = (
    "CIMONHasher gathers its pseudo-similarity by sample index: the data must yield "
    "{'inputs': (weak_view, strong_view), 'sample_index': i} batches."
)
_NOT_ASSIGNED = (
    "CIMONHasher has no pseudo-similarity yet: train with `callbacks=model.supervision_refreshers(train_features)` "
    "(a `tfhash.callbacks.CIMONPseudoSimilarityRefresher`), or assign it before training with "
    "`model.assign_pseudo_similarity(CIMONPseudoSimilarity().fit(train_features))`."
)
_OUT_OF_RANGE = (
    "CIMONHasher: a sample index is outside [0, num_samples) with num_samples={}: the data's 'sample_index' "
    "must be positions in the training set the pseudo-similarity was fitted on."
)
# CIMONPseudoSimilarity arguments that `pseudo_similarity=` may set.
_PSEUDO_SIMILARITY_KEYS = ("distance_threshold", "alpha", "beta", "num_clusters", "eigen_solver", "seed")
# columns of the `similarity_statistics` weight, one row per target set
_THRESHOLD, _MODE, _LEFT_SCALE, _RIGHT_SCALE = range(4)
_FLOAT32_INTEGERS = 2**24  # cluster ids are stored as float32, exact below this


@keras.saving.register_keras_serializable(package="tfhash")
class CIMONHasher(Hasher):
    """CIMON: features → Dense(K) → tanh → codes ``v``; a pseudo-similarity loss on two views + 0.3·NT-Xent.

    Each training sample comes as two augmented views (weak, strong) with its index in the training set:
    batches ``{"inputs": (weak, strong), "sample_index": i}`` (`tfhash.batches`). The pseudo-similarity S
    (±1) and its confidence W = W1·W2 (`tfhash.supervision.CIMONPseudoSimilarity`, settings in
    ``pseudo_similarity``) are computed once from training features, before training, by the
    `tfhash.callbacks.CIMONPseudoSimilarityRefresher` that `supervision_refreshers` builds (or by hand with
    `assign_pseudo_similarity`). With ``H⁽ᵃ⁾ =
    v⁽ᵃ⁾v⁽ᵃ⁾ᵀ/K`` the code inner products of view a within the batch (B × B), the loss is

        ``L = Σ_{a ∈ {weak, strong}} Σ_{t ∈ {1, 2}} (1/B²) Σ_ij W⁽ᵗ⁾_ij |S⁽ᵗ⁾_ij| (H⁽ᵃ⁾_ij − S⁽ᵗ⁾_ij)²``
        ``      + contrastive_weight · NT-Xent(v⁽ʷᵉᵃᵏ⁾, v⁽ˢᵗʳᵒⁿᵍ⁾; τ)``

    (``|S| = 1``, kept from the formula). ``H`` pairs codes of the same view; the two target sets ``t`` are
    one shared pseudo-similarity by default (``per_view_similarity=False``), so the first sum is then twice
    that of the two views; with ``per_view_similarity=True`` set t is fitted on view t's features. Each
    combination is a mean over all B² pairs of the batch, diagonal included. NT-Xent
    (`tfhash.losses.nt_xent_loss`) compares the cosines of the two views' tanh outputs. Codes for retrieval
    are ``sign(v)`` (the base's `encode`); with ``hqt`` the two views' tanh outputs are the HQT logits. Under
    `tf.distribute` each replica's pairwise terms cover the pairs within its share of the batch.

    State and memory: S and W are never stored as n × n matrices. The model keeps, per target set, the
    L2-normalised features (n × D float32), the cluster ids (n) and four scalars (threshold, mode, σ_L, σ_R),
    as non-trainable weights (saved in .keras files and checkpoints, mirrored under `tf.distribute`), and
    recomputes a batch's S, W1, W2 from the gathered rows — a B × D by D × B product — equal to the
    ``[index][:, index]`` blocks of `CIMONPseudoSimilarity.pseudo_similarity` (to float32 rounding of the
    distances). For n = 5,000 and D = 4,096 that is 82 MB against 125 MB for dense S (int8) and W (float32);
    at n = 50,000 it is 0.8 GB against 12.5 GB (D = 1,280: 26 MB and 0.26 GB).

    Paper vs released code (cimon.py / run.py of the released CIMON_PyTorch, read from its copy in
    ileumbbb/CIMON; the paper's text was not available to this implementation), and what is followed here:

    - Targets: the released code fits S, W twice, on the features of one augmented draw of each view, and
      sums the four combinations of the views' H with the two target sets (``per_view_similarity=True``);
      the project's summary of the paper (papers/README.md) fits them once on the training features, the
      default here.
    - Loss scale: each combination is a mean over the B² pairs and the four are summed (not averaged), as in
      the released code; contrastive weight η = 0.3, τ = 0.5.
    - Released defaults: VGG16 fc7 + ReLU → Linear → tanh, fine-tuned end to end; SGD 1e-3, momentum 0.9,
      weight decay 1e-5, batch 24, 150 epochs; pseudo-similarity threshold 0.1, 70 spectral clusters.

    The fitted state is checked before use: ``fit`` refuses to start without a pseudo-similarity or its
    refresher among the callbacks; a step on an unassigned state, or with a sample index outside
    ``[0, num_samples)``, raises an error eagerly and in graph mode, and gives a NaN loss and gradient under
    XLA (which drops in-graph assertions).

    Args:
        num_bits: code length K.
        num_samples: int >= 1, number of training samples n (the range of the sample indices).
        contrastive_weight: float >= 0, η, the weight of NT-Xent (0.3).
        temperature: float > 0, τ of NT-Xent (0.5).
        per_view_similarity: bool, one pseudo-similarity per view (released code) instead of one shared.
        similarity_feature_size: int >= 1 or None, D of the features the pseudo-similarity is fitted on;
            None uses ``feature_size`` (the backbone's features, or the input features).
        pseudo_similarity: None (the defaults: threshold 0.1, 70 clusters, ...) or a dict of
            `tfhash.supervision.CIMONPseudoSimilarity` arguments, the settings of the pseudo-similarity that
            `supervision_refreshers` fits; without ``seed`` it takes the model's seed (0 when it has none).
        head_init: ``"torch"`` (the default: the released code is PyTorch, whose ``nn.Linear(4096, K)`` head
            keeps PyTorch's default initialisation, kernel and bias ``U(±1/√fan_in)``) or ``"glorot"``
            (Keras's); see `Hasher.head_initializers`.
        backbone, feature_size, hqt, seed, **kwargs: see `Hasher`.

    Call arguments (of `self_loss`, through ``fit``): batches ``{"inputs": (weak_view, strong_view),
    "sample_index": i}``.

    Example (a frozen backbone's cached features; the paper fine-tunes VGG16 end to end: pass
    ``backbone=tfhash.backbones.get("vgg16", trainable=True)`` and train on
    ``tfhash.data.training_dataset(..., augment=(weak, strong))`` instead):

    >>> weak, strong = cimon_weak_view(224), cimon_strong_view(224)
    >>> bank = FeatureBank(vgg16, pool, protocol=split.protocol, train=split.train,
    ...                    evaluation={"query": split.query, "database": split.database},
    ...                    augment=(weak, strong), views=5, seed=0)
    >>> model = CIMONHasher(64, num_samples=len(split.train), feature_size=bank.feature_size, seed=0,
    ...                     pseudo_similarity={"distance_threshold": 0.1, "num_clusters": 70})
    >>> model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9, weight_decay=1e-5))
    >>> # the refresher fits the pseudo-similarity on the first stored weak view of every training image
    >>> data = bank.training_dataset(batch_size=24, epochs=150)   # {"inputs": (weak, strong), ...}
    >>> model.fit(data, epochs=150, callbacks=model.supervision_refreshers(bank.train[0, 0]))
    >>> codes = model.predict(bank.evaluation_dataset("database", batch_size=256))   # ±1

    Reference:
        Luo et al., "CIMON: Towards High-quality Hash Codes", IJCAI 2021: pseudo-similarity with global
        refinement and statistical confidence, semantic consistency (weighted squared error between code inner
        products / K and S over the views) and contrastive consistency (NT-Xent, τ = 0.5, weight 0.3).
        Released code: cimon.py (``SEM_CON_Loss``, ``generate_similarity_weight_matrix``) and run.py.
    """

    loss_terms = ("similarity", "contrastive")
    num_views = 2
    default_head_init = "torch"

    def __init__(
        self,
        num_bits,
        num_samples,
        contrastive_weight=0.3,
        temperature=0.5,
        per_view_similarity=False,
        similarity_feature_size=None,
        pseudo_similarity=None,
        backbone=None,
        feature_size=None,
        hqt=None,
        seed=None,
        head_init=None,
        **kwargs,
    ):
        super().__init__(num_bits, backbone=backbone, feature_size=feature_size, hqt=hqt, seed=seed,
                         head_init=head_init, **kwargs)
        self.num_samples = check_int(num_samples, "num_samples", minimum=1)
        self.contrastive_weight = check_number(contrastive_weight, "contrastive_weight", minimum=0)
        self.temperature = check_number(temperature, "temperature", minimum=0, exclusive_minimum=True)
        if not isinstance(per_view_similarity, bool):
            raise ValueError(f"`per_view_similarity` must be a bool, got {per_view_similarity!r}.")
        self.per_view_similarity = per_view_similarity
        if similarity_feature_size is None:
            self.similarity_feature_size = self.feature_size
        else:
            self.similarity_feature_size = check_int(
                similarity_feature_size, "similarity_feature_size", minimum=1
            )
        self.pseudo_similarity = check_builder_settings(
            pseudo_similarity, "pseudo_similarity", CIMONPseudoSimilarity, _PSEUDO_SIMILARITY_KEYS
        )
        self.head = keras.layers.Dense(
            num_bits, activation="tanh", **self.head_initializers(self.feature_size), name="hash"
        )
        self._create_pseudo_similarity_state()
        self._finish_init()

    @property
    def num_target_sets(self):
        """How many pseudo-similarities the model holds: 2 with ``per_view_similarity``, else 1."""
        return 2 if self.per_view_similarity else 1

    def _create_pseudo_similarity_state(self):
        sets, n = self.num_target_sets, self.num_samples

        def state(name, shape):  # float32 even under a mixed policy, never autocast: exact gathers and ids
            return self.add_weight(
                name=name, shape=shape, initializer="zeros", dtype="float32", trainable=False, autocast=False
            )

        # Set t's rows are t·n … t·n + n − 1: one gather serves either set.
        self.similarity_features = state("similarity_features", (sets * n, self.similarity_feature_size))
        # float32 rather than int32: exact for ids < 2^24, and int32 variables have host-memory quirks on GPU.
        self.cluster_ids = state("cluster_ids", (sets * n,))
        self.similarity_statistics = state("similarity_statistics", (sets, 4))
        self.pseudo_similarity_assigned = state("pseudo_similarity_assigned", ())

    # --- the pseudo-similarity state ----------------------------------------------------------------------

    def assign_pseudo_similarity(self, pseudo_similarity, second_view=None):
        """Writes the fitted pseudo-similarity (`tfhash.supervision.CIMONPseudoSimilarity`) into the model.

        Args:
            pseudo_similarity: a fitted ``CIMONPseudoSimilarity`` on the n training samples' features (for
                ``per_view_similarity=True``: on the first (weak) view's features).
            second_view: None, or with ``per_view_similarity=True`` the one fitted on the second (strong)
                view's features of the same samples, in the same order.
        """
        fitted = [pseudo_similarity] if second_view is None else [pseudo_similarity, second_view]
        if len(fitted) != self.num_target_sets:
            if self.per_view_similarity:
                raise ValueError(
                    "per_view_similarity=True needs one fitted CIMONPseudoSimilarity per view: "
                    "assign_pseudo_similarity(weak_view_similarity, second_view=strong_view_similarity)."
                )
            raise ValueError(
                "`second_view` is for per_view_similarity=True; this model shares one pseudo-similarity."
            )
        features, clusters, statistics = [], [], []
        for position, item in enumerate(fitted):
            name = "pseudo_similarity" if position == 0 else "second_view"
            if not hasattr(item, "features_") or not hasattr(item, "cluster_ids_"):
                raise ValueError(
                    f"`{name}` must be a fitted CIMONPseudoSimilarity (call .fit(features)), got {item!r}."
                )
            expected = (self.num_samples, self.similarity_feature_size)
            if np.shape(item.features_) != expected:
                raise ValueError(
                    f"`{name}` was fitted on features of shape {np.shape(item.features_)}; the model needs "
                    f"(num_samples, similarity_feature_size) = {expected}."
                )
            ids = np.asarray(item.cluster_ids_)
            if ids.shape != (self.num_samples,) or ids.min() < 0 or ids.max() >= _FLOAT32_INTEGERS:
                raise ValueError(f"`{name}.cluster_ids_` must be {self.num_samples} ids in [0, 2^24).")
            features.append(np.asarray(item.features_, np.float32))
            clusters.append(ids.astype(np.float32))
            statistics.append([item.distance_threshold, item.mode_, item.left_scale_, item.right_scale_])
        self.similarity_features.assign(np.concatenate(features))
        self.cluster_ids.assign(np.concatenate(clusters))
        self.similarity_statistics.assign(np.asarray(statistics, np.float32))
        self.pseudo_similarity_assigned.assign(1.0)

    def batch_pseudo_similarity(self, sample_index, target_set=0):
        """S and W of a batch: the ``[index][:, index]`` blocks of the dense n × n matrices of one target set.

        Args:
            sample_index: int tensor (B,), the samples' positions in the training set.
            target_set: 0, or 1 for the second view's set with ``per_view_similarity=True``.

        Returns:
            ``(S, W)``, two float32 (B, B) tensors.
        """
        if target_set not in range(self.num_target_sets):
            raise ValueError(f"`target_set` must be in range({self.num_target_sets}), got {target_set!r}.")
        index, guard = batches.checked_sample_index(
            sample_index, self.num_samples, self.pseudo_similarity_assigned, _NOT_ASSIGNED,
            _OUT_OF_RANGE.format(self.num_samples),
        )
        rows = index + target_set * self.num_samples
        # `.value` is the variable itself: a sparse read of B rows instead of reading all n × D.
        x = tf.gather(self.similarity_features.value, rows)
        clusters = tf.gather(self.cluster_ids.value, rows)
        threshold, mode, left_scale, right_scale = tf.unstack(self.similarity_statistics[target_set])
        distance = tf.clip_by_value(1.0 - tf.matmul(x, x, transpose_b=True), 0.0, 2.0)
        # a sample's distance to itself is exactly 0 (as in the dense matrices), also for repeated indices
        distance = tf.where(tf.equal(index[:, None], index[None, :]), 0.0, distance)
        similar = distance <= threshold
        s = tf.where(similar, 1.0, -1.0)
        # W1 (CIMONPseudoSimilarity's half_gaussian_confidence); the dissimilar side through Q(z) = Φ(−z).
        left_cut = _normal_cdf((threshold - mode) / left_scale)
        right_cut = _normal_cdf((mode - threshold) / right_scale)
        left = (left_cut - _normal_cdf((distance - mode) / left_scale)) / left_cut
        right = (right_cut - _normal_cdf((mode - distance) / right_scale)) / right_cut
        w1 = tf.clip_by_value(tf.where(similar, left, right), 0.0, 1.0)
        # W2: 1 where the spectral clustering agrees with S
        agrees = tf.equal(tf.equal(clusters[:, None], clusters[None, :]), similar)
        w = w1 * tf.cast(agrees, tf.float32)
        return s, w * guard  # NaN under XLA for an unassigned state or a wrong index

    # --- training -----------------------------------------------------------------------------------------

    def self_loss(self, inputs, sample_index, training):
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
            found = f"a single tensor of shape {inputs.shape}" if hasattr(inputs, "shape") else repr(inputs)
            raise ValueError(_TWO_VIEWS.format(found))
        if sample_index is None:
            raise ValueError(_NEEDS_INDEX)
        weak, strong = inputs
        n = tf.shape(weak)[0]
        # One pass over both views (VGG16 has no batch normalisation; dropout masks stay independent per row).
        features = self.features(tf.concat([weak, strong], axis=0), training=training)
        codes = self.codes(features, training=training)
        codes = tf.cast(codes, tf.float32)
        views = [codes[:n], codes[n:]]
        targets = [self.batch_pseudo_similarity(sample_index, t) for t in range(self.num_target_sets)]
        if len(targets) == 1:
            targets = targets * 2  # the four combinations, with one shared target set
        similarity = tf.add_n(
            [_weighted_similarity_error(view, s, w, self.num_bits) for view in views for s, w in targets]
        )
        contrastive = nt_xent_loss(views[0], views[1], self.temperature)
        loss = similarity + self.contrastive_weight * contrastive
        return loss, {"similarity": similarity, "contrastive": contrastive}, views

    @property
    def needs_sample_index(self):
        return True

    # --- supervision --------------------------------------------------------------------------------------

    def pseudo_similarity_builder(self):
        """An unfitted `CIMONPseudoSimilarity` with this model's ``pseudo_similarity`` settings (seeded with
        the model's seed unless they set one)."""
        return CIMONPseudoSimilarity(**{"seed": self._supervision_seed(), **(self.pseudo_similarity or {})})

    def supervision_refreshers(self, features, verbose=0, *, inputs=None, labels=None):
        """The pseudo-similarity's refresher (`tfhash.callbacks.CIMONPseudoSimilarityRefresher`), then the
        base's (HQT). ``features``: the training features (n, D) in sample-index order, a pair of them with
        ``per_view_similarity=True``, or a callable ``model -> either``; see `Hasher.supervision_refreshers`."""
        own = CIMONPseudoSimilarityRefresher(self.pseudo_similarity_builder(), features, verbose=verbose)
        return [own, *super().supervision_refreshers(features, verbose=verbose, inputs=inputs, labels=labels)]

    def _unassigned_supervision(self):
        unassigned = []
        if float(keras.ops.convert_to_numpy(self.pseudo_similarity_assigned)) != 1.0:
            how = "model.assign_pseudo_similarity(CIMONPseudoSimilarity().fit(train_features))"
            unassigned.append(("pseudo-similarity", CIMONPseudoSimilarityRefresher, how))
        return unassigned + super()._unassigned_supervision()

    # --- saving -------------------------------------------------------------------------------------------

    def get_config(self):
        config = {
            "num_samples": self.num_samples,
            "contrastive_weight": self.contrastive_weight,
            "temperature": self.temperature,
            "per_view_similarity": self.per_view_similarity,
            "similarity_feature_size": self.similarity_feature_size,
            "pseudo_similarity": None if self.pseudo_similarity is None else dict(self.pseudo_similarity),
        }
        return {**super().get_config(), **config}


def _weighted_similarity_error(codes, s, w, num_bits):
    """``(1/B²) Σ_ij W_ij |S_ij| (v_i·v_j / K − S_ij)²`` (the released code's ``SEM_CON_Loss``)."""
    inner = tf.matmul(codes, codes, transpose_b=True) / float(num_bits)
    return tf.reduce_mean(w * tf.abs(s) * tf.square(inner - s))


def _normal_cdf(z):
    """Φ(z) as erfc(−z/√2)/2: accurate in the lower tail, where the confidences' ratios are taken."""
    return 0.5 * tf.math.erfc(-z / math.sqrt(2.0))
