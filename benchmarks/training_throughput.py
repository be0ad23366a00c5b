"""Training throughput of the frozen-feature hashers: Keras ``fit`` on the feature bank against bare loops.

For each method (default Bi-half, CIBHash and CIMON; GreedyHash, DSAH and UCSH on request), the model, its
optimizer and its batch size come from the recipe's paper preset at 64 bits (``recipes/<method>.toml``, resolved
by `tfhash.recipes.runner`, the model built by `tfhash.recipes.families.HasherFamily.build_model` with the
backbone frozen, as the recipes build it), and train on a `tfhash.data.FeatureBank` of ``--samples`` (default
5,000, the size of the ``cifar10-i`` training set) samples × 1,280 features, served by
``bank.training_dataset(batch_size, drop_remainder=True)`` as the recipes serve it. Each variant trains its
own copy of one model state for 1 warm-up epoch (tracing, XLA compilation) and ``--epochs`` timed epochs;
seconds per epoch are the median of the timed epochs:

- ``fit``: ``model.fit`` on the bank's stream, as the recipes train (``verbose=0``, no callbacks but a timer);
- ``fit_spe``: the same with ``compile(steps_per_execution=<steps per epoch>)``, Keras's own remedy for
  per-step overhead (one call of the compiled function per epoch);
- ``loop``: a Python loop calling a bare ``tf.function`` step per batch of the same stream: the model's own
  ``compute_losses`` (the same forward pass and loss), ``tf.GradientTape`` and ``optimizer.apply``, without
  Keras's trainer (no loss trackers, callbacks, distribution wrapper or logs);
- ``graph``: the same step run for a whole epoch inside one ``tf.function`` (a ``tf.range`` loop pulling the
  batches from the stream's iterator): no Python between steps — **the floor** for this framework;

each with ``jit_compile`` False and True (XLA; the ``graph`` floor then calls the XLA-compiled step). Two
data-only rates show what the input pipeline costs: ``data``, the bank's stream iterated inside a
``tf.function`` without training, and ``data_batched``, the same samples and view draws gathered a whole batch
at a time (one ``map`` per batch instead of one per sample) — a floor for the input pipeline.

Before timing, every variant starts from one model state: the method's label-free supervision is written once by
the refreshers the recipes use (``model.supervision_refreshers(bank.train[0, 0])``: CIMON's pseudo-similarity,
DSAH's neighbours, UCSH's clusters), by running their ``on_train_begin`` / ``on_epoch_begin(0)`` hooks
(``supervision_s`` in the output); refreshes between epochs (UCSH's paper preset refits every epoch) are not
timed. The bare step is checked to compute Keras's loss on the same first batch from the same state (relative
difference ≤ 1e-5 without XLA, ≤ 1e-3 with it), else the script stops.

The bank (what the choice of data exercises): a real `FeatureBank`, built from an in-memory ImageSet of random
smooth 16 × 16 uint8 images (seed ``--seed``) through a stand-in backbone (a seeded Dense layer + ReLU from
the pixels to 1,280 non-negative features), with the recipe's augmentations, so that ``training_dataset`` runs
its own per-sample view drawing on the real element structure (``{"inputs": f or (f_a, f_b),
"sample_index": i}``). It stores the fewest views the augmentation allows (2 for CIBHash's pair of identical
views, 1 otherwise; ``--views`` sets it): the per-epoch work does not depend on it (one gathered view per
sample and augmentation). The head's cost does not depend on the feature values.

    python benchmarks/training_throughput.py                    # 3 methods, 5,000 samples, 5 timed epochs
    python benchmarks/training_throughput.py --quick            # 1,000 samples, 2 timed epochs (~2 min*)
    python benchmarks/training_throughput.py --methods bihalf greedyhash cibhash cimon dsah ucsh --epochs 1 \
        --variants fit graph                                    # what benchmarks/gpu_check.py runs

(* on 2 busy CPU cores; the full run takes several times longer, CIMON's pseudo-similarity of 5,000 samples
alone 45 s there.) Output: per method a table of seconds per epoch, epochs/s and the ratio to the floor of
the same ``jit_compile`` (``over_floor``; ``fit_over_loop`` too when both are timed), and with ``--output`` a
JSON record (written atomically after each method) with every epoch's time.
"""

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfhash._atomic import write_json  # noqa: E402
from tfhash.data import FeatureBank, augment  # noqa: E402
from tfhash.data.image_set import ImageSet  # noqa: E402
from tfhash.recipes import runner  # noqa: E402
from tfhash.recipes.families import HasherFamily  # noqa: E402

