"""DSAH: cosine-similarity codes under an adaptively grown neighbour similarity, pairs weighted by information."""

import keras
import numpy as np
import tensorflow as tf

from tfhash import batches
from tfhash._validation import check_builder_settings, check_int, check_number
from tfhash.callbacks.adaptive_neighbor_refresher import AdaptiveNeighborRefresher
from tfhash.models.hasher import Hasher
from tfhash.supervision.adaptive_neighbor_discovery import AdaptiveNeighborDiscovery

#: the values of ``pair_weights`` (paper Sec. 5.4.1, Fig. 4): PIC, PIC⁰, PIC⁻
PAIR_WEIGHTS = ("pic", "uniform", "pic_complement")
#: the values of ``similarity_storage``
STORAGES = ("auto", "dense", "lists")
#: ``similarity_storage="auto"`` keeps a dense int8 matrix up to this many training samples (400 MB)
DENSE_LIMIT = 20_000
_NEIGHBOR_DISCOVERY_KEYS = ("num_neighbors", "num_shared_neighbors", "gamma", "block_size")
_FLOAT32_INTEGERS = 2**24  # neighbour ids are stored as float32, exact below this
_NOT_ASSIGNED = (
    "DSAHHasher has no neighbour similarity yet: train with `callbacks=model.supervision_refreshers("
    "train_features)` (a `tfhash.callbacks.AdaptiveNeighborRefresher`), or assign it before training with "
    "`model.assign_neighbor_similarity(AdaptiveNeighborDiscovery().initial_neighbors(train_features))`."
)
_OUT_OF_RANGE = (
    "DSAHHasher: a sample index is outside [0, num_samples) with num_samples={}: the data's 'sample_index' "
    "must be positions in the training set the neighbour similarity was built on."
)


