"""Writes configurations as TOML 1.0, so that `tomllib` reads back exactly what was written.

The standard library reads TOML (`tomllib`) but does not write it; tuning writes each trial's configuration,
and the best one, as a recipe configuration file that ``--config`` takes. Layout: the top level's plain keys,
then one ``[section]`` per table (``[a.b]`` for nested ones, in the dict's order, empty tables included);
tables inside lists are written inline (``{ k = v }``). Strings are basic strings with every needed escape,
floats are written by `repr` (``inf``, ``-inf``, ``nan`` as TOML spells them).

Example:

>>> print(dumps_toml({"method": "bihalf", "paper": {"epochs": 50, "optimizer": {"learning_rate": 1e-05}}}))
method = "bihalf"
<BLANKLINE>
[paper]
epochs = 50
<BLANKLINE>
[paper.optimizer]
learning_rate = 1e-05
<BLANKLINE>
"""

import datetime
import math
import re

from tfhash._atomic import write_text

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_INTEGER_LIMIT = 2**63  # TOML integers are signed 64-bit


def dumps_toml(config, header=None):
    """The TOML text of ``config``.

    Args:
        config: dict of str keys to str, int, float, bool, date / time, list or dict values (what `tomllib`
            returns).
        header: None, or text written first, each line as a ``# `` comment (e.g. where the file comes from).

    Returns:
        str, ending in a newline; ``tomllib.loads`` of it equals ``config``.

    Raises:
        TypeError: ``config`` is not a dict, a key is not a string, or a value has no TOML form (e.g. None);
            the message names the value's key path (``paper.optimizer.momentum``, ``paper.augment[1]``).
        ValueError: an integer outside TOML's signed 64-bit range, or a time of day with a time zone.

    Example:

    >>> dumps_toml({"paper": {"reported_map": {"16": 0.469}}}, header="Trial 3")
    '# Trial 3\\n\\n[paper.reported_map]\\n16 = 0.469\\n'
    """
    if not isinstance(config, dict):
        raise TypeError(f"`config` must be a dict, got {type(config).__name__}.")
    blocks = ["\n".join(f"# {line}".rstrip() for line in header.splitlines())] if header else []
    _write_table(config, (), blocks)
    return "\n\n".join(block for block in blocks if block) + "\n"


def write_toml(path, config, header=None):
    """Writes `dumps_toml` of ``config`` (and ``header``) to ``path`` atomically; returns the `pathlib.Path`.

    Raises:
        TypeError, ValueError: as `dumps_toml`; nothing is written then.
    """
    return write_text(path, dumps_toml(config, header))


def _write_table(table, path, blocks):
    """Appends ``table``'s section (header and plain keys) to ``blocks``, then its sub-tables' sections."""
    pairs = []
    tables = []
    for key, value in table.items():
        _check_key(key, ".".join(path))
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            pairs.append(f"{_key(key)} = {_value(value, '.'.join((*path, key)))}")
    # a table holding only sub-tables needs no header of its own: theirs define it
    if path and (pairs or not tables):
        pairs.insert(0, f"[{'.'.join(_key(key) for key in path)}]")
    blocks.append("\n".join(pairs))
    for key, value in tables:
        _write_table(value, (*path, key), blocks)


def _check_key(key, where):
    if not isinstance(key, str):
        raise TypeError(f"TOML keys are strings; table {where or '(top level)'!r} has key {key!r}.")


def _key(key):
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _value(value, where):
    """The TOML text of one value; ``where`` names it in errors (``paper.augment[1]``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not -_INTEGER_LIMIT <= value < _INTEGER_LIMIT:
            raise ValueError(f"{where!r}: TOML integers are signed 64-bit, got {value}.")
        return int.__repr__(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return float.__repr__(value)  # the shortest text reading back the same float, in a form TOML takes
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(item, f"{where}[{i}]") for i, item in enumerate(value)) + "]"
    if isinstance(value, dict):
        for key in value:
            _check_key(key, where)
        items = ", ".join(f"{_key(key)} = {_value(item, f'{where}.{key}')}" for key, item in value.items())
        return f"{{ {items} }}" if items else "{}"
    if isinstance(value, datetime.time) and value.tzinfo is not None:
        raise ValueError(f"{where!r}: TOML times of day have no time zone, got {value!r}.")
    if isinstance(value, (datetime.date, datetime.time)):  # datetime.datetime is a date
        return value.isoformat()
    raise TypeError(
        f"{where!r}: {value!r} ({type(value).__name__}) has no TOML form; expected a str, int, float, bool, "
        "date or time, list or table."
    )


def _string(text):
    """``text`` as a TOML basic string: quotes, backslashes and control characters escaped."""
    escaped = "".join(
        _ESCAPES.get(char) or (f"\\u{ord(char):04X}" if ord(char) < 0x20 or ord(char) == 0x7F else char)
        for char in text
    )
    return f'"{escaped}"'
