"""Multi-label list files, as shipped with the DeepHash-style splits of Flickr25k, NUS-WIDE and MS-COCO."""

import os
import re
from pathlib import Path

import numpy as np

from tfhash.data.image_set import ImageSet
from tfhash.data.sources._search import DatasetNotFoundError, how_to_provide, not_found, search_roots


# A token that reads as a number: a label, well or badly formed ("1", "2", "0.5"), never part of a file name.
_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _split_line(line):
    """``(path, label tokens, the tokens joined)`` of a non-blank list-file line.

    The path may contain spaces (``my photos/a b.jpg 0 1``): the labels are the trailing run of numeric
    tokens, the path everything before them, as written.
    """
    fields = line.split()
    values = fields[1:]
    row = "".join(values)
    if len(row) == len(values) and set(row) <= {"0", "1"}:  # the common case, at C speed
        return fields[0], values, row
    start = len(fields)
    while start > 1 and _NUMBER.fullmatch(fields[start - 1]):
        start -= 1
    if 1 < start < len(fields):  # a path with spaces, then numbers
        path = line.strip().rsplit(maxsplit=len(fields) - start)[0]
        values = fields[start:]
        return path, values, "".join(values)
    return fields[0], values, row


def load_list_file(list_file, root=None, name=None, partition="train", check_files=True):
    """Load a list file of ``relative/path.jpg 0 1 0 …`` lines (an image path and its multi-hot labels).

    Blank lines are skipped. Every line must carry the same number of labels, each 0 or 1. A path may contain
    spaces: the labels are the numbers that end the line. The DeepHash-style
    splits ship one such file per part (e.g. ``train.txt``, ``test.txt``, ``database.txt``); load each and
    combine them as the protocol needs, or load the whole pool and split it with a tfhash protocol.

    Args:
        list_file: the text file.
        root: directory the paths are relative to (default: the list file's directory); absolute paths in the
            file are kept as they are.
        name: the ImageSet's name (default: the name of the list file's directory, e.g. "nuswide").
        partition: the partition given to every sample, e.g. "train" or "test".
        check_files: check that every listed image exists (one stat per image).

    Returns:
        ImageSet of file paths (N,) and uint8 multi-hot labels (N, classes).

    Raises:
        DatasetNotFoundError: the list file, or (with check_files) a listed image, does not exist.
        ValueError: a line without labels, with a label other than 0/1, or with a different number of labels
            than the first line; the message names the line number.

    Example:
        >>> pool = load_list_file("/data/nuswide/database.txt", root="/data/nuswide")  # doctest: +SKIP
        >>> pool.labels.shape  # doctest: +SKIP
        (193734, 21)
    """
    list_file = Path(list_file).expanduser()
    if not list_file.is_file():
        raise DatasetNotFoundError(
            f"list file {list_file} does not exist; expected lines `relative/path.jpg 0 1 0 …`."
        )
    root = list_file.parent if root is None else Path(root).expanduser()
    paths, rows, first = [], [], None
    with open(list_file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            image, values, row = _split_line(line)
            if not values:
                raise ValueError(f"{list_file}, line {number}: {image!r} has no labels; expected "
                                 "`path l1 l2 …` with 0/1 labels.")
            if first is None:
                first = (number, len(values))
            elif len(values) != first[1]:
                raise ValueError(f"{list_file}, line {number}: {len(values)} labels, but line {first[0]} has "
                                 f"{first[1]}; every line needs the same number of labels.")
            # One character per label, each 0 or 1: two C-speed checks instead of a Python loop per label.
            if len(row) != len(values) or not set(row) <= {"0", "1"}:
                bad = next(value for value in values if value not in ("0", "1"))
                raise ValueError(f"{list_file}, line {number}: labels must be 0 or 1, got {bad!r}.")
            paths.append(os.path.join(root, image))
            rows.append(row)
    if not paths:
        raise ValueError(f"{list_file} lists no images; expected lines `relative/path.jpg 0 1 0 …`.")
    if check_files:
        missing = [path for path in paths if not os.path.isfile(path)]
        if missing:
            raise DatasetNotFoundError(
                f"{len(missing)} of the {len(paths)} images listed in {list_file} are missing under root "
                f"{root}, e.g. {missing[:3]}; pass root= the directory the listed paths are relative to."
            )
    labels = np.frombuffer("".join(rows).encode("ascii"), np.uint8).reshape(len(rows), first[1]) - ord("0")
    return ImageSet(name or list_file.resolve().parent.name, np.array(paths), labels,
                    np.full(len(paths), partition))


#: the list files a dataset folder may hold: one list of the whole pool, or DeepHash's query and retrieval lists
_POOL_LISTS = ("all.txt",)
_SPLIT_LISTS = (("test.txt", "test"), ("database.txt", "database"))


def load_list_dataset(name, data_dir=None, check_files=True):
    """A multi-label dataset (e.g. MIRFLICKR-25K, NUS-WIDE) from the list files in a folder named ``name``.

    The folder ``<root>/<name>/`` holds either ``all.txt`` (every image of the pool) or the DeepHash-style pair
    ``test.txt`` + ``database.txt`` (queries and retrieval set, which together are the pool; their
    ``train.txt`` is a subset of the database and is not read). Lines are ``relative/path.jpg 0 1 0 …``
    (`load_list_file`), paths relative to the folder. A tfhash protocol then draws its own split from the pool
    (e.g. ``flickr25k-dsah``, ``nuswide-21``); the partition ("all", or "test" / "database") is kept.

    Args:
        name: the dataset's folder name and ImageSet name, e.g. "flickr25k" or "nuswide".
        data_dir: the directory holding ``<name>/`` (or that folder itself); None searches $TFHASH_DATA_DIR,
            then the Keras cache.
        check_files: check that every listed image exists.

    Returns:
        ImageSet of file paths and uint8 multi-hot labels.

    Raises:
        DatasetNotFoundError: no such folder with list files in the places searched (the message lists them).

    Example:
        >>> pool = load_list_dataset("flickr25k", "/data")   # /data/flickr25k/all.txt  # doctest: +SKIP
        >>> split = get_protocol("flickr25k-dsah").split(pool, seed=0)  # doctest: +SKIP
    """
    places = []
    for root in search_roots(data_dir):
        for folder in (root / name, root):
            places.append(folder)
            pool_list = next((folder / f for f in _POOL_LISTS if (folder / f).is_file()), None)
            if pool_list is not None:
                return load_list_file(pool_list, name=name, partition="all", check_files=check_files)
            if all((folder / f).is_file() for f, _ in _SPLIT_LISTS):
                parts = [load_list_file(folder / f, name=name, partition=partition, check_files=check_files)
                         for f, partition in _SPLIT_LISTS]
                if parts[0].labels.shape[1] != parts[1].labels.shape[1]:
                    raise ValueError(
                        f"{folder}: test.txt has {parts[0].labels.shape[1]} labels per image, database.txt "
                        f"{parts[1].labels.shape[1]}; both must list the same label set."
                    )
                return ImageSet(name, np.concatenate([p.samples for p in parts]),
                                np.concatenate([p.labels for p in parts]),
                                np.concatenate([p.partition for p in parts]))
    raise not_found(
        f"Dataset {name!r}", f"a folder {name}/ with all.txt, or test.txt and database.txt (lines "
        "`relative/path.jpg 0 1 0 …`)", places, how_to_provide(f"/data (holding {name}/all.txt)"),
    )
