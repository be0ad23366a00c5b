"""HQT on CIFAR-10: does the Hyper-Quantization Tree improve each base hasher? (HQT paper, Table 2)

Protocol ``cifar10-i`` (1,000 queries per class from all 60,000 images, the other 50,000 are the database, 500
training images per class drawn from it; mAP@all), frozen EfficientNet-Lite0 ImageNet features (1,280-d)
through the feature bank, 16 / 32 / 64 bits, for Bi-half, CIBHash and CIMON, each without and with the HQT
regulariser (alpha = 0.5, depths 3-5, the released code's shared tree). Every model trains on cached features
of augmented views; the heads, losses and hyper-parameters are those of tfhash.models' defaults (the papers').

Data: ../shared/data/cifar10-jpg.tar.gz, loaded by tfhash.data.sources.load_cifar10 (extracted once into its
cache). The feature banks (query and database features, and the training views of each method) are cached
under ``--bank-dir``; the first run extracts them (about 110,000 backbone calls: ~25 min on 2 CPU cores).

    python benchmarks/hqt_cifar10.py --extract-only   # fill the feature-bank cache
    python benchmarks/hqt_cifar10.py                  # train and evaluate everything, write the JSON
    # the runs recorded in benchmarks/README.md (train seeds 0 and 1; trees on view 0, then on clean features):
    python benchmarks/hqt_cifar10.py --epochs-scale 0.5 --train-seed 1 --output runs/hqt_seed1.json
    python benchmarks/hqt_cifar10.py --epochs-scale 0.5 --train-seed 1 --tree-features clean --hqt-only \
        --output runs/hqt_seed1_clean.json

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
from tfhash.callbacks import HQTPseudoBits  # noqa: E402
from tfhash.data import get_protocol  # noqa: E402
from tfhash.data.augment import cibhash_view, cimon_strong_view, cimon_weak_view  # noqa: E402
from tfhash.data.feature_bank import FeatureBank  # noqa: E402
from tfhash.data.sources import load_cifar10  # noqa: E402
from tfhash.supervision import CIMONPseudoSimilarity, HyperQuantizationTree  # noqa: E402

CIFAR_JPG = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"
PROTOCOL = "cifar10-i"


def training_augmentations(image_size):
    """Each base's training views: (augmentation or pair, number of stored views)."""
    return {
        "bihalf": (cimon_weak_view(image_size), 2),
        "cibhash": ((cibhash_view(image_size), cibhash_view(image_size)), 4),
        "cimon": ((cimon_weak_view(image_size), cimon_strong_view(image_size)), 2),
    }


def feature_banks(backbone_name, seed, bank_dir, bases, verbose=1):
    """(split, {base: FeatureBank}) on protocol cifar10-i for ``bases``; extracts what the cache lacks."""
    if not CIFAR_JPG.exists():
        raise SystemExit(f"CIFAR-10 is not at {CIFAR_JPG}: place cifar10-jpg.tar.gz there.")
    pool = load_cifar10(CIFAR_JPG.parent)
    split = get_protocol(PROTOCOL).split(pool, seed=seed)
    backbone = backbones.get(backbone_name)
    banks = {}
    for base, (augment, views) in training_augmentations(backbone.image_size).items():
        if base not in bases:
            continue
        banks[base] = FeatureBank(
            backbone, pool, protocol=split.protocol, train=split.train,
            evaluation={"query": split.query, "database": split.database},
            augment=augment, views=views, seed=seed, backbone_name=backbone_name,
            directory=bank_dir, batch_size=128, verbose=verbose,
        )
    return split, banks


def piecewise_sgd(learning_rate, boundaries_in_epochs, steps_per_epoch, momentum, weight_decay):
    """SGD whose learning rate is divided by 10 at each boundary (in epochs)."""
    if boundaries_in_epochs:
        boundaries = [int(b * steps_per_epoch) for b in boundaries_in_epochs]
        values = [learning_rate * 0.1**i for i in range(len(boundaries) + 1)]
        learning_rate = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    return keras.optimizers.SGD(learning_rate, momentum=momentum, weight_decay=weight_decay)


def base_settings(base, bits):
    """The paper's optimiser, batch size and epochs of a base (papers/README.md)."""
    if base == "bihalf":  # Bi-half / HQT code: SGD 1e-4, momentum .9, wd 5e-4, 300 epochs, lr ×0.1 at 120
        return dict(epochs=300, batch=32, decay_at=[120], optimizer=("sgd", 1e-4, 0.9, 5e-4))
    if base == "cibhash":  # CIBHash: Adam 1e-3, batch 64, 60 epochs (>= 80 at 16 bits)
        return dict(epochs=80 if bits == 16 else 60, batch=64, decay_at=[], optimizer=("adam", 1e-3))
    # CIMON: SGD 1e-3, momentum .9, wd 1e-5, batch 24, 150 epochs
    return dict(epochs=150, batch=24, decay_at=[], optimizer=("sgd", 1e-3, 0.9, 1e-5))


def scaled(settings, epochs_scale):
    settings = dict(settings)
    epochs = max(1, round(settings["epochs"] * epochs_scale))
    settings["decay_at"] = [round(d * epochs_scale) for d in settings["decay_at"]]
    settings["epochs"] = epochs
    return settings


