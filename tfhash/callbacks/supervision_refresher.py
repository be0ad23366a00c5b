"""The base of the callbacks that write a model's label-free, sample-indexed supervision between epochs."""

import abc

import keras

from tfhash._validation import check_int


class SupervisionRefresher(keras.callbacks.Callback, abc.ABC):
    """Base of the callbacks that compute a model's per-sample supervision and write it into the model.

    Label-free supervision (HQT pseudo bits, CIMON's pseudo-similarity, and next DSAH's neighbour similarity or
    UCSH's cluster targets) lives on the model as non-trainable, sample-indexed weights with an ``assigned``
    flag: saved in ``.keras`` files and checkpoints, mirrored under `tf.distribute`. A refresher is the only
    writer of that state during training. Its lifecycle:

    - At the start of training (just before the first epoch of a ``fit`` call), the state is computed and
      written when the model does not hold one yet, or always with ``refit_on_train_begin=True``. A model
      restored from a file or checkpoint, or trained before, keeps its state.
    - With ``every_n_epochs=n`` the state is recomputed after every n-th epoch (after epochs n − 1, 2n − 1, …
      counting from 0).

    Every refresh is told the epoch it prepares: the number of epochs completed before the state is used
    (0 at the start of a fresh run, ``initial_epoch`` when resuming, ``e + 1`` after epoch ``e``). Refreshers
    derive any seed from it through `refresh_index` (``epoch // every_n_epochs``, 0 without redraws), never from
    a count of their own calls, so a run resumed with ``fit(..., initial_epoch=e)`` and a new callback redraws
    exactly as the uninterrupted run would have.

    `tfhash.models.Hasher.supervision_refreshers` builds the refreshers a model needs from its own
    configuration; ``Hasher.fit`` refuses to start when a state is unassigned and no refresher for it is among
    the callbacks.

    Subclasses implement `is_assigned` and `refresh`, and may override `check` (validation at the start of
    training, e.g. that the model has the state at all).

    Args:
        features: the training features the state is computed from, in sample-index order (an (n, d) array),
            or a callable ``model -> features`` called at each refresh (with a fine-tuned backbone the
            supervision then follows the current features). Subclasses say what else they accept.
        every_n_epochs: None (compute once) or int >= 1, recompute after every n-th epoch.
        refit_on_train_begin: bool, compute at the start of training even if the model already holds a state.
        verbose: 0 silent, 1 one line per refresh.

    Attributes:
        refreshes: how many times this callback has written the state.

    Example (a subclass, as `tfhash.callbacks.HQTPseudoBits` is one):

    >>> class Centroids(SupervisionRefresher):
    ...     def is_assigned(self, model):
    ...         return bool(model.centroids_assigned.numpy())
    ...     def refresh(self, model, epoch):
    ...         seed = 0 + self.refresh_index(epoch)
    ...         model.assign_centroids(kmeans(self.current_features(model), seed=seed))
    >>> model.fit(data, epochs=10, callbacks=[Centroids(train_features, every_n_epochs=2)])

    Reference:
        DESIGN.md, "Sample-indexed state": supervision is model state, written only by a callback with
        ``.assign(...)`` between epochs.
    """

    def __init__(self, features, every_n_epochs=None, refit_on_train_begin=False, verbose=0):
        super().__init__()
        self.features = features
        self.every_n_epochs = check_int(every_n_epochs, "every_n_epochs", minimum=1, allow_none=True)
        if not isinstance(refit_on_train_begin, bool):
            raise ValueError(f"`refit_on_train_begin` must be a bool, got {refit_on_train_begin!r}.")
        self.refit_on_train_begin = refit_on_train_begin
        self.verbose = int(verbose)
        self.refreshes = 0
        self._first_epoch = False

    # --- subclass interface -------------------------------------------------------------------------------

    @abc.abstractmethod
    def is_assigned(self, model):
        """Whether ``model`` already holds the state this callback writes."""

    @abc.abstractmethod
    def refresh(self, model, epoch):
        """Computes the state for ``epoch`` (epochs completed before it is used) and writes it into ``model``."""

    def check(self, model):
        """Raises a ValueError when ``model`` cannot take this state (called at the start of training)."""

    # --- helpers ------------------------------------------------------------------------------------------

    def refresh_index(self, epoch):
        """How many scheduled recomputations precede the state used at ``epoch``: ``epoch // every_n_epochs``
        (0 without ``every_n_epochs``). Seeds derived from it make resumed runs redraw as uninterrupted ones."""
        return 0 if self.every_n_epochs is None else int(epoch) // self.every_n_epochs

    def current_features(self, model):
        """The features, calling ``features(model)`` when a callable was given."""
        return self.features(model) if callable(self.features) else self.features

    def run_refresh(self, model, epoch):
        """`refresh` and the bookkeeping around it (the count of refreshes)."""
        self.refresh(model, int(epoch))
        self.refreshes += 1

    # --- Keras hooks --------------------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self.check(self.model)
        # The refresh itself waits for the first epoch: only then is its number (``initial_epoch``) known.
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch:
            self._first_epoch = False
            if self.refit_on_train_begin or not self.is_assigned(self.model):
                self.run_refresh(self.model, epoch)

    def on_epoch_end(self, epoch, logs=None):
        if self.every_n_epochs is not None and (epoch + 1) % self.every_n_epochs == 0:
            self.run_refresh(self.model, epoch + 1)
