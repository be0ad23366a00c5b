"""The throughput benchmarks and the GPU check run and record every figure (their ``--quick`` modes, on CPU).

Only whether the scripts work is checked, never a timing: the figures themselves are ratios measured by hand
(benchmarks/README.md). The check of the GPU script's part runner (time-outs, failures, results) is fast; the
runs of the scripts are marked ``slow``.
"""

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", BENCHMARKS / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(arguments, timeout=1800):
    completed = subprocess.run(arguments, capture_output=True, text=True, timeout=timeout,
                               cwd=BENCHMARKS.parent)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout


def positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def is_gone(pid):
    """Whether process ``pid`` has ended (a zombie waiting for its new parent counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "\nState:\tZ" in status.read_text()


def load_retrieval_benchmark():
    spec = importlib.util.spec_from_file_location("retrieval_metrics", BENCHMARKS / "retrieval_metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("settle", [False, True])
def test_retrieval_warm_times_round_robin_and_settled_order(monkeypatch, settle):
    # Which implementation runs before each timed call: round-robin, or (settle) an untimed call of itself first.
    benchmark = load_retrieval_benchmark()
    calls = []
    monkeypatch.setattr(benchmark, "synthetic", lambda dataset, quick: None)
    monkeypatch.setattr(
        benchmark, "implementation", lambda name, data, top_k, ties: lambda: calls.append(name) or len(calls)
    )
    result = benchmark.warm_times("cifar10", True, "1000-stable", ["a", "b"], 2, settle)
    rounds = ["a", "a", "b", "b"] if settle else ["a", "b"]
    assert calls == ["a", "b"] + rounds * 2
    assert [len(result[name]["seconds"]) for name in "ab"] == [2, 2]
    assert result["a"]["value"] == 1 and result["b"]["value"] == 2


def test_gpu_check_part_runner_records_results_failures_and_time_outs(tmp_path):
    gpu_check = load_gpu_check()
    result = tmp_path / "part.json"
    writes = "import json, sys; json.dump({'rate': 2.5}, open(sys.argv[1], 'w')); print('written', flush=True)"

    done = gpu_check.run_part([sys.executable, "-c", writes, str(result)], 60, result)
    assert done["status"] == "ok" and done["result"] == {"rate": 2.5} and "written" in done["output"]

    missing = gpu_check.run_part([sys.executable, "-c", "print('nothing')"], 60, tmp_path / "absent.json")
    assert missing["status"].startswith("failed") and "result" not in missing

    failed = gpu_check.run_part([sys.executable, "-c", "import sys; print('broken'); sys.exit(3)"], 60)
    assert failed["status"] == "failed" and "broken" in failed["output"]

    # A part that wrote figures, then hangs with a child of its own: both are killed, the figures are kept.
    hangs = (
        "import json, subprocess, sys, time; json.dump({'rate': 1.0}, open(sys.argv[1], 'w')); "
        "child = subprocess.Popen(['sleep', '60']); print(child.pid, flush=True); time.sleep(60)"
    )
    start = time.perf_counter()
    cut = gpu_check.run_part([sys.executable, "-c", hangs, str(result)], 5, result)
    assert cut["status"] == "timed out" and cut["result"] == {"rate": 1.0}
    assert time.perf_counter() - start < 30
    child = int(cut["output"].split()[0])
    deadline = time.perf_counter() + 10
    while not is_gone(child) and time.perf_counter() < deadline:
        time.sleep(0.1)
    assert is_gone(child)


def test_gpu_check_refuses_a_full_run_where_tensorflow_sees_no_gpu(tmp_path):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("TensorFlow sees a GPU here: the full check would run")
    output = tmp_path / "gpu_check.json"
    completed = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), "--output", str(output)],
                               capture_output=True, text=True, timeout=300, cwd=BENCHMARKS.parent)
    assert completed.returncode == 2, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert f"TensorFlow {tf.__version__} sees no GPU" in completed.stderr
    assert "tensorflow[and-cuda]" in completed.stderr
    assert "== retrieval" not in completed.stdout and not output.exists()  # no part ran, nothing recorded


@pytest.mark.slow
def test_gpu_check_quick_records_every_part(tmp_path):
    output = tmp_path / "gpu_check.json"
    run_script(["bash", str(BENCHMARKS / "gpu_check.sh"), "--quick", "--output", str(output)])
    record = json.loads(output.read_text())
    assert record["quick"] is True and record["nvidia_smi"]
    assert record["devices"]["physical_devices"]
    parts = record["parts"]
    assert list(parts) == ["retrieval", "training", "hashgan", "extraction", "mirrored"]
    for name, part in parts.items():
        assert part["status"] == "ok", (name, part.get("output_tail", part.get("output", ""))[-2000:])
        assert positive(part["seconds"]) and part["seconds"] < part["time_limit_s"]

    assert "tfhash" in parts["retrieval"]["output"]
    for method in ("bihalf", "cimon"):
        seconds = parts["training"]["result"]["methods"][method]["seconds_per_epoch"]
        variants = {"fit", "fit_spe", "graph"}
        assert set(seconds) == {"data", "data_batched"} | variants | {variant + "_jit" for variant in variants}
        assert all(positive(value) for value in seconds.values())
    hashgan = parts["hashgan"]["result"]["jit_compile=False"]
    assert positive(hashgan["steps_per_s"]) and positive(hashgan["seconds_per_gallery_epoch"])
    assert all(positive(rate) for rate in parts["extraction"]["result"]["images_per_s"].values())
    mirrored = parts["mirrored"]["result"]
    assert mirrored["num_replicas"] >= 1 and all(math.isfinite(loss) for loss in mirrored["loss"])
    assert positive(mirrored["samples_per_s"])


@pytest.mark.slow
def test_extraction_throughput_quick(tmp_path):
    output = tmp_path / "extraction.json"
    script = BENCHMARKS / "extraction_throughput.py"
    printed = run_script([sys.executable, str(script), "--quick", "--synthetic", "--output", str(output)])
    assert "bank / predict" in printed
    record = json.loads(output.read_text())
    assert record["images"] == 96 and record["image_size"] == 64 and len(record["repeat_results"]) == 2
    assert set(record["images_per_s"]) == {"pipeline", "predict", "bank"}
    assert all(positive(rate) for rate in record["images_per_s"].values())
    assert positive(record["bank_over_predict"]) and positive(record["pipeline_over_predict"])
    for row in record["repeat_results"]:
        assert row["max_feature_difference"] <= 1e-3
        parts = row["bank_breakdown"]
        assert positive(parts["first_backbone_call_s"]) and positive(parts["predict_ms_per_batch"])
        assert all(parts[key] >= 0 for key in ("setup_s", "wait_input_s", "backbone_s", "store_s"))


@pytest.mark.slow
def test_training_throughput_quick(tmp_path):
    output = tmp_path / "training.json"
    script = BENCHMARKS / "training_throughput.py"
    # CIMON: two views, sample-indexed state written by its refresher, every variant with and without XLA.
    arguments = ["--quick", "--samples", "200", "--epochs", "1", "--methods", "cimon", "--output", str(output)]
    run_script([sys.executable, str(script), *arguments])
    record = json.loads(output.read_text())
    assert record["samples"] == 200 and record["timed_epochs"] == 1
    cimon = record["methods"]["cimon"]
    assert cimon["batch_size"] == 24 and cimon["steps_per_epoch"] == 200 // 24
    variants = {"fit", "fit_spe", "loop", "graph"}
    expected = {"data", "data_batched"} | variants | {name + "_jit" for name in variants}
    assert set(cimon["seconds_per_epoch"]) == expected
    assert all(len(seconds) == 2 for seconds in cimon["epoch_seconds"].values())  # warm-up + 1 timed
    assert all(positive(value) for value in cimon["epochs_per_s"].values())
    assert cimon["over_floor"]["graph"] == cimon["over_floor"]["graph_jit"] == 1.0
    assert set(cimon["fit_over_loop"]) == {"jit_compile=False", "jit_compile=True"}
    assert cimon["loss_check"]["jit_compile=False"]["relative_difference"] <= 1e-5
    assert cimon["loss_check"]["jit_compile=True"]["relative_difference"] <= 1e-3
    assert cimon["supervision_s"] > 0
