"""Feature-bank speed-up: a training epoch on cached backbone features against one through the backbone.

Both epochs train the same head (Dense(64) + tanh, a quantization loss mean((1 - |h|)^2)) on the same training
samples with the same batch size and seed; the image epoch decodes, augments (the CIBHash view) and runs the
frozen backbone on every sample, the bank epoch reads one of the stored views per sample. Each is timed on a
warm model (a 2-batch fit traces the training step first); the bank epoch is the median of 5. The one-off
extraction of the bank (``--views`` augmented views of each image) is timed too, giving the number of epochs
after which the bank has paid off.

Data: the first ``--train`` training images of ../shared/data/cifar10-jpg.tar.gz (equal numbers per class;
loaded by tfhash.data.sources.load_cifar10, which extracts the archive once into its cache; the pipeline
decodes the JPEG files), or with ``--synthetic`` random CIFAR-size (32 x 32) uint8 images; either is resized
to the backbone's input size (224 for EfficientNet-Lite0) by the augmentation's crop.

Backbone: ``tfhash.backbones.get(--backbone)``. If it is not available (yet), the script says so and stops,
unless ``--stand-in`` is given: then keras.applications.EfficientNetB0 with random weights (no download; 224 x
224 input, 1280 features, about the FLOPs of EfficientNet-Lite0) is timed instead, and named in the output.

    python benchmarks/feature_bank.py                         # efficientnet_lite0 on CIFAR-10 JPEGs
    python benchmarks/feature_bank.py --synthetic --stand-in  # runs anywhere, ~3 min on 2 CPU cores
"""

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfhash.data.augment import cibhash_view  # noqa: E402
from tfhash.data.feature_bank import FeatureBank  # noqa: E402
from tfhash.data.image_set import ImageSet  # noqa: E402
from tfhash.data.pipelines import steps_per_epoch, training_dataset  # noqa: E402

CIFAR_JPG = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"
STAND_IN = "EfficientNetB0 (keras.applications, random weights) standing in for {name}"


def load_backbone(name, stand_in):
    """(backbone, description): tfhash.backbones.get(name), or the stand-in when allowed."""
    try:
        from tfhash import backbones

        backbone = backbones.get(name)
        return backbone, name
    except (ImportError, AttributeError, KeyError, ValueError, OSError) as error:
        reason = f"{type(error).__name__}: {error}"
    if not stand_in:
        raise SystemExit(
            f"backbone {name!r} is not available through tfhash.backbones.get ({reason}).\n"
            "Pass --stand-in to time keras.applications.EfficientNetB0 with random weights instead "
            "(224 x 224 input, 1280 features, about the FLOPs of EfficientNet-Lite0)."
        )
    print(f"backbone {name!r} unavailable ({reason}); timing the stand-in.")
    backbone = keras.applications.EfficientNetB0(weights=None, include_top=False, pooling="avg")
    backbone.image_size = 224
    return backbone, STAND_IN.format(name=name)


def synthetic_images(count, seed):
    """(pool, indices): smooth random 32 x 32 images (4 x 4 noise upsampled to 32 x 32, plus fine noise)."""
    rng = np.random.default_rng(seed)
    coarse = tf.image.resize(rng.uniform(0, 255, (count, 4, 4, 3)).astype(np.float32), (32, 32)).numpy()
    images = np.clip(coarse + rng.normal(0, 12, coarse.shape), 0, 255).astype(np.uint8)
    return ImageSet("synthetic-cifar", images, rng.integers(0, 10, count)), np.arange(count)


