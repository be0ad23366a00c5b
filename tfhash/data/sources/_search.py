"""Where sources look for datasets, and the error they raise when a dataset is not there."""

import os
from pathlib import Path

DATA_DIR_ENV = "TFHASH_DATA_DIR"
CACHE_DIR_ENV = "TFHASH_CACHE_DIR"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset, or a file of it, is not where tfhash looked.

    The message names what was looked for, every place searched, and how to provide it. Nothing is downloaded
    unless a source is asked to (e.g. ``source="keras"``).
    """


def keras_datasets_dir():
    """The Keras dataset cache, ``$KERAS_HOME/datasets`` (default ``~/.keras/datasets``), where
    ``keras.datasets.*.load_data()`` keeps its downloads."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser() / "datasets"


def search_roots(data_dir=None, extra=()):
    """Directories to search, in order of priority.

    An explicit ``data_dir`` is the only place searched: silently falling back to another copy would hide a
    typo. Otherwise: the entries of $TFHASH_DATA_DIR (``os.pathsep``-separated), the Keras cache, then
    ``extra`` (e.g. a Linux distribution's dataset directory).
    """
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    entries = os.environ.get(DATA_DIR_ENV, "").split(os.pathsep)
    from_env = [Path(entry).expanduser() for entry in entries if entry]
    return [*from_env, keras_datasets_dir(), *map(Path, extra)]


def cache_root(cache_dir=None):
    """Where extracted archives go: ``cache_dir``, else $TFHASH_CACHE_DIR, else ``$XDG_CACHE_HOME/tfhash``
    (default ``~/.cache/tfhash``)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "tfhash"


def not_found(what, looked_for, places, how):
    """A DatasetNotFoundError saying what was looked for, in which places, and how to provide it."""
    searched = "\n".join(f"  - {place}" for place in places) or "  (no place to search)"
    return DatasetNotFoundError(
        f"{what} not found. Looked for {looked_for} in:\n{searched}\nTo provide it: {how}"
    )


def how_to_provide(data_dir_example, keras_name=None):
    """The usual ways to point a source at a dataset, as one sentence."""
    ways = [f"pass data_dir={data_dir_example!r}", f"set {DATA_DIR_ENV} to the directory holding it"]
    if keras_name:
        ways.append(
            f"or call with source='keras' to let keras.datasets.{keras_name}.load_data() download it into "
            f"{keras_datasets_dir()} (needs network access)"
        )
    return ", ".join(ways) + "."
