"""The one runner of every recipe: configuration, command line, the run loop and its outputs.

A recipe is a configuration file in the top-level ``recipes/`` folder (``recipes/<name>.toml``) and a module
``tfhash.recipes.<name>`` whose ``main(argv)`` calls ``run(<name>, argv)``. The configuration's ``family``
(`tfhash.recipes.families`: ``"hasher"``, the default, a hash head on a backbone's features; ``"gan"``, a
generative model trained from scratch on images) supplies the few steps that differ; the runner does the rest:

1. **Configuration** (`load_config`, `resolve`): the file's ``[paper]`` or ``[demo]`` table (``--preset``), its
   per-code-length overrides ``[<preset>.by_bits.<K>]``, then the command-line flags; the model's arguments
   come from ``[model]``, which a preset may override (``[<preset>.model]``). Every key, value type and model
   argument is checked before any data is read (`validate`): a mistake is one message naming the file and key.
2. **Data**: a source of `tfhash.data.sources` (``--data-dir``), split by a named protocol
   (`tfhash.data.get_protocol`) with the run's seed. A missing dataset or weight file stops the run before
   anything is trained, with what to place where.
3. **Runs × code lengths** (``--runs``: seeds ``--seed``, ``--seed + 1``, ...; ``--resume`` keeps the (run, code
   length) pairs that an earlier run of the same configuration finished in ``--output``): the family builds,
   trains (``--jit-compile``) and evaluates a model (`fit_and_evaluate`: `tfhash.metrics.retrieval_report`).
4. **Outputs** under ``--output`` (default ``runs/<recipe>/<preset>``): ``metrics.json`` (recipe, preset,
   protocol, seed, the configuration as used, versions, machine, per run and code length the figures and the
   loss history; written atomically first as incomplete, then after each run and code length, ``complete``
   once the run ends; a run stopped by a NaN or infinite loss leaves it incomplete with an ``error``; see
   `StopOnNonFinite`), ``pr_curve.png`` (run 0, one curve per code length), run 0's SavedModels
   (``saved_model_<K>bits/``) and the family's own figures; a table of the figures ends the run.

Example:

>>> from tfhash.recipes import runner
>>> record = runner.run("bihalf", ["--preset", "demo", "--bits", "16", "--epochs", "5", "--verbose", "0"])
>>> record["results"][0]["map"], record["protocol"]["metric"]
"""

import argparse
import copy
import json
import os
import platform
import shutil
import sys
import time
import tomllib
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import tfhash
from tfhash._atomic import write_json
from tfhash._logging import keras_step_retracing_quieted
from tfhash.callbacks import RetrievalEvaluation
from tfhash.data import get_protocol, sources
from tfhash.metrics import retrieval_report
from tfhash.metrics.report import as_json_float
from tfhash.visualization import plot_pr_curves

PRESETS = ("paper", "demo")
REQUIRED = object()  # a preset key without a default: each preset table must set it
# Keys every family's preset table takes: (default, check of a value). A family adds its own (`Family.keys`).
COMMON_KEYS = {
    "dataset": (REQUIRED, str),
    "protocol": (REQUIRED, str),
    "bits": (REQUIRED, "ints"),
    "epochs": (REQUIRED, "int"),
    "batch_size": (REQUIRED, "int"),
    "runs": (1, "int"),  # independent runs (seeds seed, seed + 1, ...), averaged
    "evaluate_every": (0, "count"),  # mAP during training every n epochs (0: only at the end)
    "precision_at": ([100, 1000], "ints"),  # precision@N reported besides the protocol's own metrics
    "export": ("images", str),  # what run 0's SavedModels take (the family's `exports`)
    "model": ({}, dict),  # overrides of the top-level [model] table
    "by_bits": ({}, dict),  # per-code-length overrides of any key above
}
TOP_LEVEL_KEYS = {"method", "title", "reference", "family", "model", *PRESETS}


