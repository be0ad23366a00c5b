"""Multi-label list files, as shipped with the DeepHash-style splits of Flickr25k, NUS-WIDE and MS-COCO."""

import os
import re
from pathlib import Path

import numpy as np

from tfhash.data.image_set import ImageSet
from tfhash.data.sources._search import DatasetNotFoundError


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
