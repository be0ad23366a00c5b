"""Does HQT help Bi-half at all here? The query-set evaluation of two searches' winners (issue 15, question 1).

The searches (``python -m tfhash.tune``, configurations in benchmarks/searches/) chose, on a validation carve-out
of the ``cifar10-i`` training images, the best Bi-half (learning rate) and the best Bi-half + HQT (α, depths,
shared or independent trees, signed targets, the trees' input features, learning rate) at 16 and 64 bits, with
12 random-search trials each. This script evaluates each winner (``best.toml`` of its search) once on the
protocol: trained on all 5,000 training images, its 10,000 queries ranked against the 50,000 database images
(mAP@all), with training seeds 0, 1 and 2 on the split of seed 0 (the feature bank's), and records the
searches' best validation figures beside them.

    python benchmarks/tuned_hqt_bihalf.py --searches <--directory of the searches> --data-dir <CIFAR-10> \\
        --output benchmarks/results/tuned_hqt_bihalf.json
    python benchmarks/tuned_hqt_bihalf.py --summary --output benchmarks/results/tuned_hqt_bihalf.json

A rerun with the same ``--output`` keeps the finished rows and runs only the missing ones.
"""

import argparse
import csv
import json
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfhash._atomic import write_json  # noqa: E402
from tfhash.data import get_protocol  # noqa: E402
from tfhash.recipes import runner  # noqa: E402

SEARCHES = [("bihalf", 16), ("hqt_bihalf", 16), ("bihalf", 64), ("hqt_bihalf", 64)]


def best_validation(folder, objective="val_map@all"):
    """The best trial's row of a search's trials.csv, and the number of finished trials."""
    with open(folder / "trials.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get(objective)]
    return max(rows, key=lambda row: float(row[objective])), len(rows)


def evaluate(recipe, bits, config_path, data_dir, bank_dir, seeds, done):
    """Rows of the winner ``config_path`` of ``recipe`` trained with each of ``seeds`` (on split seed 0)."""
    parser = runner.build_parser(recipe)
    args = parser.parse_args(["--preset", "paper", "--config", str(config_path), "--data-dir", data_dir,
                              *(["--bank-dir", bank_dir] if bank_dir else []), "--verbose", "0"])
    config = runner.load_config(str(config_path), recipe=recipe)
    family = runner.family_of(config)
    used = runner.resolve(config, "paper", runner.overrides(args, config, "paper"), bits)
    used.update(export="none", evaluate_every=0)
    keras.utils.set_random_seed(0)
    session = family.load(used, args)
    session.update(args=args, jit=bool(tf.config.list_physical_devices("GPU")), verbose=0, progress=2,
                   output=None, recipe=recipe)
    split = get_protocol(used["protocol"]).split(session["pool"], seed=0)
    parts = {"query": split.query, "train": split.train, "database": split.database}
    state = family.prepare(session, used, split, parts, 0)
    for seed in seeds:
        if seed in done:
            continue
        _, row = family.train_and_evaluate(session, state, used, bits, seed)
        yield {"recipe": recipe, "bits": bits, "seed": seed, "map": row["map"], "map_stable": row["map_stable"],
               "train_seconds": row["train_seconds"], "config": used}


def summarize(record):
    lines = ["| method | bits | best validation mAP@all (trials) | query mAP@all, seeds 0 / 1 / 2 | mean ± std |",
             "|---|---|---|---|---|"]
    for recipe, bits in SEARCHES:
        key = f"{recipe}_{bits}"
        rows = sorted((r for r in record["rows"] if (r["recipe"], r["bits"]) == (recipe, bits)),
                      key=lambda r: r["seed"])
        search = record["searches"].get(key)
        if not rows or not search:
            continue
        values = [r["map"] for r in rows]
        lines.append(f"| {'Bi-half + HQT' if recipe == 'hqt_bihalf' else 'Bi-half'} | {bits} | "
                     f"{search['best_validation']:.4f} ({search['trials']}) | "
                     f"{' / '.join(f'{v:.4f}' for v in values)} | {np.mean(values):.4f} ± {np.std(values):.4f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--searches", help="the --directory of the four searches")
    parser.add_argument("--data-dir", help="CIFAR-10 as the searches read it (their feature bank's key)")
    parser.add_argument("--bank-dir", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=12, help="the trials each search runs (default 12)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--summary", action="store_true", help="print the table of --output and stop")
    args = parser.parse_args(argv)
    output = Path(args.output)
    record = json.loads(output.read_text()) if output.exists() else {
        "benchmark": "tuned_hqt_bihalf", "protocol": "cifar10-i", "split_seed": 0, "backbone": "efficientnet_lite0",
        "rows": [], "searches": {}, "versions": runner.versions(), "machine": f"{os.cpu_count()} CPU cores",
    }
    if args.summary:
        print(summarize(record))
        return
    for recipe, bits in SEARCHES:
        folder = Path(args.searches) / f"{recipe}_paper_{bits}bits"
        # best.toml is rewritten after every trial: evaluate a winner only once its search has run every trial.
        best, trials = best_validation(folder) if (folder / "best.toml").is_file() else (None, 0)
        if trials < args.trials:
            print(f"{folder}: {trials} of {args.trials} trials finished; skipped.")
            continue
        record["searches"][f"{recipe}_{bits}"] = {
            "best_validation": float(best["val_map@all"]), "trials": trials, "best_trial": best["trial"],
            "values": {k: v for k, v in best.items() if "." in k},
        }
        done = {row["seed"] for row in record["rows"] if (row["recipe"], row["bits"]) == (recipe, bits)}
        for row in evaluate(recipe, bits, folder / "best.toml", args.data_dir, args.bank_dir, args.seeds, done):
            record["rows"].append(row)
            write_json(output, record)
            print(json.dumps({k: v for k, v in row.items() if k != "config"}), flush=True)
        write_json(output, record)
    print(summarize(record))


if __name__ == "__main__":
    main()
