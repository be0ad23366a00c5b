"""Search entries in a recipe configuration (`SearchSpace`) and the TOML writer of searched configurations."""

import datetime
import math
import tomllib

import keras_tuner as kt
import pytest

from tfhash.recipes import runner
from tfhash.tuning.search_space import SearchSpace, SearchSpaceError
from tfhash.tuning.toml_writer import dumps_toml, write_toml

CONFIG = {
    "method": "cibhash",
    "hqt": {"alpha": {"choice": [0.1, 0.3, 0.5]}, "depth_range": {"choice": [[2, 3], [3, 5]]},
            "shared": True},
    "paper": {
        "bits": [16, 32],
        "optimizer": {"class_name": "SGD", "learning_rate": {"log_range": [1e-5, 1e-2]}, "momentum": 0.9},
        "epochs": {"range": [10, 50], "step": 10},
        "by_bits": {"16": {"batch_size": {"log_range": [16, 256], "step": 2}}},
    },
    "model": {
        "temperature": {"range": [0.1, 1]},
        "stochastic": {"choice": [True, False]},
        "head": {"choice": ["mlp", "linear"]},
        "hidden": {"choice": [512, 1024]},
        "scale": {"choice": [1, 2.5]},
        "layers": {"choice": [1, [2, 3], {"units": 8}]},
    },
}
NAMES = ["hqt.alpha", "hqt.depth_range", "paper.optimizer.learning_rate", "paper.epochs",
         "paper.by_bits.16.batch_size", "model.temperature", "model.stochastic", "model.head", "model.hidden",
         "model.scale", "model.layers"]


# --- SearchSpace -------------------------------------------------------------------------------------------


def test_entries_are_named_by_dotted_paths_in_file_order_and_described():
    space = SearchSpace(CONFIG)
    assert space.names == NAMES and len(space) == len(NAMES) and space
    assert not SearchSpace({"paper": {"epochs": 5, "optimizer": {"class_name": "SGD"}}})
    described = space.describe()
    assert described["hqt.alpha"] == "choice of [0.1, 0.3, 0.5]"
    assert described["paper.optimizer.learning_rate"] == "log-uniform in [1e-05, 0.01]"
    assert described["paper.epochs"] == "integer in [10, 50], step 10"
    assert described["paper.by_bits.16.batch_size"] == "log-uniform integer in [16, 256], step ×2"
    assert described["model.temperature"] == "uniform in [0.1, 1.0]"


def test_declare_registers_keras_tuner_hyperparameters_of_the_entries_kinds():
    hp = kt.HyperParameters()
    SearchSpace(CONFIG).declare(hp)
    space = {h.name: h for h in hp.space}
    assert list(space) == NAMES
    assert [type(space[name]).__name__ for name in NAMES] == [
        "Choice", "Choice", "Float", "Int", "Int", "Float", "Choice", "Choice", "Choice", "Choice", "Choice"]
    rate, epochs, batch = (space[n] for n in ("paper.optimizer.learning_rate", "paper.epochs",
                                              "paper.by_bits.16.batch_size"))
    assert (rate.min_value, rate.max_value, rate.sampling, rate.step) == (1e-5, 1e-2, "log", None)
    assert (epochs.min_value, epochs.max_value, epochs.sampling, epochs.step) == (10, 50, "linear", 10)
    assert (batch.min_value, batch.max_value, batch.sampling, batch.step) == (16, 256, "log", 2)
    assert space["hqt.alpha"].values == [0.1, 0.3, 0.5]
    assert space["hqt.depth_range"].values == ["[2, 3]", "[3, 5]"]  # JSON texts: what trial tables show
    assert space["model.scale"].values == [1.0, 2.5]  # integers and floats: floats
    assert space["model.layers"].values == ["1", "[2, 3]", '{"units": 8}']  # mixed kinds: JSON texts


def test_a_fresh_hp_gives_the_first_choice_and_low_bound_decoded():
    space = SearchSpace(CONFIG)
    expected = {"hqt.alpha": 0.1, "hqt.depth_range": [2, 3], "paper.optimizer.learning_rate": 1e-5,
                "paper.epochs": 10, "paper.by_bits.16.batch_size": 16, "model.temperature": 0.1,
                "model.stochastic": True, "model.head": "mlp", "model.hidden": 512, "model.scale": 1.0,
                "model.layers": 1}
    values = space.declare(kt.HyperParameters())
    assert values == expected
    assert type(values["model.stochastic"]) is bool and type(values["paper.epochs"]) is int
    assert space.literal_defaults() == expected
    defaults = space.defaults()
    assert defaults["hqt"] == {"alpha": 0.1, "depth_range": [2, 3], "shared": True}
    assert defaults["paper"]["optimizer"] == {"class_name": "SGD", "learning_rate": 1e-5, "momentum": 0.9}
    assert defaults["paper"]["by_bits"] == {"16": {"batch_size": 16}}
    assert defaults["paper"]["bits"] == [16, 32]


