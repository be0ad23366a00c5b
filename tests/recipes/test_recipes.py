"""The recipes (python -m tfhash.recipes.<name>): configuration files, flags, a smoke run of each demo preset.

The smoke runs shrink the demo (8 bits, one epoch, 32 px images, at most 200 images per split) and share one
feature-bank directory for the whole session, so each augmentation's features are extracted once.
"""

import inspect
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfhash
from tfhash import _atomic, backbones
from tfhash.data import augment, evaluation_dataset, get_protocol, sources
from tfhash.metrics import mean_average_precision
from tfhash.recipes import runner

#: the recipes of the hasher family (a backbone's features): every configuration but HashGAN's
RECIPES = sorted(
    path.stem for path in runner.config_path("bihalf").parent.glob("*.toml")
    if runner.load_config(path.stem).get("family", "hasher") == "hasher"
)

SMOKE = "--preset demo --bits 8 --epochs 1 --image-size 32 --limit 200 --verbose 0".split()
RESULT_KEYS = {"bits", "epochs", "map", "map_stable", "precision_at", "precision_radius_2", "history",
               "pr_curve_by_radius", "fisher_score", "entropy_ratio", "correlation_ratio", "config",
               "train_seconds", "evaluation_seconds", "run", "seed"}


def with_hqt(recipe):
    return "hqt" in runner.load_config(recipe)


@pytest.fixture(scope="session")
def bank_dir(tmp_path_factory):
    """One feature-bank cache for every smoke run of the session."""
    return str(tmp_path_factory.mktemp("feature_bank"))


def recipe_module(name):
    return __import__(f"tfhash.recipes.{name}", fromlist=["main"])


def check_outputs(output, record, recipe, bits=8):
    written = json.loads((output / "metrics.json").read_text())
    assert written == json.loads(json.dumps(record))
    assert written["recipe"] == f"tfhash.recipes.{recipe}" and written["preset"] == "demo"
    assert written["complete"]
    assert written["seed"] == 0 and written["dataset"] == "digits"
    assert written["protocol"]["name"] == "digits" and written["protocol"]["metric"] == "mAP@all"
    assert written["protocol"]["sizes"] == {"query": 200, "train": 200, "database": 200}
    assert set(written["versions"]) >= {"tfhash", "tensorflow", "keras", "numpy", "python"}
    assert written["wall_seconds"] > 0 and written["config"]["method"] == runner.load_config(recipe)["method"]
    (row,) = written["results"]
    assert RESULT_KEYS <= set(row) and row["bits"] == bits and row["epochs"] == 1
    assert 0 < row["map"] <= 1 and 0 < row["map_stable"] <= 1 and set(row["precision_at"]) == {"100"}
    assert len(row["pr_curve_by_radius"]["precision"]) == bits + 1 and len(row["history"]["loss"]) == 1
    if with_hqt(recipe):
        assert "hqt_loss" in row["history"] and written["config"]["hqt"]["alpha"] == 0.5
    assert (output / "pr_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p.name for p in output.iterdir() if p.name.startswith(".")]  # no temporary file left
    return row


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["greedyhash", "cibhash", "cimon", "dsah", "ucsh", "hqt_bihalf", "hqt_cibhash"])
def test_demo_smoke_run_writes_valid_outputs(recipe, tmp_path, bank_dir):
    output = tmp_path / "run"
    flags = [*SMOKE, "--output", str(output), "--bank-dir", bank_dir, "--export", "features"]
    record = recipe_module(recipe).main([*flags, "--saved-models", "none"])
    row = check_outputs(output, record, recipe)
    if recipe == "dsah":  # W⁰ before the one epoch, and its quality against the labels (analysis only)
        (entry,) = row["supervision_log"]
        assert entry["round"] == 0 and entry["positives"] > 0 and 0 < entry["f_w"] <= 1
    loaded = tf.saved_model.load(row["saved_model"])  # the hash head: features in
    out = loaded.signatures["encode_features"](features=tf.zeros((3, 1280)))
    assert out["codes"].shape == (3, 8) and out["packed"].shape == (3, 1) and out["packed"].dtype == tf.uint8


