"""Extract a dataset archive once, safely and atomically, into a cache directory."""

import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from tfhash.data.sources._search import CACHE_DIR_ENV, DatasetNotFoundError, cache_root

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")
# Python ≥ 3.11.4 / 3.10.12 ship the "data" filter (no special files, sane permissions); the member checks
# below hold on every version, the filter is a second guard where it exists.
_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def is_archive(path):
    """Whether `path` names a tar archive tfhash extracts (by its suffix)."""
    return Path(path).name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_stem(path):
    """The archive's name without its archive suffix: "cifar10-jpg.tar.gz" → "cifar10-jpg"."""
    name = Path(path).name
    suffix = next((s for s in ARCHIVE_SUFFIXES if name.lower().endswith(s)), "")
    return name[: len(name) - len(suffix)]


def _checked_member(member, destination, archive):
    """`member` if it is a plain file or directory that lands inside `destination`; else ValueError."""
    target = (destination / member.name).resolve()
    if os.path.isabs(member.name) or not target.is_relative_to(destination):
        raise ValueError(
            f"archive {archive}: member {member.name!r} would be written outside the target directory; "
            "refusing to extract it."
        )
    if not (member.isfile() or member.isdir()):
        raise ValueError(
            f"archive {archive}: member {member.name!r} is a link or special file; image dataset archives "
            "hold only files and directories, refusing to extract it."
        )
    return member


def extract_archive(archive, cache_dir=None):
    """Extract a tar archive (.tar, .tar.gz, .tgz, .tar.bz2, .tar.xz) once and return the extracted directory.

    The directory is ``<cache>/<archive stem>-<key>``, where the cache is ``cache_dir``, else
    $TFHASH_CACHE_DIR, else ``~/.cache/tfhash``, and the key is derived from the archive's absolute path, size
    and modification time, so a replaced archive is extracted afresh. A later call finds the directory and
    returns at once. Extraction writes into a temporary sibling directory renamed into place only when
    complete, so an interrupted extraction never leaves a half-filled directory behind (nor does a concurrent
    one corrupt it). The archive's own folder is never written to: data folders are often read-only or shared.

    Args:
        archive: path of the archive.
        cache_dir: directory to extract under (see above).

    Returns:
        Path of the extracted directory.

    Raises:
        DatasetNotFoundError: `archive` does not exist.
        ValueError: it is not a tar archive, or a member is absolute, escapes the target directory (``..``)
            or is a link or special file.

    Example:
        >>> root = extract_archive("/work/shared/data/cifar10-jpg.tar.gz")  # doctest: +SKIP
        >>> sorted(p.name for p in root.iterdir())  # doctest: +SKIP
        ['test', 'train']
    """
    archive = Path(archive).expanduser().resolve()
    if not archive.is_file():
        raise DatasetNotFoundError(f"archive {archive} does not exist.")
    stat = archive.stat()
    key = hashlib.sha256(f"{archive}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    root = cache_root(cache_dir)
    target = root / f"{archive_stem(archive)}-{key}"
    if target.is_dir():
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(
            f"cannot create the extraction cache {root} for {archive} ({error}); pass cache_dir= or set "
            f"{CACHE_DIR_ENV} to a writable directory."
        ) from error
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=root)).resolve()
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = [_checked_member(member, staging, archive) for member in tar]
                tar.extractall(staging, members=members, **_FILTER)
        except tarfile.TarError as error:
            raise ValueError(f"{archive} is not a readable tar archive: {error}") from error
        try:
            os.rename(staging, target)  # atomic within one file system
        except OSError:
            if not target.is_dir():  # not a concurrent extraction that finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
