"""Searches (`tfhash.tuning`, ``python -m tfhash.tune``) on the embedded digits: outputs, resume, the carve-out,
distributed chief / worker mode."""

import csv
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import keras
import keras_tuner
import numpy as np
import pytest

from tfhash import tune
from tfhash.data import FeatureBank, get_protocol, sources
from tfhash.recipes import families, runner
from tfhash.tuning import RecipeHyperModel, build_tuner, validation_split

# A tiny demo: 8 bits, 32 px, 200 images per split (so 20 validation queries against 180), 1 epoch.
RECIPE_FLAGS = "--epochs 1 --image-size 32 --limit 200".split()


@pytest.fixture(scope="module")
def bank_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("feature_bank"))


@pytest.fixture()
def search_config(tmp_path):
    """bihalf.toml with two search entries: a choice in [model] and a log range inside the demo's optimizer."""
    text = runner.config_path("bihalf").read_text()
    text = text.replace("gamma = 6.0", "gamma = { choice = [3.0, 6.0] }", 1)
    text = text.replace('optimizer = { class_name = "Adam", learning_rate = 1e-3 }',
                        'optimizer = { class_name = "Adam", learning_rate = { log_range = [1e-4, 1e-2] } }', 1)
    assert text.count("choice") == 1 and text.count("log_range") == 1
    path = tmp_path / "search.toml"
    path.write_text(text)
    return path


def search(config, directory, bank_dir, *flags):
    argv = ["bihalf", "--config", str(config), "--preset", "demo", "--bits", "8", "--directory", str(directory),
            *flags, *RECIPE_FLAGS, "--bank-dir", bank_dir]
    return tune.main(argv)


