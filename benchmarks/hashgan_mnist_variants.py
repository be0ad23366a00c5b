"""HashGAN on MNIST: which readings of the paper keep the encoder's bits informative? (diagnostic, real data)

The paper preset's encoder ends with bits near 0.5 (benchmarks/README.md). This script trains short runs of
`tfhash.models.HashGAN` under the readings the paper leaves open and reports, after each epoch, what the bits
look like and how well they retrieve. It never touches the protocol's query set: the figures come from a
*validation* split of the gallery (1,000 gallery images as queries against 10,000 other gallery images, drawn
with a fixed seed), whose labels serve only to measure, never to choose a default.

Variants (the paper's settings unless named): the minimum-entropy weight λ (1e-3 or 1e-2), the literal sums
over the images of Eq. 3 (``sum_over_images``), the consistency term off, and two Improved-GAN details that
HashGAN does not state and that are no model options — the Gaussian noise of σ 0.5 on the trunk's hidden
layers (``hidden noise``; the paper names only the 0.15 on the input) and training the hidden layers'
weight-norm scales g (Improved-GAN's released MNIST model keeps them at their data-dependent initial values,
``train_scale=False``). The script sets those two on the built trunk.

Per epoch it records: validation mAP@all (ties "average"); k-means (k = 10) NMI / accuracy of the
validation-database codes and of the trunk's features F; the mean binary entropy of the bit probabilities t
(ln 2 = 0.693 when every t is 0.5, 0 when saturated) and of each bit's frequency over the images (ln 2 when
balanced, 0 when a bit is constant); the collaborative ℓ2 term (K/4 = 4 at 16 bits when E(G(z)) is 0.5).

    python benchmarks/hashgan_mnist_variants.py --epochs 2 \
        --output benchmarks/results/hashgan_mnist_variants.json

A rerun with the same ``--output`` and settings keeps the finished variants and trains only the missing ones;
the JSON is rewritten atomically (`tfhash._atomic.write_json`) after each variant. The batch size, warm-up share,
initialisation batch and model arguments are the paper preset's of recipes/hashgan_mnist.toml.
"""

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402

from tfhash import metrics, models  # noqa: E402
from tfhash._atomic import write_json  # noqa: E402
from tfhash.data import get_protocol, sources, steps_per_epoch, training_dataset  # noqa: E402
from tfhash.recipes import runner  # noqa: E402

SHARED_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")

_LITERAL_1E2 = {"sum_over_images": True, "min_entropy_weight": 1e-2}
# name -> (HashGAN keyword arguments, trunk hidden-noise σ, train the trunk's hidden scales g)
VARIANTS = {
    "paper preset (batch means, λ 1e-3)": ({}, 0.5, True),
    "λ 1e-2": ({"min_entropy_weight": 1e-2}, 0.5, True),
    "no hidden noise": ({}, 0.0, True),
    "no hidden noise, λ 1e-2": ({"min_entropy_weight": 1e-2}, 0.0, True),
    "λ 1e-2, consistency off": ({"min_entropy_weight": 1e-2, "consistency_weight": 0.0}, 0.5, True),
    "hidden scales g fixed (Improved-GAN)": ({}, 0.5, False),
    "literal sums, λ 1e-3, no hidden noise": ({"sum_over_images": True}, 0.0, True),
    "literal sums, λ 1e-2, no hidden noise": (_LITERAL_1E2, 0.0, True),
    "literal sums, λ 1e-2": (_LITERAL_1E2, 0.5, True),
}


def configure_trunk(model, hidden_noise_stddev, train_hidden_scales):
    """Sets the σ of the trunk's hidden Gaussian-noise layers (not the input's) and freezes its scales g."""
    noise_layers = [layer for layer in model.trunk.layers if isinstance(layer, keras.layers.GaussianNoise)]
    for layer in noise_layers[1:]:
        layer.stddev = hidden_noise_stddev
    if not train_hidden_scales:
        for layer in model.trunk.layers:
            if hasattr(layer, "g"):
                layer.g.trainable = False


def _binary_entropy(p):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def evaluate(model, pool, queries, database):
    """Validation figures of the model's codes, bits and features (see the module docstring)."""
    labels = pool.labels
    query_codes = model.predict(pool.samples[queries], batch_size=1000, verbose=0)
    images = pool.samples[database]
    features = np.concatenate(
        [
            model.trunk(model.preprocess(images[i : i + 1000]), training=False).numpy()
            for i in range(0, len(images), 1000)
        ]
    )
    probabilities = tf.sigmoid(model.encoder_head(features)).numpy()  # E(x), as HashGAN.call
    db_codes = np.where(probabilities > 0.5, 1.0, -1.0)
    clustering = metrics.kmeans_code_clustering(db_codes, labels[database], seed=0)
    feature_clusters = KMeans(10, n_init=3, random_state=0).fit_predict(features)
    return {
        "val_map": float(
            metrics.mean_average_precision(query_codes, db_codes, labels[queries], labels[database])
        ),
        "code_nmi": float(clustering["nmi"]),
        "code_accuracy": float(clustering["accuracy"]),
        "feature_nmi": float(metrics.normalized_mutual_information(labels[database], feature_clusters)),
        "bit_entropy": float(np.mean(_binary_entropy(probabilities))),
        "frequency_entropy": float(np.mean(_binary_entropy(probabilities.mean(axis=0)))),
    }