class RecipeError(SystemExit):
    """A run that cannot go on (missing data or weights, a configuration error): exits with the message."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message


# --- configuration ----------------------------------------------------------------------------------------


def config_directories():
    """Where recipe configurations are searched, in order.

    An installed package carries them as ``tfhash/recipes/configs/`` (setup.py maps the top-level ``recipes/``
    folder there); a source checkout (editable install, ``PYTHONPATH``) reads the top-level ``recipes/``.
    """
    here = Path(__file__).resolve().parent
    return [here / "configs", here.parents[1] / "recipes"]


def config_path(name):
    """The configuration file of recipe ``name`` (``<name>.toml`` in the first of `config_directories`)."""
    for directory in config_directories():
        path = directory / f"{name}.toml"
        if path.is_file():
            return path
    places = ", ".join(str(d) for d in config_directories())
    raise RecipeError(f"The configuration of recipe {name!r} ({name}.toml) was found in none of: {places}.")


def load_config(source, recipe=None):
    """Reads and checks a recipe configuration.

    Args:
        source: a recipe name (its file in `config_directories`) or the path of a ``.toml`` file.
        recipe: a recipe whose own configuration this file must match (same method, family and regularisers,
            e.g. ``--config`` for ``hqt_cibhash`` must describe CIBHash with HQT); None skips that check.

    Returns:
        dict, the file's content, with ``"path"`` added.

    Raises:
        RecipeError: a missing file, invalid TOML, an unknown key or family, a missing preset or required key,
            a value of the wrong type, an unknown protocol, dataset, backbone or augmentation.

    Example:

    >>> config = load_config("bihalf")
    >>> config["method"], sorted(config["paper"])[:3]
    ('bihalf', ['augment', 'backbone', 'bank_views'])
    """
    path = Path(source) if str(source).endswith(".toml") else config_path(source)
    return check_config(read_toml(path), path, recipe)


def read_toml(path):
    """The content of the TOML file ``path`` (dict); a missing or invalid file is a `RecipeError`."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise RecipeError(f"Configuration file {str(path)!r} does not exist.") from None
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"Configuration file {str(path)!r} is not valid TOML: {error}.") from None


def check_config(config, path, recipe=None):
    """`load_config`'s checks of a configuration already read (``config``, from file ``path``): a copy of it,
    with ``"path"`` added (`tfhash.tuning` checks each trial's configuration with it)."""
    config = copy.deepcopy(config)
    where = f"configuration {str(path)!r}"
    family = family_of(config, where)
    valid = TOP_LEVEL_KEYS | set(family.tables)
    unknown = sorted(set(config) - valid)
    if unknown:
        raise RecipeError(f"{where}: unknown top-level keys {unknown}; valid: {sorted(valid)}.")
    if not isinstance(config.get("method"), str) or config["method"] not in family.methods():
        raise RecipeError(
            f"{where}: `method` must be one of {sorted(family.methods())}, got {config.get('method')!r}."
        )
    for table in ("model", *family.tables):
        if table in config and not isinstance(config[table], dict):
            raise RecipeError(f"{where}: `{table}` must be a table, got {config[table]!r}.")
        defaults = family.tables.get(table, ({},))[0]
        unknown = sorted(set(config.get(table, {})) - set(defaults)) if defaults else []
        if unknown:
            raise RecipeError(f"{where} [{table}]: unknown keys {unknown}; valid: {sorted(defaults)}.")
    if recipe is not None and Path(path).resolve() != config_path(recipe).resolve():
        own = load_config(recipe)
        optional = [name for name, (_, absent) in family.tables.items() if absent is None]  # e.g. [hqt]

        def describe(c):
            return f"{c['method']!r} " + ", ".join(f"{'with' if n in c else 'without'} {n.upper()}" for n in optional)

        if (config["method"], describe(config)) != (own["method"], describe(own)):
            raise RecipeError(f"{where} describes method {describe(config)}; recipe {recipe!r} runs {describe(own)}.")
    keys = {**COMMON_KEYS, **family.keys}
    for preset in PRESETS:
        table = config.get(preset)
        if not isinstance(table, dict):
            raise RecipeError(f"{where}: the [{preset}] table is missing.")
        _check_table(table, f"{where} [{preset}]", keys, family, partial=False)
        for bits, overrides in table.get("by_bits", {}).items():
            if not bits.isdigit():
                raise RecipeError(f"{where} [{preset}.by_bits]: keys must be code lengths, got {bits!r}.")
            _check_table(overrides, f"{where} [{preset}.by_bits.{bits}]", keys, family, partial=True)
    config["path"] = str(path)
    return config


