"""Keras callback that writes HQT pseudo bits into a hasher's HQT regulariser, and optionally redraws them."""

import keras

from tfhash._validation import check_int
from tfhash.supervision.hyper_quantization_tree import HyperQuantizationTree


class HQTPseudoBits(keras.callbacks.Callback):
    """Fits a `HyperQuantizationTree` on training features and assigns its pseudo bits to ``model.hqt``.

    At the start of training the tree is fitted on ``features`` and its pseudo bits are written into the
    model's `HQTRegularizer` (``model.hqt.assign``), unless they were already assigned (a model restored from a
    checkpoint or trained before keeps its bits) or ``refit_on_train_begin=True``. With ``every_n_epochs``
    the bits are redrawn after every n-th epoch with a fresh tree seed (``seed + 1``, ``seed + 2``, … for the
    first, second, … redraw): new depths and leaf partitions and, with ``shared_tree=False``, new k-means
    seeds. ``features`` may be a callable ``model -> (n, d) array``, evaluated at each draw: with a fine-tuned
    backbone the trees then follow the current features.

    Args:
        tree: a `HyperQuantizationTree` giving the configuration (num_bits must equal the model's) and the
            first seed.
        features: (n_train, d) array of the training set's backbone features, in sample-index order, or a
            callable ``model -> array``.
        every_n_epochs: None (draw once) or int >= 1, redraw after every n-th epoch.
        refit_on_train_begin: bool, draw at the start of training even if the model already holds bits.
        verbose: 1 prints one line per draw.

    Example:

    >>> model = BiHalfHasher(64, feature_size=4096, hqt=HQTRegularizer(num_samples=5000))
    >>> tree = HyperQuantizationTree(64, depth_range=(3, 5), seed=0)
    >>> model.fit(bank.training_dataset(64), epochs=300, callbacks=[HQTPseudoBits(tree, bank.train[0, 0])])

    Reference:
        Kim & Ryu, "Unsupervised Hashing Network with Hyper Quantization Tree", BMVC 2024, Alg. 1 (the pseudo
        bits y_t of Eq. 2 are built once from the training features before training).
    """

    def __init__(self, tree, features, every_n_epochs=None, refit_on_train_begin=False, verbose=0):
        super().__init__()
        if not isinstance(tree, HyperQuantizationTree):
            raise ValueError(f"`tree` must be a tfhash.supervision.HyperQuantizationTree, got {tree!r}.")
        self.tree = tree
        self.features = features
        self.every_n_epochs = check_int(every_n_epochs, "every_n_epochs", minimum=1, allow_none=True)
        self.refit_on_train_begin = bool(refit_on_train_begin)
        self.verbose = verbose
        self.draws = 0

    def _regularizer(self):
        hqt = getattr(self.model, "hqt", None)
        if hqt is None:
            raise ValueError("HQTPseudoBits needs a model built with an HQT regulariser (`hqt=HQTRegularizer(n)`).")
        if hqt.num_bits != self.tree.num_bits:
            raise ValueError(
                f"`tree` has num_bits={self.tree.num_bits} but the model's codes have {hqt.num_bits} bits."
            )
        return hqt

    def draw(self):
        """Fits a tree (seed ``tree.seed + draws``) on the features and assigns its pseudo bits to the model."""
        hqt = self._regularizer()
        features = self.features(self.model) if callable(self.features) else self.features
        tree = self.tree
        if self.draws:
            tree = HyperQuantizationTree(
                tree.num_bits, depth_range=tree.depth_range, shared_tree=tree.shared_tree,
                seed=tree.seed + self.draws, kmeans_iterations=tree.kmeans_iterations,
                projection_dim=tree.projection_dim,
            )
        hqt.assign(tree.pseudo_bits(features))
        if self.verbose:
            print(f"HQTPseudoBits: pseudo bits drawn with tree seed {tree.seed} (depths {tree.depth_range}).")
        self.draws += 1

    def on_train_begin(self, logs=None):
        if self.refit_on_train_begin or not bool(self._regularizer().assigned.numpy()):
            self.draw()

    def on_epoch_end(self, epoch, logs=None):
        if self.every_n_epochs is not None and (epoch + 1) % self.every_n_epochs == 0:
            self.draw()