def pixel_references(pool, train, queries, database, bits, seed):
    """The same validation figures for two shallow hashes of the raw pixels, fitted on the gallery: LSH (signs
    of Gaussian random projections of the centred pixels) and PCA hashing (signs of the top principal
    components); the paper's Table 1 has both (MNIST, 16 bits: 20.88 and 27.33 % mAP)."""
    def pixels(indices):
        return pool.samples[indices].reshape(len(indices), -1).astype(np.float64) / 255.0

    fit = pixels(np.random.default_rng([seed, 11]).choice(train, 10000, replace=False))
    mean = fit.mean(axis=0)
    projections = {
        "LSH on pixels": np.random.default_rng([seed, 12]).standard_normal((fit.shape[1], bits)),
        "PCA hashing on pixels": np.linalg.svd(fit - mean, full_matrices=False)[2][:bits].T,
    }
    labels, rows = pool.labels, {}
    for name, projection in projections.items():
        query_codes, db_codes = (np.sign((pixels(part) - mean) @ projection) for part in (queries, database))
        clustering = metrics.kmeans_code_clustering(db_codes, labels[database], seed=0)
        rows[name] = {
            "val_map": float(
                metrics.mean_average_precision(query_codes, db_codes, labels[queries], labels[database])
            ),
            "code_nmi": float(clustering["nmi"]),
            "code_accuracy": float(clustering["accuracy"]),
        }
    return rows


class _PerEpoch(keras.callbacks.Callback):
    def __init__(self, evaluate_now, rows):
        super().__init__()
        self.evaluate_now, self.rows = evaluate_now, rows

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **self.evaluate_now()}
        row["collaborative"] = float(logs["collaborative"])
        row["consistency"] = float(logs["consistency"])
        self.rows.append(row)
        print("  " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()), flush=True)


def run_variant(name, pool, split, queries, database, args):
    kwargs, hidden_noise, train_scales = VARIANTS[name]
    keras.utils.set_random_seed(args.seed)
    preset = runner.resolve(runner.load_config("hashgan_mnist"), "paper")
    batch_size = preset["batch_size"]
    epoch_steps = steps_per_epoch(len(split.train), batch_size, drop_remainder=True)
    steps = args.epochs * epoch_steps
    model = models.get(
        preset["method"], num_bits=args.bits, hash_warmup_steps=int(preset["warmup_fraction"] * steps),
        seed=args.seed, **{**preset["model"], **kwargs},
    )
    configure_trunk(model, hidden_noise, train_scales)
    model.compile(
        d_optimizer=model.paper_optimizer(steps),
        g_optimizer=model.paper_optimizer(steps),
        jit_compile=bool(tf.config.list_physical_devices("GPU")),  # as the recipes: XLA is slower on CPU
    )
    init = np.random.default_rng([args.seed, 7]).choice(split.train, preset["init_batch_size"], replace=False)
    model.initialize_from_batch(pool.samples[np.sort(init)])
    train = training_dataset(
        pool, split.train, batch_size, epochs=args.epochs, seed=args.seed, drop_remainder=True, channels=1
    )
    rows = []
    started = time.perf_counter()
    model.fit(
        train,
        epochs=args.epochs,
        steps_per_epoch=epoch_steps,
        verbose=0,
        callbacks=[_PerEpoch(lambda: evaluate(model, pool, queries, database), rows)],
    )
    return {
        "model": kwargs,
        "hidden_noise_stddev": hidden_noise,
        "train_hidden_scales": train_scales,
        "epochs": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--bits", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), help="names from VARIANTS")
    parser.add_argument("--output", default="benchmarks/results/hashgan_mnist_variants.json")
    parser.add_argument("--data-dir", default=SHARED_DATA)
    args = parser.parse_args(argv)
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {unknown}; valid: {list(VARIANTS)}")
    settings = {"epochs": args.epochs, "bits": args.bits, "seed": args.seed}
    record = {"settings": settings, "variants": {}}
    if os.path.exists(args.output):
        with open(args.output) as file:
            previous = json.load(file)
        if previous.get("settings") == settings:
            record = previous
    record.update(
        protocol="mnist-hashgan (split seed --seed); validation: 1,000 vs 10,000 gallery images, seed 123",
        versions={
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    )

    pool = sources.get("mnist", data_dir=args.data_dir)
    split = get_protocol("mnist-hashgan").split(pool, seed=args.seed)
    shuffled = np.random.default_rng(123).permutation(split.train)
    queries, database = np.sort(shuffled[:1000]), np.sort(shuffled[1000:11000])
    record["pixel_references"] = pixel_references(pool, split.train, queries, database, args.bits, args.seed)
    write_json(args.output, record)
    for name in args.variants:
        if name in record["variants"]:
            continue
        print(f"{name}:", flush=True)
        record["variants"][name] = run_variant(name, pool, split, queries, database, args)
        write_json(args.output, record)

    for name, row in record["pixel_references"].items():
        print(f"{name}: val mAP {row['val_map']:.3f}, code NMI {row['code_nmi']:.3f}")
    headers = ("val mAP", "code NMI", "feat NMI", "H(t)", "H(f)", "l2")
    print(f"\n{'variant':<40} " + " ".join(f"{header:>9}" for header in headers))
    for name, result in record["variants"].items():
        last = result["epochs"][-1]
        keys = ("val_map", "code_nmi", "feature_nmi", "bit_entropy", "frequency_entropy", "collaborative")
        values = [last[key] for key in keys]
        print(f"{name:<40} " + " ".join(f"{value:9.3f}" for value in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
