"""The common base of every tfhash model: code length, encoding, prediction, loss trackers and serving."""

import inspect

import keras

from tfhash import batches
from tfhash._validation import check_int
from tfhash.export import export_encoder
from tfhash.layers.sign_ste import _sign


class HashingModel(keras.Model):
    """Base of the tfhash hashing models (`Hasher` and its subclasses, `HashGAN`): what they all share.

    A hashing model maps its inputs (images, or backbone features) to K-bit codes. This base owns what does
    not depend on the method:

    - ``num_bits``, the code length K (validated);
    - `encode`: float32 ±1 codes of a batch, ``binarize_outputs(call(inputs, training=False))``; by default
      the sign with ``sign(0) = +1`` (the rule of `tfhash.layers.SignSTE`), a subclass whose outputs are not
      centred on 0 overrides `binarize_outputs` (`HashGAN`: +1 where the bit probability is above 0.5);
    - ``predict_step``: `encode` of the batch's inputs, read with `tfhash.batches.inputs_of`, so ``predict``
      takes inputs alone, ``{"inputs": x, "labels": y}`` evaluation batches and ``{"inputs": x,
      "sample_index": i}`` training batches alike;
    - the loss trackers: one `keras.metrics.Mean` per named loss term, created by `_create_trackers`, listed
      by the ``metrics`` property (so Keras resets them every epoch) and updated by `_track` from the dict of
      terms a ``train_step`` / ``test_step`` computes;
    - saving: the states of the model's random seed generators are saved with its weights in ``.keras``
      files (Keras does not save them), so a reloaded model draws the same random numbers and training
      resumes exactly;
    - serving: the subclass declares what it serves with `serving_interface` (a
      `tfhash.serving.ServingInterface`); `export` writes the SavedModel from it (`tfhash.export`).

    A subclass calls ``super().__init__(num_bits, **kwargs)``, creates its trackers with
    ``self._create_trackers(names)`` and implements ``call``, ``train_step`` (and ``test_step``) and
    `serving_interface`.

    Args:
        num_bits: int >= 1, the code length K.
        **kwargs: standard `keras.Model` arguments (``name``, ...).

    Example (a minimal head-only model; the tfhash models are built the same way):

    >>> class SignHasher(HashingModel):
    ...     def __init__(self, num_bits, feature_size, **kwargs):
    ...         super().__init__(num_bits, **kwargs)
    ...         self.feature_size = feature_size
    ...         self.head = keras.layers.Dense(num_bits)
    ...         self.head.build((None, feature_size))
    ...         self._create_trackers(("loss",))
    ...         self.built = True
    ...     def call(self, inputs, training=False):
    ...         return self.head(inputs)
    ...     def serving_interface(self):
    ...         return ServingInterface(self.num_bits, type(self).__name__, self.name,
    ...                                 feature_size=self.feature_size, encode_features=self.encode,
    ...                                 variables=self.variables)
    >>> model = SignHasher(16, feature_size=32)
    >>> model.predict({"inputs": features, "labels": labels})    # ±1 codes, labels ignored
    >>> model.export("saved_models/sign_16")

    Reference:
        DESIGN.md ("One class per method", sharing a base that owns ``encode()`` and export); issue 11
        part 5 (one model base for `Hasher` and `HashGAN`, export through a declared serving interface).
    """

    def __init__(self, num_bits, **kwargs):
        super().__init__(**kwargs)
        self.num_bits = check_int(num_bits, "num_bits", minimum=1)

    # --- encoding -----------------------------------------------------------------------------------------

    def binarize_outputs(self, outputs):
        """±1 float32 codes of the outputs of ``call(inputs, training=False)``: the sign, ``sign(0) = +1``."""
        return _sign(outputs)

    def encode(self, inputs):
        """±1 codes (float32, (batch, K)) of a batch of inputs: images, or features for a head-only model.

        Args:
            inputs: a batch the model's ``call`` takes (a tensor or array).

        Returns:
            A float32 tensor of ±1, ``binarize_outputs(call(inputs, training=False))``.
        """
        return self.binarize_outputs(self(inputs, training=False))

    def predict_step(self, data):
        return self.encode(batches.inputs_of(data, type(self).__name__))

    def predict(self, *args, **kwargs):
        """`keras.Model.predict`, one batch per call whatever ``compile(steps_per_execution=...)`` says.

        Keras unrolls predict's ``steps_per_execution`` in Python (a graph of k steps, traced again for the last,
        shorter execution), where fit and evaluate loop in the graph: with a whole epoch per execution, as the
        recipes compile on cached features, encoding would trace hundreds of steps for nothing.
        """
        steps_per_execution, self.steps_per_execution = self.steps_per_execution, 1
        try:
            return super().predict(*args, **kwargs)
        finally:
            self.steps_per_execution = steps_per_execution

    # --- loss trackers ------------------------------------------------------------------------------------

    def _create_trackers(self, names):
        """One `keras.metrics.Mean` per loss term, in progress-bar order: ``self.trackers[name]``."""
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _track(self, losses):
        """Updates each tracker with its term of ``losses`` (dict name → scalar); returns the running means.

        The terms must be exactly the tracked names: a term without tracker, or a tracker without term, is a
        bug of the model and raises ValueError (when the step is traced).
        """
        if set(losses) != set(self.trackers):
            raise ValueError(
                f"{type(self).__name__} computed the loss terms {sorted(losses)}, but tracks "
                f"{sorted(self.trackers)}: each term needs exactly one tracker."
            )
        for name, tracker in self.trackers.items():
            tracker.update_state(losses[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    # --- training -----------------------------------------------------------------------------------------

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`; on a tfhash training stream, ``steps_per_epoch`` comes from the stream.

        `tfhash.data.training_dataset` and `FeatureBank.training_dataset` yield one stream over the epochs
        ``initial_epoch .. epochs - 1`` they were built for, which Keras reads right only with
        ``steps_per_epoch`` (else it takes the whole stream as the first epoch). On such a stream ``fit`` sets
        it, and refuses ``epochs`` / ``initial_epoch`` / ``steps_per_epoch`` that differ from the stream's, and a
        ``steps_per_execution`` that does not divide its steps per epoch (they would train on other epochs'
        batches).

        Raises:
            ValueError: the arguments do not match the stream, naming both.
        """
        arguments = inspect.signature(keras.Model.fit).bind_partial(self, *args, **kwargs).arguments
        stream = getattr(arguments.get("x"), batches.EPOCH_STREAM, None)
        if stream is not None:
            initial_epoch, epochs, steps = stream
            asked = (arguments.get("initial_epoch", 0), arguments.get("epochs", 1))
            if asked != (initial_epoch, epochs):
                raise ValueError(
                    f"{type(self).__name__}.fit(initial_epoch={asked[0]}, epochs={asked[1]}) on a training "
                    f"stream built for initial_epoch={initial_epoch}, epochs={epochs}: build the dataset with "
                    "the epochs fit runs (training_dataset(..., epochs=E, initial_epoch=e))."
                )
            if arguments.get("steps_per_epoch") not in (None, steps):
                raise ValueError(
                    f"{type(self).__name__}.fit(steps_per_epoch={arguments['steps_per_epoch']}) on a training "
                    f"stream of {steps} steps per epoch: leave steps_per_epoch out (it is taken from the stream)."
                )
            if steps % self.steps_per_execution:
                raise ValueError(
                    f"{type(self).__name__}.fit on a training stream of {steps} steps per epoch, compiled with "
                    f"steps_per_execution={self.steps_per_execution}: it must divide the steps per epoch (an "
                    "execution that crosses an epoch's end takes the next epoch's batches)."
                )
            if "steps_per_epoch" not in arguments:
                kwargs["steps_per_epoch"] = steps
        return super().fit(*args, **kwargs)

    # --- saving -------------------------------------------------------------------------------------------

    def _seed_states(self):
        """The states of the `keras.random.SeedGenerator` s of the model and its layers, in a fixed order."""
        return [v for v in self.variables if v.path.endswith("seed_generator_state")]

    def save_own_variables(self, store):
        # Keras does not save random-generator states; storing them lets a reloaded model draw the same noise
        # (HashGAN's z and b′, CIBHasher's stochastic codes, transformations) as the original would have, so
        # training resumes exactly.
        super().save_own_variables(store)
        for position, state in enumerate(self._seed_states()):
            store[f"seed_state_{position}"] = keras.ops.convert_to_numpy(state)

    def load_own_variables(self, store):
        keys = [key for key in store.keys() if key.startswith("seed_state_")]
        super().load_own_variables({key: store[key] for key in store.keys() if key not in keys})
        states = self._seed_states()
        if len(keys) == len(states):  # files saved before the states were stored have none: keep the seeds'
            for position, state in enumerate(states):
                state.assign(store[f"seed_state_{position}"])

    # --- serving ------------------------------------------------------------------------------------------

    def serving_interface(self):
        """What the model serves, as a `tfhash.serving.ServingInterface` (inputs, encoding functions, names).

        Subclasses implement it; `export` and `tfhash.export.export_encoder` read nothing else of the model.

        Raises:
            ValueError: the model is not built.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement serving_interface().")

    def _check_built(self):
        if not self.built:
            raise ValueError(f"`model` ({type(self).__name__}) is not built: build it before exporting it.")

    def export(self, filepath, format="tf_saved_model", verbose=True, **kwargs):
        """Writes a serving SavedModel: uint8 images and / or features → ±1 and packed uint8 codes.

        Args:
            filepath: str or path-like, the SavedModel directory.
            format: ``"tf_saved_model"``, the only format written.
            verbose: bool, print the path and the signatures.
            **kwargs: ``bitorder`` and ``overwrite`` of `tfhash.export.export_encoder`.

        Returns:
            str, the path of the SavedModel.

        Example:

        >>> model.export("saved_models/bihalf_64", overwrite=True)
        >>> tfhash.load_encoder("saved_models/bihalf_64").encode_features(features)
        """
        if format != "tf_saved_model":
            raise ValueError(
                f"{type(self).__name__}.export writes format='tf_saved_model' only, got format={format!r}."
            )
        return export_encoder(self, filepath, verbose=verbose, **kwargs)

