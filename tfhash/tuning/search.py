"""Keras-Tuner tuners over a `RecipeHyperModel`, and what a search leaves behind: table, plot, best recipe.

`build_tuner` gives Keras-Tuner's own tuner (random search, Bayesian optimisation, Hyperband) with three
changes for recipes: a progress line per trial (values, objective, wall time); no weights saved per epoch (a
search keeps configurations, not models: the best one is rerun by its recipe); and, outside distributed
worker processes, the results table and plot rewritten after every trial, so an interrupted search has them
up to its last finished trial. Resuming is Keras-Tuner's: a tuner built again on the same ``directory`` and
``project_name`` reloads the oracle, reruns the trial that was interrupted and goes on.

`write_outputs` writes, from the finished trials: ``trials.csv`` (trial, status, values, objective, wall time),
``objective.png`` (the objective over trials, and the best so far) and ``best.toml`` (the searched configuration
with the best trial's values, ready for ``python -m tfhash.recipes.<recipe> --config best.toml``).
"""

import csv
import io
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import keras_tuner
from keras_tuner.src.distribute import utils as distribute_utils
from keras_tuner.src.engine import tuner_utils

from tfhash._atomic import write_text
from tfhash._validation import check_int
from tfhash.tuning.toml_writer import dumps_toml
from tfhash.visualization import plot_search

TUNERS = {"random": keras_tuner.RandomSearch, "bayesian": keras_tuner.BayesianOptimization,
          "hyperband": keras_tuner.Hyperband}


class _RecipeTrials:
    """Mixed before a Keras-Tuner tuner class: progress lines, no per-epoch weights, outputs after each trial."""

    def _build_and_fit_model(self, trial, *args, **kwargs):
        # Keras-Tuner saves the weights at every epoch whose logs lack the objective (ours comes after fit):
        # seconds and megabytes per epoch for a model nobody reloads.
        kwargs["callbacks"] = [c for c in kwargs.get("callbacks", []) if not isinstance(c, tuner_utils.SaveBestEpoch)]
        return super()._build_and_fit_model(trial, *args, **kwargs)

    def _build_hypermodel(self, hp):
        # Hyperband's version loads the weights of the trial a round continues; each trial trains from scratch.
        return self.hypermodel.build(hp)

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self._trial_started = time.perf_counter()

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        hypermodel = self.hypermodel
        values = _values(hypermodel.space, trial)
        if "tuner/epochs" in trial.hyperparameters.values:
            values["epochs"] = trial.hyperparameters.values["tuner/epochs"]
        score = _last(trial, hypermodel.objective_name)
        outcome = f"{hypermodel.objective_name} {score:.4f}" if score is not None else str(trial.status).lower()
        seconds = time.perf_counter() - self._trial_started
        print(f"trial {trial.trial_id}: {_describe(values)} -> {outcome} ({seconds:.1f} s)", flush=True)
        if not distribute_utils.has_chief_oracle():  # a worker's oracle is a client without the trials
            write_outputs(self)


def build_tuner(kind, hypermodel, *, directory, project_name, trials=None, max_epochs=None, factor=3,
                hyperband_iterations=1, seed=0, overwrite=False):
    """A Keras-Tuner tuner of ``kind`` over ``hypermodel`` (a `RecipeHyperModel`), objective its ``val_map@k``.

    Args:
        kind: "random", "bayesian" or "hyperband".
        hypermodel: a `tfhash.tuning.RecipeHyperModel`.
        directory, project_name: where the search keeps its state and outputs (``directory/project_name``).
        trials: int, the number of trials (random, bayesian).
        max_epochs, factor, hyperband_iterations: Hyperband's (``max_epochs``: default the preset's epochs).
        seed: int >= 0, the tuner's seed (which values it tries). Keras-Tuner takes a seed of 0 for none and
            draws one at random, so its oracle gets ``seed + 1``: the same seed tries the same values.
        overwrite: start over instead of resuming the search found in ``directory/project_name``.

    Returns:
        The tuner; ``tuner.search()`` runs it (no data arguments: the recipe reads its own).

    Raises:
        ValueError: an unknown ``kind``, ``trials`` missing for random / bayesian, or a negative ``seed``.
    """
    if kind not in TUNERS:
        raise ValueError(f"`kind` must be one of {sorted(TUNERS)}, got {kind!r}.")
    seed = check_int(seed, "seed", minimum=0)
    base = TUNERS[kind]
    tuner_class = type(f"Recipe{base.__name__}", (_RecipeTrials, base), {})
    common = dict(hypermodel=hypermodel, objective=hypermodel.objective, seed=seed + 1, directory=str(directory),
                  project_name=project_name, overwrite=overwrite, max_consecutive_failed_trials=10**6)
    if kind == "hyperband":
        if max_epochs is None:
            max_epochs = hypermodel.settings(hypermodel.space.literal_defaults())["epochs"]
        return tuner_class(max_epochs=max_epochs, factor=factor, hyperband_iterations=hyperband_iterations,
                           **common)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"`trials` must be a positive int for the {kind} tuner, got {trials!r}.")
    return tuner_class(max_trials=trials, **common)


