"""UCSH on CIFAR-10: does every component help (paper Table 2), and where does UCSH stand beside the others?

Protocol ``ucsh-cifar10`` (= ``cifar10-dsah``: 100 queries per class, 1,000 training images per class, the other
59,000 images the database; mAP@5000), frozen EfficientNet-Lite0 ImageNet features (the same features, split
and training seeds as benchmarks/dsah_cifar10.py, whose Bi-half, CIBHash and DSAH rows are printed beside
these), 16 / 32 / 64 bits:

- UCSH with recipes/ucsh.toml's model (α = 1e-3, β = 10, γ = 1e-2, N = 10) and its four ablations (paper
  Table 2): UCSH-V (no VAE), UCSH-C (no clustering), UCSH-S (no separating), UCSH-R (continuous relaxation
  instead of the STE); batch 24 (paper), 30 epochs, Adam;
- the head's learning rate is chosen once, by ``--select-lr``: UCSH at 32 bits (train seed 0) trained on 9,000
  of the 10,000 training images for each candidate, ranked by mAP@1000 of the other 1,000 training images as
  queries against those 9,000 (a validation carve-out of the training set, seeded; the protocol's queries are
  never used). The paper's 1e-5 is a fine-tuning rate for VGG16 (SGD, step decay).

    python benchmarks/ucsh_cifar10.py --select-lr --output benchmarks/results/ucsh_cifar10.json
    python benchmarks/ucsh_cifar10.py --output benchmarks/results/ucsh_cifar10.json      # uses the chosen rate
    python benchmarks/ucsh_cifar10.py --summary --output benchmarks/results/ucsh_cifar10.json

A rerun with the same ``--output`` keeps the finished rows and runs only the missing ones.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import dsah_cifar10  # noqa: E402  (the shared features, split and evaluation)
from tfhash import backbones, metrics, models  # noqa: E402
from tfhash._atomic import write_json  # noqa: E402
from tfhash.data import evaluation_dataset, get_protocol, sources, training_dataset  # noqa: E402
from tfhash.recipes import runner  # noqa: E402

PROTOCOL = "ucsh-cifar10"
#: the ablation of paper Table 2: name -> the model flags that differ from UCSH's
VARIANTS = {
    "ucsh": {},
    "ucsh_v": {"use_vae": False},
    "ucsh_c": {"use_clustering": False},
    "ucsh_s": {"use_separation": False},
    "ucsh_r": {"relaxation": True},
}
EPOCHS, BATCH = 30, 24
CANDIDATE_RATES = (1e-4, 3e-4, 1e-3, 3e-3)


def fit_ucsh(variant, bits, seed, features, train_indices, rate):
    """A UCSH model (recipes/ucsh.toml's [model], the variant's flags) trained on ``train_indices``."""
    settings = runner.resolve(runner.load_config("ucsh"), "demo", bits=bits)
    keras.utils.set_random_seed(seed)
    model = models.get("ucsh", num_bits=bits, num_samples=len(train_indices),
                       feature_size=features.samples.shape[1], seed=seed, **{**settings["model"],
                                                                              **VARIANTS[variant]})
    steps = len(train_indices) // BATCH
    model.compile(optimizer=keras.optimizers.Adam(rate), jit_compile=True, steps_per_execution=steps)
    data = training_dataset(features, train_indices, BATCH, epochs=EPOCHS, seed=seed, drop_remainder=True)
    refreshers = model.supervision_refreshers(features.samples[train_indices])
    started = time.perf_counter()
    history = model.fit(data, epochs=EPOCHS, steps_per_epoch=steps, callbacks=refreshers, verbose=0)
    return model, time.perf_counter() - started, float(history.history["loss"][-1])


def select_rate(features, split, labels):
    """The candidate rate with the best validation mAP@1000 (training carve-out), and every candidate's."""
    rng = np.random.default_rng([0, 2026])
    held_out = np.zeros(len(split.train), bool)
    held_out[rng.choice(len(split.train), 1000, replace=False)] = True
    validation, fit_on = split.train[held_out], split.train[~held_out]
    scores = {}
    for rate in CANDIDATE_RATES:
        model, seconds, _ = fit_ucsh("ucsh", 32, 0, features, fit_on, rate)
        codes = [model.predict(evaluation_dataset(features, part, 1024), verbose=0) for part in (validation, fit_on)]
        value = metrics.retrieval_report(codes[0], codes[1], features.labels[validation], features.labels[fit_on],
                                         top_k=1000, precision_at=())["map"]
        scores[str(rate)] = round(float(value), 4)
        print(f"learning rate {rate:g}: validation mAP@1000 {value:.4f} ({seconds:.0f} s)", flush=True)
    best = max(CANDIDATE_RATES, key=lambda rate: scores[str(rate)])
    return best, scores


