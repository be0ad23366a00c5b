"""Argument checks shared across tfhash: one wording for every error about a numeric argument."""

import math
import numbers


def check_int(value, name, minimum=None, allow_none=False):
    """Returns `value` as an int (or None where allowed); a ValueError naming `name` otherwise.

    Booleans are refused although Python counts them as integers: ``top_k=True`` is a mistake, not 1.
    """
    if value is None and allow_none:
        return None
    too_small = minimum is not None and isinstance(value, numbers.Real) and value < minimum
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or too_small:
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"`{name}` must be an integer{bound}{' or None' if allow_none else ''}, got {value!r}.")
    return int(value)


def check_number(value, name, minimum=None, maximum=None, exclusive_minimum=False):
    """Returns `value` as a finite float within the bounds; a ValueError naming `name` otherwise."""
    in_range = (
        isinstance(value, numbers.Real)
        and math.isfinite(value)
        and (minimum is None or value > minimum or (value == minimum and not exclusive_minimum))
        and (maximum is None or value <= maximum)
    )
    if isinstance(value, bool) or not in_range:
        bounds = []
        if minimum is not None:
            bounds.append(f"{'>' if exclusive_minimum else '>='} {minimum}")
        if maximum is not None:
            bounds.append(f"<= {maximum}")
        bound = " " + " and ".join(bounds) if bounds else ""
        raise ValueError(f"`{name}` must be a finite number{bound}, got {value!r}.")
    return float(value)


def check_builder_settings(settings, name, builder, keys, **fixed):
    """``settings`` as a JSON-compatible dict of ``builder``'s arguments (or None), validated by building one.

    A model keeps the settings of the supervision builder its refresher uses (HQT's tree, CIMON's
    pseudo-similarity) in its configuration; this checks them when the model is built, not when training starts.

    Args:
        settings: None or a dict whose keys are in ``keys``; tuples become lists (as JSON gives them back).
        name: the argument's name, for the messages.
        builder: the class the settings are for; ``builder(**fixed, **settings)`` must succeed.
        keys: the arguments of ``builder`` that ``settings`` may set.
        **fixed: the arguments the model sets itself (e.g. ``num_bits``).
    """
    if settings is None:
        return None
    if not isinstance(settings, dict):
        raise ValueError(f"`{name}` must be None or a dict of {builder.__name__} arguments, got {settings!r}.")
    unknown = sorted(set(settings) - set(keys))
    if unknown:
        raise ValueError(
            f"`{name}` has unknown keys {unknown}: the {builder.__name__} arguments it may set are {list(keys)}."
        )
    settings = {key: list(value) if isinstance(value, tuple) else value for key, value in settings.items()}
    try:
        builder(**fixed, **settings)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`{name}`: {error}") from None
    return settings