def family_of(config, where="the configuration"):
    """The `tfhash.recipes.families.Family` a configuration names (``family = ...``; default ``"hasher"``)."""
    from tfhash.recipes.families import FAMILIES

    name = config.get("family", "hasher")
    if name not in FAMILIES:
        raise RecipeError(f"{where}: `family` must be one of {sorted(FAMILIES)}, got {name!r}.")
    return FAMILIES[name]


def _check_table(table, where, keys, family, partial):
    unknown = sorted(set(table) - set(keys) - ({"by_bits"} if partial else set()))
    if unknown or (partial and "by_bits" in table):
        raise RecipeError(f"{where}: unknown keys {unknown or ['by_bits']}; valid: {sorted(keys)}.")
    if not partial:
        missing = [key for key, (default, _) in keys.items() if default is REQUIRED and key not in table]
        if missing:
            raise RecipeError(f"{where}: required keys {missing} are missing.")
    for key, value in table.items():
        check = keys[key][1]
        if key != "by_bits" and not _fits(value, check):
            expected = {"ints": "a list of positive integers", "int": "a positive integer", "count":
                        "an integer >= 0", str: "a string", dict: "a table", list: "a list", bool: "true or false"}
            expected = expected.get(check) or check.__doc__
            raise RecipeError(f"{where}: `{key}` must be {expected}, got {value!r}.")
    if "protocol" in table:
        try:
            get_protocol(table["protocol"])
        except ValueError as error:
            raise RecipeError(f"{where}: `protocol`: {error}") from None
    for key, valid in family.choices().items():
        if key in table and table[key] not in valid:
            raise RecipeError(f"{where}: `{key}` must be one of {', '.join(valid)}, got {table[key]!r}.")
    family.check_table(table, where)


def _fits(value, check):
    integer = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    if check == "ints":
        return isinstance(value, list) and bool(value) and all(integer(v) and v >= 1 for v in value)
    if check == "int":
        return integer(value) and value >= 1
    if check == "count":
        return integer(value) and value >= 0
    if isinstance(check, type):
        return isinstance(value, check)
    return check(value) if callable(check) else True


def _merge(base, overrides):
    """``base`` updated by ``overrides``, nested tables merged key by key (copies; inputs unchanged)."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve(config, preset, overrides=None, bits=None):
    """The settings of one preset (and code length), as a run uses them.

    Order, later wins: the keys' defaults, the top-level tables (``[model]``, and the family's, e.g.
    ``[hqt]``), the ``[<preset>]`` table, its ``[<preset>.by_bits.<bits>]`` table, then ``overrides`` (the
    command line).

    Args:
        config: a configuration from `load_config`.
        preset: "paper" or "demo".
        overrides: dict of preset keys set on the command line (None values are ignored).
        bits: a code length, to apply its ``by_bits`` table; None leaves them out.

    Returns:
        dict with every preset key but ``by_bits``, plus ``"method"``.

    Example:

    >>> resolve(load_config("greedyhash"), "paper", bits=16)["epochs"]    # the paper's 300 epochs at 16 bits
    300
    """
    family = family_of(config)
    keys = {**COMMON_KEYS, **family.keys}
    settings = {key: copy.deepcopy(d) for key, (d, _) in keys.items() if d is not REQUIRED and key != "by_bits"}
    settings["model"] = copy.deepcopy(config.get("model", {}))
    for name, (defaults, absent) in family.tables.items():
        settings[name] = _merge(defaults, config[name]) if name in config else copy.deepcopy(absent)
    table = config[preset]
    for key, value in table.items():
        if key in family.tables and settings[key] is None:
            raise RecipeError(f"[{preset}] sets `{key}` but the recipe has no [{key}] table.")
        if key != "by_bits":
            settings[key] = _merge(settings[key], value) if isinstance(settings.get(key), dict) else value
    settings = copy.deepcopy(settings)
    if bits is not None:
        settings = _merge(settings, table.get("by_bits", {}).get(str(bits), {}))
    settings.update({k: v for k, v in (overrides or {}).items() if v is not None})
    settings["method"] = config["method"]
    return family.finish(settings)


# --- command line -----------------------------------------------------------------------------------------


def build_parser(recipe, description=None, family=None):
    """The command line of recipe ``recipe``: the flags every recipe shares and its family's."""
    family = family or family_of(load_config(recipe))
    parser = argparse.ArgumentParser(
        prog=f"python -m tfhash.recipes.{recipe}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--preset", choices=PRESETS, default="paper", help=f"paper: the paper's experiment (default); {family.demo}")
    add("--config", metavar="PATH", help=f"a .toml configuration instead of recipes/{recipe}.toml")
    add("--data-dir", metavar="DIR", help="where the dataset is (default: $TFHASH_DATA_DIR, then ~/.keras/datasets)")
    add("--bits", type=int, nargs="+", metavar="K", help="code length(s) (default: the preset's)")
    add("--epochs", type=int, help="training epochs, for every code length (default: the preset's)")
    add("--batch-size", type=int, help="training batch size (default: the preset's)")
    add("--runs", type=int, help="independent runs averaged, seeds --seed, --seed + 1, ... (default: the preset's)")
    add("--seed", type=int, default=0, help="seed of the split, augmentations and model of run 0 (default 0); "
        "run r uses seed + r")
    add("--evaluate-every", type=int, metavar="N", help="mAP during training every N epochs (0: at the end only)")
    add("--output", metavar="DIR", help=f"results folder (default runs/{recipe}/<preset>)")
    add("--export", choices=family.exports, help="what run 0's SavedModels take (default: the preset's): "
        + family.export_help)
    add("--limit", type=int, metavar="N", help="smoke runs: keep a seeded subset of at most N images of each of "
        "query / train / database (the figures are then not the protocol's)")
    add("--jit-compile", choices=("auto", "on", "off"), default="auto",
        help="XLA for the training step: auto = on with a GPU, off on CPU (where it is slower)")
    add("--resume", action="store_true", help="keep the (run, code length) results of an earlier run of this "
        "configuration in --output and train only the missing ones")
    add("--verbose", type=int, choices=(0, 1, 2), default=1,
        help="Keras progress: 0 silent, 1 progress bars (default; plain lines when the output is not a "
        "terminal), 2 one line per epoch")
    family.add_flags(parser, recipe)
    return parser