@pytest.mark.slow
def test_bihalf_demo_exports_image_models_that_reproduce_the_evaluated_codes(tmp_path, bank_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the demo's default copies go to ./saved_models
    record = recipe_module("bihalf").main([*SMOKE, "--output", "run", "--bank-dir", bank_dir])
    row = check_outputs(tmp_path / "run", record, "bihalf")
    assert row["saved_model_copy"] == str(tmp_path / "saved_models" / "bihalf_demo_8bits")
    # The SavedModel takes images (backbone included): encoding the split's images again gives the same mAP.
    pool = sources.get("digits")
    pool = type(pool)(pool.name, np.repeat(pool.samples, 3, axis=-1), pool.labels, pool.partition, pool.class_names)
    parts = runner.limit_split(get_protocol("digits").split(pool, seed=0), 200, seed=0)
    for path in (row["saved_model"], row["saved_model_copy"]):
        encoder = tfhash.load_encoder(path)
        assert encoder.image_shape == (32, 32, 3) and encoder.num_bits == 8
        query, database = (encoder.encode(evaluation_dataset(pool, parts[part], 64, image_size=32))
                           for part in ("query", "database"))
        labels = [pool.labels[parts[part]] for part in ("query", "database")]
        value = mean_average_precision(query, database, *labels)
        assert float(value) == pytest.approx(row["map"], abs=1e-3)


@pytest.mark.slow
def test_fine_tuned_dsah_encodes_the_training_images_for_its_rounds(tmp_path, bank_dir):
    # The DSAH paper preset fine-tunes VGG19: W0 from the pretrained features, AND rounds on the codes of the
    # training images through the fine-tuned backbone; here a round after every epoch, on 96 digits.
    text = runner.config_path("dsah").read_text()
    text = text.replace("update_every_n_epochs = 10", "update_every_n_epochs = 1")
    text = text.replace("num_neighbors = 500, num_shared_neighbors = 500", "num_neighbors = 8, num_shared_neighbors = 8")
    config = tmp_path / "dsah.toml"
    config.write_text(text)
    flags = "--dataset digits --backbone efficientnet_lite0 --image-size 32 --bits 8 --epochs 2 --limit 96"
    flags += f" --batch-size 24 --verbose 0 --config {config} --output {tmp_path / 'run'} --bank-dir {bank_dir}"
    record = recipe_module("dsah").main(flags.split())
    (row,) = record["results"]
    assert record["config"]["fine_tune"] and record["config"]["backbone"] == "efficientnet_lite0"
    assert [entry["round"] for entry in row["supervision_log"]] == [0, 1, 2]
    assert all({"threshold", "mean", "std", "f_w"} <= set(entry) for entry in row["supervision_log"][1:])
    positives = [entry["positives"] for entry in row["supervision_log"]]
    assert positives == sorted(positives) and 0 < row["map"] <= 1


@pytest.mark.slow
def test_fine_tuned_paper_path_with_hqt_runs_end_to_end(tmp_path, bank_dir):
    # The CIMON paper preset trains the backbone on images; here on digits, with a small EfficientNet input.
    flags = "--dataset digits --backbone efficientnet_lite0 --image-size 32 --bits 4 8 --epochs 1 --limit 96"
    flags += " --batch-size 24 --verbose 0"
    flags += f" --output {tmp_path} --bank-dir {bank_dir}"
    record = recipe_module("hqt_cimon").main(flags.split())
    assert record["preset"] == "paper" and record["config"]["fine_tune"]
    assert record["protocol"]["name"] == "digits"
    for row, bits in zip(record["results"], (4, 8)):
        assert row["bits"] == bits and row["reported_map"] is None  # the paper's figures are CIFAR-10(I)'s
        assert 0 < row["map"] <= 1 and "hqt_loss" in row["history"] and "similarity" in row["history"]
        encoder = tfhash.load_encoder(row["saved_model"])  # the fine-tuned backbone is part of the model
        assert encoder.image_shape == (32, 32, 3) and encoder.num_bits == bits


def test_rerun_into_the_same_folder_replaces_results_atomically(tmp_path):
    _atomic.write_json(tmp_path / "metrics.json", {"run": 1})
    with pytest.raises(ValueError):  # NaN is refused (strict JSON): the write fails before replacing
        _atomic.write_json(tmp_path / "metrics.json", {"run": 2, "value": float("nan")})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"run": 1}
    _atomic.write_json(tmp_path / "metrics.json", {"run": 3})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"run": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