METHODS = ("bihalf", "greedyhash", "cibhash", "cimon", "dsah", "ucsh")
DEFAULT_METHODS = ("bihalf", "cibhash", "cimon")
IMAGE_SIZE = 16  # of the synthetic images the stand-in backbone reads
TRAINING_VARIANTS = ("fit", "fit_spe", "loop", "graph")
LOSS_TOLERANCE = {False: 1e-5, True: 1e-3}  # relative, without / with XLA


class EpochTimes(keras.callbacks.Callback):
    """Wall-clock seconds of each epoch of a fit (the logged ``loss_key`` is read back at the end of each epoch,
    so that the device has finished its steps)."""

    def __init__(self, loss_key="loss"):
        super().__init__()
        self.loss_key = loss_key

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        float(logs[self.loss_key])
        self.seconds.append(time.perf_counter() - self.start)


def stand_in_backbone(feature_size, seed):
    """uint8 (B, 16, 16, 3) images -> (B, feature_size) non-negative features: a seeded Dense layer + ReLU on
    the scaled pixels (ReLU features, as a CNN's pooled features: cosine distances spread around ~0.7)."""
    images = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(images)
    # Scaled pixels, roughly uniform in [-1, 1], have variance 1/3: pre-activations of variance about 1.
    stddev = np.sqrt(3.0 / (IMAGE_SIZE * IMAGE_SIZE * 3))
    features = keras.layers.Dense(
        feature_size, activation="relu",
        kernel_initializer=keras.initializers.RandomNormal(stddev=stddev, seed=seed),
    )(keras.layers.Flatten()(scaled))
    backbone = keras.Model(images, features, name="stand_in")
    backbone.image_size = IMAGE_SIZE
    return backbone


def smooth_images(count, seed):
    """Random smooth uint8 images (4 x 4 noise upsampled to 16 x 16, plus fine noise): crops of one image stay
    alike, so that the augmented views' features have the spread of distances CIMON's pseudo-similarity fits."""
    rng = np.random.default_rng(seed)
    coarse = tf.image.resize(rng.uniform(0, 255, (count, 4, 4, 3)).astype(np.float32), (IMAGE_SIZE, IMAGE_SIZE))
    pixels = np.clip(coarse.numpy() + rng.normal(0, 8, coarse.shape), 0, 255).astype(np.uint8)
    return ImageSet("synthetic", pixels, rng.integers(0, 10, count))


def recipe_settings(method, bits):
    """The paper preset of ``recipes/<method>.toml`` at ``bits``, with the backbone frozen (feature bank)."""
    used = runner.resolve(runner.load_config(method), "paper", bits=bits)
    used["fine_tune"] = False
    return used


def build_bank(used, samples, feature_size, views, seed, directory):
    """A FeatureBank of ``samples`` smooth random images through the stand-in backbone, with the recipe's
    augmentations."""
    pool = smooth_images(samples, seed)
    augments = tuple(augment.get(name, IMAGE_SIZE) for name in used["augment"])
    if not augments:
        views = 1
    elif views is None:  # the fewest the bank allows: two different stored views for a pair of the same view
        views = 2 if len(augments) == 2 and used["augment"][0] == used["augment"][1] else 1
    return FeatureBank(
        stand_in_backbone(feature_size, seed), pool, protocol="throughput", train=np.arange(samples),
        augment=augments[0] if len(augments) == 1 else augments or None, views=views, seed=seed,
        backbone_name="stand_in", directory=directory, batch_size=256, verbose=0,
    )


def copy_state(source, target):
    """Assigns every variable of ``source`` (weights, per-sample state, seed-generator states) to ``target``."""
    if [v.shape for v in source.variables] != [v.shape for v in target.variables]:
        raise AssertionError("the two models' variables differ")
    for variable, value in zip(target.variables, source.variables):
        variable.assign(value)


def bare_step(model, optimizer, jit_compile):
    """One training step without Keras's trainer: the model's own losses, the gradient, ``optimizer.apply``."""
    variables = model.trainable_variables
    optimizer.build(variables)

    @tf.function(jit_compile=jit_compile)
    def step(batch):
        with tf.GradientTape() as tape:
            loss = model.compute_losses(batch, training=True)["loss"]
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    return step