def test_declare_on_an_hp_holding_values_returns_those_values_decoded():
    space = SearchSpace(CONFIG)
    hp = kt.HyperParameters()
    space.declare(hp)
    chosen = {"hqt.alpha": 0.5, "hqt.depth_range": "[3, 5]", "paper.optimizer.learning_rate": 3e-4,
              "paper.epochs": 40, "paper.by_bits.16.batch_size": 64, "model.temperature": 0.7,
              "model.stochastic": 0, "model.head": "linear", "model.hidden": 1024, "model.scale": 2.5,
              "model.layers": '{"units": 8}'}
    decoded = {**chosen, "hqt.depth_range": [3, 5], "model.stochastic": False, "model.layers": {"units": 8}}
    trial = hp.copy()  # a trial's hyperparameters: the space registered, the oracle's values set
    trial.values.update(chosen)
    assert space.declare(trial) == decoded
    fixed = kt.HyperParameters()  # values set before the space is declared are kept too
    fixed.values.update(chosen)
    assert space.declare(fixed) == decoded
    assert space.literal({**chosen, "tuner/epochs": 3}) == decoded
    with pytest.raises(SearchSpaceError, match=r"no value for the search entries \['hqt.alpha'\]"):
        space.literal({k: v for k, v in chosen.items() if k != "hqt.alpha"})
    config = space.sample(trial)
    assert config["hqt"]["depth_range"] == [3, 5] and config["model"]["layers"] == {"units": 8}
    assert config["paper"]["optimizer"]["learning_rate"] == 3e-4 and config["model"]["stochastic"] is False


def test_random_samples_of_the_declared_space_fall_in_the_entries_ranges():
    space = SearchSpace(CONFIG)
    hp = kt.HyperParameters()
    space.declare(hp)
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("score", "max"), max_trials=20, seed=1)
    oracle.update_space(hp)
    for trial_id in range(20):
        trial = hp.copy()
        trial.values.update(oracle.populate_space(str(trial_id))["values"])
        values = space.declare(trial)
        assert values["hqt.alpha"] in (0.1, 0.3, 0.5) and values["hqt.depth_range"] in ([2, 3], [3, 5])
        assert 1e-5 <= values["paper.optimizer.learning_rate"] <= 1e-2
        assert values["paper.epochs"] in (10, 20, 30, 40, 50)
        assert values["paper.by_bits.16.batch_size"] in (16, 32, 64, 128, 256)
        assert 0.1 <= values["model.temperature"] <= 1 and type(values["model.stochastic"]) is bool
        assert values["model.layers"] in (1, [2, 3], {"units": 8})
        assert space.apply(values)["paper"]["epochs"] == values["paper.epochs"]


def test_apply_sets_each_entry_on_a_copy_and_refuses_missing_or_unknown_names():
    rate = {"log_range": [0.1, 1.0]}
    config = {"paper": {"epochs": {"range": [1, 5]}, "optimizer": {"learning_rate": rate}}}
    space = SearchSpace(config)
    config["paper"]["epochs"] = "edited after"  # the space keeps its own copy
    applied = space.apply({"paper.epochs": 3, "paper.optimizer.learning_rate": 0.5})
    assert applied == {"paper": {"epochs": 3, "optimizer": {"learning_rate": 0.5}}}
    assert space.apply({"paper.epochs": 4, "paper.optimizer.learning_rate": 0.5})["paper"]["epochs"] == 4
    with pytest.raises(SearchSpaceError, match=r"missing \['paper.optimizer.learning_rate'\], unknown \[\]"):
        space.apply({"paper.epochs": 3})
    with pytest.raises(SearchSpaceError, match=r"missing \[\], unknown \['paper.lr'\]"):
        space.apply({"paper.epochs": 3, "paper.optimizer.learning_rate": 0.5, "paper.lr": 1})


@pytest.mark.parametrize("entry, message", [
    ({"choice": []}, r"'choice' must be a non-empty list of values, got \[\]"),
    ({"choice": 0.1}, r"'choice' must be a non-empty list of values, got 0.1"),
    ({"choice": [0.1, 0.1]}, r"'choice' must list distinct values, got \[0.1, 0.1\]"),
    ({"choice": [1, 1.0]}, r"'choice' must list distinct values"),
    ({"choice": [[2, 3], [2, 3]]}, r"'choice' must list distinct values"),
    ({"choice": [1, 2], "step": 1}, r"unknown keys \['step'\] beside 'choice'; valid: \['choice'\]"),
    ({"range": [0, 1], "default": 0},
     r"unknown keys \['default'\] beside 'range'; valid: \['range', 'step'\]"),
    ({"choice": [1, 2], "range": [1, 2]}, r"exactly one of \['choice', 'range', 'log_range'\] expected"),
    ({"range": [0.5, 0.1]}, r"'range' must be \[low, high\] with low < high, got \[0.5, 0.1\]"),
    ({"range": [1, 1]}, r"'range' must be \[low, high\] with low < high, got \[1, 1\]"),
    ({"range": [0, 1, 2]}, r"'range' must be \[low, high\]"),
    ({"range": [False, True]}, r"'range' must be \[low, high\]"),
    ({"range": ["a", "b"]}, r"'range' must be \[low, high\]"),
    ({"range": [0, math.inf]}, r"'range' must be \[low, high\]"),
    ({"range": [0, 1], "step": 0}, r"'step' must be a number > 0, got 0"),
    ({"log_range": [0, 1]}, r"'log_range' must be \[low, high\] with 0 < low < high, got \[0, 1\]"),
    ({"log_range": [1e-5, 1e-2], "step": 1},
     r"'step' must be a number > 1 \(the factor between values\), got 1"),
])
def test_each_malformed_entry_is_an_error_naming_its_path_and_what_was_expected(entry, message):
    with pytest.raises(SearchSpaceError, match=r"search entry 'paper.optimizer.momentum': " + message):
        SearchSpace({"paper": {"optimizer": {"class_name": "SGD", "momentum": entry}}})


