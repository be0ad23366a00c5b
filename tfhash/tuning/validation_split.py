"""The validation carve-out of a search: training images as queries, the other training images as database."""

import numbers

import numpy as np

from tfhash.data.protocols import Split


def validation_split(train, protocol, seed, size=0.1, top_k=None):
    """A seeded split of the training images alone: a search's objective never reads the protocol's queries.

    ``size`` of the training images (drawn uniformly, seeded, no labels involved) become validation queries;
    the others are both the training set and the database they are ranked against, so a trial is scored on
    queries it never trained on, as the protocol scores the final model.

    Args:
        train: int array, the protocol split's training indices (into the pool).
        protocol: str, the protocol's name (kept on the split: its feature-bank files and also-reported metrics).
        seed: int >= 0, seed of the draw (a search uses its ``--seed``).
        size: a fraction in (0, 1) of the training images, or a count >= 1 (fewer than the training images).
        top_k: database items ranked per query (None: mAP@all), e.g. the protocol's.

    Returns:
        `tfhash.data.protocols.Split`: ``query`` the validation queries, ``train`` = ``database`` the rest
        (sorted int64 indices).

    Raises:
        ValueError: a ``size`` that leaves no query or no database image, or a bad ``seed``.

    Example:

    >>> split = get_protocol("cifar10-i").split(pool, seed=0)  # doctest: +SKIP
    >>> held_out = validation_split(split.train, "cifar10-i", seed=0, size=0.1)  # doctest: +SKIP
    >>> len(held_out.query), len(held_out.database)  # doctest: +SKIP
    (500, 4500)
    """
    train = np.sort(np.asarray(train, dtype=np.int64))
    if isinstance(size, bool) or not isinstance(size, numbers.Real):
        raise ValueError(f"`size` must be a fraction in (0, 1) or a count >= 1, got {size!r}.")
    count = int(round(size * len(train))) if 0 < size < 1 else int(size) if size == int(size) else 0
    if not 1 <= count < len(train):
        raise ValueError(
            f"`size` must leave at least one validation query and one database image of the {len(train)} "
            f"training images (a fraction in (0, 1) or a count), got {size!r}."
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"`seed` must be an integer >= 0, got {seed!r}.")
    rng = np.random.default_rng([int(seed), 0x7E57])  # its own stream: not the split's or a model's draws
    held_out = np.zeros(len(train), bool)
    held_out[rng.choice(len(train), count, replace=False)] = True
    rest = train[~held_out]
    return Split(protocol, int(seed), top_k, train[held_out], rest, rest)
