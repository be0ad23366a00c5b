"""UCSH: a binary-latent VAE hash layer, pairwise similarity, Hadamard cluster targets and separation."""

import keras
import numpy as np
import tensorflow as tf

from tfhash import batches
from tfhash._validation import check_int, check_number
from tfhash.callbacks.ucsh_cluster_refresher import UCSHClusterRefresher
from tfhash.layers.binary_latent_vae import BinaryLatentVAE
from tfhash.models.hasher import Hasher
from tfhash.supervision.hadamard_codebook import hadamard_codebook

# the sampling noise's seed lies this far above the model's seed (the head's initializers use seed + 0 … L and
# seed + 1000 …; `Hasher.head_initializers`)
_SAMPLING_SEED_OFFSET = 500
_NOT_ASSIGNED = (
    "UCSHHasher has no cluster targets and similarity threshold yet: train with `callbacks=model."
    "supervision_refreshers(train_features)` (a `tfhash.callbacks.UCSHClusterRefresher`), or assign them "
    "before training with `model.assign_clusters(cluster_ids, similarity_threshold)`."
)
_OUT_OF_RANGE = (
    "UCSHHasher: a sample index is outside [0, num_samples) with num_samples={}: the data's 'sample_index' "
    "must be positions in the training set the clusters were computed on."
)


