"""HQT on CIFAR-10: does the Hyper-Quantization Tree improve each base hasher? (HQT paper, Table 2)

Protocol ``cifar10-i`` (1,000 queries per class from all 60,000 images, the other 50,000 are the database, 500
training images per class drawn from it; mAP@all), frozen EfficientNet-Lite0 ImageNet features (1,280-d)
through the feature bank, 16 / 32 / 64 bits, for Bi-half, CIBHash and CIMON, each without and with the HQT
regulariser, and GreedyHash (``--bases greedyhash``; without HQT: it has no HQT recipe). Every HQT base trains on
cached features of augmented views. The settings are the recipes': each base's model, optimiser, learning-rate
schedule, batch size and epochs (per code length) from the ``[paper]`` preset of recipes/<base>.toml, the HQT
regulariser and the training augmentations from recipes/hqt_<base>.toml (alpha 0.5, depths 3-5, the released
code's shared tree); only the number of stored views per image (`BANK_VIEWS`) and the frozen backbone are the
benchmark's own (CIMON's paper preset fine-tunes VGG16). GreedyHash's released training uses no augmentation
(recipes/greedyhash.toml, ``augment = []``): it trains on the un-augmented training images' features, taken from
the Bi-half bank (`clean_train_features`; no extraction of its own), reshuffled every epoch with the train seed.

The heads start as each model's default ``head_init`` (PyTorch's ``nn.Linear`` initialisation for all four
methods, as released); ``--head-init glorot`` gives Keras's Glorot-uniform kernel and zero bias, the
initialisation of the rows recorded before ``head_init`` existed.

Data: ../shared/data/cifar10-jpg.tar.gz, loaded by tfhash.data.sources.load_cifar10 (extracted once into its
cache). The feature banks (query and database features, and the training views of each method) are cached
under ``--bank-dir``; the first run extracts them (about 110,000 backbone calls: ~25 min on 2 CPU cores).

    python benchmarks/hqt_cifar10.py --extract-only   # fill the feature-bank cache
    python benchmarks/hqt_cifar10.py                  # train and evaluate everything, write the JSON
    # the runs recorded in benchmarks/README.md (train seeds 0 and 1; trees on view 0, then on clean features):
    python benchmarks/hqt_cifar10.py --epochs-scale 0.5 --train-seed 1 --output runs/hqt_seed1.json
    python benchmarks/hqt_cifar10.py --epochs-scale 0.5 --train-seed 1 --tree-features clean --hqt-only \
        --output runs/hqt_seed1_clean.json
    # the PyTorch-initialised re-run (HQT rows for Bi-half only):
    python benchmarks/hqt_cifar10.py --epochs-scale 0.5 --train-seed 0 --bases greedyhash bihalf cibhash cimon \
        --hqt-bases bihalf --output runs/hqt_seed0_torch_init.json

A rerun with the same ``--output`` and settings keeps the finished rows and runs only the missing ones.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfhash  # noqa: E402
from tfhash import backbones, metrics, models  # noqa: E402
from tfhash._atomic import write_json  # noqa: E402
from tfhash.callbacks import CIMONPseudoSimilarityRefresher, HQTPseudoBits  # noqa: E402
from tfhash.data import augment, get_protocol, sources  # noqa: E402
from tfhash.data.feature_bank import FeatureBank  # noqa: E402
from tfhash.recipes import runner  # noqa: E402
from tfhash.supervision import CIMONPseudoSimilarity, HyperQuantizationTree  # noqa: E402

CIFAR_JPG = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"
PROTOCOL = "cifar10-i"
#: augmented views stored per training image (the extraction budget; the recipes' paper presets store more)
BANK_VIEWS = {"bihalf": 2, "cibhash": 4, "cimon": 2}
#: bases with an HQT recipe (recipes/hqt_<base>.toml), each with a feature bank of its training augmentation
HQT_BASES = tuple(BANK_VIEWS)
#: bases without augmentation, trained on the clean training features of another base's bank
CLEAN_FEATURES_FROM = {"greedyhash": "bihalf"}


def recipe_settings(base, bits):
    """``(settings, hqt)``: the ``[paper]`` settings of recipes/<base>.toml for ``bits``, and the HQT recipe's
    (recipes/hqt_<base>.toml: its ``hqt`` table and training augmentations)."""
    settings = runner.resolve(runner.load_config(base), "paper", bits=bits)
    if base not in HQT_BASES:  # GreedyHash: no HQT recipe
        return settings, None
    with_hqt = runner.resolve(runner.load_config(f"hqt_{base}"), "paper", bits=bits)
    return settings, with_hqt


def feature_banks(backbone_name, seed, bank_dir, bases, verbose=1):
    """(split, {base: FeatureBank}) on protocol cifar10-i for ``bases``; extracts what the cache lacks.

    A base of `CLEAN_FEATURES_FROM` gets the bank of the base named there (it reads only its clean features).
    """
    if not CIFAR_JPG.exists():
        raise SystemExit(f"CIFAR-10 is not at {CIFAR_JPG}: place cifar10-jpg.tar.gz there.")
    pool = sources.get("cifar10", data_dir=CIFAR_JPG.parent)
    split = get_protocol(PROTOCOL).split(pool, seed=seed)
    backbone = backbones.get(backbone_name)
    banks = {}
    for base in sorted(set(CLEAN_FEATURES_FROM.get(base, base) for base in bases), key=HQT_BASES.index):
        names = recipe_settings(base, 16)[1]["augment"]
        views = tuple(augment.get(name, backbone.image_size) for name in names)
        banks[base] = FeatureBank(
            backbone, pool, protocol=split.protocol, train=split.train,
            evaluation={"query": split.query, "database": split.database},
            augment=views[0] if len(views) == 1 else views, views=BANK_VIEWS[base], seed=seed,
            backbone_name=backbone_name, directory=bank_dir, batch_size=128, verbose=verbose,
        )
    for base, source in CLEAN_FEATURES_FROM.items():
        if base in bases:
            banks[base] = banks[source]
    return split, banks


def scaled(settings, epochs_scale):
    """The settings with the epochs (and the schedule's period) multiplied by ``epochs_scale``."""
    settings = dict(settings)
    settings["epochs"] = max(1, round(settings["epochs"] * epochs_scale))
    if settings["schedule"]:
        every = max(1, round(settings["schedule"]["every_epochs"] * epochs_scale))
        settings["schedule"] = {**settings["schedule"], "every_epochs": every}
    return settings


def clean_train_features(bank, split):
    """The training images' un-augmented features: their rows of the database features."""
    position = np.searchsorted(split.database, split.train)
    assert np.array_equal(split.database[position], split.train)
    return bank.evaluation["database"][position]


def clean_training_dataset(bank, split, batch_size, epochs, seed):
    """``{"inputs": clean features, "sample_index": i}`` batches of the training images for ``epochs`` epochs,
    each a new seeded permutation (the last, smaller batch dropped): GreedyHash's un-augmented training data."""
    features = clean_train_features(bank, split)
    data = tf.data.Dataset.from_tensor_slices({"inputs": features, "sample_index": np.arange(len(features))})
    data = data.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size, drop_remainder=True).repeat(epochs).prefetch(tf.data.AUTOTUNE)


