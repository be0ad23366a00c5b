"""Keras callback that writes HQT pseudo bits into a hasher's HQT regulariser, and optionally redraws them."""

from tfhash.callbacks.supervision_refresher import SupervisionRefresher
from tfhash.supervision.hyper_quantization_tree import HyperQuantizationTree


class HQTPseudoBits(SupervisionRefresher):
    """Fits a `HyperQuantizationTree` on training features and assigns its pseudo bits to ``model.hqt``.

    A `SupervisionRefresher`: at the start of training the tree is fitted on ``features`` and its pseudo bits
    are written into the model's `HQTRegularizer` (``model.hqt.assign``), unless they were already assigned (a
    model restored from a file or checkpoint, or trained before, keeps its bits) or
    ``refit_on_train_begin=True``. With ``every_n_epochs=n`` the bits are redrawn after every n-th epoch with
    a fresh tree seed: the bits used from epoch ``e`` on come from the tree seeded ``tree.seed + e // n``
    (``tree.seed`` first, ``tree.seed + 1`` after epoch n − 1, …): new depths and leaf partitions and, with
    ``shared_tree=False``, new k-means seeds. The seed depends on the epoch only, so a run resumed with
    ``fit(..., initial_epoch=e)`` and a new callback draws the same trees as the uninterrupted run.
    ``features`` may be a callable ``model -> (n, d) array``, evaluated at each draw: with a fine-tuned
    backbone the trees then follow the current features.

    `tfhash.models.Hasher.supervision_refreshers` builds this callback from the regulariser's own settings
    (``HQTRegularizer(..., tree=..., every_n_epochs=...)``); build it by hand for anything else.

    Args:
        tree: a `HyperQuantizationTree` giving the configuration (num_bits must equal the model's) and the
            first seed.
        features: (n_train, d) array of the training set's backbone features, in sample-index order, or a
            callable ``model -> array``.
        every_n_epochs: None (draw once) or int >= 1, redraw after every n-th epoch.
        refit_on_train_begin: bool, draw at the start of training even if the model already holds bits.
        verbose: 1 prints one line per draw.

    Attributes:
        draws (= refreshes): how many times this callback has assigned bits.

    Example:

    >>> model = BiHalfHasher(64, feature_size=4096, hqt=HQTRegularizer(num_samples=5000))
    >>> tree = HyperQuantizationTree(64, depth_range=(3, 5), seed=0)
    >>> data = bank.training_dataset(64, epochs=300)
    >>> model.fit(data, epochs=300, callbacks=[HQTPseudoBits(tree, bank.train[0, 0])])

    Reference:
        Kim & Ryu, "Unsupervised Hashing Network with Hyper Quantization Tree", BMVC 2024, Alg. 1 (the pseudo
        bits y_t of Eq. 2 are built once from the training features before training).
    """

    def __init__(self, tree, features, every_n_epochs=None, refit_on_train_begin=False, verbose=0):
        if not isinstance(tree, HyperQuantizationTree):
            raise ValueError(f"`tree` must be a tfhash.supervision.HyperQuantizationTree, got {tree!r}.")
        super().__init__(
            features, every_n_epochs=every_n_epochs, refit_on_train_begin=refit_on_train_begin, verbose=verbose
        )
        self.tree = tree

    @property
    def draws(self):
        return self.refreshes

    def tree_for(self, epoch):
        """The tree whose bits are used from ``epoch`` on: ``tree`` itself, or a copy seeded
        ``tree.seed + refresh_index(epoch)``."""
        offset = self.refresh_index(epoch)
        if offset == 0:
            return self.tree
        return HyperQuantizationTree(**{**self.tree.get_config(), "seed": self.tree.seed + offset})

    def check(self, model):
        hqt = getattr(model, "hqt", None)
        if hqt is None:
            raise ValueError("HQTPseudoBits needs a model built with an HQT regulariser (`hqt=HQTRegularizer(n)`).")
        if hqt.num_bits != self.tree.num_bits:
            raise ValueError(
                f"`tree` has num_bits={self.tree.num_bits} but the model's codes have {hqt.num_bits} bits."
            )
        return hqt

    def is_assigned(self, model):
        return bool(self.check(model).assigned.numpy())

    def refresh(self, model, epoch):
        """Fits the tree for ``epoch`` on the features and assigns its pseudo bits to ``model.hqt``."""
        hqt = self.check(model)
        tree = self.tree_for(epoch)
        hqt.assign(tree.pseudo_bits(self.current_features(model)))
        if self.verbose:
            print(f"HQTPseudoBits: pseudo bits drawn with tree seed {tree.seed} (depths {tree.depth_range}).")
