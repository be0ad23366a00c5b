"""The ready GPU check: every device-bound figure of the benchmarks in one run, gathered into one JSON file.

Run by ``benchmarks/gpu_check.sh`` (which prints ``nvidia-smi -L`` first) whenever a session is lent a GPU;
record the figures in benchmarks/README.md with the device named. This driver prints TensorFlow's version and
visible devices (each GPU's details in the JSON), then runs the parts, in order, each in its own process under
a time limit (the whole process group is killed when it runs over), a failure or a time-out recorded without
stopping the others (a part's output and, where it wrote them, its figures so far are kept):

- ``retrieval``: ``benchmarks/retrieval_metrics.py --dataset cifar10 --repeats 3`` (aim on a GPU: ≥ 100× the
  field's per-query loop), its printed table kept as text;
- ``training``: ``benchmarks/training_throughput.py``, one timed epoch (after a warm-up epoch) of each
  frozen-feature method (Bi-half, GreedyHash, CIBHash, CIMON, DSAH, UCSH) on a 5,000-sample feature bank:
  ``fit``, ``fit`` with one execution per epoch (as the recipes compile on cached features) and the
  whole-epoch floor, with and without XLA;
- ``hashgan``: HashGAN CIFAR-10 training steps per second (the ``hashgan_cifar10`` paper preset's model, 64
  bits, batch 100, on random 32 × 32 × 3 uint8 images: 50 timed steps after a warm-up epoch of 50, with and
  without XLA), and the seconds an epoch of the recipe's 59,000-image gallery would take;
- ``extraction``: ``benchmarks/extraction_throughput.py`` on 5,000 CIFAR-10 JPEGs at 224 px (random images
  with ``--synthetic`` where ../shared/data has no CIFAR-10): the feature bank against plain ``predict`` and
  the decode + resize pipeline alone;
- ``mirrored``: ``tf.distribute.MirroredStrategy()`` over all visible GPUs (the CPU without one): a Bi-half
  hasher fitted on a tfhash training stream of random features for 2 epochs; the number of replicas, the
  per-epoch time and whether the loss stayed finite (else the part fails).

A full run needs TensorFlow's CUDA build (``pip install 'tensorflow[and-cuda]'``) and refuses to start where
TensorFlow sees no GPU, naming why; benchmarks/README.md ("The GPU check") says why this workplace's lent device
cannot run it as set up.

The default time limits add up to 7.5 minutes (450 s, plus this driver's start-up); ``--quick`` runs every part
on tiny sizes to check the script on a CPU (one retrieval metric; Bi-half and CIMON only in the training part),
most of its time being the parts' start-up and tracing.

    bash benchmarks/gpu_check.sh                               # on the GPU machine -> gpu_check.json
    bash benchmarks/gpu_check.sh --quick --output /tmp/check.json
    python benchmarks/gpu_check.py --parts training hashgan --limit training=300

Output: each part's output as it finishes, a summary line per part, and the JSON file (written atomically):
``{"quick", "nvidia_smi", "devices", "total_s", "parts": {name: {"status": "ok" | "failed" | "timed out",
"seconds", "time_limit_s", "command", "result" (the part's JSON record; "output", the printed text, for
retrieval), "output_tail" (when it did not succeed)}}}``.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CIFAR_ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"
PARTS = ("retrieval", "training", "hashgan", "extraction", "mirrored")
# seconds per part on the GPU machine: 450 s in all
TIME_LIMITS = {"retrieval": 170, "training": 110, "hashgan": 75, "extraction": 60, "mirrored": 35}
# seconds per part with --quick: generous, as a shared CPU can be several times slower than an idle one
QUICK_TIME_LIMIT = 240
HASHGAN_GALLERY = 59_000  # images of the cifar10-hashgan protocol's gallery, its training set
TAIL = 4000  # characters of a part's output kept in the record when it did not succeed


def run_part(command, time_limit, result_path=None):
    """Runs ``command`` in its own process group, killed after ``time_limit`` seconds; returns its record.

    Returns:
        dict: ``status`` ("ok", "failed" or "timed out"), ``seconds``, ``time_limit_s``, ``command``, the
        printed ``output`` (stdout and stderr together), and ``result``, the JSON the part wrote to
        ``result_path`` (when given and written, also by a part that did not finish).
    """
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=time_limit)
        status = "ok" if process.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the part and every process it started
        output, _ = process.communicate()
        status = "timed out"
    record = {
        "status": status,
        "seconds": round(time.perf_counter() - start, 2),
        "time_limit_s": time_limit,
        "command": " ".join(map(str, command)),
        "output": output,
    }
    if result_path is not None and Path(result_path).exists():
        record["result"] = json.loads(Path(result_path).read_text())  # written atomically: whole or absent
    elif result_path is not None and status == "ok":
        record["status"] = "failed (it wrote no result)"
    return record


def part_commands(args, scratch):
    """name -> (command, path of the JSON it writes or None)."""
    python, quick = sys.executable, ["--quick"] if args.quick else []

    def own(part):
        path = os.path.join(scratch, f"{part}.json")
        return [python, str(HERE / "gpu_check.py"), "--part", part, "--result", path, *quick], path

    training = os.path.join(scratch, "training.json")
    extraction = os.path.join(scratch, "extraction.json")
    if args.quick:
        training_flags = ["--quick", "--samples", "200", "--epochs", "1", "--methods", "bihalf", "cimon"]
        extraction_flags = ["--quick", "--synthetic"]
    else:
        methods = ["bihalf", "greedyhash", "cibhash", "cimon", "dsah", "ucsh"]
        training_flags = ["--epochs", "1", "--methods", *methods]
        extraction_flags = ["--images", "5000"] + ([] if CIFAR_ARCHIVE.exists() else ["--synthetic"])
    return {
        # --quick: one metric (mAP@all, ties average) of the script's own smoke test, which runs three
        "retrieval": ([python, str(HERE / "retrieval_metrics.py"), "--dataset", "cifar10", "--repeats", "3",
                       *(["--quick", "--case", "all-average"] if args.quick else [])], None),
        "training": ([python, str(HERE / "training_throughput.py"), *training_flags,
                      "--variants", "fit", "fit_spe", "graph", "--output", training], training),
        "hashgan": own("hashgan"),
        "extraction": ([python, str(HERE / "extraction_throughput.py"), *extraction_flags,
                        "--output", extraction], extraction),
        "mirrored": own("mirrored"),
    }


def devices():
    """TensorFlow's version, its physical devices and each GPU's details (no device is initialised)."""
    import tensorflow as tf

    return {
        "tensorflow": tf.__version__,
        "built_with_cuda": tf.test.is_built_with_cuda(),
        "physical_devices": [f"{d.device_type} {d.name}" for d in tf.config.list_physical_devices()],
        "gpus": [
            {key: list(value) if isinstance(value, tuple) else value
             for key, value in tf.config.experimental.get_device_details(gpu).items()}
            for gpu in tf.config.list_physical_devices("GPU")
        ],
        "cpu_count": os.cpu_count(),
    }


# --- the parts that have no script of their own (run in a child process: gpu_check.py --part NAME) ---------


def hashgan_part(quick):
    """HashGAN CIFAR-10 training steps per second, with and without XLA (XLA only on the full check)."""
    import keras
    import numpy as np

    from tfhash import models
    from tfhash.data import training_dataset
    from tfhash.data.image_set import ImageSet
    from tfhash.recipes import runner
    from training_throughput import EpochTimes

    bits = 64
    used = runner.resolve(runner.load_config("hashgan_cifar10"), "paper", bits=bits)
    batch_size, steps, init = (8, 3, 16) if quick else (used["batch_size"], 50, used["init_batch_size"])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (steps * batch_size, 32, 32, 3), dtype=np.uint8)
    pool = ImageSet("random-cifar", images, rng.integers(0, 10, len(images)))
    paper_steps = used["epochs"] * (HASHGAN_GALLERY // used["batch_size"])
    result = {"bits": bits, "batch_size": batch_size, "timed_steps": steps}
    for jit_compile in (False,) if quick else (False, True):
        keras.utils.set_random_seed(0)
        # hash_warmup_steps=0: every loss term is on (the warm-up multiplies them by 0, at the same cost)
        model = models.get("hashgan", num_bits=bits, seed=0, **used["model"])
        model.compile(d_optimizer=model.paper_optimizer(paper_steps),
                      g_optimizer=model.paper_optimizer(paper_steps), jit_compile=jit_compile)
        model.initialize_from_batch(images[:init])
        data = training_dataset(pool, np.arange(len(images)), batch_size, epochs=2, seed=0,
                                drop_remainder=True)
        times = EpochTimes("encoder_loss")
        history = model.fit(data, epochs=2, verbose=0, shuffle=False, callbacks=[times])
        losses = history.history["encoder_loss"]
        if not np.all(np.isfinite(losses)):
            raise SystemExit(f"HashGAN's encoder loss is not finite: {losses}")
        steps_per_s = steps / times.seconds[1]
        result[f"jit_compile={jit_compile}"] = {
            "steps_per_s": round(steps_per_s, 3),
            "warmup_epoch_s": round(times.seconds[0], 2),
            "seconds_per_gallery_epoch": round(HASHGAN_GALLERY // used["batch_size"] / steps_per_s, 1),
            "encoder_loss": [round(float(v), 5) for v in losses],
        }
    return result


def mirrored_part(quick):
    """A Bi-half hasher fitted under MirroredStrategy over all visible GPUs on a tfhash training stream."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tfhash import models
    from tfhash.data import training_dataset
    from tfhash.data.sources import load_arrays
    from training_throughput import EpochTimes

    strategy = tf.distribute.MirroredStrategy()
    replicas = strategy.num_replicas_in_sync
    count, width, per_replica = (512, 64, 32) if quick else (20_000, 1280, 256)
    rng = np.random.default_rng(0)
    pool = load_arrays(rng.normal(size=(count, width)).astype(np.float32), rng.integers(0, 10, count))
    batch_size = per_replica * replicas
    data = training_dataset(pool, np.arange(count), batch_size, epochs=2, seed=0, drop_remainder=True)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = models.get("bihalf", num_bits=64, feature_size=width, seed=0)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    times = EpochTimes()
    history = model.fit(data, epochs=2, verbose=0, shuffle=False, callbacks=[times])
    losses = [float(v) for v in history.history["loss"]]
    if not np.all(np.isfinite(losses)):
        raise SystemExit(f"the loss under MirroredStrategy is not finite: {losses}")
    return {
        "num_replicas": replicas,
        "devices": list(strategy.extended.worker_devices),
        "global_batch_size": batch_size,
        "loss": [round(v, 6) for v in losses],
        "seconds_per_epoch": round(times.seconds[1], 3),
        "samples_per_s": round((count // batch_size) * batch_size / times.seconds[1], 1),
    }


OWN_PARTS = {"hashgan": hashgan_part, "mirrored": mirrored_part}


def nvidia_smi():
    """``nvidia-smi -L``'s output, or "no GPU"."""
    if shutil.which("nvidia-smi") is None:
        return "no GPU"
    completed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    return completed.stdout.strip() if completed.returncode == 0 else "no GPU"


def no_gpu_message(record):
    """Why the full check refuses to run: every figure would be the CPU's, recorded as the GPU check's."""
    found = record["devices"]
    return (
        f"gpu_check: TensorFlow {found['tensorflow']} sees no GPU (built with CUDA: {found['built_with_cuda']}; "
        f"nvidia-smi -L: {record['nvidia_smi']}), so the full check would time the CPU; it stops here.\n"
        f"Where nvidia-smi lists a GPU, TensorFlow is missing its CUDA 12 libraries: "
        f"pip install 'tensorflow[and-cuda]=={found['tensorflow']}'. --quick checks the script on a CPU.\n"
    )


def summary(name, record):
    result = record.get("result", {})
    if record["status"] != "ok":
        return record["status"]
    if name == "training":
        return "; ".join(f"{method} {1 / r['seconds_per_epoch']['fit_spe']:.1f} epochs/s (fit, one call per "
                         f"epoch), {1 / r['seconds_per_epoch']['fit_spe_jit']:.1f} (the same with XLA)"
                         for method, r in result["methods"].items())
    if name == "hashgan":
        return "; ".join(f"{key}: {value['steps_per_s']} steps/s" for key, value in result.items()
                         if key.startswith("jit"))
    if name == "extraction":
        return (f"{result['images_per_s']} images/s, bank / predict {result['bank_over_predict']}, "
                f"pipeline / predict {result['pipeline_over_predict']}")
    if name == "mirrored":
        return f"{result['num_replicas']} replica(s) on {result['devices']}, loss {result['loss']}"
    return "see its output"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="gpu_check.json", help="the JSON file of results (gpu_check.json)")
    parser.add_argument("--quick", action="store_true", help="every part on tiny sizes (a check of the script)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="the parts to run")
    parser.add_argument("--limit", action="append", default=[], metavar="PART=SECONDS",
                        help="another time limit for a part (repeatable)")
    parser.add_argument("--part", choices=sorted(OWN_PARTS), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()

    from tfhash._atomic import write_json

    if args.part:  # a child process: one part, its record written to --result
        write_json(args.result, OWN_PARTS[args.part](args.quick))
        return

    limits = {name: QUICK_TIME_LIMIT if args.quick else limit for name, limit in TIME_LIMITS.items()}
    for item in args.limit:
        name, _, seconds = item.partition("=")
        if name not in PARTS or not seconds.replace(".", "", 1).isdigit():
            parser.error(f"--limit {item!r}: expected PART=SECONDS with PART one of {', '.join(PARTS)}")
        limits[name] = float(seconds)

    start = time.perf_counter()
    record = {"quick": args.quick, "nvidia_smi": nvidia_smi(), "devices": devices(), "parts": {}}
    if not args.quick and not record["devices"]["gpus"]:
        parser.exit(2, no_gpu_message(record))
    print(f"TensorFlow {record['devices']['tensorflow']}, visible devices: "
          f"{', '.join(record['devices']['physical_devices'])}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        commands = part_commands(args, scratch)
        for name in args.parts:
            command, result_path = commands[name]
            print(f"\n== {name} (limit {limits[name]:g} s): {' '.join(command[1:])}", flush=True)
            part = run_part(command, limits[name], result_path)
            print(part["output"].rstrip(), flush=True)
            if name != "retrieval":  # the others' figures are in their result; keep only a failure's tail
                output = part.pop("output")
                if part["status"] != "ok":
                    part["output_tail"] = output[-TAIL:]
            print(f"== {name}: {summary(name, part)} ({part['seconds']:.1f} s)", flush=True)
            record["parts"][name] = part
            record["total_s"] = round(time.perf_counter() - start, 1)
            write_json(args.output, record)  # after every part: a later time-out loses nothing
    print(f"\n{len(args.parts)} parts in {record['total_s']:.0f} s; "
          f"{sum(p['status'] == 'ok' for p in record['parts'].values())} ok; results in {args.output}")


if __name__ == "__main__":
    main()
