"""The HashGAN recipes: smoke runs on a small MNIST slice, several runs and resuming, configuration errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tfhash import load_encoder
from tfhash.models import HashGAN
from tfhash.recipes import hashgan_cifar10, hashgan_mnist, runner
from tfhash.recipes.runner import RecipeError, config_path


def smoke_flags(shared_data, tmp_path, *extra):
    return [
        "--preset",
        "demo",
        "--data-dir",
        str(shared_data),
        "--limit",
        "200",
        "--bits",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "50",
        "--verbose",
        "0",
        "--output",
        str(tmp_path),
        *extra,
    ]


@pytest.mark.slow
@pytest.mark.real_data
def test_smoke_run_on_a_small_mnist_slice_writes_every_output(shared_data, tmp_path):
    # The paper preset on a slice: one run, 8 bits; its Table 1 figures are not shown beside a subset's.
    record = hashgan_mnist.main([*smoke_flags(shared_data, tmp_path), "--preset", "paper", "--runs", "1"])
    assert record["complete"] and record["protocol"]["sizes"] == {"query": 200, "train": 200, "database": 200}
    (run,) = record["runs"]
    (summary,) = record["results"]
    assert run["bits"] == 8 and 0 <= run["map"] <= 1 and set(run["clustering"]) >= {"nmi", "accuracy"}
    assert set(run["history"]) == {"encoder_loss", *HashGAN.loss_terms}
    assert (
        summary["map"] == {"mean": pytest.approx(run["map"], abs=1e-6), "std": 0.0} and summary["runs"] == 1
    )
    assert summary["reported"] == {} and summary["reported_clustering"] == {}
    assert json.loads((tmp_path / "metrics.json").read_text())["results"] == record["results"]
    for name in ("pr_curve.png", "generated_8bits.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    encoder = load_encoder(tmp_path / "saved_model_8bits")
    assert encoder.image_shape == (28, 28, 1) and encoder.metadata["model_class"] == "HashGAN"


@pytest.mark.slow
@pytest.mark.real_data
def test_runs_are_averaged_and_resume_trains_only_what_is_missing(shared_data, tmp_path):
    flags = smoke_flags(shared_data, tmp_path, "--export", "none")
    first = hashgan_mnist.main([*flags, "--runs", "2"])
    assert [(row["run"], row["seed"]) for row in first["runs"]] == [(0, 0), (1, 1)]
    maps = [row["map"] for row in first["runs"]]
    assert first["results"][0]["map"]["mean"] == pytest.approx(np.mean(maps), abs=1e-6)
    assert first["results"][0]["map"]["std"] == pytest.approx(np.std(maps), abs=1e-6)
    resumed = hashgan_mnist.main([*flags, "--runs", "3", "--resume"])
    assert resumed["runs"][:2] == first["runs"] and resumed["runs"][2]["run"] == 2
    with pytest.raises(RecipeError, match="another configuration"):
        hashgan_mnist.main([*flags, "--runs", "3", "--resume", "--min-entropy-weight", "0.01"])


def test_both_configs_load_and_resolve_to_the_papers_settings():
    for recipe, architecture, protocol in (
        ("hashgan_mnist", "mnist", "mnist-hashgan"),
        ("hashgan_cifar10", "cifar10", "cifar10-hashgan"),
    ):
        config = runner.load_config(recipe)
        paper = runner.resolve(config, "paper", bits=32)
        assert paper["model"]["architecture"] == architecture and paper["protocol"] == protocol
        assert paper["bits"] == [16, 32, 64] and paper["runs"] == 5 and paper["warmup_fraction"] == 0.1
        assert paper["model"]["collaborative_weight"] == 0.1 and paper["model"]["input_noise_stddev"] == 0.15
        HashGAN(32, **paper["model"])  # every [model] key is an argument
        demo = runner.resolve(config, "demo")
        assert demo["protocol"] == protocol and demo["dataset"] == paper["dataset"]
    mnist = runner.resolve(runner.load_config("hashgan_mnist"), "paper")
    assert mnist["reported"]["16"] == {"map": 91.13, "map@1000": 94.31, "precision@1000": 93.52}
    assert mnist["reported_clustering"] == {"nmi": 0.913, "accuracy": 0.965}


def test_command_line_overrides():
    config = runner.load_config("hashgan_mnist")
    settings = runner.resolve(
        config, "paper", {"epochs": 3, "runs": None, "model": {"min_entropy_weight": 0.01}}
    )
    assert (
        settings["epochs"] == 3
        and settings["runs"] == 5
        and settings["model"] == {"min_entropy_weight": 0.01}
    )


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('dataset = "mnist"\nprotocol', 'dataset = "svhn"\nprotocol', "`dataset`"),
        ("warmup_fraction = 0.1", "warmup_fraction = 1.5", "warmup_fraction"),
        ("batch_size = 100", "batch_sise = 100", "unknown keys"),
        ('method = "hashgan"', 'method = "bihalf"', "`method`"),
        ('export = "images"', 'export = "features"', "`export`"),
    ],
)
def test_configuration_mistakes_name_the_key(tmp_path, old, new, message):
    text = config_path("hashgan_mnist").read_text()
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(RecipeError, match=message):
        runner.load_config(str(path))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--runs", "0"], "--runs"),
        (["--bits", "8", "8"], "--bits"),
        (["--min-entropy-weight", "-1"], "--min-entropy"),
        (["--evaluate-every", "-2"], "--evaluate-every"),
    ],
)
def test_bad_flags_exit_naming_the_flag(flags, message, capsys):
    with pytest.raises(SystemExit):
        hashgan_cifar10.main(flags)
    assert message in capsys.readouterr().err


def test_missing_dataset_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # an empty Keras cache
    monkeypatch.delenv("TFHASH_DATA_DIR", raising=False)
    with pytest.raises(RecipeError, match="--data-dir"):
        hashgan_mnist.main(["--data-dir", str(tmp_path), "--output", str(tmp_path / "o"), "--verbose", "0"])
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_module_entry_point_prints_help():
    command = [sys.executable, "-m", "tfhash.recipes.hashgan_mnist", "--help"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--runs" in result.stdout and "--resume" in result.stdout