def time_fit(model, optimizer, stream, epochs, jit_compile, steps_per_execution=1):
    model.compile(optimizer=optimizer, jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    times = EpochTimes()
    model.fit(stream, epochs=epochs, verbose=0, shuffle=False, callbacks=[times])
    return times.seconds


def time_loop(step, stream, epochs, steps):
    seconds, iterator = [], iter(stream)
    for _ in range(epochs):
        start = time.perf_counter()
        for _ in range(steps):
            loss = step(next(iterator))
        float(loss)
        seconds.append(time.perf_counter() - start)
    return seconds


def time_graph(step, stream, epochs, steps):
    @tf.function
    def run_epoch(iterator):
        loss = tf.constant(0.0)
        for _ in tf.range(steps):
            loss = step(next(iterator))
        return loss

    seconds, iterator = [], iter(stream)
    for _ in range(epochs):
        start = time.perf_counter()
        float(run_epoch(iterator))
        seconds.append(time.perf_counter() - start)
    return seconds


def time_data(stream, epochs, steps, batch_size):
    """Seconds per epoch of iterating a stream inside a tf.function, without training."""

    @tf.function
    def drain(iterator):
        rows = tf.constant(0)
        for _ in tf.range(steps):
            batch = next(iterator)
            rows += tf.shape(tf.nest.flatten(batch["inputs"])[0])[0]
        return rows

    seconds, iterator = [], iter(stream)
    for _ in range(epochs):
        start = time.perf_counter()
        rows = int(drain(iterator))
        seconds.append(time.perf_counter() - start)
        if rows != steps * batch_size:
            raise AssertionError(f"an epoch held {rows} rows, expected {steps * batch_size}")
    return seconds


def batched_stream(bank, batch_size, epochs, seed):
    """The bank's samples with the same kind of per-sample view draws, gathered one batch at a time."""
    features = tf.constant(bank.train)
    _, views, count, _ = bank.train.shape
    steps = count // batch_size

    def one_epoch(epoch):
        keys = tf.random.stateless_uniform([count], [seed, epoch], minval=None, maxval=None, dtype=tf.int64)
        order = tf.reshape(tf.argsort(keys)[: steps * batch_size], [steps, batch_size])
        batches = (tf.fill([steps], epoch), tf.range(steps, dtype=tf.int64), order)
        return tf.data.Dataset.from_tensor_slices(batches)

    def gather(stream, view, positions):
        stream = tf.fill(tf.shape(positions), tf.constant(stream, tf.int64))
        return tf.gather_nd(features, tf.stack([stream, view, positions], -1))

    def make_batch(epoch, index, positions):
        positions = tf.cast(positions, tf.int64)
        key = tf.random.experimental.stateless_fold_in(tf.stack([tf.constant(seed, tf.int64), epoch]), index)

        def draw(k, maxval):
            return tf.random.stateless_uniform([batch_size], key + k, minval=0, maxval=maxval, dtype=tf.int64)

        first = draw(1, views)
        if not bank.two_view:
            return {"inputs": gather(0, first, positions), "sample_index": positions}
        if bank.shared_views:
            second, source = (first + 1 + draw(2, views - 1)) % views, 0
        else:
            second, source = draw(2, views), 1
        pair = (gather(0, first, positions), gather(source, second, positions))
        return {"inputs": pair, "sample_index": positions}

    data = tf.data.Dataset.range(epochs).flat_map(one_epoch)
    return data.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def check_same_loss(reference, build, used, steps, stream, jit_compile):
    """The bare step's loss on the first batch equals Keras's ``train_step``'s from the same state."""
    batch = next(iter(stream))
    keras_model, bare_model = build(), build()
    copy_state(reference, keras_model)
    copy_state(reference, bare_model)
    keras_model.compile(optimizer=runner.build_optimizer(used, steps), jit_compile=jit_compile)
    keras_loss = float(keras_model.train_on_batch(batch, return_dict=True)["loss"])
    bare_loss = float(bare_step(bare_model, runner.build_optimizer(used, steps), jit_compile)(batch))
    difference = abs(keras_loss - bare_loss) / max(abs(keras_loss), 1e-12)
    if not difference <= LOSS_TOLERANCE[jit_compile]:
        raise AssertionError(
            f"{used['method']}: the bare step's loss {bare_loss!r} differs from Keras's {keras_loss!r} "
            f"(jit_compile={jit_compile}, relative difference {difference:.2e})"
        )
    return {"keras": keras_loss, "bare": bare_loss, "relative_difference": difference}


def measure(method, args, directory):
    """Every variant of one method: seconds per epoch (all epochs, the warm-up first) and the checks."""
    used = recipe_settings(method, args.bits)
    batch_size, epochs = used["batch_size"], 1 + args.epochs
    start = time.perf_counter()
    bank = build_bank(used, args.samples, args.feature_size, args.views, args.seed, directory)
    bank_seconds = time.perf_counter() - start
    steps = bank.steps_per_epoch(batch_size, drop_remainder=True)

    def build():
        keras.utils.set_random_seed(args.seed)
        return HasherFamily.build_model(used, args.bits, args.samples, bank.feature_size, None, args.seed)

    def stream():
        return bank.training_dataset(batch_size, epochs=epochs, seed=args.seed, drop_remainder=True)

    reference = build()
    start = time.perf_counter()
    for refresher in reference.supervision_refreshers(bank.train[0, 0]):
        refresher.set_model(reference)
        refresher.on_train_begin()
        refresher.on_epoch_begin(0)
    supervision_seconds = time.perf_counter() - start

    record = {
        "batch_size": batch_size,
        "steps_per_epoch": steps,
        "optimizer": used["optimizer"],
        "augment": used["augment"],
        "bank_views": bank.views,
        "bank_s": round(bank_seconds, 2),
        "supervision_s": round(supervision_seconds, 2),
        "loss_check": {},
        "epoch_seconds": {},
    }
    times = record["epoch_seconds"]
    times["data"] = time_data(stream(), epochs, steps, batch_size)
    times["data_batched"] = time_data(batched_stream(bank, batch_size, epochs, args.seed), epochs, steps,
                                      batch_size)
    for jit_compile in (False, True):
        suffix = "_jit" if jit_compile else ""
        record["loss_check"][f"jit_compile={jit_compile}"] = check_same_loss(
            reference, build, used, steps, stream(), jit_compile)
        for variant in args.variants:
            model = build()
            copy_state(reference, model)
            optimizer = runner.build_optimizer(used, steps)
            if variant.startswith("fit"):
                seconds = time_fit(model, optimizer, stream(), epochs, jit_compile,
                                   steps_per_execution=steps if variant == "fit_spe" else 1)
            else:
                timer = time_loop if variant == "loop" else time_graph
                seconds = timer(bare_step(model, optimizer, jit_compile), stream(), epochs, steps)
            times[variant + suffix] = seconds
            print(f"  {method} {variant + suffix}: {np.median(seconds[1:]):.3f} s per epoch "
                  f"(warm-up {seconds[0]:.2f} s)")
    record["epoch_seconds"] = {key: [round(s, 5) for s in value] for key, value in times.items()}
    record["seconds_per_epoch"] = {key: round(float(np.median(value[1:])), 5) for key, value in times.items()}
    per_epoch = record["seconds_per_epoch"]
    record["epochs_per_s"] = {key: round(1.0 / value, 3) for key, value in per_epoch.items()}
    if "graph" in args.variants:
        record["over_floor"] = {
            key: round(per_epoch[key] / per_epoch["graph_jit" if key.endswith("_jit") else "graph"], 3)
            for key in per_epoch if not key.startswith("data")
        }
    if {"fit", "loop"} <= set(args.variants):
        record["fit_over_loop"] = {
            "jit_compile=False": round(per_epoch["fit"] / per_epoch["loop"], 3),
            "jit_compile=True": round(per_epoch["fit_jit"] / per_epoch["loop_jit"], 3),
        }
    return record


def print_table(method, record):
    print(f"\n{method}: batch {record['batch_size']}, {record['steps_per_epoch']} steps per epoch, "
          f"{record['optimizer']['class_name']}; bank {record['bank_s']} s, "
          f"supervision {record['supervision_s']} s")
    print(f"{'variant':14} {'s/epoch':>9} {'epochs/s':>9} {'/ floor':>8}")
    for key, seconds in record["seconds_per_epoch"].items():
        ratio = record.get("over_floor", {}).get(key)
        print(f"{key:14} {seconds:9.4f} {1 / seconds:9.2f} " + ("" if ratio is None else f"{ratio:7.2f}x"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(DEFAULT_METHODS))
    parser.add_argument("--variants", nargs="+", choices=TRAINING_VARIANTS, default=list(TRAINING_VARIANTS),
                        help="training variants to time, each with jit_compile False and True (default all)")
    parser.add_argument("--samples", type=int, help="training samples (default 5,000; quick 1,000)")
    parser.add_argument("--feature-size", type=int, default=1280, help="features per sample")
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--epochs", type=int, help="timed epochs after the warm-up epoch (default 5; quick 2)")
    parser.add_argument("--views", type=int, help="stored views per sample (default: the fewest allowed)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: smaller defaults (see above)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="also write the results to this JSON file")
    args = parser.parse_args()
    for key, (full, quick) in {"samples": (5000, 1000), "epochs": (5, 2)}.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)

    record = {
        "samples": args.samples,
        "feature_size": args.feature_size,
        "bits": args.bits,
        "timed_epochs": args.epochs,
        "seed": args.seed,
        "methods": {},
        "device": "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)",
        "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}",
        "versions": f"TensorFlow {tf.__version__}, Keras {keras.__version__}, numpy {np.__version__}",
    }
    with tempfile.TemporaryDirectory() as directory:
        for method in args.methods:
            record["methods"][method] = measure(method, args, os.path.join(directory, method))
            print_table(method, record["methods"][method])
            if args.output:  # after every method: a run cut short keeps the finished ones
                write_json(args.output, record)
    print(f"\n{args.samples} samples x {args.feature_size} features, {args.bits} bits, {record['device']}; "
          "floor = the whole epoch in one tf.function (same jit_compile); median of "
          f"{args.epochs} epochs after a warm-up")


if __name__ == "__main__":
    main()