def check_run_flags(parser, args):
    """The flags every recipe shares: counts >= 1, --seed >= 0, distinct --bits, an existing --config; a bad
    one exits through ``parser.error`` naming it."""
    for flag in ("bits", "epochs", "batch_size", "runs", "limit", "image_size"):
        value = getattr(args, flag, None)
        values = value if isinstance(value, list) else [value]
        if value is not None and any(v < 1 for v in values):
            parser.error(f"--{flag.replace('_', '-')} must be positive integers, got {value}")
    if args.seed < 0:
        parser.error(f"--seed must be a non-negative integer, got {args.seed}")
    if args.bits is not None and len(set(args.bits)) != len(args.bits):
        parser.error(f"--bits lists a code length twice: {args.bits}")
    if args.evaluate_every is not None and args.evaluate_every < 0:
        parser.error(f"--evaluate-every must be >= 0, got {args.evaluate_every}")
    if args.config is not None and not os.path.isfile(args.config):
        parser.error(f"--config: no file {args.config!r}")


def overrides(args, config, preset):
    """The preset keys set on the command line (the family adds its own and resets what depends on them)."""
    values = {key: getattr(args, key) for key in ("bits", "epochs", "batch_size", "runs", "evaluate_every")}
    values["export"] = args.export
    return family_of(config).overrides(args, config, preset, values)


def plain_verbosity(verbose, stream=None):
    """The Keras verbosity to use: 1 (progress bars) becomes 2 (one line per epoch) when ``stream`` (default
    ``sys.stdout``) is not a terminal.

    Keras's progress bar (``keras.utils.Progbar``, used by ``fit``, ``predict`` and `tfhash.data.FeatureBank`)
    at verbosity 1 rewrites its line with ``\\b`` / ``\\r`` and colours it with ANSI codes whenever it runs
    on POSIX, terminal or not; at verbosity 2 it writes one plain line at the end. A log redirected to a file
    thus reads as plain lines.
    """
    stream = sys.stdout if stream is None else stream
    terminal = hasattr(stream, "isatty") and stream.isatty()
    return 2 if verbose == 1 and not terminal else verbose


# --- data -------------------------------------------------------------------------------------------------


def load_dataset(dataset, data_dir=None, hint="", rgb=False):
    """`tfhash.data.sources.get`; a dataset not found stops the run with where it was searched."""
    try:
        return sources.get(dataset, data_dir=data_dir, rgb=rgb)
    except sources.DatasetNotFoundError as error:
        raise RecipeError(f"{error}\nWith the recipes: pass --data-dir DIR (the folder holding the dataset){hint}.") from None