def cifar_jpegs(count):
    """(pool, indices): CIFAR-10 from the shared JPEG archive via tfhash.data.sources, count / 10 training
    images of each class (the archive is extracted once into the sources' cache)."""
    try:
        from tfhash.data.sources import load_cifar10
    except ImportError as error:
        raise SystemExit(f"no CIFAR-10 loader available ({error}): pass --synthetic.")
    pool = load_cifar10(CIFAR_JPG.parent)
    per_class = -(-count // 10)
    train = pool.partition == "train"
    indices = np.concatenate([np.flatnonzero(train & (pool.labels == c))[:per_class] for c in range(10)])
    return pool, indices[:count]


def head(inputs, outputs_from, seed):
    """Dense(64) + tanh on top of ``outputs_from(inputs)``, compiled with a quantization loss."""
    features = outputs_from(inputs)
    codes = keras.layers.Dense(
        64, activation="tanh", kernel_initializer=keras.initializers.GlorotUniform(seed)
    )(features)
    model = keras.Model(inputs, codes)
    # The targets the pipelines yield are sample indices, which this loss ignores.
    model.compile(
        optimizer=keras.optimizers.SGD(1e-3, momentum=0.9),
        loss=lambda _, h: keras.ops.mean(keras.ops.square(1.0 - keras.ops.abs(h)), axis=-1),
    )
    return model


class EpochTimes(keras.callbacks.Callback):
    """Wall-clock seconds of each epoch of a fit."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def timed_epoch(model, data, epochs, steps):
    """Median seconds of ``epochs`` warm epochs of ``steps`` batches each (a 2-batch fit traces the training
    step first); ``data`` is a stream of ``epochs`` epochs (tfhash.data pipelines, ``epochs=epochs``)."""
    model.fit(data.take(2), epochs=1, verbose=0, shuffle=False)
    times = EpochTimes()
    # The data shuffle themselves; a fresh iteration of the stream starts again at its first epoch.
    model.fit(data, epochs=epochs, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=[times])
    return float(np.median(times.seconds))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="efficientnet_lite0", help="name for tfhash.backbones.get")
    parser.add_argument(
        "--stand-in", action="store_true", help="time EfficientNetB0 if --backbone is unavailable"
    )
    parser.add_argument(
        "--synthetic", action="store_true", help="synthetic CIFAR-size images instead of CIFAR-10"
    )
    parser.add_argument("--train", type=int, default=1000, help="training images")
    parser.add_argument("--views", type=int, default=2, help="augmented views stored per image")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    backbone, backbone_description = load_backbone(args.backbone, args.stand_in)
    backbone.trainable = False
    image_size = getattr(backbone, "image_size", 224)
    view = cibhash_view(image_size)
    with tempfile.TemporaryDirectory() as scratch:
        pool, train = synthetic_images(args.train, args.seed) if args.synthetic else cifar_jpegs(args.train)

        images = training_dataset(pool, train, args.batch_size, epochs=1, augment=view, seed=args.seed)
        inputs = keras.Input((image_size, image_size, 3), dtype="uint8")
        image_model = head(inputs, lambda x: backbone(x, training=False), args.seed)
        image_epoch = timed_epoch(
            image_model, images, epochs=1, steps=steps_per_epoch(len(train), args.batch_size)
        )

        start = time.perf_counter()
        bank = FeatureBank(
            backbone,
            pool,
            protocol="benchmark",
            train=train,
            augment=view,
            views=args.views,
            seed=args.seed,
            backbone_name=args.backbone,
            directory=os.path.join(scratch, "bank"),
            batch_size=args.batch_size,
            verbose=2,
        )
        extraction = time.perf_counter() - start
        feature_model = head(keras.Input((bank.feature_size,)), lambda x: x, args.seed)
        # The bank epoch lasts a fraction of a second: the median of 5 damps the noise of a shared machine.
        bank_epoch = timed_epoch(
            feature_model, bank.training_dataset(args.batch_size, epochs=5), epochs=5,
            steps=bank.steps_per_epoch(args.batch_size),
        )

    result = {
        "data": pool.name,
        "train": len(train),
        "batch_size": args.batch_size,
        "views": args.views,
        "backbone": backbone_description,
        "image_size": image_size,
        "feature_size": bank.feature_size,
        "epoch_through_backbone_s": round(image_epoch, 2),
        "epoch_on_bank_s": round(bank_epoch, 3),
        "speed_up": round(image_epoch / bank_epoch, 1),
        "extraction_s": round(extraction, 2),
        "break_even_epochs": round(extraction / (image_epoch - bank_epoch), 2),
        "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, GPU: "
        f"{bool(tf.config.list_physical_devices('GPU'))}",
        "versions": f"TensorFlow {tf.__version__}, Keras {keras.__version__}",
    }
    print(json.dumps(result, indent=2))
    print(
        f"\nepoch through the frozen backbone: {image_epoch:.2f} s "
        f"({len(train) / image_epoch:.0f} images/s); "
        f"epoch on the feature bank: {bank_epoch:.3f} s; speed-up {image_epoch / bank_epoch:.0f}x. "
        f"Extraction of {args.views} views: {extraction:.1f} s, paid off after "
        f"{result['break_even_epochs']} epochs."
    )


if __name__ == "__main__":
    main()
