"""Search spaces written into a recipe configuration: tables that stand for a value to tune.

Anywhere in a configuration's nested tables, a table holding one of the keys ``choice``, ``range`` or
``log_range`` is a *search entry* instead of a literal value:

.. code-block:: toml

    [hqt]
    alpha = { choice = [0.1, 0.3, 0.5] }
    depth_range = { choice = [[2, 3], [3, 5], [4, 6]] }
    [paper]
    optimizer = { class_name = "SGD", learning_rate = { log_range = [1e-5, 1e-2] }, momentum = 0.9 }
    epochs = { range = [10, 50], step = 10 }

- ``choice = [v1, v2, ...]``: one of distinct values. Values that are all strings, all booleans, all integers
  or all numbers (integers and floats: floats) become a keras-tuner ``Choice`` of those values; any other
  values (lists, tables, mixed kinds) become a ``Choice`` of their JSON texts (``"[2, 3]"``, which the trial
  tables of keras-tuner show), decoded back to the value for the configuration.
- ``range = [low, high]``: a number in ``[low, high]``, uniform; ``Int`` where both bounds (and ``step``, if
  given) are integers, ``Float`` otherwise. ``step`` is the distance between values.
- ``log_range = [low, high]``: as ``range``, log-uniform, ``0 < low``; ``step`` multiplies (as keras-tuner's).

An entry's name is the dotted path of keys from the top (``"paper.optimizer.learning_rate"``,
``"paper.by_bits.16.epochs"``). Lists are literal values: nothing inside them is searched.

Example:

>>> import keras_tuner as kt
>>> space = SearchSpace({"hqt": {"alpha": {"choice": [0.1, 0.3]}, "shared_tree": True}})
>>> space.names, space.describe()
(['hqt.alpha'], {'hqt.alpha': 'choice of [0.1, 0.3]'})
>>> space.sample(kt.HyperParameters())
{'hqt': {'alpha': 0.1, 'shared_tree': True}}
"""

import copy
import dataclasses
import json
import math
import numbers
from typing import Any, Callable

import keras_tuner

KINDS = ("choice", "range", "log_range")


class SearchSpaceError(ValueError):
    """A malformed search entry, or values that do not match a search space's entries."""


@dataclasses.dataclass(frozen=True)
class _Entry:
    path: tuple  # keys from the top of the configuration to the entry
    description: str
    register: Callable[[Any], Any]  # hp -> the hyperparameter's value as keras-tuner holds it
    decode: Callable[[Any], Any]  # that value -> the configuration's value

    @property
    def name(self):
        return ".".join(self.path)


class SearchSpace:
    """The search entries of a recipe configuration, as keras-tuner hyperparameters.

    Args:
        config: a configuration (dict, e.g. from `tomllib.load`) whose tables may hold search entries.

    Raises:
        TypeError: ``config`` is not a dict.
        SearchSpaceError: a malformed entry (named by its dotted path, with what was expected).

    Example:

    >>> space = SearchSpace({"paper": {"epochs": {"range": [10, 50], "step": 10}, "bits": [16, 32]}})
    >>> space.apply({"paper.epochs": 30})
    {'paper': {'epochs': 30, 'bits': [16, 32]}}
    """

    def __init__(self, config):
        if not isinstance(config, dict):
            raise TypeError(f"`config` must be a dict (a parsed TOML file), got {type(config).__name__}.")
        self._config = copy.deepcopy(config)
        self._entries = list(_find_entries(self._config, ()))

    @property
    def names(self):
        """The entries' dotted names, in the configuration's order."""
        return [entry.name for entry in self._entries]

    def __len__(self):
        return len(self._entries)

    def describe(self):
        """Each entry's range in words: dict name -> e.g. ``"log-uniform in [1e-05, 0.01]"``."""
        return {entry.name: entry.description for entry in self._entries}

    def declare(self, hp):
        """Registers every entry on ``hp`` and returns the values it holds for them.

        A fresh ``hp`` gets each entry's default (first choice, low bound); one that already holds values
        (a trial's) returns those.

        Args:
            hp: a `keras_tuner.HyperParameters` (what ``HyperModel.build`` receives).

        Returns:
            dict, entry name -> value as the configuration takes it (`literal` of ``hp.values``).
        """
        return {entry.name: entry.decode(entry.register(hp)) for entry in self._entries}

    def literal(self, values):
        """The configuration's values of the entries, from the values keras-tuner keeps for them.

        keras-tuner keeps a choice of lists or tables as its JSON text (``"[2, 3]"``) and a choice of booleans
        as 0 or 1; a trial's record (``trial.hyperparameters.values``) holds them so.

        Args:
            values: mapping, hyperparameter name -> value as keras-tuner keeps it; names that are not
                entries (e.g. ``"tuner/epochs"``) are ignored.

        Returns:
            dict, entry name -> value as the configuration takes it (what `apply` takes).

        Raises:
            SearchSpaceError: ``values`` misses an entry.
        """
        missing = [name for name in self.names if name not in values]
        if missing:
            raise SearchSpaceError(f"values hold no value for the search entries {missing}.")
        return {entry.name: entry.decode(values[entry.name]) for entry in self._entries}

    def literal_defaults(self):
        """Each entry's first choice or low bound: dict name -> value (as `declare` on a fresh ``hp``)."""
        return self.declare(keras_tuner.HyperParameters())

    def apply(self, values):
        """A copy of the configuration with each entry replaced by its value.

        Args:
            values: dict, entry name -> value (as `declare` returns).

        Returns:
            dict, the configuration without search entries.

        Raises:
            SearchSpaceError: ``values`` misses an entry or names one this space does not have.
        """
        missing = [name for name in self.names if name not in values]
        unknown = sorted(set(values) - set(self.names))
        if missing or unknown:
            raise SearchSpaceError(
                f"values must name exactly the search entries {self.names}; "
                f"missing {missing}, unknown {unknown}."
            )
        config = copy.deepcopy(self._config)
        for entry in self._entries:
            *parents, key = entry.path
            table = config
            for parent in parents:
                table = table[parent]
            table[key] = copy.deepcopy(values[entry.name])
        return config

    def sample(self, hp):
        """The configuration with the values ``hp`` holds (`declare`, then `apply`)."""
        return self.apply(self.declare(hp))

    def defaults(self):
        """The configuration with each entry's first choice or low bound (`literal_defaults`): a file's keys
        can be checked with it before any search."""
        return self.apply(self.literal_defaults())