def limit_split(split, limit, seed):
    """At most ``limit`` indices of each part of a protocol split (seeded); train = database stays so."""
    if limit is None:
        return {"query": split.query, "train": split.train, "database": split.database}
    rng = np.random.default_rng([seed, 2024])

    def take(indices):
        return indices if len(indices) <= limit else np.sort(rng.choice(indices, limit, replace=False))

    database = take(split.database)
    same = np.array_equal(split.train, split.database)
    return {"query": take(split.query), "train": database if same else take(split.train), "database": database}


def build_optimizer(settings, steps_per_epoch):
    """The configured Keras optimizer, its learning rate multiplied by ``schedule``'s ``factor`` every
    ``every_epochs`` epochs (a piecewise-constant decay) or every ``every_steps`` steps (a staircase
    exponential decay, as ``tf.compat.v1.train.exponential_decay(..., staircase=True)``).

    Args:
        settings: resolved settings (`resolve`) with ``optimizer`` (a Keras optimizer's ``class_name`` and
            constructor arguments), ``schedule`` and ``epochs``.
        steps_per_epoch: int, to turn the schedule's epochs into steps.

    Example:

    >>> build_optimizer({"optimizer": {"class_name": "SGD", "learning_rate": 1e-4, "momentum": 0.9},
    ...                  "schedule": {"every_epochs": 120, "factor": 0.1}, "epochs": 300}, 156)
    >>> build_optimizer({"optimizer": {"class_name": "Adam", "learning_rate": 1e-4, "epsilon": 1.0},
    ...                  "schedule": {"every_steps": 200, "factor": 0.99}, "epochs": 30}, 200)   # DSAH
    """
    spec = dict(settings["optimizer"])
    name = spec.pop("class_name", None)
    if name is None:
        raise RecipeError('`optimizer` must name its Keras class: {class_name = "SGD", learning_rate = ...}.')
    schedule = settings.get("schedule")
    if schedule:
        units = sorted(set(schedule) & {"every_epochs", "every_steps"})
        every, factor = (schedule.get(units[0]) if units else None), schedule.get("factor", 0.1)
        valid = (len(units) == 1 and isinstance(every, int) and not isinstance(every, bool) and every >= 1
                 and not set(schedule) - {units[0], "factor"} and isinstance(factor, (int, float))
                 and not isinstance(factor, bool) and factor > 0)
        if not valid:
            raise RecipeError(
                f"`schedule` must be {{every_epochs = n, factor = f}} or {{every_steps = n, factor = f}} (n >= 1, "
                f"f > 0), got {schedule}."
            )
        rate = spec.get("learning_rate", 1e-3)
        if units[0] == "every_steps":
            spec["learning_rate"] = keras.optimizers.schedules.ExponentialDecay(rate, every, factor, staircase=True)
        else:
            boundaries = list(range(every, settings["epochs"], every))
            if boundaries:
                spec["learning_rate"] = keras.optimizers.schedules.PiecewiseConstantDecay(
                    [b * steps_per_epoch for b in boundaries], [rate * factor**i for i in range(len(boundaries) + 1)]
                )
    try:
        return keras.optimizers.get({"class_name": name, "config": spec})
    except (ValueError, TypeError) as error:
        raise RecipeError(f"`optimizer` {settings['optimizer']} is not a valid Keras optimizer: {error}") from None


# --- training and evaluation ------------------------------------------------------------------------------


class _Stopwatch(keras.callbacks.Callback):
    """Two of these around other callbacks measure the seconds those spend at the end of each epoch."""

    def __init__(self, start=None):
        super().__init__()
        self.start, self.seconds, self.began = start, 0.0, None

    def on_epoch_end(self, epoch, logs=None):
        if self.start is None:
            self.began = time.perf_counter()
        else:
            self.start.seconds += time.perf_counter() - self.start.began


class TrainingDiverged(RecipeError):
    """Training stopped on a NaN or infinite loss (`StopOnNonFinite`) or left non-finite weights; `run` adds
    the run and code length to the message."""

    def __init__(self, reason):
        super().__init__(f"training diverged: {reason}")