def train_and_evaluate(base, bits, hqt, bank, split, pool, epochs_scale, seed, verbose, tree_features="view0",
                       head_init=None):
    settings, with_hqt = recipe_settings(base, bits)
    settings = scaled(settings, epochs_scale)
    keras.utils.set_random_seed(seed)
    n_train = len(split.train)
    regularizer = None
    if hqt:
        options = with_hqt["hqt"]
        regularizer = models.HQTRegularizer(n_train, alpha=options["alpha"], signed_targets=options["signed_targets"])
    model = models.get(base, num_bits=bits, feature_size=bank.feature_size, hqt=regularizer, seed=seed,
                       head_init=head_init, **({"num_samples": n_train} if settings["pseudo_similarity"] else {}),
                       **settings["model"])
    steps = n_train // settings["batch_size"]
    model.compile(optimizer=runner.build_optimizer(settings, steps), jit_compile=True, steps_per_execution=steps)
    callbacks = []
    started = time.perf_counter()
    if settings["pseudo_similarity"]:  # CIMON: fitted on the un-augmented training features
        similarity = CIMONPseudoSimilarity(**settings["pseudo_similarity"], seed=seed)
        callbacks.append(CIMONPseudoSimilarityRefresher(similarity, clean_train_features(bank, split)))
    if hqt:
        # "view0": as released, trees on training features under the training augmentation (the first stored
        # view); "clean": on the un-augmented training images' features.
        options = with_hqt["hqt"]
        tree = HyperQuantizationTree(bits, depth_range=tuple(options["depth_range"]),
                                     shared_tree=options["shared_tree"], seed=seed)
        features = bank.train[0, 0] if tree_features == "view0" else clean_train_features(bank, split)
        callbacks.append(HQTPseudoBits(tree, features))
    if base in CLEAN_FEATURES_FROM:
        data = clean_training_dataset(bank, split, settings["batch_size"], settings["epochs"], seed)
    else:
        data = bank.training_dataset(settings["batch_size"], epochs=settings["epochs"], drop_remainder=True)
    history = model.fit(data, epochs=settings["epochs"], steps_per_epoch=steps, callbacks=callbacks,
                        verbose=verbose)
    train_seconds = time.perf_counter() - started
    codes = {
        name: model.predict(bank.evaluation_dataset(name, batch_size=1024), verbose=0)
        for name in ("query", "database")
    }
    labels = {"query": pool.labels[split.query], "database": pool.labels[split.database]}
    report = metrics.retrieval_report(codes["query"], codes["database"], labels["query"], labels["database"],
                                      precision_at=())
    return {
        "base": base, "hqt": hqt, "bits": bits, "tree_features": tree_features if hqt else None,
        "head_init": model.head_init,
        "training_features": "clean" if base in CLEAN_FEATURES_FROM else "augmented views",
        "map_all": report["map"], "map_all_stable": report["map_stable"],
        "fisher_score": report["fisher_score"], "entropy_ratio": report["entropy_ratio"],
        "correlation_ratio": report["correlation_ratio"],
        "mean_bit_correlation": float(metrics.mean_bit_correlation(codes["database"])),
        "train_seconds": round(train_seconds, 1),
        "epochs": settings["epochs"], "batch": settings["batch_size"],
        "final_loss": float(history.history["loss"][-1]),
    }


