"""A recipe as a Keras-Tuner HyperModel: its configuration's search entries are the hyperparameters."""

import time
from pathlib import Path

import keras
import keras_tuner
import numpy as np
import tensorflow as tf

from tfhash.data import get_protocol
from tfhash.recipes import runner
from tfhash.tuning.search_space import SearchSpace
from tfhash.tuning.validation_split import validation_split

# Recipe flags a search sets itself (or that have no meaning in a search): refused in ``recipe_flags``.
SEARCH_OWNED_FLAGS = ("--config", "--preset", "--seed", "--bits", "--runs", "--resume", "--output", "--export",
                      "--saved-models", "--evaluate-every")
# Settings that decide which images and features a trial reads: trials that share them share the data.
SESSION_KEYS = ("dataset", "backbone", "image_size", "fine_tune")
STATE_KEYS = (*SESSION_KEYS, "protocol", "augment", "bank_views", "feature_dtype", "extraction_batch_size",
              "supervision_features")


class RecipeHyperModel(keras_tuner.HyperModel):
    """A recipe (`tfhash.recipes`) whose configuration holds search-space entries, for any Keras-Tuner tuner.

    A value of the configuration may be a literal or a search entry (`tfhash.tuning.SearchSpace`:
    ``alpha = { choice = [0.1, 0.3, 0.5] }``, ``learning_rate = { log_range = [1e-5, 1e-2] }``). Each trial:

    - ``build(hp)``: the configuration with the trial's values is checked as a recipe's (`runner.check_config`),
      resolved for the preset and code length (`runner.resolve`), and its model built and compiled as the
      recipe builds it (the family's ``build``);
    - ``fit(hp, model, callbacks=...)``: trains it as the recipe does (the model's supervision refreshers, e.g.
      HQT's pseudo bits or CIMON's pseudo-similarity, run inside the trial, beside the tuner's ``callbacks``)
      on the training images outside a seeded validation carve-out (`validation_split`), then ranks the
      carve-out's images against the rest and returns ``{objective: mAP, ...}``.

    The objective, ``val_map@<k>`` (``val_map@all`` without a top k; direction max, `objective`), is computed
    from the training images alone: the protocol's query images are never read by a search. Every trial
    uses the same seed (split, carve-out, model and data order), so trials differ only by their values.
    Under Hyperband (``fit(epochs=...)``), each trial trains from scratch for its epochs: schedules and
    warm-ups are fractions of a run's length, so continuing another trial's weights would not be the same
    training. The data (dataset, backbone, feature bank) is loaded once per distinct data setting.

    Args:
        recipe: str, a recipe name (``tfhash.recipes.<recipe>``).
        config: path of a ``.toml`` configuration with search entries; None: the recipe's own (which has none
            unless edited).
        preset: "paper" or "demo", the preset searched.
        bits: int, the code length searched; None: the preset's first.
        seed: int >= 0, the split's, the carve-out's and every trial's training seed.
        validation_size: fraction in (0, 1) or count of the training images held out as validation queries.
        recipe_flags: list of str, the recipe's own command-line flags (``--data-dir``, ``--bank-dir``,
            ``--epochs``, ``--backbone``, ``--limit``, ``--jit-compile``, ...); flags the search sets itself
            (`SEARCH_OWNED_FLAGS`) are refused.
        verbose: Keras verbosity of each trial's training (0, 1, 2).

    Raises:
        RecipeError: a configuration that is not a valid recipe once its entries take a value (checked with
            each entry's first value before any data is read), or no search entry at all.
        SearchSpaceError: a malformed search entry (named).

    Example:

    >>> hypermodel = RecipeHyperModel("hqt_bihalf", "search.toml", preset="demo", bits=16)  # doctest: +SKIP
    >>> tuner = keras_tuner.RandomSearch(hypermodel, objective=hypermodel.objective, max_trials=10,
    ...                                  directory="searches", project_name="hqt_bihalf")  # doctest: +SKIP
    >>> tuner.search()  # doctest: +SKIP

    Reference:
        O'Malley et al., KerasTuner (2019), https://github.com/keras-team/keras-tuner.
    """

    def __init__(self, recipe, config=None, *, preset="paper", bits=None, seed=0, validation_size=0.1,
                 recipe_flags=(), verbose=0):
        super().__init__(name=f"{recipe}-{preset}")
        self.recipe, self.preset, self.seed, self.validation_size = recipe, preset, seed, validation_size
        self.config_path = Path(config) if config is not None else runner.config_path(recipe)
        self.space = SearchSpace(runner.read_toml(self.config_path))
        if not self.space:
            raise runner.RecipeError(
                f"{self.config_path}: no search entry: write e.g. `alpha = {{ choice = [0.1, 0.3] }}` or "
                "`learning_rate = { log_range = [1e-5, 1e-2] }` in place of a value."
            )
        self.family = runner.family_of(self.space.defaults(), str(self.config_path))
        defaults = self._check(self.space.defaults(), "the first value of each search entry")
        for flag in recipe_flags:
            if str(flag).split("=")[0] in SEARCH_OWNED_FLAGS:
                raise runner.RecipeError(f"recipe_flags: {flag} is set by the search itself; remove it.")
        parser = runner.build_parser(recipe, family=self.family)
        args = parser.parse_args(["--preset", preset, "--seed", str(seed), *recipe_flags])
        runner.check_run_flags(parser, args)
        self.family.check_args(parser, args)
        self.args, self.verbose, self.recipe_flags = args, verbose, list(recipe_flags)
        settings = runner.resolve(defaults, preset, runner.overrides(args, defaults, preset))
        self.bits = settings["bits"][0] if bits is None else bits
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or self.bits < 1:
            raise ValueError(f"`bits` must be a positive int, got {bits!r}.")
        self.settings(self.space.literal_defaults())  # model arguments and optimizer, before any data is read
        top_k = get_protocol(settings["protocol"]).top_k
        self.objective_name = f"val_map@{'all' if top_k is None else top_k}"
        self._sessions, self._states, self._trial = {}, {}, None

    @property
    def objective(self):
        """The tuner's objective: ``keras_tuner.Objective("val_map@<k>", "max")``."""
        return keras_tuner.Objective(self.objective_name, direction="max")

    def _check(self, config, what):
        try:
            return runner.check_config(config, self.config_path, self.recipe)
        except runner.RecipeError as error:
            raise runner.RecipeError(f"{error.message} (with {what})") from None

    def settings(self, values, epochs=None):
        """The resolved settings of one trial: the search entries set to ``values`` (name -> value)."""
        config = self._check(self.space.apply(values), f"values {values}")
        used = runner.resolve(config, self.preset, runner.overrides(self.args, config, self.preset), self.bits)
        used.update(export="none", evaluate_every=0, runs=1)
        if epochs is not None:  # Hyperband's budget of this trial
            used["epochs"] = int(epochs)
        self.family.validate(used, self.bits, f"configuration {str(self.config_path)!r} with values {values}")
        return used

    def build(self, hp):
        values = self.space.declare(hp)
        used = self.settings(values, hp.values.get("tuner/epochs"))
        session, state = self._data(used)
        model = self.family.build(session, state, used, self.bits, self.seed)
        self._trial = (hp, values, used, session, state)
        return model

    def fit(self, hp, model, *args, callbacks=None, epochs=None, **kwargs):
        """Trains ``model`` (`build`'s) as the recipe does, with ``callbacks``, and scores it on the carve-out.

        Returns:
            dict: the objective (``val_map@<k>``: tie-averaged mAP of the validation queries), ``map_stable``,
            ``train_seconds`` and ``trial_seconds`` (build, training and evaluation).

        Raises:
            keras_tuner.errors.FailedTrialError: training diverged (a NaN or infinite loss): the trial is
                recorded as failed, with the reason, and the search goes on.
        """
        if args:
            raise ValueError("A recipe reads its own data: call `tuner.search()` without x / y.")
        if self._trial is None or self._trial[0] is not hp:
            self.build(hp)
        _, values, used, session, state = self._trial
        if epochs is not None and epochs != used["epochs"]:
            used = {**used, "epochs": int(epochs)}
        started = time.perf_counter()
        try:
            _, row = self.family.train_and_evaluate(session, state, used, self.bits, self.seed, model=model,
                                                    callbacks=list(callbacks or []))
        except runner.TrainingDiverged as error:
            raise keras_tuner.errors.FailedTrialError(f"{values}: {error}") from None
        return {
            self.objective_name: float(row["map"]),
            "map_stable": float(row["map_stable"]),
            "train_seconds": float(row["train_seconds"]),
            "trial_seconds": round(time.perf_counter() - started, 1),
        }

    def _data(self, used):
        """The session (dataset, backbone) and the carve-out's state for ``used``, loaded once each."""
        session_key = tuple(repr(used.get(key)) for key in SESSION_KEYS)
        if session_key not in self._sessions:
            keras.utils.set_random_seed(self.seed)
            session = self.family.load(used, self.args)
            jit = {"auto": bool(tf.config.list_physical_devices("GPU")), "on": True, "off": False}
            verbose = runner.plain_verbosity(self.verbose)
            session.update(args=self.args, jit=jit[self.args.jit_compile], verbose=verbose, progress=verbose,
                           output=None, recipe=self.recipe)
            self._sessions[session_key] = session
        session = self._sessions[session_key]
        state_key = tuple(repr(used.get(key)) for key in STATE_KEYS)
        if state_key not in self._states:
            protocol = get_protocol(used["protocol"])
            split = protocol.split(session["pool"], seed=self.seed)
            parts = runner.limit_split(split, self.args.limit, self.seed)
            held = {"train": parts["train"], "database": parts["database"]}  # never the protocol's queries
            state = self.family.prepare(session, used, split, held, self.seed)
            carve_out = validation_split(held["train"], protocol.name, self.seed, self.validation_size,
                                         protocol.top_k)
            self._states[state_key] = self.family.restrict(session, state, carve_out)
        return session, self._states[state_key]

    def validation_indices(self):
        """The carve-out's image indices of every data setting loaded so far: {"query", "train", "database"}."""
        parts = [state["parts"] for state in self._states.values()]
        return {part: np.unique(np.concatenate([p[part] for p in parts])) if parts else np.array([], np.int64)
                for part in ("query", "train", "database")}
