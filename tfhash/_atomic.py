"""Atomic file writes: outputs appear whole or not at all, never half-written.

The one writer of the package: every file tfhash writes (recipe records, figures, feature-bank caches, image
grids) goes through `write_atomically`, or through `write_text` / `write_json` built on it.
"""

import json
import os
import secrets
from pathlib import Path


def write_atomically(path, write, mode=None):
    """``write`` to a hidden file beside ``path``, synced to disk, then `os.replace`: no half-written file.

    Missing parent directories are created. On failure the temporary file is removed and any previous ``path``
    is left as it was. Not `tempfile.mkstemp`: its 0600 mode would stay on the result; a plain new file gets
    the umask's mode.

    Args:
        path: the file to write (str or path-like).
        write: a function of one argument. With ``mode=None`` it gets the temporary file's path (str) and
            writes it itself (e.g. ``figure.savefig``); with a ``mode`` it gets the temporary file opened in
            that mode (e.g. ``np.save``, which would append ``.npy`` to a path not ending in it).
        mode: None, or an `open` mode for writing (``"wb"``, ``"w"``).

    Returns:
        ``path`` as a `pathlib.Path`.

    Example:

    >>> write_atomically("out/codes.npy", lambda file: np.save(file, codes), mode="wb")  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        if mode is None:
            write(str(temporary))
        else:
            with open(temporary, mode) as file:
                write(file)
        with open(temporary, "rb+") as file:  # on disk before the rename: a crash leaves the old or the new
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def write_text(path, text, encoding="utf-8"):
    """Writes the str ``text`` to ``path`` atomically (`write_atomically`); returns the `pathlib.Path`."""
    data = text.encode(encoding)
    return write_atomically(path, lambda file: file.write(data), mode="wb")


def write_json(path, record):
    """Writes ``record`` as indented JSON (and a final newline) atomically; NaN or infinity is an error.

    Args:
        path: the ``.json`` file.
        record: a JSON-serializable object; floats must be finite (`json.dumps` with ``allow_nan=False``:
            a NaN would make the file invalid JSON for strict readers).

    Returns:
        ``path`` as a `pathlib.Path`.

    Raises:
        ValueError: a NaN or infinite float in ``record`` (nothing is written).
        TypeError: a value JSON cannot represent.
    """
    text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    return write_text(path, text)