def _find_entries(table, path):
    for key, value in table.items():
        if not isinstance(value, dict):
            continue
        if any(kind in value for kind in KINDS):
            entry_path = (*path, key)
            dotted = [part for part in entry_path if "." in part]
            if dotted:
                raise SearchSpaceError(
                    f"search entry {'.'.join(entry_path)!r}: keys on an entry's path cannot contain '.' "
                    f"(its dotted name would be ambiguous), got {dotted[0]!r}."
                )
            yield _parse_entry(entry_path, value)
        else:
            yield from _find_entries(value, (*path, key))


def _parse_entry(path, table):
    name = ".".join(path)
    kinds = [kind for kind in KINDS if kind in table]
    if len(kinds) > 1:
        raise SearchSpaceError(f"search entry {name!r}: exactly one of {list(KINDS)} expected, got {kinds}.")
    kind = kinds[0]
    allowed = {kind} if kind == "choice" else {kind, "step"}
    unknown = [key for key in table if key not in allowed]
    if unknown:
        raise SearchSpaceError(
            f"search entry {name!r}: unknown keys {unknown} beside {kind!r}; valid: {sorted(allowed)}."
        )
    if kind == "choice":
        return _parse_choice(path, table["choice"])
    return _parse_range(path, table[kind], table.get("step"), log=kind == "log_range")


def _parse_choice(path, values):
    name = ".".join(path)
    if not isinstance(values, list) or not values:
        raise SearchSpaceError(
            f"search entry {name!r}: 'choice' must be a non-empty list of values, got {values!r}."
        )
    kinds = {_scalar_kind(value) for value in values}
    if kinds == {int, float}:  # a Choice holds one type
        kinds = {float}
    if len(kinds) == 1 and None not in kinds:
        (scalar,) = kinds
        choices = [scalar(value) for value in values]
        decode = scalar  # keras-tuner turns booleans into the integers 0 and 1: `bool` turns them back
    else:
        choices = [json.dumps(value, sort_keys=True) for value in values]
        decode = json.loads
    if any(choice in choices[:i] for i, choice in enumerate(choices)):
        raise SearchSpaceError(f"search entry {name!r}: 'choice' must list distinct values, got {values!r}.")
    return _Entry(path, f"choice of {values!r}", lambda hp: hp.Choice(name, choices), decode)


def _scalar_kind(value):
    """The type keras-tuner's ``Choice`` keeps of a choice value (bool, str, int, float); None if none."""
    if isinstance(value, (bool, str)):
        return type(value)
    if isinstance(value, numbers.Integral):
        return int
    return float if isinstance(value, numbers.Real) else None


def _parse_range(path, bounds, step, log):
    name = ".".join(path)
    kind = "log_range" if log else "range"
    valid = (
        isinstance(bounds, list)
        and len(bounds) == 2
        and all(_is_finite_number(bound) for bound in bounds)
        and (0 if log else -math.inf) < bounds[0] < bounds[1]
    )
    if not valid:
        expected = "[low, high] with 0 < low < high" if log else "[low, high] with low < high"
        raise SearchSpaceError(f"search entry {name!r}: {kind!r} must be {expected}, got {bounds!r}.")
    if step is not None and not (_is_finite_number(step) and step > (1 if log else 0)):
        expected = "a number > 1 (the factor between values)" if log else "a number > 0"
        raise SearchSpaceError(f"search entry {name!r}: 'step' must be {expected}, got {step!r}.")
    low, high = bounds
    integer = all(isinstance(number, numbers.Integral) for number in (low, high, 1 if step is None else step))
    sampling = "log" if log else "linear"
    if integer:
        words = ("log-uniform integer" if log else "integer") + f" in [{low}, {high}]"
        decode = int

        def register(hp):
            int_step = None if step is None else int(step)
            return hp.Int(name, int(low), int(high), step=int_step, sampling=sampling)

    else:
        words = ("log-uniform" if log else "uniform") + f" in [{float(low)!r}, {float(high)!r}]"
        decode = float

        def register(hp):
            return hp.Float(name, float(low), float(high), step=step, sampling=sampling)

    if step is not None:
        words += f", step ×{step!r}" if log else f", step {step!r}"
    return _Entry(path, words, register, decode)


def _is_finite_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