def test_a_dotted_key_on_an_entry_path_is_an_error_and_lists_are_not_searched():
    with pytest.raises(SearchSpaceError, match=r"search entry 'paper.a.b.lr'.*cannot contain '\.'.*'a.b'"):
        SearchSpace({"paper": {"a.b": {"lr": {"choice": [1, 2]}}}})
    assert SearchSpace({"paper": {"a.b": {"lr": 1}, "augment": [{"choice": [1, 2]}]}}).names == []
    with pytest.raises(TypeError, match="`config` must be a dict"):
        SearchSpace([("alpha", {"choice": [1]})])


# --- TOML writer -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(runner.config_directories()[-1].glob("*.toml")), ids=lambda p: p.stem)
def test_every_recipe_configuration_reads_back_equal(path):
    with open(path, "rb") as handle:
        config = tomllib.load(handle)
    assert tomllib.loads(dumps_toml(config)) == config


def test_values_read_back_exactly():
    config = {
        "floats": [1e-05, 5e-4, 0.1, 1e300, -0.0, 2.0, 1e16, math.inf, -math.inf],
        "strings": ['say "hi"', "back\\slash", "line\nbreak\ttab\r\x00\x1f\x7f", "Kim & Ryu — α ≤ β"],
        "ints": [0, -7, 2**63 - 1, -(2**63)],
        "nested": [[1, 2], [], [["a"], [True, False]]],
        "tables": [{"class_name": "SGD", "config": {"lr": 0.1, "steps": [1, 2]}}, {}],
        "paper": {"map@1000": 0.5, "16": 0.469, "with space": "x", "": "empty key", "by_bits": {"16": {}}},
        "empty": {},
        "dates": [datetime.date(2024, 5, 1), datetime.time(7, 32, 0, 999),
                  datetime.datetime(2024, 5, 1, 7, 32),
                  datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc)],
    }
    text = dumps_toml(config)
    assert tomllib.loads(text) == config
    assert '"map@1000" = 0.5' in text and "16 = 0.469" in text and "[paper.by_bits.16]" in text
    assert text.endswith("\n\n[empty]\n") and "[paper.by_bits]\n" not in text  # a header only where needed
    assert 'tables = [{ class_name = "SGD", config = { lr = 0.1, steps = [1, 2] } }, {}]' in text
    assert math.isnan(tomllib.loads(dumps_toml({"x": math.nan}))["x"])


def test_layout_puts_plain_keys_first_then_sections_in_order_and_the_header_as_comments(tmp_path):
    config = {"paper": {"epochs": 5, "optimizer": {"lr": 1e-3}}, "method": "bihalf", "model": {"units": 8}}
    text = dumps_toml(config, header="Best trial 3\n\nval_map 0.5")
    assert text == (
        "# Best trial 3\n#\n# val_map 0.5\n\n"
        'method = "bihalf"\n\n[paper]\nepochs = 5\n\n[paper.optimizer]\nlr = 0.001\n\n[model]\nunits = 8\n'
    )
    path = write_toml(tmp_path / "out" / "best.toml", config, header="Best trial 3")
    assert path == tmp_path / "out" / "best.toml" and tomllib.loads(path.read_text()) == config
    assert dumps_toml({}) == "\n"


def test_values_without_a_toml_form_are_errors_naming_their_path(tmp_path):
    with pytest.raises(TypeError, match=r"'paper.optimizer.momentum': None \(NoneType\) has no TOML form"):
        dumps_toml({"paper": {"optimizer": {"momentum": None}}})
    with pytest.raises(TypeError, match=r"'paper.augment\[1\]\.size': None"):
        dumps_toml({"paper": {"augment": ["flip", {"size": None}]}})
    with pytest.raises(TypeError, match=r"table 'paper' has key 16"):
        dumps_toml({"paper": {16: 0.5}})
    with pytest.raises(ValueError, match=r"'big': TOML integers are signed 64-bit"):
        dumps_toml({"big": 2**63})
    with pytest.raises(TypeError, match="`config` must be a dict"):
        dumps_toml([1])
    with pytest.raises(TypeError):
        write_toml(tmp_path / "bad.toml", {"x": object()})
    assert not (tmp_path / "bad.toml").exists()