class StopOnNonFinite(keras.callbacks.TerminateOnNaN):
    """Keras's `TerminateOnNaN` for every loss a model logs (HashGAN logs no ``loss``): the first NaN or
    infinite value stops training at the end of its batch; ``self.diverged`` then says which, when."""

    def __init__(self):
        super().__init__()
        self.epoch, self.diverged = 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        bad = sorted(name for name, value in (logs or {}).items() if _non_finite(value))
        if bad and self.diverged is None:
            # Keras calls this once per execution of `steps_per_execution` steps, `batch` being its last.
            steps = int(getattr(self.model, "steps_per_execution", 1) or 1)
            batches = f"batch {batch + 1}" if steps == 1 else f"in batches {max(batch + 2 - steps, 1)}–{batch + 1}"
            when = f"at epoch {self.epoch + 1}, {batches}"
            self.diverged = f"{', '.join(bad)} became NaN or infinite {when}"
            self.model.stop_training = True


def _non_finite(value):
    try:
        return not np.all(np.isfinite(np.asarray(value, dtype=np.float64)))
    except (TypeError, ValueError):  # not a number
        return False


def check_finite(arrays, what, hint=""):
    """Raises RecipeError when an array of ``arrays`` (name -> array) holds NaN or infinite values.

    Checked in slices of the first axis (a feature bank's training split can be gigabytes); the message names
    the array (``what`` and its name), how many values are bad, and ``hint``."""
    for name, array in arrays.items():
        if array is None or not np.issubdtype(array.dtype, np.floating):
            continue
        flat = array.reshape(-1, array.shape[-1]) if array.ndim > 1 else array.reshape(-1, 1)
        bad = sum(int(np.size(part) - np.count_nonzero(np.isfinite(part)))
                  for part in (flat[start:start + 65536] for start in range(0, len(flat), 65536)))
        if bad:
            raise RecipeError(
                f"Stopped before training: the {what}, split {name!r}, hold {bad} NaN or infinite values "
                f"(of {array.size}, shape {tuple(array.shape)}).{hint}"
            )


# A recipe's code lengths and a search's trials are models trained one after another in one process: TensorFlow
# would warn of their step functions' traces as if one function retraced (tfhash._logging).
@keras_step_retracing_quieted()
def fit_and_evaluate(
    model, train, query, database, labels, used, split, verbose, callbacks=(), steps_per_epoch=None
):
    """Trains ``model`` on ``train`` (``used["epochs"]``; `RetrievalEvaluation` every ``evaluate_every``
    epochs) and evaluates its query and database codes; returns the row of figures.

    ``train_seconds`` excludes the evaluations during training; ``evaluation_seconds`` counts them and the
    final one. ``split`` is the protocol split (its ``top_k`` and ``protocol.also_reports``);
    ``steps_per_epoch``, the batches of one epoch of ``train`` (a stream of all the epochs, `tfhash.data`).

    Raises:
        TrainingDiverged: a loss became NaN or infinite (`StopOnNonFinite` stops training at that batch), or
            the trained weights are not finite; nothing is evaluated then.
    """
    stop = StopOnNonFinite()
    callbacks, evaluation = [stop, *callbacks], None
    if used["evaluate_every"]:
        # Silent: Keras's own line (or bar) of the epoch shows the value (val_map@... in its logs).
        evaluation = RetrievalEvaluation(
            query, database, top_k=split.top_k, every_n_epochs=used["evaluate_every"], verbose=0
        )
        start = _Stopwatch()
        callbacks += [start, evaluation, _Stopwatch(start)]
    started = time.perf_counter()
    # shuffle=False: the datasets shuffle themselves, seeded, every epoch.
    history = model.fit(train, epochs=used["epochs"], steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                        verbose=verbose, shuffle=False)
    if stop.diverged is None and not all(np.all(np.isfinite(np.asarray(w))) for w in model.trainable_weights):
        stop.diverged = f"the weights hold NaN or infinite values after epoch {len(history.epoch)}"
    if stop.diverged is not None:
        raise TrainingDiverged(stop.diverged)
    during = start.seconds if evaluation is not None else 0.0
    train_seconds = time.perf_counter() - started - during
    started = time.perf_counter()
    query_codes, db_codes = model.predict(query, verbose=0), model.predict(database, verbose=0)
    figures = retrieval_report(
        query_codes, db_codes, labels["query"], labels["database"], top_k=split.top_k,
        precision_at=used["precision_at"], also_reports=get_protocol(split.protocol).also_reports,
    )
    row = {
        "epochs": used["epochs"],
        **figures,
        "train_seconds": round(train_seconds, 1),
        "evaluation_seconds": round(during + time.perf_counter() - started, 1),
        "history": {name: [as_json_float(v) for v in values] for name, values in history.history.items()},
    }
    if evaluation is not None:
        row["map_during_training"] = [as_json_float(v) for v in history.history.get(evaluation.name, [])]
    return row, db_codes