@keras.saving.register_keras_serializable(package="tfhash")
class UCSHHasher(Hasher):
    """UCSH: features → binary-latent VAE (Dense(K) encoder, STE codes, decoder) under the Eq. 7 loss.

    The hash layer is a `tfhash.layers.BinaryLatentVAE` (the paper's replacement of VGG16's last FC layer):
    encoder logits ``l = Dense(K)(x)``, training codes ``b = sign(l)`` (±1) with the straight-through gradient
    ``db/dl = 2q(1 − q)``, ``q = sigmoid(l)`` (the layer's STE); its decoder reconstructs the input features
    x from b. Codes for retrieval are ``sign(l)`` (`encode`). With B the batch size and K = ``num_bits``, the
    loss of a batch ``{"inputs": x, "sample_index": i}`` (x the backbone's features when the model has one)
    is Eq. 7,

        ``L = L_2 + α·L_V + β·L_C + γ·L_S``  (``vae_weight``, ``cluster_weight``, ``separation_weight``)

    with the paper's sums normalised as follows (a constant factor per term; the weights are the paper's):

    - ``L_2`` (Eq. 2–3, tracked as ``"similarity"``) ``= (1/B²) Σ_ij (S_ij − b_iᵀb_j / K)²`` over all B²
      pairs, diagonal included, with ``S_ij = 1 − 2 d_ij``, ``d_ij = 1 − cos(x_i, x_j)`` (so
      ``S_ij = 2 cos − 1``). The paper's ``Σ_ij ‖k S_ij − b_i b_jᵀ‖²`` is ``K²·B²`` times this. S is the
      step's target (stop-gradient): recomputed from the current features at every step, so it follows a
      fine-tuned backbone, but L_2 reaches the backbone only through the codes; a gradient through S could
      also move the features towards the codes, down to the trivial all-similar solution.
    - ``L_V`` (Eq. 1, ``"vae"``): the VAE layer's ``"loss"``, the negative ELBO (reconstruction + KL to a
      Bernoulli(1/2) prior; see `BinaryLatentVAE.elbo_terms`). The decoder reconstructs the features as a
      target (stop-gradient), so L_V cannot shrink the features of a fine-tuned backbone to ease the
      reconstruction.
    - ``L_C`` (Eq. 5, ``"cluster"``) ``= (1/B) Σ_i ‖b_i − h_C(x_i)‖² / K``: the mean squared difference
      between each code and its cluster's Hadamard codeword (model state ``cluster_targets``).
    - ``L_S`` (Eq. 6, ``"separation"``) ``= −(1/(B(B − 1))) Σ_{i≠j} (b_iᵀb_j / K − s_t)²``: pushes the pairs'
      code similarities away from the similarity threshold s_t (model state ``similarity_threshold``), i.e.
      similar pairs up and dissimilar pairs down; 0 for a batch of one sample. The paper leaves Eq. 6's
      ``s_ij`` undefined (and writes one sum over i). With a fine-tuned backbone the paper's feature
      similarities move with the features; on frozen features (the tfhash benchmark) only the codes can move,
      so here the separation acts on the code similarities ``b_iᵀb_j / K``, which L_2 ties to S. Self pairs
      are left out: ``b_iᵀb_i / K = 1`` for any ±1 code.

    The cluster targets and s_t are written by a `tfhash.callbacks.UCSHClusterRefresher` (K-means of the
    training features into ``num_clusters`` clusters, codewords from `tfhash.supervision.hadamard_codebook`,
    s_t from the SSDH half-Gaussian fit of their cosine distances), at the start of training and every
    ``refresh_every_n_epochs``; `supervision_refreshers` builds it.

    Ablations (the paper's Table 2): ``use_vae=False`` is UCSH-V (no L_V; the layer is built without a
    decoder, ``decoder=False``, so the model has no decoder weights), ``use_clustering=False`` UCSH-C (no L_C,
    no cluster targets), ``use_separation=False`` UCSH-S (no L_S), ``relaxation=True`` UCSH-R (training codes
    ``2q − 1 = tanh(l/2)`` instead of the STE's ±1). Each removes exactly its term from L and from
    `loss_terms`. Only the clustering loss gathers state by sample index; the separating loss reads the one
    scalar s_t. Without both, the loss reads no supervision state, and training needs neither sample indices
    nor a refresher.

    Head: the paper trained in PyTorch, so ``head_init`` defaults to ``"torch"``; every Dense layer of the VAE
    (the encoder, then the decoder's) is initialised by `Hasher.head_initializers` (offsets 0, 1, …; fan-in
    ``feature_size`` for the encoder, the previous layer's width for each decoder layer), given to the layer
    as its ``dense_initializers``.

    Args:
        num_bits: int >= 1, the code length K (a power of two gives orthogonal codewords; see
            `hadamard_codebook`).
        num_samples: int >= 1, the number of training samples (rows of the cluster targets; batches index
            them).
        num_clusters: int >= 1, N, the number of K-means clusters and Hadamard codewords (paper 10 on
            CIFAR-10, 30 on NUS-WIDE and MIRFLICKR-25K); at most ``num_samples`` and the codebook's 2m
            codewords.
        vae_weight: α >= 0 (paper 1e-3).
        cluster_weight: β >= 0 (paper 10).
        separation_weight: γ >= 0 (paper 1e-2).
        use_vae, use_clustering, use_separation: bools, the L_V, L_C and L_S terms (see Ablations).
        relaxation: bool, UCSH-R's continuous training codes (`BinaryLatentVAE`'s ``relaxation``).
        sampling: ``"deterministic"`` (``b = sign(l)``) or ``"stochastic"`` (``b = +1`` with probability q in
            training); `BinaryLatentVAE`'s ``sampling``. The paper does not say; deterministic by default.
        decoder_units: the widths of the decoder's hidden ReLU layers (the paper does not give them); unused
            with ``use_vae=False`` (no decoder).
        refresh_every_n_epochs: None (cluster once) or int >= 1, re-cluster and re-fit s_t every n epochs.
        kmeans_seed: None (the model's seed, 0 without one) or int >= 0, the refresher's first K-means seed.
        head_init: ``"torch"`` (the default), ``"glorot"`` or ``"normal_1e-3"``; see
            `Hasher.head_initializers`.
        backbone, feature_size, hqt, seed, **kwargs: see `Hasher`. ``seed`` also seeds the stochastic sampling
            (``seed + 500``).

    Call arguments (of `self_loss`, through ``fit``): batches ``{"inputs": x, "sample_index": i}`` (the index
    may be left out when ``use_clustering=False`` and there is no HQT regulariser).

    Example (a frozen backbone's cached features; the paper fine-tunes VGG16):

    >>> model = UCSHHasher(64, num_samples=len(split.train), feature_size=bank.feature_size, num_clusters=10,
    ...                    seed=0)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-4))
    >>> data = bank.training_dataset(batch_size=24, epochs=50, drop_remainder=True)
    >>> refreshers = model.supervision_refreshers(bank.train[0, 0], verbose=1)   # K-means and s_t
    >>> model.fit(data, epochs=50, callbacks=refreshers)
    >>> codes = model.predict(bank.evaluation_dataset("database", batch_size=1024))   # ±1

    Reference:
        Zhang et al., "Clustering and Separating Similarities for Deep Unsupervised Hashing" (UCSH): Eq. 1
        (binary latent VAE), Eq. 2–3 (S and the L_2 loss), Eq. 4–5 (Hadamard codebook, clustering loss),
        Eq. 6 (similarity separating loss and s_t), Eq. 7 (α = 1e-3, β = 10, γ = 1e-2, STE); Sec. 3.1
        (batch 24, N = 10 / 30); Table 2 (UCSH-V, -C, -S, -R). No public code.
    """

    #: every term of the full model; an instance lists the terms its flags keep
    loss_terms = ("similarity", "vae", "cluster", "separation")
    default_head_init = "torch"

    def __init__(
        self,
        num_bits,
        num_samples,
        num_clusters=10,
        vae_weight=1e-3,
        cluster_weight=10.0,
        separation_weight=1e-2,
        use_vae=True,
        use_clustering=True,
        use_separation=True,
        relaxation=False,
        sampling="deterministic",
        decoder_units=(1024,),
        refresh_every_n_epochs=None,
        kmeans_seed=None,
        backbone=None,
        feature_size=None,
        hqt=None,
        seed=None,
        head_init=None,
        **kwargs,
    ):
        for name, value in (("use_vae", use_vae), ("use_clustering", use_clustering),
                            ("use_separation", use_separation), ("relaxation", relaxation)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be a bool, got {value!r}.")
        # Set before the base's __init__, which creates one tracker per name of `loss_terms`.
        self.use_vae, self.use_clustering, self.use_separation = use_vae, use_clustering, use_separation
        switches = (True, use_vae, use_clustering, use_separation)
        self.loss_terms = tuple(name for name, on in zip(type(self).loss_terms, switches) if on)
        super().__init__(num_bits, backbone=backbone, feature_size=feature_size, hqt=hqt, seed=seed,
                         head_init=head_init, **kwargs)
        self.num_samples = check_int(num_samples, "num_samples", minimum=1)
        self.num_clusters = check_int(num_clusters, "num_clusters", minimum=1)
        if self.num_clusters > self.num_samples:
            raise ValueError(
                f"`num_clusters`={num_clusters} is larger than the training set (num_samples={num_samples}): "
                "K-means cannot make more clusters than samples."
            )
        try:
            self.codebook = hadamard_codebook(self.num_clusters, self.num_bits)
        except ValueError as error:
            raise ValueError(f"`num_clusters`={num_clusters} with num_bits={num_bits}: {error}") from None
        self.vae_weight = check_number(vae_weight, "vae_weight", minimum=0)
        self.cluster_weight = check_number(cluster_weight, "cluster_weight", minimum=0)
        self.separation_weight = check_number(separation_weight, "separation_weight", minimum=0)
        self.relaxation = relaxation
        self.sampling = sampling
        if not isinstance(decoder_units, (list, tuple)):
            raise ValueError(
                f"`decoder_units` must be a list or tuple of integers >= 1, got {decoder_units!r}."
            )
        self.decoder_units = tuple(
            check_int(units, f"decoder_units[{i}]", minimum=1) for i, units in enumerate(decoder_units)
        )
        self.refresh_every_n_epochs = check_int(refresh_every_n_epochs, "refresh_every_n_epochs", minimum=1,
                                                allow_none=True)
        self.kmeans_seed = check_int(kmeans_seed, "kmeans_seed", minimum=0, allow_none=True)
        # The fan-ins of the head's Dense layers in build order: the encoder reads the features, each decoder
        # layer the previous layer's output (the codes first). UCSH-V has the encoder alone.
        fan_ins = (self.feature_size, num_bits, *self.decoder_units) if use_vae else (self.feature_size,)
        # The layer checks `sampling` and `relaxation`, naming them; its seed seeds only its sampling noise
        # (its initializers are given).
        self.head = BinaryLatentVAE(
            num_bits,
            decoder_units=self.decoder_units if use_vae else None,
            sampling=sampling,
            relaxation=relaxation,
            seed=None if self.seed is None else self.seed + _SAMPLING_SEED_OFFSET,
            decoder=use_vae,
            dense_initializers=[self.head_initializers(fan_in, offset=i) for i, fan_in in enumerate(fan_ins)],
            name="head",
        )
        self._create_supervision_state()
        self._finish_init()

    def _create_supervision_state(self):
        if self.use_clustering:
            # h_C(x_i) of every training sample: float32 ±1, all zeros until assigned
            self.cluster_targets = self.add_weight(
                name="cluster_targets", shape=(self.num_samples, self.num_bits), initializer="zeros",
                dtype="float32", trainable=False, autocast=False,
            )
        self.similarity_threshold = self.add_weight(
            name="similarity_threshold", shape=(), initializer="zeros", dtype="float32", trainable=False,
            autocast=False,
        )
        self.supervision_assigned = self.add_weight(
            name="supervision_assigned", shape=(), initializer="zeros", dtype="float32", trainable=False,
            autocast=False,
        )

    # --- the supervision state ----------------------------------------------------------------------------

    @property
    def needs_supervision(self):
        """Whether the loss reads the supervision state: clustering (targets) or separation (s_t) is on."""
        return self.use_clustering or self.use_separation

    def assign_clusters(self, cluster_ids, similarity_threshold):
        """Writes the cluster targets (the codewords of ``cluster_ids``) and the similarity threshold s_t.

        Args:
            cluster_ids: int array (num_samples,) of K-means cluster ids in [0, num_clusters), in sample-index
                order; row i of the targets becomes
                ``hadamard_codebook(num_clusters, num_bits)[cluster_ids[i]]``. May be None when
                ``use_clustering=False`` (there are no targets; ids given are checked, unused).
            similarity_threshold: finite float, s_t (``1 − 2·d_t``; may exceed 1 when d_t < 0). May be None
                when ``use_separation=False`` (the stored s_t is then left as it is).

        Raises:
            ValueError: a malformed argument, named.
        """
        if cluster_ids is None:
            if self.use_clustering:
                raise ValueError("`cluster_ids` is required: this UCSHHasher has the clustering loss "
                                 "(use_clustering=True).")
        else:
            ids = np.asarray(cluster_ids)
            if ids.shape != (self.num_samples,) or not np.issubdtype(ids.dtype, np.integer):
                raise ValueError(
                    "`cluster_ids` must be an integer array of shape (num_samples,) = "
                    f"({self.num_samples},), got shape {ids.shape}, dtype {ids.dtype}."
                )
            if ids.size and (ids.min() < 0 or ids.max() >= self.num_clusters):
                raise ValueError(
                    f"`cluster_ids` must lie in [0, num_clusters) = [0, {self.num_clusters}), got values "
                    f"from {ids.min()} to {ids.max()}."
                )
        if similarity_threshold is None:
            if self.use_separation:
                raise ValueError("`similarity_threshold` is required: this UCSHHasher has the separating "
                                 "loss (use_separation=True).")
        else:
            if isinstance(similarity_threshold, np.ndarray) and similarity_threshold.ndim == 0:
                similarity_threshold = similarity_threshold.item()
            threshold = check_number(similarity_threshold, "similarity_threshold")
        if cluster_ids is not None and self.use_clustering:
            self.cluster_targets.assign(self.codebook[ids])
        if similarity_threshold is not None:
            self.similarity_threshold.assign(threshold)
        self.supervision_assigned.assign(1.0)

    def supervision_is_assigned(self):
        """Whether the cluster targets and s_t have been written (`assign_clusters`, or a refresher)."""
        return float(keras.ops.convert_to_numpy(self.supervision_assigned)) == 1.0

    def assigned_cluster_ids(self):
        """The cluster id of every training sample, (num_samples,) int64, read back from the targets.

        Raises:
            ValueError: the model has no clustering loss, or no targets yet.
        """
        if not self.use_clustering:
            raise ValueError("This UCSHHasher has no cluster targets (use_clustering=False).")
        if not self.supervision_is_assigned():
            raise ValueError(_NOT_ASSIGNED)
        targets = keras.ops.convert_to_numpy(self.cluster_targets)
        matches = targets @ self.codebook.T == self.num_bits  # exactly one codeword per row (all distinct)
        return np.argmax(matches, axis=1).astype(np.int64)

    def batch_cluster_targets(self, sample_index):
        """The cluster codewords ``h_C(x_i)`` of a batch, float32 ±1 (B, K), gathered by sample index.

        Args:
            sample_index: int tensor (B,), the samples' positions in the training set.
        """
        index, guard = batches.checked_sample_index(
            sample_index, self.num_samples, self.supervision_assigned, _NOT_ASSIGNED,
            _OUT_OF_RANGE.format(self.num_samples),
        )
        # `.value` is the variable itself: a sparse read of B rows
        targets = tf.gather(self.cluster_targets.value, index)
        return targets * guard  # NaN under XLA for an unassigned state or a wrong index

    def batch_similarity_threshold(self):
        """s_t as a float32 scalar; NaN (under XLA, where the assertion is dropped) while unassigned, as
        `tfhash.batches.checked_sample_index` guards the gathered state."""
        assigned = self.supervision_assigned
        check = tf.debugging.assert_equal(assigned, tf.ones_like(assigned), message=_NOT_ASSIGNED)
        with tf.control_dependencies([check]):
            threshold = tf.identity(self.similarity_threshold.value)
        return tf.where(assigned > 0, threshold, float("nan"))

    # --- training -----------------------------------------------------------------------------------------

    @property
    def needs_sample_index(self):
        """The cluster targets are gathered by sample index; s_t is one scalar, which needs none."""
        return self.use_clustering or super().needs_sample_index

    def code_losses(self, codes, features, sample_index=None):
        """The terms of Eq. 7 computed from the codes: ``"similarity"`` (L_2), and ``"cluster"`` (L_C) and
        ``"separation"`` (L_S) where on (see the class docstring).

        Args:
            codes: float (B, K), the training codes b (±1, or continuous with ``relaxation=True``).
            features: float (B, D), the features x the target similarities S come from.
            sample_index: int (B,), the samples' positions (required with ``use_clustering``).

        Returns:
            A dict name → float32 scalar.
        """
        b = tf.cast(codes, tf.float32)
        code_similarity = tf.matmul(b, b, transpose_b=True) / float(self.num_bits)  # b_iᵀb_j / K
        unit = tf.math.l2_normalize(tf.cast(features, tf.float32), axis=1)
        target = tf.stop_gradient(2.0 * tf.matmul(unit, unit, transpose_b=True) - 1.0)  # S = 1 − 2(1 − cos)
        terms = {"similarity": tf.reduce_mean(tf.square(target - code_similarity))}
        if self.use_clustering:
            if sample_index is None:
                raise ValueError(
                    "UCSHHasher gathers its cluster targets by sample index: the data must yield "
                    "{'inputs': x, 'sample_index': i} batches (tfhash.data.training_dataset, "
                    "FeatureBank.training_dataset)."
                )
            terms["cluster"] = tf.reduce_mean(tf.square(b - self.batch_cluster_targets(sample_index)))
        if self.use_separation:
            size = tf.shape(b)[0]
            others = 1.0 - tf.eye(size, dtype=tf.float32)
            pairs = tf.cast(size * (size - 1), tf.float32)
            separated = tf.square(code_similarity - self.batch_similarity_threshold())
            terms["separation"] = -tf.reduce_sum(others * separated) / tf.maximum(pairs, 1.0)
        return terms

    def self_loss(self, inputs, sample_index, training):
        features = self.features(inputs, training=training)
        if self.use_vae:
            elbo = self.head.elbo_terms(features, training=training, targets=tf.stop_gradient(features))
            codes, vae = elbo["codes"], elbo["loss"]
        else:
            codes = self.head(features, training=training)
        codes = tf.cast(codes, tf.float32)
        terms = self.code_losses(codes, features, sample_index)
        if self.use_vae:
            terms["vae"] = vae
        weights = {"similarity": 1.0, "vae": self.vae_weight, "cluster": self.cluster_weight,
                   "separation": self.separation_weight}
        loss = tf.add_n([weights[name] * terms[name] for name in self.loss_terms])
        return loss, terms, [codes]

    # --- supervision --------------------------------------------------------------------------------------

    def supervision_refreshers(self, features, verbose=0, *, inputs=None, labels=None):
        """The cluster refresher (`tfhash.callbacks.UCSHClusterRefresher`: K-means of ``features`` into
        ``num_clusters`` clusters and s_t, at the start and every ``refresh_every_n_epochs``; seeded
        ``kmeans_seed``, else the model's seed), then the base's (HQT). Without clustering and separation the
        model has no such state and only the base's are returned. With a backbone that is refreshed
        (``refresh_every_n_epochs``), ``inputs`` (the training images in sample-index order, e.g.
        ``tfhash.data.evaluation_dataset(pool, split.train, 64)``) replace ``features``: every refresh clusters
        the backbone's current features of them (the paper's clusters follow the fine-tuned network).
        ``labels`` go to the base's; see `Hasher.supervision_refreshers`.
        """
        base = super().supervision_refreshers(features, verbose=verbose, inputs=inputs, labels=labels)
        if not self.needs_supervision:
            return base
        seed = self._supervision_seed() if self.kmeans_seed is None else self.kmeans_seed
        if inputs is not None and self.backbone is not None and self.refresh_every_n_epochs is not None:
            features = _backbone_features_of(inputs)
        own = UCSHClusterRefresher(features, self.num_clusters, seed=seed,
                                   every_n_epochs=self.refresh_every_n_epochs, verbose=verbose)
        return [own, *base]

    def _unassigned_supervision(self):
        unassigned = []
        if self.needs_supervision and not self.supervision_is_assigned():
            how = ("model.assign_clusters(KMeans(num_clusters).fit_predict(train_features), "
                   "ucsh_similarity_threshold_from_features(train_features)['similarity_threshold'])")
            unassigned.append(("cluster targets and similarity threshold", UCSHClusterRefresher, how))
        return unassigned + super()._unassigned_supervision()

    # --- saving -------------------------------------------------------------------------------------------

    def get_config(self):
        config = {
            "num_samples": self.num_samples,
            "num_clusters": self.num_clusters,
            "vae_weight": self.vae_weight,
            "cluster_weight": self.cluster_weight,
            "separation_weight": self.separation_weight,
            "use_vae": self.use_vae,
            "use_clustering": self.use_clustering,
            "use_separation": self.use_separation,
            "relaxation": self.relaxation,
            "sampling": self.sampling,
            "decoder_units": list(self.decoder_units),
            "refresh_every_n_epochs": self.refresh_every_n_epochs,
            "kmeans_seed": self.kmeans_seed,
        }
        return {**super().get_config(), **config}


def _backbone_features_of(inputs):
    """A ``model -> features`` callable: the model's backbone features of ``inputs`` (a dataset of input or
    named batches, in sample-index order), in inference mode, as float32 (n, D)."""

    def features(model):
        parts = [model.features(batches.inputs_of(batch, "UCSHHasher"), training=False) for batch in inputs]
        return np.concatenate([np.asarray(part, np.float32) for part in parts])

    return features