def main(argv=None):
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--seed", type=int, default=0, help="seed of the protocol split and the feature banks")
    parser.add_argument("--train-seed", type=int, default=None,
                        help="seed of the models, trees and clustering (default: --seed)")
    parser.add_argument("--bank-dir", default=None, help="feature-bank cache (default: FeatureBank's)")
    parser.add_argument("--extract-only", action="store_true", help="fill the feature-bank cache and stop")
    parser.add_argument("--bases", nargs="+", default=list(HQT_BASES),
                        choices=(*HQT_BASES, *CLEAN_FEATURES_FROM))
    parser.add_argument("--hqt-bases", nargs="*", default=None, choices=HQT_BASES,
                        help="the bases that also get HQT rows (default: every base with an HQT recipe; "
                             "none when the flag is given alone)")
    parser.add_argument("--head-init", choices=("torch", "glorot"), default=None,
                        help="the heads' initialisation (default: each model's, PyTorch's for all four)")
    parser.add_argument("--bits", nargs="+", type=int, default=[16, 32, 64])
    parser.add_argument("--epochs-scale", type=float, default=1.0,
                        help="multiply every paper's epoch count (and lr-decay epoch) by this factor")
    parser.add_argument("--tree-features", choices=("view0", "clean"), default="view0",
                        help="HQT trees on the first augmented view (released) or on un-augmented features")
    parser.add_argument("--hqt-only", action="store_true", help="run only the rows with the HQT regulariser")
    parser.add_argument("--output", default=os.path.join("runs", "benchmarks", "hqt_cifar10.json"))
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args(argv)
    train_seed = args.seed if args.train_seed is None else args.train_seed
    split, banks = feature_banks(args.backbone, args.seed, args.bank_dir, args.bases)
    if args.extract_only:
        for base, bank in banks.items():
            print(base, {name: path for name, path in bank.files.items()})
        return
    pool = sources.get("cifar10", data_dir=CIFAR_JPG.parent)
    record = {
        "benchmark": "benchmarks/hqt_cifar10.py", "protocol": PROTOCOL, "seed": args.seed, "train_seed": train_seed,
        "backbone": f"{args.backbone} (frozen, ImageNet), features through tfhash.data.FeatureBank",
        "epochs_scale": args.epochs_scale, "tree_features": args.tree_features,
        "head_init": args.head_init or "each model's default",
        "machine": f"{os.cpu_count()} CPU cores, GPU: {bool(tf.config.list_physical_devices('GPU'))}",
        "versions": {"tfhash": tfhash.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "results": [],
    }
    # (files written before head_init have no "head_init": their Glorot rows are never mixed into a new run's)
    keys = ("protocol", "seed", "train_seed", "backbone", "epochs_scale", "tree_features", "head_init")
    if os.path.exists(args.output):  # resume: keep finished rows, run only the missing ones
        with open(args.output) as handle:
            previous = json.load(handle)
        if {k: previous.get(k) for k in keys} == {k: record[k] for k in keys}:
            record["results"] = previous["results"]
    done = {(r["base"], r["hqt"], r["bits"]) for r in record["results"]}
    hqt_bases = HQT_BASES if args.hqt_bases is None else args.hqt_bases
    # Code length outermost: an interrupted run still holds every base at the shorter codes (and resumes).
    for bits in args.bits:
        for base in args.bases:
            options = ((False,) if not args.hqt_only else ()) + ((True,) if base in hqt_bases else ())
            for hqt in options:
                if (base, hqt, bits) in done:
                    continue
                print(f"\n== {'HQT + ' if hqt else ''}{base}, {bits} bits", flush=True)
                row = train_and_evaluate(
                    base, bits, hqt, banks[base], split, pool, args.epochs_scale, train_seed, args.verbose,
                    args.tree_features, args.head_init,
                )
                print(json.dumps(row), flush=True)
                record["results"].append(row)
                write_json(args.output, record)
    header = ("method", "bits", "mAP@all", "stable", "Fisher", "Ω_S", "Ω_C", "s")
    print("\n{:>16} {:>5} {:>8} {:>7} {:>8} {:>6} {:>6} {:>6}".format(*header))
    for r in sorted(record["results"], key=lambda r: (r["base"], r["bits"], r["hqt"])):
        name = ("HQT+" if r["hqt"] else "") + r["base"]
        print(f"{name:>16} {r['bits']:5d} {r['map_all']:8.4f} {r['map_all_stable']:7.4f} "
              f"{r['fisher_score']:8.3f} {r['entropy_ratio']:6.3f} {r['correlation_ratio']:6.3f} "
              f"{r['train_seconds']:6.0f}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