# --- configuration files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_config_loads_and_its_values_fit_the_library(recipe):
    config = runner.load_config(recipe, recipe=recipe)
    assert config["path"].endswith(f"{recipe}.toml")
    cls = tfhash.models.get_class(config["method"])
    parameters = inspect.signature(cls).parameters
    for preset in runner.PRESETS:
        settings = runner.resolve(config, preset)
        assert set(settings["model"]) <= set(parameters), settings["model"]
        get_protocol(settings["protocol"])
        assert settings["backbone"] in backbones.NAMES and settings["dataset"] in sources.NAMES
        assert set(settings["augment"]) <= set(augment.NAMES)
        assert set(settings["reported_map"]) <= {str(b) for b in settings["bits"]}
        optimizer = runner.build_optimizer(settings, steps_per_epoch=10)
        assert isinstance(optimizer, keras.optimizers.Optimizer)
        assert (settings["hqt"] is not None) == recipe.startswith("hqt_")
        for bits in settings["bits"]:  # every [model] / [hqt] value builds the model (before any data is read)
            runner.family_of(config).validate(runner.resolve(config, preset, bits=bits), bits, recipe)
    paper, demo = runner.resolve(config, "paper"), runner.resolve(config, "demo")
    backbone, bits = {"dsah": ("vgg19", [16, 32, 64, 128])}.get(recipe, ("vgg16", [16, 32, 64]))  # the papers'
    assert paper["dataset"] == "cifar10" and paper["backbone"] == backbone and paper["bits"] == bits
    assert demo["dataset"] == "digits" and demo["backbone"] == "efficientnet_lite0" and not demo["fine_tune"]
    if with_hqt(recipe):
        hqt = paper["hqt"]
        assert hqt["alpha"] == 0.5 and hqt["depth_range"] == [3, 5] and hqt["shared_tree"]
        assert paper["protocol"] == "cifar10-i"


def test_per_code_length_overrides_and_flags():
    greedy, cib = runner.load_config("greedyhash"), runner.load_config("cibhash")
    assert [runner.resolve(greedy, "paper", bits=b)["epochs"] for b in (16, 32, 64)] == [300, 60, 60]
    assert [runner.resolve(cib, "paper", bits=b)["epochs"] for b in (16, 32)] == [80, 60]
    assert runner.resolve(greedy, "demo", bits=16)["epochs"] == 30  # a preset's overrides are its own
    assert runner.resolve(greedy, "paper", {"epochs": 2}, bits=16)["epochs"] == 2  # a flag wins over by_bits
    # Bi-half's code: lr × 0.1 at epochs 120 and 240 of 300, here with 5 steps per epoch.
    settings = runner.resolve(runner.load_config("bihalf"), "paper")
    optimizer = runner.build_optimizer(settings, steps_per_epoch=5)
    config = optimizer.get_config()
    schedule = config["learning_rate"]["config"]
    assert schedule["boundaries"] == [600, 1200] and schedule["values"] == pytest.approx([1e-4, 1e-5, 1e-6])
    assert config["momentum"] == 0.9 and config["weight_decay"] == 5e-4


def test_a_step_schedule_decays_in_a_staircase_as_the_dsah_code():
    # DSAH's code: tf.compat.v1.train.exponential_decay(1e-4, global_step, 200, 0.99, staircase=True), Adam ε 1
    settings = runner.resolve(runner.load_config("dsah"), "paper")
    assert settings["schedule"] == {"every_steps": 200, "factor": 0.99} and settings["batch_size"] == 50
    optimizer = runner.build_optimizer(settings, steps_per_epoch=200)
    assert optimizer.epsilon == 1.0
    rate = optimizer.learning_rate  # the schedule's value at the optimizer's current step (0)
    schedule = optimizer._learning_rate
    assert float(rate) == pytest.approx(1e-4)
    for step, expected in [(199, 1e-4), (200, 0.99e-4), (399, 0.99e-4), (400, 0.99**2 * 1e-4)]:
        assert float(schedule(step)) == pytest.approx(expected)


@pytest.mark.parametrize("schedule", [{"every_steps": 0}, {"every_steps": 10, "every_epochs": 1},
                                      {"every_steps": 10, "factor": -1}, {"every_steps": 10, "decay": 1}, {}])
def test_a_malformed_schedule_names_both_forms(schedule):
    settings = {"optimizer": {"class_name": "Adam"}, "schedule": schedule or {"factor": 0.5}, "epochs": 3}
    with pytest.raises(runner.RecipeError, match=re.escape("{every_epochs = n, factor = f} or {every_steps = n")):
        runner.build_optimizer(settings, 10)


def test_changing_dataset_or_backbone_resets_what_depends_on_it():
    config = runner.load_config("hqt_bihalf")
    parser = runner.build_parser("hqt_bihalf")
    args = parser.parse_args(["--dataset", "digits"])
    settings = runner.resolve(config, "paper", runner.overrides(args, config, "paper"))
    assert settings["protocol"] == "digits" and settings["reported_map"] == {}
    args = parser.parse_args(["--preset", "demo", "--backbone", "vgg16"])
    assert runner.resolve(config, "demo", runner.overrides(args, config, "demo"))["image_size"] is None
    args = parser.parse_args(["--protocol", "cifar10_ii"])  # the paper's protocol by an alias: figures kept
    assert runner.resolve(config, "paper", runner.overrides(args, config, "paper"))["reported_map"]
    args = parser.parse_args(["--backbone", "efficientnet_lite0"])  # the paper's figures are VGG16's
    settings = runner.resolve(config, "paper", runner.overrides(args, config, "paper"))
    assert settings["reported_map"] == {} and settings["image_size"] is None
    args = parser.parse_args(["--backbone", "vgg16"])  # the preset's own backbone: figures kept
    assert runner.resolve(config, "paper", runner.overrides(args, config, "paper"))["reported_map"]