@keras.saving.register_keras_serializable(package="tfhash")
class DSAHHasher(Hasher):
    """DSAH: features → Dense(1000) → Dense(K) → tanh; Pairwise-Information-Content-weighted similarity loss.

    The codes ``z = tanh(h)`` of a batch are compared by their cosines ``s_ij = z_iᵀz_j / (‖z_i‖‖z_j‖)``
    (Eq. 4) to the ±1 neighbour similarity ``w_ij`` of the two samples (sample-indexed model state), each pair
    weighted by its information content (Eq. 13–17):

        ``L = (1/B²) Σ_ij a_ij (s_ij − w_ij)² + λ · (1/(B·K)) Σ_ik (sign(z_ik) − z_ik)²``

    over all B² pairs of the batch, diagonal included, with (``pair_weights``, the paper's Fig. 4 names)

    - ``"pic"`` (PIC, the method): ``a_ij = −log p_ij``, ``p = softmax(s / τ)`` over all B² pairs (Eq. 15–16):
      dissimilar pairs weigh more;
    - ``"uniform"`` (PIC⁰, the ablation's baseline): ``a_ij = 1``, the plain loss of Eq. 3;
    - ``"pic_complement"`` (PIC⁻): ``a_ij = −log(1 − p_ij)``, which favours similar pairs instead.

    The gradient flows through ``a`` as well (the released code does not stop it); ``sign(z)`` is a constant
    (``sign(0) = +1``). Codes for retrieval are ``sign(z)`` (Eq. 6).

    The neighbour similarity W starts as W⁰ (Eq. 7–9, k-NN and shared-neighbour graphs of the training
    features) and grows by Adaptive Neighbor Discovery (Eq. 10–12) every ``update_every_n_epochs`` epochs
    (T = 10; R rounds are ``epochs / T``): pairs whose current code cosine reaches ``m = μ + γσ`` of the
    current positive pairs become positive. Both are computed by the
    `tfhash.callbacks.AdaptiveNeighborRefresher` that `supervision_refreshers` builds (settings in
    ``neighbor_discovery``: `tfhash.supervision.AdaptiveNeighborDiscovery`); ``update_every_n_epochs=None``
    keeps W⁰ (the ablation's AND⁰).

    W is stored as a dense int8 ±1 matrix (n × n, 100 MB for CIFAR-10's 10,000 training images) or, above
    ``DENSE_LIMIT`` samples (``similarity_storage="auto"``), as neighbour lists (n × ``max_neighbors`` ids);
    both give a batch the same ``W[index][:, index]``. Lists hold at most ``max_neighbors`` positives per row:
    an AND round that would add more keeps the most similar (the refresher logs how many were dropped).

    Head (the released code, ``utils/Encoder.py``): VGG19's fc8 is replaced by a linear Dense(1000)
    (``fc8_trans``, no activation) and the hash layer Dense(K), both initialised from a truncated normal of
    deviation 0.001 (``head_init="normal_1e-3"``), then tanh (written there as ``(1 − e^{−2x})/(1 + e^{−2x})``).

    Released-code differences, kept out on purpose: its quantisation term compares sign(z) to the
    L2-normalised codes (``mean((B − z/‖z‖)²)``; Eq. 17 compares to z), and its scripts run with that term's
    weight 0 and γ = 0; the AND update there takes the inner products of the unnormalised codes, where
    Eq. 10–12 take cosines; its W⁰ script never sets a positive (see `AdaptiveNeighborDiscovery`).

    Args:
        num_bits: int >= 1, the code length K.
        num_samples: int >= 1, the number of training samples (the rows of W; batches index them).
        quantization_weight: λ >= 0 (paper 10).
        temperature: τ > 0 of PIC's softmax (paper 1).
        pair_weights: one of `PAIR_WEIGHTS` (see above; paper: ``"pic"``).
        hidden_units: int >= 1, width of the linear layer before the hash layer (paper 1000).
        neighbor_discovery: None (the paper's k1 = k2 = 500, γ = 1) or a dict of
            `AdaptiveNeighborDiscovery` arguments (``num_neighbors``, ``num_shared_neighbors``, ``gamma``,
            ``block_size``) for `supervision_refreshers`.
        update_every_n_epochs: T, an AND round every T epochs (paper 10), or None: W⁰ throughout (AND⁰).
        similarity_storage: ``"auto"`` (dense up to `DENSE_LIMIT` samples, else lists), ``"dense"`` or
            ``"lists"``.
        max_neighbors: int >= 1, the neighbour lists' width (positives kept per row; ``"lists"`` storage).
        head_init: ``"normal_1e-3"`` (the default: the released TensorFlow code's ``truncated_normal(0,
            0.001)``), ``"glorot"`` or ``"torch"``; see `Hasher.head_initializers`.
        backbone, feature_size, hqt, seed, **kwargs: see `Hasher`.

    Call arguments (of `self_loss`, through ``fit``): batches ``{"inputs": x, "sample_index": i}``.

    Example (a frozen backbone's cached features; the paper fine-tunes VGG19):

    >>> bank = FeatureBank(backbone, pool, protocol=split.protocol, train=split.train,
    ...                    evaluation={"query": split.query, "database": split.database})
    >>> model = DSAHHasher(64, num_samples=len(split.train), feature_size=bank.feature_size, seed=0)
    >>> model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(
    ...     1e-4, 200, 0.99, staircase=True), epsilon=1.0))
    >>> data = bank.training_dataset(batch_size=50, epochs=30, drop_remainder=True)
    >>> refreshers = model.supervision_refreshers(bank.train[0, 0], verbose=1)   # W⁰, then AND every 10
    >>> model.fit(data, epochs=30, callbacks=refreshers)
    >>> refreshers[0].log[-1]["positives"], refreshers[0].log[-1]["threshold"]

    Reference:
        Lin et al., "Deep Self-Adaptive Hashing for Image Retrieval", CIKM 2021: Eq. 4–6 (codes), 7–12 (AND),
        13–17 (PIC and the loss), Alg. 1; Sec. 5.2 (λ = 10, τ = 1, γ = 1 on CIFAR-10, R × T = 3 × 10). Released
        code: github.com/QinghongLin/DSAH (``utils/loss.py`` ``H_Loss``, ``utils/Update.py``).
    """

    loss_terms = ("similarity", "quantization")
    default_head_init = "normal_1e-3"

    def __init__(
        self,
        num_bits,
        num_samples,
        quantization_weight=10.0,
        temperature=1.0,
        pair_weights="pic",
        hidden_units=1000,
        neighbor_discovery=None,
        update_every_n_epochs=10,
        similarity_storage="auto",
        max_neighbors=2048,
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
        if self.num_samples >= _FLOAT32_INTEGERS:
            raise ValueError(f"`num_samples` must be below 2^24 (ids are stored as float32), got {num_samples}.")
        self.quantization_weight = check_number(quantization_weight, "quantization_weight", minimum=0)
        self.temperature = check_number(temperature, "temperature", minimum=0, exclusive_minimum=True)
        if not isinstance(pair_weights, str) or pair_weights not in PAIR_WEIGHTS:
            raise ValueError(f"`pair_weights` must be one of {', '.join(map(repr, PAIR_WEIGHTS))}, got "
                             f"{pair_weights!r}.")
        self.pair_weights = pair_weights
        self.hidden_units = check_int(hidden_units, "hidden_units", minimum=1)
        self.neighbor_discovery = check_builder_settings(
            neighbor_discovery, "neighbor_discovery", AdaptiveNeighborDiscovery, _NEIGHBOR_DISCOVERY_KEYS
        )
        self.update_every_n_epochs = check_int(update_every_n_epochs, "update_every_n_epochs", minimum=1,
                                               allow_none=True)
        if not isinstance(similarity_storage, str) or similarity_storage not in STORAGES:
            raise ValueError(f"`similarity_storage` must be one of {', '.join(map(repr, STORAGES))}, got "
                             f"{similarity_storage!r}.")
        self.similarity_storage = similarity_storage
        self.max_neighbors = check_int(max_neighbors, "max_neighbors", minimum=1)
        self.head = keras.Sequential(
            [
                keras.layers.Dense(self.hidden_units, **self.head_initializers(self.feature_size, 0),
                                   name="hidden"),
                keras.layers.Dense(num_bits, activation="tanh", **self.head_initializers(self.hidden_units, 1),
                                   name="hash"),
            ],
            name="head",
        )
        self._create_similarity_state()
        self._finish_init()

    @property
    def storage(self):
        """How W is stored: ``"dense"`` or ``"lists"`` (``similarity_storage``, with "auto" resolved)."""
        if self.similarity_storage != "auto":
            return self.similarity_storage
        return "dense" if self.num_samples <= DENSE_LIMIT else "lists"

    def _create_similarity_state(self):
        n = self.num_samples
        if self.storage == "dense":
            # int8 ±1: the 100 MB for 10,000 samples; 0 marks a model that was never assigned
            self.neighbor_similarity = self.add_weight(
                name="neighbor_similarity", shape=(n, n), initializer="zeros", dtype="int8", trainable=False,
                autocast=False,
            )
        else:
            # float32 ids, exact below 2^24 (int32 variables live in host memory on GPUs); −1 pads a row
            self.neighbor_similarity = self.add_weight(
                name="neighbor_lists", shape=(n, self.max_neighbors), initializer="zeros", dtype="float32",
                trainable=False, autocast=False,
            )
        self.neighbor_similarity_assigned = self.add_weight(
            name="neighbor_similarity_assigned", shape=(), initializer="zeros", dtype="float32",
            trainable=False, autocast=False,
        )

    # --- the neighbour-similarity state -------------------------------------------------------------------

    def assign_neighbor_similarity(self, similarity):
        """Writes W into the model: a dense ±1 (n, n) array, or neighbour lists (n, c) of ids padded with −1.

        Either form is accepted for either storage (converted with `AdaptiveNeighborDiscovery.to_dense` /
        ``to_lists``); lists wider than ``max_neighbors`` (rows with more positives) are refused for the lists
        storage, naming the widest row.

        Raises:
            ValueError: wrong shape or values (not ±1; ids outside [0, n) other than the −1 padding).
        """
        similarity = np.asarray(similarity)
        n = self.num_samples
        dense = similarity.shape == (n, n) and similarity.dtype == np.int8
        if not dense:
            if (similarity.ndim != 2 or similarity.shape[0] != n or not np.issubdtype(similarity.dtype, np.integer)
                    or similarity.min(initial=-1) < -1 or similarity.max(initial=-1) >= n):
                raise ValueError(
                    f"`similarity` must be a dense int8 ±1 array of shape (num_samples, num_samples) = ({n}, {n}) "
                    f"or integer neighbour lists (num_samples, width) of ids in [0, {n}) padded with −1; got "
                    f"shape {similarity.shape}, dtype {similarity.dtype}."
                )
        elif not np.all(np.abs(similarity) == 1):
            raise ValueError("`similarity` (dense) must hold only +1 and −1.")
        if self.storage == "dense":
            value = similarity if dense else AdaptiveNeighborDiscovery.to_dense(similarity, n)
        else:
            lists = AdaptiveNeighborDiscovery.to_lists(similarity) if dense else similarity
            widest = int(np.max(np.sum(lists >= 0, axis=1)))
            if widest > self.max_neighbors:
                raise ValueError(
                    f"`similarity` has a row with {widest} positives, more than max_neighbors="
                    f"{self.max_neighbors} (the width of this model's neighbour lists)."
                )
            value = np.full((n, self.max_neighbors), -1.0, np.float32)
            for row, ids in enumerate(lists):
                ids = ids[ids >= 0]
                value[row, : len(ids)] = ids
        self.neighbor_similarity.assign(value)
        self.neighbor_similarity_assigned.assign(1.0)

    def neighbor_similarity_array(self):
        """W as stored, in NumPy: dense int8 (n, n), or int32 neighbour lists (n, c) trimmed to the widest row.

        Raises:
            ValueError: the model holds no neighbour similarity yet.
        """
        if not self.neighbor_similarity_is_assigned():
            raise ValueError(_NOT_ASSIGNED)
        value = keras.ops.convert_to_numpy(self.neighbor_similarity)
        if self.storage == "dense":
            return value
        lists = value.astype(np.int32)
        width = max(int(np.max(np.sum(lists >= 0, axis=1))), 1)
        return lists[:, :width]

    def neighbor_similarity_is_assigned(self):
        """Whether W has been written (`assign_neighbor_similarity`, or a refresher)."""
        return float(keras.ops.convert_to_numpy(self.neighbor_similarity_assigned)) == 1.0

    def batch_neighbor_similarity(self, sample_index):
        """W of a batch: ``W[index][:, index]``, float32 ±1 (B, B).

        Args:
            sample_index: int tensor (B,), the samples' positions in the training set.
        """
        index, guard = batches.checked_sample_index(
            sample_index, self.num_samples, self.neighbor_similarity_assigned, _NOT_ASSIGNED,
            _OUT_OF_RANGE.format(self.num_samples),
        )
        # `.value` is the variable itself: a sparse read of B rows instead of all n × n.
        rows = tf.gather(self.neighbor_similarity.value, index)
        if self.storage == "dense":
            w = tf.cast(tf.gather(rows, index, axis=1), tf.float32)
        else:
            member = tf.equal(rows[:, None, :], tf.cast(index, tf.float32)[None, :, None])
            w = tf.where(tf.reduce_any(member, axis=-1), 1.0, -1.0)
        return w * guard  # NaN under XLA for an unassigned state or a wrong index (batches.checked_sample_index)

    # --- training -----------------------------------------------------------------------------------------

    @property
    def needs_sample_index(self):
        return True

    def pair_weight(self, cosine):
        """``a`` of a batch's (B, B) cosines under ``pair_weights`` (Eq. 15–16 and the Fig. 4 variants)."""
        if self.pair_weights == "uniform":
            return tf.ones_like(cosine)
        logits = tf.reshape(cosine, [-1]) / self.temperature
        log_p = tf.reshape(tf.nn.log_softmax(logits), tf.shape(cosine))
        if self.pair_weights == "pic":
            return -log_p
        return -tf.math.log1p(-tf.exp(log_p))

    def self_loss(self, inputs, sample_index, training):
        if sample_index is None:
            raise ValueError(
                "DSAHHasher gathers its neighbour similarity by sample index: the data must yield "
                "{'inputs': x, 'sample_index': i} batches (tfhash.data.training_dataset, "
                "FeatureBank.training_dataset)."
            )
        codes = tf.cast(self.codes(self.features(inputs, training=training), training=training), tf.float32)
        normalized = tf.math.l2_normalize(codes, axis=1)
        cosine = tf.matmul(normalized, normalized, transpose_b=True)
        w = self.batch_neighbor_similarity(sample_index)
        similarity = tf.reduce_mean(self.pair_weight(cosine) * tf.square(cosine - w))
        signs = tf.stop_gradient(tf.where(codes >= 0, 1.0, -1.0))
        quantization = tf.reduce_mean(tf.square(signs - codes))
        loss = similarity + self.quantization_weight * quantization
        return loss, {"similarity": similarity, "quantization": quantization}, [codes]

    # --- supervision --------------------------------------------------------------------------------------

    def neighbor_discovery_builder(self):
        """An `AdaptiveNeighborDiscovery` with this model's ``neighbor_discovery`` settings."""
        return AdaptiveNeighborDiscovery(**(self.neighbor_discovery or {}))

    def supervision_refreshers(self, features, verbose=0, *, inputs=None, labels=None):
        """The neighbour similarity's refresher (`tfhash.callbacks.AdaptiveNeighborRefresher`: W⁰ from
        ``features``, an AND round every ``update_every_n_epochs``), then the base's (HQT).

        ``inputs``: what the model encodes at each AND round, the training set in sample-index order (None:
        ``features``, right for a model that takes features; a model with a backbone needs its images, e.g.
        ``tfhash.data.evaluation_dataset(pool, split.train, 64)``). ``labels``: the training labels, for the
        refresher's log only (precision, recall and F_w of W, the paper's Fig. 7); never used for training.
        See `Hasher.supervision_refreshers`.
        """
        own = AdaptiveNeighborRefresher(
            self.neighbor_discovery_builder(), features, inputs=inputs, labels=labels,
            every_n_epochs=self.update_every_n_epochs, verbose=verbose,
        )
        return [own, *super().supervision_refreshers(features, verbose=verbose, inputs=inputs, labels=labels)]

    def _unassigned_supervision(self):
        unassigned = []
        if not self.neighbor_similarity_is_assigned():
            how = "model.assign_neighbor_similarity(AdaptiveNeighborDiscovery().initial_neighbors(train_features))"
            unassigned.append(("neighbour similarity", AdaptiveNeighborRefresher, how))
        return unassigned + super()._unassigned_supervision()

    # --- saving -------------------------------------------------------------------------------------------

    def get_config(self):
        config = {
            "num_samples": self.num_samples,
            "quantization_weight": self.quantization_weight,
            "temperature": self.temperature,
            "pair_weights": self.pair_weights,
            "hidden_units": self.hidden_units,
            "neighbor_discovery": None if self.neighbor_discovery is None else dict(self.neighbor_discovery),
            "update_every_n_epochs": self.update_every_n_epochs,
            "similarity_storage": self.similarity_storage,
            "max_neighbors": self.max_neighbors,
        }
        return {**super().get_config(), **config}