def versions():
    """The versions of tfhash and of the libraries a run's figures depend on."""
    import sklearn

    return {
        "tfhash": tfhash.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "python": platform.python_version(),
    }


def export(model, path, verbose):
    """``model.export`` to ``path`` (atomic; replaces an earlier run's model); returns the path."""
    path = model.export(str(path), overwrite=True, verbose=False)
    if verbose:
        print(f"SavedModel: {path}")
    return path


# --- the run ----------------------------------------------------------------------------------------------


def run(recipe, argv=None, description=None):
    """Runs recipe ``recipe`` with command-line arguments ``argv`` (None: ``sys.argv``).

    Args:
        recipe: the name of a recipe configuration (``recipes/<recipe>.toml``).
        argv: list of str, the flags (see `build_parser`, or ``python -m tfhash.recipes.<recipe> --help``).
        description: the ``--help`` text (the recipe module's docstring).

    Returns:
        dict, the record written to ``metrics.json``.

    Raises:
        SystemExit: bad flags (status 2), or `RecipeError` (status 1) where data, weights or the configuration
            are missing or wrong; nothing is trained then.
    """
    started = time.perf_counter()
    family = family_of(load_config(recipe))
    parser = build_parser(recipe, description, family)
    args = parser.parse_args(argv)
    check_run_flags(parser, args)
    family.check_args(parser, args)
    config = load_config(args.config or recipe, recipe=recipe)
    preset_overrides = overrides(args, config, args.preset)
    settings = resolve(config, args.preset, preset_overrides)
    per_bits = {bits: resolve(config, args.preset, preset_overrides, bits) for bits in settings["bits"]}
    if args.limit is not None:  # the paper's figures are for the whole protocol
        for used in per_bits.values():
            family.drop_reported(used)
    for bits, used in per_bits.items():
        family.validate(used, bits, f"configuration {config['path']!r} ({args.preset}, {bits} bits)")
    output = Path(args.output or Path("runs") / recipe / args.preset)
    jit = {"auto": bool(tf.config.list_physical_devices("GPU")), "on": True, "off": False}[args.jit_compile]
    protocol = get_protocol(settings["protocol"])

    keras.utils.set_random_seed(args.seed)
    session = family.load(settings, args)  # weights and data before anything long; RecipeError if missing
    verbose = plain_verbosity(args.verbose)
    session.update(args=args, jit=jit, verbose=verbose, output=output, recipe=recipe, progress=verbose)
    record = {
        "recipe": f"tfhash.recipes.{recipe}",
        "title": config.get("title", recipe),
        "reference": config.get("reference", ""),
        "preset": args.preset,
        "config_file": config["path"],
        "argv": list(sys.argv[1:] if argv is None else argv),
        "dataset": session["pool"].name,
        "protocol": {
            "name": protocol.name,
            "description": protocol.description,
            "paper": protocol.paper,
            "metric": protocol.metric,
            "top_k": protocol.top_k,
            "limit": args.limit,
        },
        "seed": args.seed,
        "jit_compile": jit,
        "config": settings,
        "per_bits_config": {str(bits): used for bits, used in per_bits.items()},
        "versions": versions(),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
            "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
        },
        "features_seconds": 0.0,
        "complete": False,
    }
    rows = _resumable_rows(output / "metrics.json", record, family) if args.resume else []
    done = {(row["run"], row["bits"]) for row in rows}
    family.fill(record, rows, per_bits)
    claimed = False  # whether --output's metrics.json describes this run yet
    if args.limit is not None:
        print(f"--limit {args.limit}: a subset of the protocol's images; the figures are not the protocol's.")

    for run_index in range(settings["runs"]):
        seed = args.seed + run_index
        if all((run_index, bits) in done for bits in per_bits):
            continue
        if run_index:
            keras.utils.set_random_seed(seed)
        try:
            split = protocol.split(session["pool"], seed=seed)
        except ValueError as error:
            raise RecipeError(
                f"Protocol {protocol.name!r} does not fit dataset {session['pool'].name!r}: {error} "
                "Choose another with --protocol."
            ) from None
        parts = limit_split(split, args.limit, seed)
        record["protocol"]["sizes"] = {part: int(len(indices)) for part, indices in parts.items()}
        for used in per_bits.values():
            if used["batch_size"] > len(parts["train"]):
                parser.error(
                    f"--batch-size: a batch of {used['batch_size']} exceeds the {len(parts['train'])} training images"
                )
        if not claimed:
            # Before any SavedModel of this run replaces an earlier one: the folder's record is this run's,
            # incomplete; what an export interrupted mid-swap left goes.
            write_json(output / "metrics.json", record)
            for stale in output.glob(".saved_model_*.old-*"):
                shutil.rmtree(stale, ignore_errors=True)
            claimed = True
        extraction = time.perf_counter()
        state = family.prepare(session, settings, split, parts, seed)
        record["features_seconds"] = round(record["features_seconds"] + time.perf_counter() - extraction, 1)
        for position, (bits, used) in enumerate(per_bits.items()):
            if (run_index, bits) in done:
                continue
            if args.verbose:
                print(
                    f"\n== {record['title']} ({recipe}, --preset {args.preset}): "
                    + (f"run {run_index + 1}/{settings['runs']} (seed {seed}), " if settings["runs"] > 1 else "")
                    + f"{bits} bits ({position + 1}/{len(per_bits)}), {used['epochs']} epochs =="
                )
            try:
                model, row = family.train_and_evaluate(session, state, used, bits, seed)
            except TrainingDiverged as error:
                which = f", run {run_index + 1}/{settings['runs']} (seed {seed})" if settings["runs"] > 1 else ""
                message = (
                    f"{bits} bits{which}: {error}. Nothing was recorded for this code length; "
                    f"{output / 'metrics.json'} stays incomplete. Check {family.divergence_hint(used)}"
                )
                record["error"] = message
                write_json(output / "metrics.json", record)
                raise RecipeError(message) from None
            row = {"bits": bits, **row, "run": run_index, "seed": seed}
            if run_index == 0:
                row.update(family.outputs(session, model, used, bits))
            rows.append(row)
            family.fill(record, rows, per_bits)
            record["wall_seconds"] = round(time.perf_counter() - started, 1)
            write_json(output / "metrics.json", record)
    first = sorted((row for row in rows if row["run"] == 0), key=lambda row: row["bits"])
    if first:
        plot_pr_curves(
            output / "pr_curve.png",
            first,
            f"{record['title']} (--preset {args.preset}{', run 0' if settings['runs'] > 1 else ''}): "
            f"{record['dataset']}, protocol {protocol.name}",
        )
    family.fill(record, rows, per_bits)
    record["complete"] = True
    record["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_json(output / "metrics.json", record)
    family.print_table(record)
    print(
        f"Wrote {output / 'metrics.json'}, {output / 'pr_curve.png'}"
        + (" and the SavedModels beside them." if settings["export"] != "none" else ".")
    )
    return record


def _resumable_rows(path, record, family):
    """The finished (run, code length) rows of an earlier metrics.json of the same configuration.

    Only the number of runs may differ (more runs extend a finished experiment)."""
    if not path.is_file():
        return []
    earlier = json.loads(path.read_text())

    def identity(source):
        settings = {
            bits: {k: v for k, v in used.items() if k != "runs"}
            for bits, used in source.get("per_bits_config", {}).items()
        }
        return [source.get(key) for key in ("recipe", "preset", "seed")], settings, source["protocol"].get("limit")

    if identity(earlier) != identity(json.loads(json.dumps(record))):
        raise RecipeError(
            f"--resume: {path} was written by another configuration (recipe, preset, seed, settings or "
            "--limit differ); choose another --output, or run without --resume to start over."
        )
    if "sizes" in earlier["protocol"]:  # the split's sizes, should every run be finished already
        record["protocol"]["sizes"] = earlier["protocol"]["sizes"]
    return [row for row in earlier.get(family.rows_key, []) if "run" in row]