def _values(space, trial):
    """The trial's values as the configuration takes them (none for a trial that failed before its build)."""
    raw = trial.hyperparameters.values
    return space.literal(raw) if all(name in raw for name in space.names) else {}


def _last(trial, name):
    return trial.metrics.get_last_value(name) if trial.metrics.exists(name) else None


def _describe(values):
    return ", ".join(f"{name}={json.dumps(value) if isinstance(value, (list, dict)) else value:}"
                     for name, value in values.items())


def trial_rows(tuner):
    """One dict per trial of ``tuner``'s oracle, in trial order: trial, status, values, objective, seconds."""
    hypermodel, rows = tuner.hypermodel, []
    for trial_id, trial in sorted(tuner.oracle.trials.items(), key=lambda item: int(item[0])):
        values = trial.hyperparameters.values
        rows.append({
            "trial": trial_id,
            "status": str(trial.status),
            **_values(hypermodel.space, trial),
            **({"epochs": values["tuner/epochs"]} if "tuner/epochs" in values else {}),
            hypermodel.objective_name: _last(trial, hypermodel.objective_name),
            "map_stable": _last(trial, "map_stable"),
            "train_seconds": _last(trial, "train_seconds"),
            "trial_seconds": _last(trial, "trial_seconds"),
        })
    return rows


def write_outputs(tuner):
    """``trials.csv``, ``objective.png`` and, once a trial finished, ``best.toml`` in the search's folder.

    Returns:
        dict: the paths written, and ``best`` (the best trial's row) when there is one.
    """
    hypermodel = tuner.hypermodel
    folder = Path(tuner.project_dir)
    rows = trial_rows(tuner)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: json.dumps(value) if isinstance(value, (list, dict)) else value
                         for key, value in row.items()})
    written = {"table": str(write_text(folder / "trials.csv", text.getvalue()))}
    objective = hypermodel.objective_name
    written["plot"] = plot_search(
        folder / "objective.png", [row[objective] for row in rows], objective,
        f"{hypermodel.recipe} --preset {hypermodel.preset}, {hypermodel.bits} bits: {type(tuner).__name__}",
    )
    scored = [row for row in rows if row[objective] is not None]
    if scored:
        best = max(scored, key=lambda row: row[objective])
        written["best"] = best
        written["best_config"] = str(write_best_config(tuner, best, folder / "best.toml"))
    return written


def write_best_config(tuner, best, path):
    """The searched configuration with ``best``'s values, the preset's code lengths set to the one searched,
    as a recipe configuration file (header: the search it came from)."""
    hypermodel = tuner.hypermodel
    config = hypermodel.space.apply({name: best[name] for name in hypermodel.space.names})
    config[hypermodel.preset]["bits"] = [hypermodel.bits]
    if "epochs" in best:  # Hyperband: the budget of the best trial
        config[hypermodel.preset]["epochs"] = best["epochs"]
    header = "\n".join([
        f"The best configuration of a search ({type(tuner).__name__}, tfhash.tune) of {hypermodel.config_path}",
        f"--preset {hypermodel.preset}, {hypermodel.bits} bits, seed {hypermodel.seed}: trial {best['trial']}, "
        f"{hypermodel.objective_name} {best[hypermodel.objective_name]:.4f} on a validation carve-out of the "
        f"training images (size {hypermodel.validation_size}); written "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.",
        f"Values: {_describe({name: best[name] for name in hypermodel.space.names})}",
        f"Evaluate it on the protocol's queries: python -m tfhash.recipes.{hypermodel.recipe} --config "
        f"{os.fspath(path)} --preset {hypermodel.preset}" + "".join(f" {flag}" for flag in hypermodel.recipe_flags),
    ])
    return Path(write_text(path, dumps_toml(config, header=header)))
