"""The HQT regulariser: binary cross-entropy between a hasher's codes and Hyper-Quantization-Tree pseudo bits."""

import keras
import numpy as np
import tensorflow as tf

from tfhash import batches
from tfhash._validation import check_builder_settings, check_int, check_number
from tfhash.callbacks.hqt_pseudo_bits import HQTPseudoBits
from tfhash.supervision.hyper_quantization_tree import HyperQuantizationTree

_NOT_ASSIGNED = (
    "HQTRegularizer has no pseudo bits yet: train with `callbacks=model.supervision_refreshers(train_features)` "
    "(a `tfhash.callbacks.HQTPseudoBits`), or assign them before training with "
    "`model.hqt.assign(HyperQuantizationTree(num_bits).pseudo_bits(train_features))`."
)
_OUT_OF_RANGE = (
    "HQTRegularizer: a sample index is outside [0, num_samples) with num_samples={}: the data's "
    "'sample_index' must be positions in the training set the pseudo bits were built for."
)
# HyperQuantizationTree arguments that `tree=` may set (num_bits is the model's).
_TREE_KEYS = ("depth_range", "shared_tree", "seed", "kmeans_iterations", "projection_dim")


@keras.saving.register_keras_serializable(package="tfhash")
class HQTRegularizer(keras.layers.Layer):
    """Sample-indexed HQT pseudo bits and the BCE between them and a hasher's codes (HQT Eq. 2–3).

    The layer holds the pseudo bits ``y_t`` of every training sample as a non-trainable weight of shape
    ``(num_samples, num_bits)``, gathered by the batch's sample indices. Called on the training codes ``ŷ``
    of a batch, it returns ``L_HQT = mean BCE(sigmoid(ŷ), y_t)``, computed stably from the logits ``ŷ``: as in
    the released code, ``ŷ`` is the binarized code itself (±1 for Bi-half, GreedyHash and CIBHash, the tanh
    output for CIMON), so the gradient reaches the head through the binarizer's backward pass. `combine`
    gives Eq. 3, ``(1 − α)·L_self + α·L_HQT``.

    Targets: ``signed_targets=False`` uses the paper's ``y_t ∈ {0, 1}``. ``signed_targets=True`` reproduces
    the released code, which passes ±1 targets to ``BCEWithLogits``: the loss is then
    ``max(ŷ, 0) − ŷ·y + log(1 + exp(−|ŷ|))`` with ``y ∈ {−1, +1}``, which is no longer a cross-entropy
    (it is minimised by pushing ``ŷ`` to ±∞ along ``y``, twice as hard for ``y = −1``).

    The pseudo bits are model state: `.keras` files and checkpoints keep them, and under `tf.distribute` they
    are mirrored. They are written only between steps, by the `tfhash.callbacks.HQTPseudoBits` callback (which
    can also redraw them periodically) or directly by `assign`. The tree's settings are part of the
    regulariser's configuration (``tree``, ``every_n_epochs``), so that the hasher builds that callback itself:
    ``model.supervision_refreshers(train_features)``. Training before any assignment, or with a sample index
    outside ``[0, num_samples)``, raises an error eagerly and in graph mode; under XLA, which drops in-graph
    assertions, the loss and its gradient are NaN instead, so such training cannot pass unnoticed (and
    ``Hasher.fit`` refuses to start on unassigned bits without a refresher).

    The hasher builds the layer with its code length; on its own, call ``build((None, num_bits))``.

    Args:
        num_samples: int >= 1, number of training samples (the range of the sample indices).
        alpha: float in [0, 1], the weight α of Eq. 3 (0.5 in the paper).
        signed_targets: bool, ±1 targets as in the released code (see above); False (the paper) uses {0, 1}.
        tree: None (the defaults) or a dict of `tfhash.supervision.HyperQuantizationTree` arguments other
            than ``num_bits`` (``depth_range``, ``shared_tree``, ``seed``, ``kmeans_iterations``,
            ``projection_dim``): the trees `HQTPseudoBits` draws. Without ``seed`` the trees take the
            hasher's seed (0 when it has none).
        every_n_epochs: None (draw the bits once) or int >= 1: redraw them after every n-th epoch.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        codes: float tensor ``(batch, num_bits)``, the training codes ``ŷ`` (logits of the BCE).
        sample_index: int tensor ``(batch,)``, each row's position in the training set.

    Returns:
        The scalar ``L_HQT`` (mean over the batch and the bits).

    Example:

    >>> hqt = HQTRegularizer(num_samples=5000, alpha=0.5, tree={"depth_range": (3, 5)})
    >>> model = tfhash.models.BiHalfHasher(64, feature_size=4096, hqt=hqt, seed=0)
    >>> model.compile(optimizer=keras.optimizers.SGD(1e-4, momentum=0.9))
    >>> model.fit(bank.training_dataset(32, epochs=300, drop_remainder=True), epochs=300,
    ...           callbacks=model.supervision_refreshers(bank.train[0, 0]))   # HQTPseudoBits, tree seed 0
    >>> # or by hand: model.hqt.assign(HyperQuantizationTree(64, seed=0).pseudo_bits(train_features))

    Reference:
        Kim & Ryu, "Unsupervised Hashing Network with Hyper Quantization Tree", BMVC 2024, Eq. 2 (L_HQT) and
        Eq. 3 (L = (1 − α) L_Self + α L_HQT); released code https://github.com/Lab-LVM/HQT (±1 targets and the
        binarized code as the BCE logits).
    """

    def __init__(self, num_samples, alpha=0.5, signed_targets=False, tree=None, every_n_epochs=None, **kwargs):
        super().__init__(**kwargs)
        self.num_samples = check_int(num_samples, "num_samples", minimum=1)
        if not isinstance(signed_targets, bool):
            raise ValueError(f"`signed_targets` must be a bool, got {signed_targets!r}.")
        self.alpha = check_number(alpha, "alpha", minimum=0, maximum=1)
        self.signed_targets = signed_targets
        self.tree = check_builder_settings(tree, "tree", HyperQuantizationTree, _TREE_KEYS, num_bits=1)
        self.every_n_epochs = check_int(every_n_epochs, "every_n_epochs", minimum=1, allow_none=True)

    def build(self, codes_shape):
        num_bits = codes_shape[-1]
        if num_bits is None:
            raise ValueError("HQTRegularizer needs the code length: build it with (None, num_bits).")
        self.num_bits = int(num_bits)
        self.pseudo_bits = self.add_weight(
            name="pseudo_bits", shape=(self.num_samples, self.num_bits), initializer="zeros", trainable=False
        )
        self.assigned = self.add_weight(name="assigned", shape=(), initializer="zeros", trainable=False)

    def assign(self, pseudo_bits):
        """Writes the pseudo bits: an array ``(num_samples, num_bits)`` of 0 / 1 (or booleans)."""
        if not self.built:
            raise ValueError("Build the HQTRegularizer (or the hasher holding it) before assigning pseudo bits.")
        bits = np.asarray(pseudo_bits)
        if bits.shape != (self.num_samples, self.num_bits):
            raise ValueError(
                f"`pseudo_bits` must have shape (num_samples, num_bits) = ({self.num_samples}, {self.num_bits}), "
                f"got {bits.shape}."
            )
        if not np.isin(bits, (0, 1)).all():
            raise ValueError("`pseudo_bits` must hold only 0 and 1 (HyperQuantizationTree.pseudo_bits gives them).")
        self.pseudo_bits.assign(bits.astype(self.pseudo_bits.dtype))
        self.assigned.assign(1.0)

    def hyper_quantization_tree(self, seed=0):
        """The `HyperQuantizationTree` of this regulariser's ``tree`` settings; ``seed`` is the seed used when
        ``tree`` sets none (the hasher passes its own)."""
        if not self.built:
            raise ValueError("Build the HQTRegularizer (or the hasher holding it) before asking for its tree.")
        return HyperQuantizationTree(self.num_bits, **{"seed": seed, **(self.tree or {})})

    def refresher(self, features, seed=0, verbose=0):
        """The `tfhash.callbacks.HQTPseudoBits` callback that draws this regulariser's pseudo bits from
        ``features`` (the training features in sample-index order, or a callable ``model -> features``), with
        the tree of `hyper_quantization_tree` and ``every_n_epochs``."""
        tree = self.hyper_quantization_tree(seed)
        return HQTPseudoBits(tree, features, every_n_epochs=self.every_n_epochs, verbose=verbose)

    def call(self, codes, sample_index):
        index, guard = batches.checked_sample_index(
            sample_index, self.num_samples, self.assigned, _NOT_ASSIGNED, _OUT_OF_RANGE.format(self.num_samples)
        )
        targets = tf.gather(self.pseudo_bits, index)
        logits = tf.cast(codes, tf.float32)
        if self.signed_targets:
            targets = 2.0 * targets - 1.0
        # The stable form of BCE-with-logits, valid for any target value (PyTorch's formula).
        loss = tf.nn.relu(logits) - logits * targets + tf.math.log1p(tf.exp(-tf.abs(logits)))
        return tf.reduce_mean(loss) * guard  # NaN under XLA for unassigned bits or a wrong index; × 1 is exact

    def combine(self, self_loss, hqt_loss):
        """Eq. 3: ``(1 − alpha) * self_loss + alpha * hqt_loss``."""
        return (1.0 - self.alpha) * self_loss + self.alpha * hqt_loss

    def compute_output_shape(self, codes_shape, sample_index_shape=None):
        return ()

    def get_config(self):
        config = {
            "num_samples": self.num_samples,
            "alpha": self.alpha,
            "signed_targets": self.signed_targets,
            "tree": None if self.tree is None else dict(self.tree),
            "every_n_epochs": self.every_n_epochs,
        }
        return {**super().get_config(), **config}


