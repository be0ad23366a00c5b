"""DSAH on CIFAR-10: does each component help (paper Figs. 4 and 6), and where does DSAH stand among the baselines?

Protocol ``cifar10-dsah`` (100 queries per class from all 60,000 images, the other 59,000 are the database,
1,000 training images per class drawn from it; mAP@5000 and P@100), frozen EfficientNet-Lite0 ImageNet
features (1,280-d, 224 px), 16 / 32 / 64 / 128 bits, one split (seed 0) and the training seeds given:

- DSAH and its ablation (paper Sec. 5.4): PIC⁰ + AND⁰ (a_ij = 1, W⁰ fixed), PIC + AND⁰, PIC⁰ + AND, PIC + AND
  (DSAH), all with recipes/dsah.toml's ``[paper]`` model and schedule (λ = 10, τ = 1, k1 = k2 = 500, γ = 1,
  R × T = 3 × 10, batch 50, Adam 1e-4 with ε = 1.0 ×0.99 every 200 steps), unless ``--dsah-optimizer``
  replaces the optimiser (see benchmarks/README.md for the one recorded); W⁰ is built once from the training
  features (it depends on nothing else) and assigned to every model; the refresher's log gives W's precision,
  recall and F_w against the labels per round (analysis only).
- Bi-half, GreedyHash (clean training features, as their released training) and CIBHash (two augmented views
  of the training images, ``--cib-views`` stored per image) with their recipes' ``[paper]`` settings, epochs
  scaled by ``--baseline-epochs-scale``;
- the raw features ranked by cosine similarity (no hashing), the ceiling a frozen backbone gives.

The query and database features are the clean (resized) images' features, read from the feature-bank cache of
protocol cifar10-i (its query and database cover all 60,000 images; clean features do not depend on the
protocol), extracted there when absent (~60,000 backbone calls: 30-45 min on 2 CPU cores).

    python benchmarks/dsah_cifar10.py --output benchmarks/results/dsah_cifar10.json
    python benchmarks/dsah_cifar10.py --methods dsah --bits 32 --train-seeds 0 --output /tmp/one.json

A rerun with the same ``--output`` keeps the finished rows and runs only the missing ones.
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
from tfhash.data import augment, evaluation_dataset, get_protocol, sources, training_dataset  # noqa: E402
from tfhash.data.feature_bank import FeatureBank  # noqa: E402
from tfhash.data.image_set import ImageSet  # noqa: E402
from tfhash.recipes import runner  # noqa: E402
from tfhash.supervision import AdaptiveNeighborDiscovery  # noqa: E402

CIFAR_JPG = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"
PROTOCOL = "cifar10-dsah"
#: the ablation of paper Sec. 5.4: name -> (pair_weights, update_every_n_epochs or None = AND⁰)
DSAH_VARIANTS = {
    "pic0_and0": ("uniform", False),
    "pic_and0": ("pic", False),
    "pic0_and": ("uniform", True),
    "dsah": ("pic", True),
}
BASELINES = ("bihalf", "greedyhash", "cibhash")
DSAH_OPTIMIZERS = {
    "paper": None,  # recipes/dsah.toml [paper]: Adam 1e-4, epsilon 1.0, x0.99 every 200 steps
    "adam1e-3": {"class_name": "Adam", "learning_rate": 1e-3},  # recipes/dsah.toml [demo]
}


def pool_features(pool, backbone, bank_dir, verbose):
    """(60,000, D) clean features of every CIFAR-10 image, by pool index, from the cifar10-i bank's query and
    database splits (which partition the pool)."""
    split = get_protocol("cifar10-i").split(pool, seed=0)
    bank = FeatureBank(backbone, pool, protocol=split.protocol,
                       evaluation={"query": split.query, "database": split.database},
                       backbone_name="efficientnet_lite0", directory=bank_dir, batch_size=128, verbose=verbose)
    features = np.empty((len(pool), bank.feature_size), np.float32)
    features[split.query], features[split.database] = bank.evaluation["query"], bank.evaluation["database"]
    return ImageSet("cifar10-efficientnet_lite0", features, pool.labels)


def dsah_settings(bits, optimizer):
    settings = runner.resolve(runner.load_config("dsah"), "paper", bits=bits)
    if DSAH_OPTIMIZERS[optimizer] is not None:
        settings = {**settings, "optimizer": DSAH_OPTIMIZERS[optimizer], "schedule": None}
    return settings


def baseline_settings(method, bits, epochs_scale):
    settings = runner.resolve(runner.load_config(method), "paper", bits=bits)
    settings["epochs"] = max(1, round(settings["epochs"] * epochs_scale))
    if settings["schedule"] and "every_epochs" in settings["schedule"]:
        every = max(1, round(settings["schedule"]["every_epochs"] * epochs_scale))
        settings["schedule"] = {**settings["schedule"], "every_epochs": every}
    return settings


def evaluate(model, features, split, labels, train_seconds):
    codes = {part: model.predict(evaluation_dataset(features, getattr(split, part), 1024), verbose=0)
             for part in ("query", "database")}
    report = metrics.retrieval_report(codes["query"], codes["database"], labels["query"], labels["database"],
                                      top_k=split.top_k, precision_at=(100,))
    return {"map@5000": report["map"], "map@5000_stable": report["map_stable"],
            "precision@100": report["precision_at"]["100"], "train_seconds": round(train_seconds, 1)}


def train(model, settings, data, steps, callbacks, jit):
    model.compile(optimizer=runner.build_optimizer(settings, steps), jit_compile=jit, steps_per_execution=steps)
    started = time.perf_counter()
    history = model.fit(data, epochs=settings["epochs"], steps_per_epoch=steps, callbacks=callbacks, verbose=0)
    return time.perf_counter() - started, float(history.history["loss"][-1])


def run_dsah(variant, bits, seed, features, split, labels, w0, optimizer):
    pair_weights, grows = DSAH_VARIANTS[variant]
    settings = dsah_settings(bits, optimizer)
    keras.utils.set_random_seed(seed)
    options = dict(settings["model"], pair_weights=pair_weights)
    if not grows:
        options["update_every_n_epochs"] = None
    model = models.get("dsah", num_bits=bits, num_samples=len(split.train), feature_size=features.samples.shape[1],
                       seed=seed, **options)
    started = time.perf_counter()
    model.assign_neighbor_similarity(w0)  # W⁰ depends on the features only: built once for every run
    refreshers = model.supervision_refreshers(features.samples[split.train], labels=labels["train"])
    steps = len(split.train) // settings["batch_size"]
    data = training_dataset(features, split.train, settings["batch_size"], epochs=settings["epochs"], seed=seed,
                            drop_remainder=True)
    seconds, loss = train(model, settings, data, steps, refreshers, jit=True)
    row = evaluate(model, features, split, labels, time.perf_counter() - started)
    rounds = [{key: entry[key] for key in ("round", "epoch", "positives", "threshold", "precision", "recall", "f_w")
               if key in entry} for entry in refreshers[0].log]
    return {**row, "epochs": settings["epochs"], "optimizer": settings["optimizer"],
            "schedule": settings["schedule"], "final_loss": loss, "rounds": rounds}


def run_baseline(method, bits, seed, features, split, labels, cib_bank, epochs_scale):
    settings = baseline_settings(method, bits, epochs_scale)
    keras.utils.set_random_seed(seed)
    model = models.get(method, num_bits=bits, feature_size=features.samples.shape[1], seed=seed, **settings["model"])
    steps = len(split.train) // settings["batch_size"]
    if method == "cibhash":
        data = cib_bank.training_dataset(settings["batch_size"], epochs=settings["epochs"], seed=seed,
                                         drop_remainder=True)
    else:  # Bi-half and GreedyHash train on the resized images only (their released transforms)
        data = training_dataset(features, split.train, settings["batch_size"], epochs=settings["epochs"],
                                seed=seed, drop_remainder=True)
    started = time.perf_counter()
    seconds, loss = train(model, settings, data, steps, [], jit=True)
    row = evaluate(model, features, split, labels, time.perf_counter() - started)
    return {**row, "epochs": settings["epochs"], "final_loss": loss}


def cosine_ranking(features, split, labels):
    """mAP@5000 and P@100 of the raw features ranked by cosine similarity (exact, float)."""
    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    query, database = unit(features.samples[split.query]), unit(features.samples[split.database])
    similarity = query @ database.T
    relevant_all = labels["query"][:, None] == labels["database"][None, :]
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :5000]
    relevant = np.take_along_axis(relevant_all, order, axis=1)
    hits = np.cumsum(relevant, axis=1)
    precision = hits / np.arange(1, 5001)
    found = relevant.sum(axis=1)
    ap = np.where(found > 0, (precision * relevant).sum(axis=1) / np.maximum(found, 1), 0.0)
    return {"map@5000": float(ap.mean()), "precision@100": float(relevant[:, :100].mean())}


def summarize(record):
    """The record as markdown tables: mean ± std over seeds of mAP@5000, P@100 and training seconds per method and
    code length; W's F_w per round (DSAH runs with AND)."""
    rows = [row for row in record["rows"] if row["method"] != "cosine"]
    bits = sorted({row["bits"] for row in rows})
    methods = [m for m in (*DSAH_VARIANTS, *BASELINES) if any(row["method"] == m for row in rows)]
    lines = ["| method | " + " | ".join(f"{b} bits mAP@5000 / P@100 / train s" for b in bits) + " | seeds per code length |",
             "|---|" + "---|" * (len(bits) + 1)]
    for method in methods:
        cells, seeds = [], []
        for b in bits:
            chosen = [row for row in rows if row["method"] == method and row["bits"] == b]
            seeds.append(str(len({row["seed"] for row in chosen})))
            if not chosen:
                cells.append("—")
                continue
            values = {key: np.array([row[key] for row in chosen]) for key in ("map@5000", "precision@100",
                                                                              "train_seconds")}
            cells.append(f"{values['map@5000'].mean():.4f} ± {values['map@5000'].std():.4f} / "
                         f"{values['precision@100'].mean():.3f} / {values['train_seconds'].mean():.0f}")
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {' / '.join(seeds)} |")
    cosine = [row for row in record["rows"] if row["method"] == "cosine"]
    if cosine:
        lines.append(f"\nRaw features, cosine ranking: mAP@5000 {cosine[0]['map@5000']:.4f}, P@100 "
                     f"{cosine[0]['precision@100']:.3f}.")
    if "w0" in record:
        lines.append(f"W0: precision {record['w0']['precision']:.4f}, recall {record['w0']['recall']:.4f}, "
                     f"F_w {record['w0']['f_w']:.4f}, {record['w0']['positives']} positive pairs.")
    for method in ("pic0_and", "dsah"):
        for b in bits:
            chosen = [row for row in rows if row["method"] == method and row["bits"] == b and row.get("rounds")]
            if chosen:
                f_w = np.array([[entry["f_w"] for entry in row["rounds"]] for row in chosen]).mean(axis=0)
                positives = np.array([[entry["positives"] for entry in row["rounds"]] for row in chosen]).mean(0)
                lines.append(f"{method} {b} bits, F_w after rounds 1..{len(f_w)}: "
                             + ", ".join(f"{v:.4f}" for v in f_w)
                             + " (positive pairs " + ", ".join(f"{v:,.0f}" for v in positives) + ")")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=[*DSAH_VARIANTS, *BASELINES, "cosine"],
                        choices=(*DSAH_VARIANTS, *BASELINES, "cosine"))
    parser.add_argument("--bits", nargs="+", type=int, default=[16, 32, 64, 128])
    parser.add_argument("--train-seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--dsah-optimizer", choices=tuple(DSAH_OPTIMIZERS), default="paper")
    parser.add_argument("--baseline-epochs-scale", type=float, default=1.0)
    parser.add_argument("--cib-views", type=int, default=2, help="augmented views stored per training image")
    parser.add_argument("--bank-dir", default=None)
    parser.add_argument("--features-data-dir", default=None,
                        help="CIFAR-10 as the cifar10-i feature bank was extracted from (default: the shared "
                             "archive's extraction): the bank's key fingerprints the image paths")
    parser.add_argument("--output", required=True)
    parser.add_argument("--summary", action="store_true", help="print the tables of --output and stop")
    args = parser.parse_args(argv)
    if args.summary:
        print(summarize(json.loads(Path(args.output).read_text())))
        return
    if not CIFAR_JPG.exists():
        raise SystemExit(f"CIFAR-10 is not at {CIFAR_JPG}: place cifar10-jpg.tar.gz there.")

    pool = sources.get("cifar10", data_dir=CIFAR_JPG.parent)
    split = get_protocol(PROTOCOL).split(pool, seed=0)
    backbone = backbones.get("efficientnet_lite0")
    features_pool = pool if args.features_data_dir is None else sources.get("cifar10", data_dir=args.features_data_dir)
    assert np.array_equal(features_pool.labels, pool.labels)  # the same images in the same (sorted) order
    features = pool_features(features_pool, backbone, args.bank_dir, verbose=2)
    labels = {part: pool.labels[getattr(split, part)] for part in ("query", "train", "database")}
    output = Path(args.output)
    record = json.loads(output.read_text()) if output.exists() else {
        "benchmark": "dsah_cifar10", "protocol": PROTOCOL, "split_seed": 0, "backbone": "efficientnet_lite0",
        "sizes": split.sizes, "rows": [],
        "versions": {"tfhash": tfhash.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "machine": f"{os.cpu_count()} CPU cores",
    }
    done = {(row["method"], row.get("bits"), row.get("seed"), row.get("dsah_optimizer")) for row in record["rows"]}

    def save(row):
        record["rows"].append(row)
        write_json(output, record)
        print(json.dumps({k: v for k, v in row.items() if k != "rounds"}), flush=True)

    if "cosine" in args.methods and ("cosine", None, None, None) not in done:
        save({"method": "cosine", "bits": None, "seed": None, "dsah_optimizer": None,
              **cosine_ranking(features, split, labels)})
    w0, cib_bank = None, None
    for seed in args.train_seeds:
        for bits in args.bits:
            for method in args.methods:
                if method == "cosine":
                    continue
                optimizer = args.dsah_optimizer if method in DSAH_VARIANTS else None
                if (method, bits, seed, optimizer) in done:
                    continue
                if method in DSAH_VARIANTS:
                    if w0 is None:
                        started = time.perf_counter()
                        discovery = AdaptiveNeighborDiscovery(**dsah_settings(16, "paper")["model"]["neighbor_discovery"])
                        w0 = discovery.initial_neighbors(features.samples[split.train])
                        quality = discovery.quality(w0, labels["train"])
                        record["w0"] = {**quality, "seconds": round(time.perf_counter() - started, 1)}
                        print("W0:", record["w0"], flush=True)
                    row = run_dsah(method, bits, seed, features, split, labels, w0, optimizer)
                else:
                    if method == "cibhash" and cib_bank is None:
                        view = augment.get("cibhash_view", backbone.image_size)
                        cib_bank = FeatureBank(backbone, pool, protocol=split.protocol, train=split.train,
                                               augment=(view, view), views=args.cib_views, seed=0,
                                               backbone_name="efficientnet_lite0", directory=args.bank_dir,
                                               batch_size=64, verbose=2)
                    row = run_baseline(method, bits, seed, features, split, labels, cib_bank,
                                       args.baseline_epochs_scale)
                    row["epochs_scale"] = args.baseline_epochs_scale
                save({"method": method, "bits": bits, "seed": seed, "dsah_optimizer": optimizer, **row})


if __name__ == "__main__":
    main()
