"""Argument checks shared across tfhash: one wording for every error about an integer argument."""

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