@pytest.mark.parametrize("recipe", ["cibhash", "hqt_cibhash"])
def test_paper_presets_trained_with_pytorchs_adam_take_its_epsilon(recipe):
    # CIBHash's code trains with PyTorch's Adam, whose ε is 1e-8; Keras's Adam defaults to 1e-7.
    settings = runner.resolve(runner.load_config(recipe), "paper", bits=16)
    optimizer = runner.build_optimizer(settings, steps_per_epoch=78)
    assert isinstance(optimizer, keras.optimizers.Adam) and optimizer.epsilon == 1e-8
    assert keras.optimizers.Adam().epsilon == 1e-7


def test_preset_tables_merge_over_the_shared_ones(tmp_path):
    path = tmp_path / "custom.toml"
    path.write_text(
        'method = "cibhash"\n[model]\nhidden_units = 512\ntemperature = 0.3\n'
        '[paper]\ndataset = "digits"\nprotocol = "digits"\nbackbone = "efficientnet_lite0"\nbits = [8]\n'
        'epochs = 1\nbatch_size = 8\noptimizer = { class_name = "Adam", learning_rate = 1e-3 }\n'
        "[paper.model]\ntemperature = 0.5\n[paper.by_bits.8]\nbatch_size = 16\n"
        '[demo]\ndataset = "digits"\nprotocol = "digits"\nbackbone = "efficientnet_lite0"\nbits = [8]\n'
        'epochs = 1\nbatch_size = 8\noptimizer = { class_name = "Adam" }\n'
    )
    config = runner.load_config(str(path), recipe="cibhash")
    paper = runner.resolve(config, "paper", bits=8)
    assert paper["model"] == {"hidden_units": 512, "temperature": 0.5} and paper["batch_size"] == 16
    assert runner.resolve(config, "demo")["model"] == {"hidden_units": 512, "temperature": 0.3}
    assert paper["export"] == "images" and paper["augment"] == [] and "by_bits" not in paper  # defaults
    with pytest.raises(runner.RecipeError, match=r"'cibhash' without HQT; recipe 'hqt_cibhash' runs"):
        runner.load_config(str(path), recipe="hqt_cibhash")


@pytest.mark.parametrize(
    "text, message",
    [
        ('method = "bihalf"\nepoch = 3\n', r"unknown top-level keys \['epoch'\]"),
        ('method = "lsh"\n', r"`method` must be one of"),
        ('method = "bihalf"\n[paper]\ndataset = "digits"\n', r"\[paper\]: required keys \['protocol'"),
        ('method = "bihalf"\n[paper]\nepochs = [\n', r"is not valid TOML"),
    ],
)
def test_bad_configuration_files_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(runner.RecipeError, match=message):
        runner.load_config(str(path))


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("batch_size = 32", "batchsize = 32", r"\[paper\]: unknown keys \['batchsize'\]"),
        ("augment = []", 'augment = ["flip"]', r"\[paper\]: `augment` must list at most two of cibhash_view"),
        ('backbone = "vgg16"', 'backbone = "resnet50"', r"\[paper\]: `backbone` must be one of vgg16"),
        ('protocol = "cifar10-bihalf-i"', 'protocol = "cifar-100"', r"\[paper\]: `protocol`: Unknown protocol"),
        ("\n[demo]", "\n[paper.by_bits.16]\nepoch = 3\n[demo]", r"\[paper.by_bits.16\]: unknown keys"),
    ],
)
def test_mistakes_inside_a_preset_name_the_key(tmp_path, old, new, message):
    text = runner.config_path("bihalf").read_text()
    assert old in text
    path = tmp_path / "mistake.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(runner.RecipeError, match=message):
        runner.load_config(str(path))


def test_configs_are_found_in_the_checkout_and_in_an_installed_package():
    directories = runner.config_directories()
    assert directories[0].parts[-2:] == ("recipes", "configs")  # where setup.py puts them in a wheel
    assert any((d / "bihalf.toml").is_file() for d in directories)


