"""The runner of the HashGAN recipes: a generative model trained from scratch on images, over several runs.

HashGAN has no backbone and no feature bank, and its paper averages 5 runs, so its recipes have their own
runner beside `tfhash.recipes.runner` (whose configuration reading, evaluation and output helpers it reuses).
For each run r (seed ``--seed + r``: the protocol's query draw, the model's initialisation and every random
draw of training) and each code length:

1. the protocol split of the dataset (`tfhash.data.get_protocol`); the model trains on the gallery (train =
   database), with the pipelines of `tfhash.data` (images in [0, 255], gray MNIST kept at one channel);
2. `tfhash.models.HashGAN` with the configuration's ``[model]`` table, the hash and ℓ2 losses off for the
   first ``warmup_fraction`` of the steps, the paper's Adam (`HashGAN.paper_optimizer`) for D/E and for G,
   and the weight-norm data-dependent initialisation on ``init_batch_size`` training images;
3. retrieval figures of the query and database codes as every recipe reports them (mAP with ``ties="average"``
   and ``"stable"``, mAP@1000, precision@N, the precision-recall curve, code statistics), and the clustering
   quality of the database codes (`tfhash.metrics.kmeans_code_clustering`: k-means, NMI, accuracy with the
   Hungarian mapping; paper Table 3).

Outputs under ``--output`` (default ``runs/<recipe>/<preset>``): ``metrics.json`` (configuration, versions,
machine, every run's figures and loss history, and per code length the mean and standard deviation over the
runs beside the paper's figures; written atomically after each run and code length, and ``--resume`` skips
the (run, code length) pairs a previous run of the same configuration completed), ``pr_curve.png`` (run 0),
``generated_<K>bits.png`` (run 0: each row one random binary input b′, each column one uniform noise z′) and
``saved_model_<K>bits/`` (run 0's encoder, ``model.export``).
"""

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfhash import metrics as hash_metrics
from tfhash.callbacks import RetrievalEvaluation
from tfhash.data import evaluation_dataset, get_protocol, sources, training_dataset
from tfhash.models import HashGAN
from tfhash.recipes.runner import (
    REQUIRED,
    RecipeError,
    _float,
    _merge,
    _versions,
    check_presets,
    check_run_flags,
    check_table_keys,
    evaluate_codes,
    limit_split,
    plot_pr_curves,
    read_config_file,
    write_json,
)
from tfhash.visualization import save_image_grid

RECIPES = ("hashgan_mnist", "hashgan_cifar10")
PRESETS = ("paper", "demo")
DATASETS = {
    "mnist": (sources.load_mnist, 1),
    "fashion_mnist": (sources.load_fashion_mnist, 1),
    "cifar10": (sources.load_cifar10, 3),
}
PRESET_KEYS = {
    "dataset": REQUIRED,
    "protocol": REQUIRED,
    "bits": REQUIRED,
    "epochs": REQUIRED,
    "batch_size": REQUIRED,
    "runs": 1,  # independent runs (seeds --seed, --seed + 1, ...), averaged
    "warmup_fraction": 0.1,  # share of the steps with the hash and l2 losses off (paper §4)
    "init_batch_size": 500,  # images of the weight-norm data-dependent initialisation
    "evaluate_every": 0,  # mAP@all during training every n epochs (0: only at the end)
    "precision_at": [1000],
    "grid": [10, 10],  # generated-image figure: rows (binary inputs) x columns (uniform noises)
    "export": "images",  # "images": run 0's encoder as a SavedModel; "none"
    "reported": {},  # the paper's figures by code length: {map, map@1000, precision@1000}
    "reported_clustering": {},  # the paper's clustering figures: {nmi, accuracy}
    "model": {},  # overrides of the top-level [model] table
    "by_bits": {},
}
TOP_LEVEL_KEYS = {"method", "title", "reference", "model", *PRESETS}


