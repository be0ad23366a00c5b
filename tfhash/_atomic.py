"""Atomic file writes: outputs appear whole or not at all, never half-written."""

import os
import secrets
from pathlib import Path


def write_atomically(path, write):
    """``write(temporary)`` to a hidden file beside ``path``, then `os.replace`: no half-written ``path``.

    Missing parent directories are created. On failure the temporary file is removed and any previous ``path``
    is left as it was. Not `tempfile.mkstemp`: its 0600 mode would stay on the result; a plain new file gets
    the umask's mode.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        write(str(temporary))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
