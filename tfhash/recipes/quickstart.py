"""Quickstart: learn binary codes for scikit-learn's digits offline, in under a minute on 2 CPU cores.

A bias-free Dense hash head followed by the `BiHalf` binarizer is trained with the similarity-preserving loss on
the raw 8×8 pixels (no backbone), while `RetrievalEvaluation` reports mAP@all after each epoch. The learned codes
are compared with locality-sensitive hashing (sign of a random projection, the data-independent baseline) on a
seeded query / database split, and the results, with the seed, configuration and versions, are written as JSON.

    python -m tfhash.recipes.quickstart --bits 16 32 --epochs 30 --output runs/quickstart
"""

import argparse
import os
import platform
import time

import keras
import numpy as np
import sklearn
import tensorflow as tf
from sklearn.datasets import load_digits

import tfhash
from tfhash._atomic import write_json
from tfhash.callbacks import RetrievalEvaluation
from tfhash.layers import BiHalf
from tfhash.losses import SimilarityPreservingLoss
from tfhash.metrics import entropy_ratio, mean_average_precision, precision_at_n, precision_within_radius
from tfhash.recipes.runner import plain_verbosity

PROTOCOL = "digits-quickstart: 30 queries per class (300), database = training set = the other 1,497 images"


def split_digits(seed):
    """Seeded split of load_digits: 30 queries per class, the rest is the database and the training set."""
    digits = load_digits()
    features = (digits.data / 16.0).astype(np.float32)
    rng = np.random.default_rng(seed)
    query = np.concatenate([rng.choice(np.flatnonzero(digits.target == c), 30, replace=False) for c in range(10)])
    database = np.setdiff1d(np.arange(len(features)), query)
    return (features[query], digits.target[query]), (features[database], digits.target[database])


def retrieval_figures(query_codes, query_labels, db_codes, db_labels):
    arguments = (query_codes, db_codes, query_labels, db_labels)
    return {
        "map_all": float(mean_average_precision(*arguments)),
        "map_all_stable": float(mean_average_precision(*arguments, ties="stable")),
        "precision_at_100": float(precision_at_n(*arguments, n=100)),
        "precision_radius_2": float(precision_within_radius(*arguments, radius=2)),
        "entropy_ratio": float(entropy_ratio(db_codes, db_labels)),
    }


def train_bi_half(bits, query, database, epochs, seed, verbose):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((database[0].shape[1],)), keras.layers.Dense(bits, use_bias=False), BiHalf(gamma=6.0)]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=SimilarityPreservingLoss())
    evaluation = RetrievalEvaluation(query, database, top_k=None, every_n_epochs=max(1, epochs // 5))
    history = model.fit(
        database[0], database[0], batch_size=64, epochs=epochs, callbacks=[evaluation], verbose=verbose
    )
    curve = [round(v, 4) for v in history.history.get(evaluation.name, [])]
    # BiHalf encodes with sign(U) at inference, so predict() returns the ±1 codes.
    return model, model.predict(query[0], verbose=0), model.predict(database[0], verbose=0), curve


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bits", type=int, nargs="+", default=[16, 32], help="code lengths (default 16 32)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=os.path.join("runs", "quickstart"), help="directory for results")
    parser.add_argument("--verbose", type=int, default=2, help="Keras fit verbosity (0, 1 or 2)")
    args = parser.parse_args(argv)
    if any(bits <= 0 for bits in args.bits) or args.epochs <= 0:
        parser.error("--bits and --epochs must be positive integers")

    query, database = split_digits(args.seed)
    rng = np.random.default_rng(args.seed)
    results, started = [], time.perf_counter()
    for bits in args.bits:
        model, query_codes, db_codes, curve = train_bi_half(
            bits, query, database, args.epochs, args.seed, plain_verbosity(args.verbose)
        )
        projection = rng.normal(size=(query[0].shape[1], bits))
        lsh = [np.where((x - database[0].mean(0)) @ projection >= 0, 1.0, -1.0) for x in (query[0], database[0])]
        results.append(
            {
                "bits": bits,
                "bi_half": retrieval_figures(query_codes, query[1], db_codes, database[1]),
                "lsh": retrieval_figures(lsh[0], query[1], lsh[1], database[1]),
                "map_all_during_training": curve,
            }
        )
        os.makedirs(args.output, exist_ok=True)
        model.save(os.path.join(args.output, f"bi_half_{bits}bits.keras"))

    print(f"\n{PROTOCOL}; seed {args.seed}; ties='average' unless noted")
    print(f"{'bits':>5} {'method':>8} {'mAP@all':>8} {'(stable)':>9} {'P@100':>7} {'P@r≤2':>7} {'Ω_S':>6}")
    for row in results:
        for method in ("lsh", "bi_half"):
            f = row[method]
            print(f"{row['bits']:5d} {method:>8} {f['map_all']:8.4f} {f['map_all_stable']:9.4f} "
                  f"{f['precision_at_100']:7.4f} {f['precision_radius_2']:7.4f} {f['entropy_ratio']:6.2f}")
    record = {
        "recipe": "tfhash.recipes.quickstart",
        "protocol": PROTOCOL,
        "seed": args.seed,
        "config": {"epochs": args.epochs, "batch_size": 64, "optimizer": "Adam(1e-3)", "gamma": 6.0},
        "versions": {
            "tfhash": tfhash.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "scikit-learn": sklearn.__version__, "python": platform.python_version(),
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }
    path = os.path.join(args.output, "metrics.json")
    write_json(path, record)  # atomic: an interrupted run never leaves a half-written file
    print(f"\nwrote {path} and the trained models beside it ({record['wall_seconds']} s)")
    return record


if __name__ == "__main__":
    main()