# --- command line -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--bits", "0"], "--bits must be positive"),
        (["--bits", "16", "16"], "--bits lists a code length twice"),
        (["--epochs", "-1"], "--epochs must be positive"),
        (["--preset", "fast"], "argument --preset: invalid choice"),
        (["--backbone", "resnet50"], "argument --backbone: invalid choice"),
        (["--protocol", "cifar-100"], "--protocol: Unknown protocol 'cifar-100'"),
        (["--seed", "-3"], "--seed must be a non-negative integer"),
        (["--config", "/nonexistent.toml"], "--config: no file"),
    ],
)
def test_bad_flags_exit_with_a_message_naming_the_flag(flags, message, capsys):
    with pytest.raises(SystemExit) as raised:
        recipe_module("bihalf").main(flags)
    assert raised.value.code == 2 and message in capsys.readouterr().err


def test_batch_larger_than_the_training_set_is_refused_before_training(tmp_path, bank_dir, capsys):
    with pytest.raises(SystemExit) as raised:
        recipe_module("greedyhash").main([*SMOKE, "--limit", "20", "--output", str(tmp_path / "run")])
    assert raised.value.code == 2 and "exceeds the 20 training images" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_paper_preset_stops_before_training_when_weights_and_data_are_missing(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("no network")  # what keras.utils.get_file raises when a download fails

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # an empty Keras cache
    monkeypatch.setattr(keras.utils, "get_file", offline)
    (tmp_path / "empty").mkdir()
    with pytest.raises(runner.RecipeError) as raised:
        recipe_module("bihalf").main(["--data-dir", str(tmp_path / "empty"), "--output", str(tmp_path / "o")])
    message = str(raised.value)
    weights = os.path.join(str(tmp_path / "keras"), "models", "vgg16_weights_tf_dim_ordering_tf_kernels.h5")
    assert message.startswith("Nothing was trained") and weights in message
    assert "--backbone efficientnet_lite0" in message and "--preset demo" in message
    assert "CIFAR-10 not found" in message and "--data-dir" in message
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_module_entry_point_prints_help():
    command = [sys.executable, "-m", "tfhash.recipes.greedyhash", "--help"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--preset {paper,demo}" in result.stdout
    assert "GreedyHash (Su et al., NeurIPS 2018)" in result.stdout


@pytest.mark.real_data
@pytest.mark.slow
def test_paper_preset_on_cifar10_starts_with_efficientnet(shared_data, tmp_path, bank_dir):
    # The paper's protocol and hyper-parameters on a tiny seeded subset of CIFAR-10, one epoch.
    flags = f"--backbone efficientnet_lite0 --data-dir {shared_data} --bits 16 --epochs 1 --limit 64"
    record = recipe_module("bihalf").main([*flags.split(), "--verbose", "0", "--output", str(tmp_path),
                                           "--bank-dir", bank_dir])
    (row,) = record["results"]
    assert record["protocol"]["name"] == "cifar10-bihalf-i" and record["protocol"]["limit"] == 64
    assert record["config"]["optimizer"]["class_name"] == "SGD"
    # Another backbone than the paper's VGG16 (and a subset): the paper's figures are not shown beside ours.
    assert record["config"]["reported_map"] == {} and row["reported_map"] is None
    assert np.isfinite(row["map"]) and (tmp_path / "saved_model_16bits").is_dir()


# --- one runner: flags of every recipe, whole-configuration checks, the output folder --------------------


@pytest.mark.parametrize("recipe", [*RECIPES, "hashgan_mnist", "hashgan_cifar10"])
def test_every_recipe_takes_runs_resume_and_jit_compile(recipe):
    args = runner.build_parser(recipe).parse_args(["--runs", "2", "--resume", "--jit-compile", "off"])
    assert args.runs == 2 and args.resume and args.jit_compile == "off"


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("gamma = 6.0", "gama = 6.0", r"\[model\].*gama"),
        ("batch_size = 32", 'batch_size = "32"', r"\[paper\]: `batch_size` must be a positive integer, got '32'"),
        ("learning_rate = 1e-4,", "learning_rat = 1e-4,", r"`optimizer`"),
    ],
)
def test_configuration_is_checked_whole_before_any_data_is_read(tmp_path, monkeypatch, old, new, message):
    def no_data(*args, **kwargs):
        raise AssertionError("data were read before the configuration was checked")

    monkeypatch.setattr(sources, "get", no_data)
    text = runner.config_path("bihalf").read_text()
    path = tmp_path / "mistake.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(runner.RecipeError, match=message) as raised:
        recipe_module("bihalf").main(["--config", str(path), "--output", str(tmp_path / "o"), "--verbose", "0"])
    assert raised.value.code != 0 and "Traceback" not in str(raised.value)
    assert not (tmp_path / "o").exists()