def summarize(record, dsah_record):
    """Mean ± std over seeds of mAP@5000 (and training seconds) per variant and code length, then the same
    split's Bi-half, CIBHash and DSAH rows of the DSAH benchmark."""
    rows = record["rows"] + [row for row in dsah_record.get("rows", [])
                             if row["method"] in ("bihalf", "cibhash", "dsah") and row["bits"] in (16, 32, 64)]
    bits = [16, 32, 64]
    lines = ["| method | " + " | ".join(f"{b} bits mAP@5000 / train s" for b in bits) + " | seeds per code length |",
             "|---|" + "---|" * (len(bits) + 1)]
    for method in (*VARIANTS, "dsah", "bihalf", "cibhash"):
        cells, seeds = [], []
        for b in bits:
            chosen = [row for row in rows if row["method"] == method and row["bits"] == b]
            seeds.append(str(len({row["seed"] for row in chosen})))
            values = np.array([row["map@5000"] for row in chosen])
            seconds = np.array([row["train_seconds"] for row in chosen])
            cells.append("—" if not chosen else f"{values.mean():.4f} ± {values.std():.4f} / {seconds.mean():.0f}")
        if any(count != "0" for count in seeds):
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {' / '.join(seeds)} |")
    lines.append(f"\nHead learning rate (Adam) chosen on the training carve-out: {record.get('learning_rate')} "
                 f"(validation mAP@1000 per candidate: {record.get('rate_scores')}).")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(VARIANTS), choices=tuple(VARIANTS))
    parser.add_argument("--bits", nargs="+", type=int, default=[16, 32, 64])
    parser.add_argument("--train-seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--select-lr", action="store_true", help="choose the learning rate, then stop")
    parser.add_argument("--bank-dir", default=None)
    parser.add_argument("--features-data-dir", default=None, help="see benchmarks/dsah_cifar10.py")
    parser.add_argument("--dsah-results", default=str(Path(__file__).parent / "results" / "dsah_cifar10.json"))
    parser.add_argument("--output", required=True)
    parser.add_argument("--summary", action="store_true", help="print the tables of --output and stop")
    args = parser.parse_args(argv)
    output = Path(args.output)
    record = json.loads(output.read_text()) if output.exists() else {
        "benchmark": "ucsh_cifar10", "protocol": PROTOCOL, "split_seed": 0, "backbone": "efficientnet_lite0",
        "epochs": EPOCHS, "batch_size": BATCH, "rows": [], "versions": runner.versions(),
        "machine": f"{os.cpu_count()} CPU cores",
    }
    if args.summary:
        dsah = Path(args.dsah_results)
        print(summarize(record, json.loads(dsah.read_text()) if dsah.exists() else {}))
        return
    if not dsah_cifar10.CIFAR_JPG.exists():
        raise SystemExit(f"CIFAR-10 is not at {dsah_cifar10.CIFAR_JPG}: place cifar10-jpg.tar.gz there.")
    pool = sources.get("cifar10", data_dir=args.features_data_dir or dsah_cifar10.CIFAR_JPG.parent)
    split = get_protocol(PROTOCOL).split(pool, seed=0)
    features = dsah_cifar10.pool_features(pool, backbones.get("efficientnet_lite0"), args.bank_dir, verbose=2)
    labels = {part: pool.labels[getattr(split, part)] for part in ("query", "train", "database")}
    if args.select_lr:
        record["learning_rate"], record["rate_scores"] = select_rate(features, split, labels)
        write_json(output, record)
        return
    if "learning_rate" not in record:
        raise SystemExit(f"No learning rate chosen yet: run with --select-lr --output {output} first.")
    done = {(row["method"], row["bits"], row["seed"]) for row in record["rows"]}
    for seed in args.train_seeds:
        for bits in args.bits:
            for method in args.methods:
                if (method, bits, seed) in done:
                    continue
                model, seconds, loss = fit_ucsh(method, bits, seed, features, split.train, record["learning_rate"])
                row = dsah_cifar10.evaluate(model, features, split, labels, seconds)
                row = {"method": method, "bits": bits, "seed": seed, **row, "final_loss": loss}
                record["rows"].append(row)
                write_json(output, record)
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
