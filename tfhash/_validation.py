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