def test_output_folder_describes_one_run_while_models_are_replaced(tmp_path, bank_dir, monkeypatch):
    output = tmp_path / "run"
    flags = [*SMOKE, "--output", str(output), "--bank-dir", bank_dir, "--saved-models", "none"]
    recipe_module("greedyhash").main([*flags, "--export", "features"])
    stale = output / ".saved_model_8bits.old-abc123"  # left by an export interrupted mid-swap
    (stale / "model").mkdir(parents=True)
    seen = []
    export = runner.export

    def checked_export(model, path, verbose):
        record = json.loads((output / "metrics.json").read_text())
        seen.append((record["complete"], record["seed"]))  # the record beside the replaced model is this run's
        return export(model, path, verbose)

    monkeypatch.setattr(runner, "export", checked_export)
    record = recipe_module("greedyhash").main([*flags, "--export", "features", "--seed", "1"])
    assert seen == [(False, 1)] and record["complete"] and not stale.exists()


def test_runs_are_recorded_and_resume_trains_only_what_is_missing(tmp_path, bank_dir):
    flags = [*SMOKE, "--output", str(tmp_path), "--bank-dir", bank_dir, "--export", "none"]
    first = recipe_module("bihalf").main([*flags, "--runs", "2"])
    assert [(row["run"], row["seed"]) for row in first["results"]] == [(0, 0), (1, 1)]
    (summary,) = first["summary"]
    maps = [row["map"] for row in first["results"]]
    assert summary["runs"] == 2 and summary["map"]["mean"] == pytest.approx(np.mean(maps), abs=1e-6)
    resumed = recipe_module("bihalf").main([*flags, "--runs", "2", "--resume"])
    assert resumed["results"] == json.loads(json.dumps(first["results"]))  # nothing trained again
    with pytest.raises(runner.RecipeError, match="another configuration"):
        recipe_module("bihalf").main([*flags, "--runs", "2", "--resume", "--epochs", "2"])


# --- non-finite values (issue 12, item 5) -----------------------------------------------------------------


def nan_bank(monkeypatch, split="train"):
    """FeatureBank whose ``split`` features hold a NaN (as a broken backbone or damaged cache file gives)."""
    from tfhash.recipes import families

    class NaNBank(families.FeatureBank):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if split == "train":
                self.train = np.array(self.train)
                self.train[0, 0, 3, 5] = np.nan
            else:
                self.evaluation[split] = np.array(self.evaluation[split])
                self.evaluation[split][7, 0] = np.inf

    monkeypatch.setattr(families, "FeatureBank", NaNBank)


@pytest.mark.parametrize("split", ["train", "database"])
def test_nan_features_stop_before_training_naming_the_split(split, tmp_path, bank_dir, monkeypatch):
    nan_bank(monkeypatch, split)
    output = tmp_path / "run"
    fit = keras.Model.fit
    monkeypatch.setattr(keras.Model, "fit", lambda *a, **k: pytest.fail("trained on non-finite features"))
    expected = f"features of 'digits', split '{split}', hold 1 NaN or infinite"
    with pytest.raises(runner.RecipeError, match=expected) as raised:
        recipe_module("greedyhash").main([*SMOKE, "--output", str(output), "--bank-dir", bank_dir])
    message = str(raised.value)
    assert "efficientnet_lite0 features of 'digits'" in message and bank_dir in message and ".npy" in message
    assert "Traceback" not in message and raised.value.code != 0
    record = json.loads((output / "metrics.json").read_text())
    assert not record["complete"] and not record["results"]
    monkeypatch.setattr(keras.Model, "fit", fit)


def test_nan_loss_stops_training_with_the_code_length_and_epoch(tmp_path, bank_dir, monkeypatch):
    from tfhash.recipes import families

    nan_bank(monkeypatch)  # and no check of the inputs: the loss turns NaN at the first batch
    monkeypatch.setattr(families.HasherFamily, "check_features", staticmethod(lambda bank, settings: None))
    output = tmp_path / "run"
    flags = [*SMOKE, "--epochs", "3", "--output", str(output), "--bank-dir", bank_dir, "--export", "none"]
    with pytest.raises(runner.RecipeError) as raised:
        recipe_module("greedyhash").main(flags)
    message = str(raised.value)
    # On cached features a whole epoch is one execution (steps_per_execution): the batches are those of the first.
    assert message.startswith("8 bits: training diverged: ") and "at epoch 1, in batches 1–" in message
    assert "loss" in message and "stays incomplete" in message and "learning" in message
    assert "input features" in message
    record = json.loads((output / "metrics.json").read_text())
    assert not record["complete"] and not record["results"] and record["error"] == message