def read_rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_random_search_writes_the_table_plot_and_a_best_config_the_recipe_runs(
    search_config, tmp_path, bank_dir, capsys
):
    written = search(search_config, tmp_path / "searches", bank_dir, "--tuner", "random", "--trials", "2")
    folder = tmp_path / "searches" / "bihalf_demo_8bits"
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("trial ")]
    assert len(lines) == 2 and all("val_map@all" in line and " s)" in line for line in lines)
    rows = read_rows(folder / "trials.csv")
    assert [row["trial"] for row in rows] == ["0", "1"]
    assert {"model.gamma", "demo.optimizer.learning_rate", "val_map@all", "trial_seconds"} <= set(rows[0])
    scores = [float(row["val_map@all"]) for row in rows]
    assert all(0 < score <= 1 for score in scores) and all(float(row["trial_seconds"]) > 0 for row in rows)
    assert (folder / "objective.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = rows[int(np.argmax(scores))]
    assert written["best"]["trial"] == best["trial"]
    config = tomllib.loads((folder / "best.toml").read_text())
    assert config["model"]["gamma"] == float(best["model.gamma"]) and config["demo"]["bits"] == [8]
    assert config["demo"]["optimizer"] == {"class_name": "Adam",
                                           "learning_rate": pytest.approx(float(best["demo.optimizer.learning_rate"]))}
    # The recipe runs the best configuration as it is, on the protocol's queries.
    record = runner.run("bihalf", ["--config", str(folder / "best.toml"), "--preset", "demo", *RECIPE_FLAGS,
                                   "--bank-dir", bank_dir, "--output", str(tmp_path / "run"), "--export", "none",
                                   "--saved-models", "none", "--verbose", "0"])
    assert record["complete"] and record["config"]["model"]["gamma"] == config["model"]["gamma"]
    assert record["results"][0]["bits"] == 8


@pytest.mark.slow
def test_an_interrupted_search_resumes_where_it_stopped(search_config, tmp_path, bank_dir, monkeypatch):
    fit, calls = RecipeHyperModel.fit, []

    def interrupted(self, hp, model, *args, **kwargs):
        calls.append(dict(hp.values))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process stops in the middle of the second trial
        return fit(self, hp, model, *args, **kwargs)

    monkeypatch.setattr(RecipeHyperModel, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        search(search_config, tmp_path, bank_dir, "--tuner", "random", "--trials", "3")
    first = read_rows(tmp_path / "bihalf_demo_8bits" / "trials.csv")
    assert len(first) == 1
    monkeypatch.setattr(RecipeHyperModel, "fit", fit)
    resumed = []
    monkeypatch.setattr(RecipeHyperModel, "fit",
                        lambda self, hp, *a, **k: resumed.append(dict(hp.values)) or fit(self, hp, *a, **k))
    search(search_config, tmp_path, bank_dir, "--tuner", "random", "--trials", "3")
    rows = read_rows(tmp_path / "bihalf_demo_8bits" / "trials.csv")
    assert [row["trial"] for row in rows] == ["0", "1", "2"] and all(row["status"] == "COMPLETED" for row in rows)
    assert rows[0] == first[0]  # the finished trial is kept, not rerun
    assert len(resumed) == 2 and resumed[0] == calls[1]  # the interrupted trial reruns with its values


def test_the_objective_is_computed_from_the_training_images_alone(search_config, tmp_path, bank_dir, monkeypatch):
    requested = []
    init, prepare = FeatureBank.__init__, families.HasherFamily.prepare

    def spy_bank(self, backbone, image_set, *, train=None, evaluation=None, **kwargs):
        requested.extend(np.asarray(x) for x in [train, *(evaluation or {}).values()] if x is not None)
        init(self, backbone, image_set, train=train, evaluation=evaluation, **kwargs)

    def spy_prepare(self, session, settings, split, parts, seed):
        requested.extend(parts.values())
        return prepare(self, session, settings, split, parts, seed)

    monkeypatch.setattr(FeatureBank, "__init__", spy_bank)
    monkeypatch.setattr(families.HasherFamily, "prepare", spy_prepare)
    hypermodel = RecipeHyperModel("bihalf", search_config, preset="demo", bits=8, recipe_flags=RECIPE_FLAGS
                                  + ["--bank-dir", bank_dir])
    hp = keras_tuner.HyperParameters()
    scores = hypermodel.fit(hp, hypermodel.build(hp))
    pool = sources.get("digits", rgb=True)
    split = get_protocol("digits").split(pool, seed=0)
    parts = runner.limit_split(split, 200, 0)
    assert requested and not any(np.isin(indices, parts["query"]).any() for indices in requested)
    held = hypermodel.validation_indices()
    expected = validation_split(parts["train"], "digits", 0, 0.1)
    assert np.array_equal(held["query"], expected.query) and np.array_equal(held["database"], expected.database)
    assert np.isin(held["query"], parts["train"]).all() and not np.isin(held["query"], held["train"]).any()
    assert set(scores) == {"val_map@all", "map_stable", "train_seconds", "trial_seconds"}


def test_validation_split_is_seeded_disjoint_and_checked():
    train = np.arange(100, 300)
    a, b = validation_split(train, "digits", 3, 0.1), validation_split(train, "digits", 3, 20)
    assert np.array_equal(a.query, b.query) and len(a.query) == 20 and len(a.database) == 180
    assert np.array_equal(np.sort(np.concatenate([a.query, a.database])), train)
    assert np.array_equal(a.train, a.database) and not np.isin(a.query, a.train).any()
    assert not np.array_equal(validation_split(train, "digits", 4, 0.1).query, a.query)
    for size in (0, 200, 2.5, 0.001, True, "0.1"):
        with pytest.raises(ValueError, match="`size`"):
            validation_split(train, "digits", 3, size)


def test_bad_searches_are_refused_before_any_data_is_read(search_config, tmp_path):
    with pytest.raises(runner.RecipeError, match="no search entry"):
        RecipeHyperModel("bihalf", runner.config_path("bihalf"), preset="demo")
    with pytest.raises(runner.RecipeError, match="--output is set by the search"):
        RecipeHyperModel("bihalf", search_config, preset="demo", recipe_flags=["--output", "x"])
    bad = tmp_path / "bad.toml"
    bad.write_text(search_config.read_text().replace("gamma = { choice", "gama = { choice"))
    with pytest.raises(runner.RecipeError, match="gama"):
        RecipeHyperModel("bihalf", bad, preset="demo")
    with pytest.raises(SystemExit):
        tune.main(["bihalf", "--config", str(search_config), "--directory", str(tmp_path)])  # no --trials


def test_the_tuner_seed_fixes_the_values_each_tuner_tries(search_config, tmp_path, bank_dir):
    # Keras-Tuner reads a seed of 0 as "none" and draws one: passed through, tfhash's default seed 0 tried other
    # values in every run of the same search.
    hypermodel = RecipeHyperModel("bihalf", search_config, preset="demo", bits=8,
                                  recipe_flags=RECIPE_FLAGS + ["--bank-dir", bank_dir])

    def first_values(kind, seed, name):
        tuner = build_tuner(kind, hypermodel, directory=tmp_path, project_name=name, trials=3, max_epochs=3,
                            seed=seed)
        trials = [tuner.oracle.create_trial(f"tuner{index}") for index in range(3)]
        return [(trial.hyperparameters.get("model.gamma"),
                 trial.hyperparameters.get("demo.optimizer.learning_rate")) for trial in trials]

    for kind in ("random", "bayesian", "hyperband"):
        first = first_values(kind, 0, f"{kind}_a")
        assert first_values(kind, 0, f"{kind}_b") == first, kind
        assert first_values(kind, 1, f"{kind}_c") != first, kind
    for seed in (-1, 1.5, True):
        with pytest.raises(ValueError, match="`seed`"):
            build_tuner("random", hypermodel, directory=tmp_path, project_name="bad", trials=1, seed=seed)
    with pytest.raises(SystemExit):
        tune.main(["bihalf", "--config", str(search_config), "--directory", str(tmp_path), "--tuner", "random",
                   "--trials", "1", "--tuner-seed", "-1"])


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_distributed_search_with_a_chief_and_two_workers(search_config, tmp_path, bank_dir):
    port = str(free_port())
    command = [sys.executable, "-m", "tfhash.tune", "bihalf", "--config", str(search_config), "--preset", "demo",
               "--bits", "8", "--tuner", "random", "--trials", "3", "--directory", str(tmp_path), *RECIPE_FLAGS,
               "--bank-dir", bank_dir]
    processes = {}
    for role in ("chief", "tuner0", "tuner1"):
        env = {**os.environ, "KERASTUNER_TUNER_ID": role, "KERASTUNER_ORACLE_IP": "127.0.0.1",
               "KERASTUNER_ORACLE_PORT": port, "CUDA_VISIBLE_DEVICES": ""}
        processes[role] = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                           text=True, cwd=Path(__file__).resolve().parents[2])
    outputs = {}
    try:
        for role, process in processes.items():
            outputs[role] = process.communicate(timeout=420)[0]
            assert process.returncode == 0, f"{role}:\n{outputs[role][-3000:]}"
    finally:
        for process in processes.values():
            process.kill()
    worker_trials = [line for role in ("tuner0", "tuner1") for line in outputs[role].splitlines()
                     if line.startswith("trial ")]
    assert len(worker_trials) == 3 and all(outputs[role].count("\ntrial ") >= 1 for role in ("tuner0", "tuner1"))
    rows = read_rows(tmp_path / "bihalf_demo_8bits" / "trials.csv")  # written by the chief
    assert len(rows) == 3 and all(row["status"] == "COMPLETED" for row in rows)
    assert (tmp_path / "bihalf_demo_8bits" / "best.toml").is_file()


@pytest.mark.slow
def test_hyperband_trains_each_trial_for_its_budget_from_scratch(search_config, tmp_path, bank_dir, monkeypatch):
    built = []
    build = RecipeHyperModel.build

    def spy(self, hp):
        model = build(self, hp)
        if "tuner/epochs" in hp.values:  # not the tuner's first build, which only declares the space
            built.append((hp.values["tuner/epochs"], self._trial[2]["epochs"]))
        return model

    loaded = []
    monkeypatch.setattr(RecipeHyperModel, "build", spy)
    monkeypatch.setattr(keras.Model, "load_weights", lambda self, *a, **k: loaded.append(a))
    search(search_config, tmp_path, bank_dir, "--tuner", "hyperband", "--max-epochs", "3")
    rows = read_rows(tmp_path / "bihalf_demo_8bits" / "trials.csv")
    assert {row["epochs"] for row in rows} == {"1", "3"} and len(rows) == len(built)
    assert all(budget == epochs for budget, epochs in built) and not loaded  # no weights of an earlier round
    config = tomllib.loads((tmp_path / "bihalf_demo_8bits" / "best.toml").read_text())
    best = max(rows, key=lambda row: float(row["val_map@all"]))
    assert config["demo"]["epochs"] == int(best["epochs"])


@pytest.mark.slow
@pytest.mark.real_data
def test_the_hashgan_search_configuration_runs_on_a_small_mnist_slice(shared_data, tmp_path):
    config = Path(__file__).resolve().parents[2] / "benchmarks" / "searches" / "hashgan_mnist.toml"
    written = tune.main(["hashgan_mnist", "--config", str(config), "--bits", "8", "--tuner", "random", "--trials",
                         "1", "--validation-size", "20", "--directory", str(tmp_path), "--data-dir",
                         str(shared_data), "--limit", "300", "--epochs", "1"])
    (row,) = read_rows(tmp_path / "hashgan_mnist_paper_8bits" / "trials.csv")
    assert row["status"] == "COMPLETED" and 0 < float(row["val_map@all"]) <= 1
    config = tomllib.loads((tmp_path / "hashgan_mnist_paper_8bits" / "best.toml").read_text())
    assert config["paper"]["learning_rate"] == pytest.approx(float(row["paper.learning_rate"]))
    assert written["best"]["trial"] == row["trial"]


@pytest.mark.slow
def test_a_trial_runs_the_models_refreshers_on_its_own_training_images(tmp_path, bank_dir, monkeypatch):
    from tfhash.callbacks import HQTPseudoBits

    text = runner.config_path("hqt_bihalf").read_text().replace("alpha = 0.5", "alpha = { choice = [0.3] }", 1)
    config = tmp_path / "hqt.toml"
    config.write_text(text)
    refreshed = []
    refresh = HQTPseudoBits.refresh
    monkeypatch.setattr(HQTPseudoBits, "refresh", lambda self, model, epoch: refreshed.append(
        (len(self.features), model.hqt.alpha)) or refresh(self, model, epoch))
    hypermodel = RecipeHyperModel("hqt_bihalf", config, preset="demo", bits=8,
                                  recipe_flags=RECIPE_FLAGS + ["--bank-dir", bank_dir])
    hp = keras_tuner.HyperParameters()
    hypermodel.fit(hp, hypermodel.build(hp))
    # The trees grow on the 180 training images of the trial (200 minus the 20 validation queries).
    assert refreshed == [(180, 0.3)]