def load_config(source):
    """Reads and checks a HashGAN recipe configuration (a recipe name or a ``.toml`` path)."""
    path, config = read_config_file(source, TOP_LEVEL_KEYS)
    where = f"configuration {str(path)!r}"
    if config.get("method") != "hashgan":
        raise RecipeError(f"{where}: `method` must be 'hashgan', got {config.get('method')!r}.")
    check_presets(config, where, PRESETS, _check_table)
    config["path"] = str(path)
    return config


def _check_table(table, where, partial=False):
    check_table_keys(table, where, PRESET_KEYS, partial)
    if "dataset" in table and table["dataset"] not in DATASETS:
        raise RecipeError(
            f"{where}: `dataset` must be one of {', '.join(DATASETS)}, got {table['dataset']!r}."
        )
    if "export" in table and table["export"] not in ("images", "none"):
        raise RecipeError(f"{where}: `export` must be 'images' or 'none', got {table['export']!r}.")
    if "protocol" in table:
        try:
            get_protocol(table["protocol"])
        except ValueError as error:
            raise RecipeError(f"{where}: `protocol`: {error}") from None
    fraction = table.get("warmup_fraction", 0.0)
    if not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise RecipeError(f"{where}: `warmup_fraction` must be a number in [0, 1), got {fraction!r}.")


def resolve(config, preset, overrides=None, bits=None):
    """One preset's settings (and one code length's): defaults, [model], [<preset>], by_bits, command line."""
    table = config[preset]
    settings = {key: copy.deepcopy(value) for key, value in PRESET_KEYS.items() if value is not REQUIRED}
    settings["model"] = copy.deepcopy(config.get("model", {}))
    for key, value in table.items():
        if key == "model":
            settings["model"] = _merge(settings["model"], value)
        elif key != "by_bits":
            settings[key] = copy.deepcopy(value)
    if bits is not None:
        settings = _merge(settings, table.get("by_bits", {}).get(str(bits), {}))
    settings.pop("by_bits", None)
    settings.update({key: value for key, value in (overrides or {}).items() if value is not None})
    return settings