def test_stop_on_non_finite_watches_every_logged_loss():
    # HashGAN logs encoder_loss, feature_matching, ... and no "loss": any of them turning NaN stops training.
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    stop = runner.StopOnNonFinite()
    stop.set_model(model)
    model.stop_training = False  # as fit sets it
    stop.on_epoch_begin(4)
    stop.on_batch_end(0, {"encoder_loss": 1.0, "feature_matching": 3.0})
    assert stop.diverged is None and not model.stop_training
    stop.on_batch_end(1, {"encoder_loss": 1.0, "feature_matching": float("inf"), "adversarial": np.nan})
    assert model.stop_training
    assert stop.diverged == "adversarial, feature_matching became NaN or infinite at epoch 5, batch 2"
    assert isinstance(stop, keras.callbacks.TerminateOnNaN)

    # Several steps per call: Keras reports the last batch of each execution; the message names them all.
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=4)
    stop = runner.StopOnNonFinite()
    stop.set_model(model)
    stop.on_epoch_begin(0)
    stop.on_batch_end(7, {"loss": np.nan})
    assert stop.diverged == "loss became NaN or infinite at epoch 1, in batches 5–8"


def test_check_finite_names_the_array_and_counts_in_slices():
    runner.check_finite({"query": np.ones((3, 4), np.float16), "labels": np.arange(3)}, "features")
    values = np.zeros((2, 3, 70000, 2), np.float32)
    values[1, 2, 69999, 1], values[0, 0, 0, 0] = np.inf, np.nan
    with pytest.raises(runner.RecipeError, match=r"features, split 'train', hold 2 NaN or infinite values "
                       r"\(of 840000, shape \(2, 3, 70000, 2\)\)\. see here"):
        runner.check_finite({"train": values}, "features", " see here")


# --- plain logs (issue 12, item 14) -----------------------------------------------------------------------


def test_progress_bars_become_plain_lines_off_a_terminal(tmp_path):
    class Terminal:
        def isatty(self):
            return True

    with open(tmp_path / "log", "w") as file:
        assert [runner.plain_verbosity(v, file) for v in (0, 1, 2)] == [0, 2, 2]
    assert [runner.plain_verbosity(v, Terminal()) for v in (0, 1, 2)] == [0, 1, 2]


def test_native_start_up_lines_are_filtered_by_level_and_written_once():
    from tfhash._logging import filter_native_log, min_log_level

    banner = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    onednn = b"I0000 00:00:1796278008.057304   31778 port.cc:153] oneDNN custom operations are on.\n"
    cuda = b"I0000 00:00:1796278008.057777   31778 cudart_stub.cc:31] Could not find cuda drivers.\n"
    guard = [b"I0000 00:00:1796278008.3   31778 cpu_feature_guard.cc:227] This TensorFlow binary...\n",
             b"To enable the following instructions: AVX2 FMA, rebuild TensorFlow.\n"]
    warning = b"W0000 00:00:1796278012.2   31778 port.cc:99] something to see\n"
    again = [banner, onednn.replace(b"8008.057304", b"8012.227514"), cuda.replace(b".057777", b".228691")]
    lines = [b"python line before\n", banner, onednn, cuda, *guard, *again, warning, b"fatal text\n"]

    def run(level):
        out = []
        filter_native_log(lines, out.append, level)
        return out

    assert run(0) == [b"python line before\n", banner, onednn, cuda, *guard, warning, b"fatal text\n"]
    assert run(1) == [b"python line before\n", banner, warning, b"fatal text\n"]  # continues the W record
    assert run(2) == [b"python line before\n"]
    assert [min_log_level({"TF_CPP_MIN_LOG_LEVEL": v}) for v in ("3", "7", "x", "-1")] == [3, 3, 0, 0]
    assert min_log_level({}) == 0