def build_model(base, bits, bank, split, hqt, seed):
    """The base hasher (tfhash.models defaults = the papers'), with the HQT regulariser when ``hqt``."""
    n_train = len(split.train)
    regularizer = models.HQTRegularizer(n_train, alpha=0.5) if hqt else None
    common = dict(feature_size=bank.feature_size, hqt=regularizer, seed=seed)
    if base == "bihalf":
        return models.BiHalfHasher(bits, gamma=6.0, **common)
    if base == "cibhash":
        return models.CIBHasher(bits, **common)
    return models.CIMONHasher(bits, num_samples=n_train, **common)


def clean_train_features(bank, split):
    """The training images' un-augmented features: their rows of the database features."""
    position = np.searchsorted(split.database, split.train)
    assert np.array_equal(split.database[position], split.train)
    return bank.evaluation["database"][position]


def train_and_evaluate(base, bits, hqt, bank, split, pool, settings, seed, verbose, tree_features="view0"):
    keras.utils.set_random_seed(seed)
    model = build_model(base, bits, bank, split, hqt, seed)
    steps = len(split.train) // settings["batch"]
    kind, *arguments = settings["optimizer"]
    if kind == "sgd":
        optimizer = piecewise_sgd(arguments[0], settings["decay_at"], steps, *arguments[1:])
    else:
        optimizer = keras.optimizers.Adam(arguments[0])
    model.compile(optimizer=optimizer, jit_compile=True, steps_per_execution=steps)
    callbacks = []
    started = time.perf_counter()
    if base == "cimon":
        fitted = CIMONPseudoSimilarity(seed=seed).fit(clean_train_features(bank, split))
        model.assign_pseudo_similarity(fitted)
    if hqt:
        # "view0": as released, trees on training features under the training augmentation (the first stored
        # view); "clean": on the un-augmented training images' features.
        tree = HyperQuantizationTree(bits, depth_range=(3, 5), shared_tree=True, seed=seed)
        features = bank.train[0, 0] if tree_features == "view0" else clean_train_features(bank, split)
        callbacks.append(HQTPseudoBits(tree, features))
    data = bank.training_dataset(settings["batch"], drop_remainder=True)
    history = model.fit(data, epochs=settings["epochs"], callbacks=callbacks, verbose=verbose)
    train_seconds = time.perf_counter() - started
    codes = {
        name: model.predict(bank.evaluation_dataset(name, batch_size=1024), verbose=0)
        for name in ("query", "database")
    }
    labels = {"query": pool.labels[split.query], "database": pool.labels[split.database]}
    arguments = (codes["query"], codes["database"], labels["query"], labels["database"])
    return {
        "base": base, "hqt": hqt, "bits": bits, "tree_features": tree_features if hqt else None,
        "map_all": float(metrics.mean_average_precision(*arguments, ties="average")),
        "map_all_stable": float(metrics.mean_average_precision(*arguments, ties="stable")),
        "fisher_score": float(metrics.fisher_score(codes["database"], labels["database"])),
        "entropy_ratio": float(metrics.entropy_ratio(codes["database"], labels["database"])),
        "correlation_ratio": float(metrics.correlation_ratio(codes["database"], labels["database"])),
        "mean_bit_correlation": float(metrics.mean_bit_correlation(codes["database"])),
        "train_seconds": round(train_seconds, 1),
        "epochs": settings["epochs"], "batch": settings["batch"],
        "final_loss": float(history.history["loss"][-1]),
    }


def write_json(path, record):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as handle:
        json.dump(record, handle, indent=2)
    os.replace(path + ".tmp", path)


def main(argv=None):
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--seed", type=int, default=0, help="seed of the protocol split and the feature banks")
    parser.add_argument("--train-seed", type=int, default=None,
                        help="seed of the models, trees and clustering (default: --seed)")
    parser.add_argument("--bank-dir", default=None, help="feature-bank cache (default: FeatureBank's)")
    parser.add_argument("--extract-only", action="store_true", help="fill the feature-bank cache and stop")
    parser.add_argument("--bases", nargs="+", default=["bihalf", "cibhash", "cimon"])
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
    pool = load_cifar10(CIFAR_JPG.parent)
    record = {
        "benchmark": "benchmarks/hqt_cifar10.py", "protocol": PROTOCOL, "seed": args.seed, "train_seed": train_seed,
        "backbone": f"{args.backbone} (frozen, ImageNet), features through tfhash.data.FeatureBank",
        "epochs_scale": args.epochs_scale, "tree_features": args.tree_features,
        "machine": f"{os.cpu_count()} CPU cores, GPU: {bool(tf.config.list_physical_devices('GPU'))}",
        "versions": {"tfhash": tfhash.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "results": [],
    }
    keys = ("protocol", "seed", "train_seed", "backbone", "epochs_scale", "tree_features")
    if os.path.exists(args.output):  # resume: keep finished rows, run only the missing ones
        with open(args.output) as handle:
            previous = json.load(handle)
        if {k: previous.get(k) for k in keys} == {k: record[k] for k in keys}:
            record["results"] = previous["results"]
    done = {(r["base"], r["hqt"], r["bits"]) for r in record["results"]}
    # Code length outermost: an interrupted run still holds every base at the shorter codes (and resumes).
    for bits in args.bits:
        for base in args.bases:
            for hqt in (True,) if args.hqt_only else (False, True):
                if (base, hqt, bits) in done:
                    continue
                settings = scaled(base_settings(base, bits), args.epochs_scale)
                print(f"\n== {'HQT + ' if hqt else ''}{base}, {bits} bits: {settings}", flush=True)
                row = train_and_evaluate(
                    base, bits, hqt, banks[base], split, pool, settings, train_seed, args.verbose,
                    args.tree_features,
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