def build_parser(recipe, description=None):
    parser = argparse.ArgumentParser(
        prog=f"python -m tfhash.recipes.{recipe}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        default="paper",
        help="paper: the paper's experiment (default); demo: a short run of the same model",
    )
    parser.add_argument(
        "--config", metavar="PATH", help=f"a .toml configuration instead of recipes/{recipe}.toml"
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where the dataset is (default: $TFHASH_DATA_DIR, then ~/.keras/datasets)",
    )
    parser.add_argument(
        "--bits", type=int, nargs="+", metavar="K", help="code length(s) (default: the preset's)"
    )
    parser.add_argument("--epochs", type=int, help="training epochs (default: the preset's)")
    parser.add_argument("--batch-size", type=int, help="training batch size (default: the preset's)")
    parser.add_argument(
        "--runs", type=int, help="independent runs averaged, seeds --seed.. (default: the preset's)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of run 0 (default 0); run r uses seed + r")
    parser.add_argument(
        "--min-entropy-weight",
        type=float,
        metavar="LAMBDA",
        help="λ of the minimum-entropy term (paper: 1e-3 or 1e-2; default: the preset's)",
    )
    parser.add_argument(
        "--evaluate-every",
        type=int,
        metavar="N",
        help="mAP during training every N epochs (0: at the end only)",
    )
    parser.add_argument("--output", metavar="DIR", help=f"results folder (default runs/{recipe}/<preset>)")
    parser.add_argument(
        "--export", choices=("images", "none"), help="SavedModel of run 0 (default: the preset's)"
    )
    parser.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="smoke runs: at most N images of each of query / train / database (figures are "
        "then not the protocol's)",
    )
    parser.add_argument(
        "--jit-compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="XLA for the training step: auto = on with a GPU, off on CPU (where it is slower)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the (run, code length) results of an earlier run of this configuration in "
        "--output and train only the missing ones",
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
    check_run_flags(parser, args, ("bits", "epochs", "batch_size", "runs", "limit"))
    if args.evaluate_every is not None and args.evaluate_every < 0:
        parser.error(f"--evaluate-every must be >= 0, got {args.evaluate_every}")
    if args.min_entropy_weight is not None and not args.min_entropy_weight >= 0:
        parser.error(f"--min-entropy-weight must be >= 0, got {args.min_entropy_weight}")
    return parser, args


def load_images(dataset, data_dir=None):
    """The dataset as an `ImageSet` of in-memory uint8 pixels (files decoded once), and its channel count."""
    load, channels = DATASETS[dataset]
    try:
        pool = load(data_dir)
    except sources.DatasetNotFoundError as error:
        raise RecipeError(
            f"{error}\nWith the recipes: pass --data-dir DIR (the folder holding the dataset)."
        ) from None
    if pool.kind == "files":  # decoded once: training reads every image every epoch
        pool = _decode_all(pool, channels)
    return pool, channels


def _decode_all(pool, channels):
    from tfhash.data.image_set import ImageSet

    data = evaluation_dataset(pool, np.arange(len(pool)), 512, channels=channels)
    pixels = np.concatenate([images.numpy() for images, _ in data])
    return ImageSet(pool.name, pixels, pool.labels, pool.partition, pool.class_names)


def run(recipe, argv=None, description=None):
    """Runs a HashGAN recipe with the flags ``argv`` (None: ``sys.argv``); returns the metrics.json record."""
    if recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}.")
    started = time.perf_counter()
    parser, args = _parse(recipe, argv, description)
    config = load_config(args.config or recipe)
    overrides = {
        "bits": args.bits,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "runs": args.runs,
        "evaluate_every": args.evaluate_every,
        "export": args.export,
    }
    if args.min_entropy_weight is not None:
        overrides["model"] = _merge(
            resolve(config, args.preset)["model"], {"min_entropy_weight": args.min_entropy_weight}
        )
    settings = resolve(config, args.preset, overrides)
    per_bits = {bits: resolve(config, args.preset, overrides, bits) for bits in settings["bits"]}
    if args.limit is not None:  # the paper's figures are for the whole protocol
        for used in per_bits.values():
            used["reported"], used["reported_clustering"] = {}, {}
    output = Path(args.output or Path("runs") / recipe / args.preset)
    jit = {"auto": bool(tf.config.list_physical_devices("GPU")), "on": True, "off": False}[args.jit_compile]

    pool, channels = load_images(settings["dataset"], args.data_dir)
    protocol = get_protocol(settings["protocol"])
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
            "limit": args.limit,
        },
        "seed": args.seed,
        "jit_compile": jit,
        "config": settings,
        "per_bits_config": {str(bits): used for bits, used in per_bits.items()},
        "versions": _versions(),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
        },
        "complete": False,
        "runs": [],
        "results": [],
    }
    if args.resume:
        record["runs"] = _resumable_runs(output / "metrics.json", record)
    done = {(row["run"], row["bits"]) for row in record["runs"]}
    if args.limit is not None:
        print(f"--limit {args.limit}: a subset of the protocol's images; the figures are not the protocol's.")

    for run_index in range(settings["runs"]):
        seed = args.seed + run_index
        split = protocol.split(pool, seed=seed)
        parts = limit_split(split, args.limit, seed)
        record["protocol"]["sizes"] = {part: int(len(indices)) for part, indices in parts.items()}
        for bits, used in per_bits.items():
            if (run_index, bits) in done:
                continue
            if used["batch_size"] > len(parts["train"]):
                parser.error(
                    f"--batch-size: {used['batch_size']} exceeds the {len(parts['train'])} training images"
                )
            if args.verbose:
                print(
                    f"\n== {record['title']} ({recipe}, --preset {args.preset}): run {run_index + 1}/"
                    f"{settings['runs']} (seed {seed}), {bits} bits, {used['epochs']} epochs =="
                )
            model, row = train_and_evaluate(
                used, bits, pool, channels, parts, protocol, seed, jit, args.verbose
            )
            row["run"], row["seed"] = run_index, seed
            if run_index == 0:
                row.update(_run_zero_outputs(model, used, bits, output, args.verbose))
            record["runs"].append(row)
            record["results"] = summarize(record["runs"], per_bits)
            record["wall_seconds"] = round(time.perf_counter() - started, 1)
            write_json(output / "metrics.json", record)
    first_runs = sorted((row for row in record["runs"] if row["run"] == 0), key=lambda row: row["bits"])
    if first_runs:
        plot_pr_curves(
            output / "pr_curve.png",
            first_runs,
            f"{record['title']} (--preset {args.preset}, run 0): {pool.name}, {protocol.name}",
        )
    record["results"] = summarize(record["runs"], per_bits)
    record["complete"] = True
    record["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_json(output / "metrics.json", record)
    print_table(record)
    print(f"Wrote {output / 'metrics.json'} and the figures and SavedModels beside it.")
    return record


def _resumable_runs(path, record):
    """The finished (run, code length) rows of an earlier metrics.json with the same configuration.

    Only the number of runs may differ (more runs extend a finished experiment)."""
    if not path.is_file():
        return []
    earlier = json.loads(path.read_text())

    def identity(source):
        settings = {
            bits: {k: v for k, v in used.items() if k != "runs"}
            for bits, used in source.get("per_bits_config", {}).items()
        }
        return (
            [source.get(key) for key in ("recipe", "preset", "seed")],
            settings,
            source["protocol"].get("limit"),
        )

    if identity(earlier) != identity(record):
        raise RecipeError(
            f"--resume: {path} was written by another configuration (recipe, preset, seed, settings or "
            "--limit differ); choose another --output, or run without --resume to start over."
        )
    return earlier.get("runs", [])


def train_and_evaluate(used, bits, pool, channels, parts, protocol, seed, jit, verbose):
    """Trains one HashGAN (one run, one code length) and returns ``(model, figures)``."""
    keras.utils.set_random_seed(seed)
    batch_size, epochs = used["batch_size"], used["epochs"]
    steps = epochs * (len(parts["train"]) // batch_size)
    model = HashGAN(bits, hash_warmup_steps=int(used["warmup_fraction"] * steps), seed=seed, **used["model"])
    model.compile(
        d_optimizer=HashGAN.paper_optimizer(steps),
        g_optimizer=HashGAN.paper_optimizer(steps),
        jit_compile=jit,
    )
    rng = np.random.default_rng([seed, 7])
    init_indices = rng.choice(
        parts["train"], min(used["init_batch_size"], len(parts["train"])), replace=False
    )
    model.initialize_from_batch(pool.samples[np.sort(init_indices)])
    train = training_dataset(
        pool, parts["train"], batch_size, seed=seed, drop_remainder=True, channels=channels
    )
    query, database = (
        evaluation_dataset(pool, parts[part], 1000, channels=channels) for part in ("query", "database")
    )
    callbacks = []
    if used["evaluate_every"]:
        callbacks.append(
            RetrievalEvaluation(
                query, database, every_n_epochs=used["evaluate_every"], verbose=int(bool(verbose))
            )
        )
    started = time.perf_counter()
    history = model.fit(train, epochs=epochs, callbacks=callbacks, verbose=verbose, shuffle=False)
    train_seconds = time.perf_counter() - started
    query_codes, db_codes = model.predict(query, verbose=0), model.predict(database, verbose=0)
    labels = {part: pool.labels[parts[part]] for part in ("query", "database")}
    figures = evaluate_codes(
        query_codes,
        db_codes,
        labels["query"],
        labels["database"],
        protocol.top_k,
        used["precision_at"],
        protocol.also_reports,
    )
    clustering = hash_metrics.kmeans_code_clustering(db_codes, labels["database"], seed=seed)
    return model, {
        "bits": bits,
        "epochs": epochs,
        **figures,
        "clustering": {key: _float(value) for key, value in clustering.items()},
        "train_seconds": round(train_seconds, 1),
        "seconds_per_epoch": round(train_seconds / epochs, 2),
        "history": {name: [_float(v) for v in values] for name, values in history.history.items()},
    }


def _run_zero_outputs(model, used, bits, output, verbose):
    """Run 0's generated-image grid and SavedModel; returns their paths for the record."""
    rows, columns = used["grid"]
    seeds = tf.random.Generator.from_seed(bits)  # the same b′ and z′ for every run of the recipe
    generator_bits = tf.cast(seeds.uniform((rows, bits)) < 0.5, tf.float32)
    noise = seeds.uniform((columns, model.noise_dim))
    images = model.generate(tf.repeat(generator_bits, columns, axis=0), tf.tile(noise, [rows, 1]))
    paths = {
        "generated_grid": save_image_grid(output / f"generated_{bits}bits.png", images.numpy(), rows, columns)
    }
    if used["export"] == "images":
        paths["saved_model"] = model.export(
            str(output / f"saved_model_{bits}bits"), overwrite=True, verbose=False
        )
        if verbose:
            print(f"SavedModel: {paths['saved_model']}")
    return paths


#: figures averaged over runs: name -> how to read it from a run's row
SUMMARY_FIGURES = {
    "map": lambda row: row["map"],
    "map_stable": lambda row: row["map_stable"],
    "map@1000": lambda row: row["also"].get("mAP@1000"),
    "precision@1000": lambda row: row["precision_at"].get("1000"),
    "nmi": lambda row: row["clustering"]["nmi"],
    "accuracy": lambda row: row["clustering"]["accuracy"],
    "train_seconds": lambda row: row["train_seconds"],
}


def summarize(runs, per_bits):
    """Per code length: the mean and standard deviation (ddof 0) over the finished runs of each figure."""
    results = []
    for bits, used in per_bits.items():
        rows = [row for row in runs if row["bits"] == bits]
        if not rows:
            continue
        summary = {"bits": bits, "runs": len(rows), "epochs": used["epochs"]}
        for name, read in SUMMARY_FIGURES.items():
            values = [read(row) for row in rows if read(row) is not None]
            summary[name] = (
                None if not values else {"mean": _float(np.mean(values)), "std": _float(np.std(values))}
            )
        summary["reported"] = used["reported"].get(str(bits), {})
        summary["reported_clustering"] = used["reported_clustering"]
        results.append(summary)
    return results


def print_table(record):
    """The mean ± std per code length beside the paper's figures (percent, as the paper prints them)."""
    print(
        f"\n{record['recipe']} --preset {record['preset']}: {record['dataset']}, protocol "
        f"{record['protocol']['name']} ({record['protocol'].get('sizes')}), seed {record['seed']}"
    )
    names = ("map", "map_stable", "map@1000", "precision@1000", "nmi", "accuracy")
    print(f"{'bits':>5} {'runs':>4} " + " ".join(f"{name:>22}" for name in names) + f" {'train s':>8}")
    for row in record["results"]:
        cells = []
        for name in names:
            value = row[name]
            paper = row["reported"].get(name, row["reported_clustering"].get(name))
            scale = 1 if name in ("nmi", "accuracy") else 100
            text = "—" if value is None else f"{scale * value['mean']:.2f}±{scale * value['std']:.2f}"
            cells.append(text + ("" if paper is None else f" ({paper:g})"))
        print(
            f"{row['bits']:5d} {row['runs']:4d} "
            + " ".join(f"{cell:>22}" for cell in cells)
            + f" {row['train_seconds']['mean']:8.1f}"
        )
    print(
        "mAP, mAP@1000 and precision@1000 in percent (map: ties='average'; map_stable: 'stable'), NMI and "
        "accuracy of k-means on the database codes; mean±std over runs, the paper's figure in parentheses. "
        f"Wall time {record['wall_seconds']:.1f} s."
    )