def run_logged(command, tmp_path, level):
    """Runs ``command`` with stdout and stderr redirected to files; returns their bytes."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    paths = tmp_path / f"stdout{level}", tmp_path / f"stderr{level}"
    with open(paths[0], "wb") as out, open(paths[1], "wb") as err:
        result = subprocess.run(command, stdout=out, stderr=err, env=env, timeout=600)
    logs = [path.read_bytes() for path in paths]
    assert result.returncode == 0, logs
    return logs


START_UP = (b"All log messages before absl::InitializeLog()", b"oneDNN custom operations", b"cuda drivers")


@pytest.mark.slow
def test_redirected_recipe_log_reads_as_plain_lines(tmp_path, bank_dir):
    flags = "--preset demo --limit 200 --bits 16 --epochs 2 --evaluate-every 1 --verbose 1 --saved-models none"
    command = [sys.executable, "-m", "tfhash.recipes.greedyhash", *flags.split(), "--export", "none",
               "--output", str(tmp_path / "run"), "--bank-dir", bank_dir]
    out, err = run_logged(command, tmp_path, level=None)  # TensorFlow's default level: start-up lines shown
    for text in (out, err):
        assert b"\x1b[" not in text and b"\r" not in text and b"\x08" not in text
    assert b"Epoch 2/2\n6/6 - " in out and b"- val_map@all: " in out and b"Wrote " in out
    for line in START_UP:
        assert err.count(line) <= 1, err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["complete"]


@pytest.mark.slow
def test_tensorflow_start_up_lines_follow_tf_cpp_min_log_level(tmp_path):
    out, err = run_logged([sys.executable, "-m", "tfhash", "encode", "--help"], tmp_path, level="1")
    assert b"--model" in out and not any(line in err for line in START_UP), err


def test_only_tfhash_command_lines_filter_the_start_up_log():
    from tfhash._logging import runs_tfhash_command

    assert runs_tfhash_command(["python", "-m", "tfhash.recipes.bihalf", "--preset", "demo"])
    assert runs_tfhash_command(["python3", "-X", "dev", "-m", "tfhash", "encode"])
    # a program or notebook that imports tfhash keeps its stderr untouched
    assert not runs_tfhash_command(["python", "train.py", "-m", "tfhash"])
    assert not runs_tfhash_command(["python", "-m", "pytest", "tests"])
    assert not runs_tfhash_command(["python", "-c", "import tfhash"])


def test_models_trained_one_after_another_do_not_warn_of_retracing(monkeypatch):
    import logging

    from tensorflow.python.eager.polymorphic_function import polymorphic_function

    from tfhash._logging import keras_step_retracing_quieted

    warned = []
    handler = logging.Handler()
    handler.emit = lambda record: warned.append(record.getMessage())
    logger = logging.getLogger("tensorflow")
    monkeypatch.setattr(logger, "handlers", [handler])

    def fresh_detector():  # TensorFlow warns at most twice per process for the same code: start from none
        monkeypatch.setattr(polymorphic_function, "_frequent_tracing_detector_manager",
                            polymorphic_function._FrequentTracingDetectorManager())
        warned.clear()

    def models_one_after_another():  # as a search's trials: each predict traces a full and a last batch
        for _ in range(4):
            model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
            model.predict(np.zeros((40, 3), np.float32), batch_size=32, verbose=0)

    def retracing(name):
        return [text for text in warned if "triggered tf.function retracing" in text and name in text]

    fresh_detector()
    models_one_after_another()
    assert retracing("TensorFlowTrainer.make_predict_function")  # what a recipe's log showed
    fresh_detector()
    filters = list(logger.filters)
    with keras_step_retracing_quieted():
        models_one_after_another()
        double = tf.function(lambda x: 2 * x)
        for size in range(1, 8):  # a function that does retrace on every call is still reported
            double(tf.zeros([size, size]))
    assert not retracing("TensorFlowTrainer.") and retracing("<lambda>"), warned
    assert logger.filters == filters
    assert inspect.unwrap(runner.fit_and_evaluate) is not runner.fit_and_evaluate  # recipes and searches use it


def test_supervision_features_are_the_first_view_or_the_clean_images(bank_dir):
    family = runner.family_of(runner.load_config("hqt_bihalf"))
    settings = runner.resolve(runner.load_config("hqt_bihalf"), "demo", {"image_size": 32})
    settings.update(augment=["cimon_weak_view"], bank_views=1)
    args = runner.build_parser("hqt_bihalf").parse_args(["--preset", "demo", "--bank-dir", bank_dir])
    session = family.load(settings, args)
    session.update(args=args, progress=0)
    split = get_protocol("digits").split(session["pool"], seed=0)  # train = database
    train = split.train[:40]
    features = {}
    for name, database, supervision in [("view", split.database[:60], "first_view"),
                                        ("inside", split.database[:60], "clean"),
                                        ("outside", split.database[100:160], "clean")]:
        parts = {"train": train, "database": database, "query": split.query[:10]}
        state = family.prepare(session, {**settings, "supervision_features": supervision}, split, parts, 0)
        features[name] = state["train_features"]
        assert set(state["bank"].evaluation) == {"query", "database"} and state["bank"].train.shape[2] == 40
    backbone = session["backbone"]
    images = np.concatenate([b["inputs"].numpy() for b in evaluation_dataset(session["pool"], train, 64,
                                                                             image_size=32)])
    clean = backbone(images, training=False).numpy()
    np.testing.assert_allclose(features["inside"], clean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(features["outside"], clean, rtol=1e-4, atol=1e-5)
    assert np.abs(features["view"] - clean).max() > 1e-2  # the augmented view is another image
