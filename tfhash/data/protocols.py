"""Evaluation protocols: named, seeded query / train / database splits, with the metric each paper reports.

The field's protocol names clash (Bi-half's CIFAR-10 "I" / "II" are HQT's "II" / "I"), so every protocol here
has one explicit name plus the papers' own names as aliases, and states its sizes and the paper it comes from.

How a protocol draws its parts from a pool (an ImageSet):

1. query: ``query_per_class`` images of every class, or ``query_size`` images uniformly (multi-label sets),
   drawn without replacement from the whole pool; or every image whose partition is ``query_partition`` (the
   official test set);
2. database: every pool image that is not a query, so query ∩ database = ∅ and together they cover the pool;
3. train: ``train_per_class`` images of every class or ``train_size`` images uniformly, drawn from the
   database; or, when neither is set, the whole database.

Draws use ``numpy.random.Generator`` streams spawned from ``SeedSequence(seed)``, one for the query, one for
the train set, so changing one part's size leaves the other's draw unchanged. Classes are visited in ascending
id order and candidates in ascending index order, so a (protocol, pool, seed) always gives the same split. All
index arrays are sorted int64.
"""

import dataclasses
import numbers

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """A protocol applied to a pool: indices into the ImageSet, plus what the protocol evaluates.

    Args:
        protocol: the protocol's name.
        seed: the seed the split was drawn with.
        top_k: database items ranked per query for mAP (None = the whole database, "mAP@all").
        query: sorted int64 indices of the query images.
        train: sorted int64 indices of the training images.
        database: sorted int64 indices of the database (retrieval set, gallery).
        also_reports: further metrics the paper reports, e.g. ("mAP@1000", "precision@1000").

    Example:
        >>> split = get_protocol("cifar10-i").split(pool, seed=0)  # doctest: +SKIP
        >>> parts = split.subsets(pool)  # doctest: +SKIP
        >>> len(parts["query"]), len(parts["train"]), len(parts["database"])  # doctest: +SKIP
        (10000, 5000, 50000)
    """

    protocol: str
    seed: int
    top_k: int
    query: np.ndarray
    train: np.ndarray
    database: np.ndarray
    also_reports: tuple = ()

    @property
    def metric(self):
        return _metric_name(self.top_k)

    @property
    def sizes(self):
        """{"query": …, "train": …, "database": …}."""
        return {part: len(getattr(self, part)) for part in ("query", "train", "database")}

    def subsets(self, image_set):
        """{"query", "train", "database"} → ImageSets of those samples of `image_set` (the split's pool)."""
        return {part: image_set.subset(getattr(self, part)) for part in ("query", "train", "database")}


def _metric_name(top_k):
    return "mAP@all" if top_k is None else f"mAP@{top_k}"


def _check_count(value, name, protocol):
    if value is not None and not _is_integer(value, minimum=1):
        raise ValueError(f"Protocol {protocol!r}: `{name}` must be a positive integer or None: {value!r}.")


def _is_integer(value, minimum):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


@dataclasses.dataclass(frozen=True, eq=False)
class Protocol:
    """A named, seeded rule splitting a pool into query / train / database, and the metric to report.

    Exactly one of ``query_per_class``, ``query_size``, ``query_partition`` says how queries are chosen; at
    most one of ``train_per_class``, ``train_size`` how the training set is drawn from the database (neither:
    train = database). See the module docstring for the sampling rule.

    Args:
        name: the protocol's name.
        query_per_class: queries drawn per class (single-label pools).
        query_size: queries drawn uniformly from the pool (any labels, e.g. multi-label).
        query_partition: take as queries every sample of this partition (e.g. "test").
        train_per_class: training images drawn per class from the database.
        train_size: training images drawn uniformly from the database.
        top_k: the paper's headline metric is mAP@top_k; None = mAP@all.
        also_reports: further metrics the paper reports, e.g. ("precision@1000",).
        aliases: other names of the protocol (the papers' own), matched case-insensitively.
        sizes: the paper's {"query", "train", "database"} sizes on the pool it describes (documentation;
            checked by the tests on pools of that size).
        pool: the pool the protocol expects, in words.
        paper: where it comes from.
        description: one sentence on the protocol.

    Example:
        >>> protocol = Protocol("digits-demo", query_per_class=30, train_per_class=100, top_k=None)
        >>> split = protocol.split(load_digits(), seed=0)  # doctest: +SKIP
        >>> split.sizes  # doctest: +SKIP
        {'query': 300, 'train': 1000, 'database': 1497}
    """

    name: str
    query_per_class: int = None
    query_size: int = None
    query_partition: str = None
    train_per_class: int = None
    train_size: int = None
    top_k: int = None
    also_reports: tuple = ()
    aliases: tuple = ()
    sizes: dict = None
    pool: str = ""
    paper: str = ""
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"Protocol `name` must be a non-empty string, got {self.name!r}.")
        query_rules = [self.query_per_class, self.query_size, self.query_partition]
        if sum(rule is not None for rule in query_rules) != 1:
            raise ValueError(f"Protocol {self.name!r}: give exactly one of `query_per_class`, `query_size`, "
                             f"`query_partition`; got {query_rules}.")
        if self.train_per_class is not None and self.train_size is not None:
            raise ValueError(
                f"Protocol {self.name!r}: give at most one of `train_per_class` and `train_size` (neither "
                "means train = database)."
            )
        for field in ("query_per_class", "query_size", "train_per_class", "train_size", "top_k"):
            _check_count(getattr(self, field), field, self.name)
        object.__setattr__(self, "aliases", tuple(self.aliases))
        object.__setattr__(self, "also_reports", tuple(self.also_reports))

    @property
    def metric(self):
        """The headline metric: "mAP@all" or "mAP@<top_k>"."""
        return _metric_name(self.top_k)

    @property
    def per_class(self):
        """Whether the protocol samples per class (and so needs single-label class ids)."""
        return self.query_per_class is not None or self.train_per_class is not None

    def split(self, image_set, seed=0):
        """Split `image_set` into query / train / database.

        Args:
            image_set: the pool (an ImageSet); only its labels and partition are read.
            seed: non-negative integer; the same seed gives the same split.

        Returns:
            Split.

        Raises:
            ValueError: a bad seed; per-class sampling on multi-label data; a class with too few images; a
                pool smaller than the draw; no sample (or only samples) in ``query_partition``.
        """
        if not _is_integer(seed, minimum=0):
            raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}.")
        if self.per_class and image_set.multi_label:
            raise ValueError(
                f"Protocol {self.name!r} samples per class and needs class ids (N,), but ImageSet "
                f"{image_set.name!r} has multi-hot labels {image_set.labels.shape}; use a protocol with "
                "`query_size` / `train_size` (uniform sampling) for multi-label data."
            )
        query_rng, train_rng = map(np.random.default_rng, np.random.SeedSequence(int(seed)).spawn(2))
        pool = np.arange(len(image_set), dtype=np.int64)
        if self.query_partition is not None:
            query = pool[image_set.partition == self.query_partition]
            if len(query) in (0, len(pool)):
                found = sorted(set(image_set.partition.tolist()))
                raise ValueError(
                    f"Protocol {self.name!r} takes as queries the samples in partition "
                    f"{self.query_partition!r} and the rest as database, but ImageSet {image_set.name!r} has "
                    f"partitions {found} with {len(query)} of {len(pool)} samples in "
                    f"{self.query_partition!r}; load the dataset with both its training and test sets."
                )
        else:
            query = self._draw(
                query_rng, pool, image_set, self.query_per_class, self.query_size, "query", "pool"
            )
        database = np.setdiff1d(pool, query, assume_unique=True)
        if self.train_per_class is None and self.train_size is None:
            train = database.copy()
        else:
            train = self._draw(
                train_rng, database, image_set, self.train_per_class, self.train_size, "training",
                "database (the pool less the queries)",
            )
        return Split(self.name, int(seed), self.top_k, query, train, database, self.also_reports)

    def _draw(self, rng, candidates, image_set, per_class, size, part, where):
        """Sorted indices drawn without replacement from `candidates`: `per_class` per class, or `size`."""
        if per_class is None:
            if size > len(candidates):
                raise ValueError(
                    f"Protocol {self.name!r} draws {size} {part} images from the {where}, but ImageSet "
                    f"{image_set.name!r} has only {len(candidates)} there."
                )
            return np.sort(rng.choice(candidates, size, replace=False))
        labels = image_set.labels[candidates]
        chosen = []
        for label in np.unique(image_set.labels):
            members = candidates[labels == label]
            if len(members) < per_class:
                raise ValueError(
                    f"Protocol {self.name!r} draws {per_class} {part} images per class from the {where}, but "
                    f"class {label} of ImageSet {image_set.name!r} has only {len(members)} there."
                )
            chosen.append(rng.choice(members, per_class, replace=False))
        return np.sort(np.concatenate(chosen))


_REGISTRY = {}


def _key(name):
    return name.strip().lower()


def register_protocol(protocol):
    """Make `protocol` available to get_protocol under its name and aliases.

    Raises:
        ValueError: the name or an alias is already taken by another protocol.
    """
    keys = [_key(name) for name in (protocol.name, *protocol.aliases)]
    taken = [key for key in keys if _REGISTRY.get(key, protocol) is not protocol]
    if taken:
        raise ValueError(f"Protocol names or aliases {taken} are already registered "
                         f"(by {sorted({_REGISTRY[key].name for key in taken})}).")
    _REGISTRY.update(dict.fromkeys(keys, protocol))
    return protocol


def get_protocol(name):
    """The protocol registered under `name` or an alias of it (case-insensitive); a Protocol passes through.

    Raises:
        ValueError: no protocol has that name; the message lists the known names and aliases.

    Example:
        >>> get_protocol("cifar10_ii").name  # Bi-half's CIFAR-10 "II" is HQT's CIFAR-10(I)
        'cifar10-i'
    """
    if isinstance(name, Protocol):
        return name
    if not isinstance(name, str) or _key(name) not in _REGISTRY:
        known = "; ".join(", ".join((p.name, *p.aliases)) for p in list_protocols())
        raise ValueError(f"Unknown protocol {name!r}. Known protocols, each with its aliases: {known}.")
    return _REGISTRY[_key(name)]


def list_protocols():
    """Every registered protocol, sorted by name."""
    return sorted({id(p): p for p in _REGISTRY.values()}.values(), key=lambda p: p.name)


_HQT = "HQT (Kim & Ryu, BMVC 2024, Table 1)"
_DSAH = "DSAH (Lin et al., CIKM 2021, Table 2)"
_HASHGAN = "HashGAN (Ghasedi Dizaji et al., CVPR 2018, Sec. 5)"

for _protocol in (
    Protocol(
        "cifar10-i", query_per_class=1000, train_per_class=500, top_k=None,
        aliases=("cifar10_ii", "bihalf-cifar10-ii", "hqt-cifar10-i", "cimon-cifar10"),
        sizes={"query": 10_000, "train": 5_000, "database": 50_000},
        pool="CIFAR-10, all 60,000 images (train + test)",
        paper=f"{_HQT} CIFAR-10(I); CIMON (Wang et al., IJCAI 2021); Bi-half (Li & van Gemert, AAAI 2021) "
              "Cifar-10(II)",
        description="1,000 queries per class from all 60,000 images, the other 50,000 are the database, 500 "
                    "training images per class drawn from it; mAP@all.",
    ),
    Protocol(
        "cifar10-ii", query_partition="test", top_k=1000,
        aliases=("hqt-cifar10-ii", "greedyhash-cifar10"),
        sizes={"query": 10_000, "train": 50_000, "database": 50_000},
        pool="CIFAR-10, all 60,000 images with partition train / test",
        paper=f"{_HQT} CIFAR-10(II); GreedyHash (Su et al., NeurIPS 2018)",
        description="The 10,000 test images are the queries; the 50,000 training images are both the "
                    "training set and the database; mAP@1000.",
    ),
    Protocol(
        "cifar10-bihalf-i", query_per_class=1000, top_k=1000,
        aliases=("cifar10_i", "bihalf-cifar10-i"),
        sizes={"query": 10_000, "train": 50_000, "database": 50_000},
        pool="CIFAR-10, all 60,000 images (train + test)",
        paper="Bi-half (Li & van Gemert, AAAI 2021) Cifar-10(I): its released Cifar10_I.py",
        description="1,000 queries per class from all 60,000 images; the other 50,000 are both the training "
                    "set and the database; mAP@1000. As cifar10-ii, but the queries are not the test set.",
    ),
    Protocol(
        "cifar10-cib", query_partition="test", train_per_class=500, top_k=1000,
        aliases=("cibhash-cifar10",),
        sizes={"query": 10_000, "train": 5_000, "database": 50_000},
        pool="CIFAR-10, all 60,000 images with partition train / test",
        paper="CIBHash (Qiu et al., IJCAI 2021)",
        description="The 10,000 test images are the queries, the 50,000 training images the database, 500 "
                    "training images per class drawn from it; mAP@1000.",
    ),
    Protocol(
        "cifar10-dsah", query_per_class=100, train_per_class=1000, top_k=5000,
        also_reports=("precision@100",),
        # UCSH follows SSDH's splits without stating them; tfhash runs it on this protocol
        aliases=("dsah-cifar10", "ucsh-cifar10"),
        sizes={"query": 1_000, "train": 10_000, "database": 59_000},
        pool="CIFAR-10, all 60,000 images",
        paper=f"{_DSAH}; UCSH (its CIFAR-10 split, SSDH's, is not stated: this one is used)",
        description="100 queries per class, the remaining 59,000 images are the database, 1,000 training "
                    "images per class drawn from it; mAP@5000 (and precision@100).",
    ),
    Protocol(
        "mnist-hashgan", query_per_class=100, top_k=None, also_reports=("mAP@1000", "precision@1000"),
        aliases=("hashgan-mnist",),
        sizes={"query": 1_000, "train": 69_000, "database": 69_000},
        pool="MNIST, all 70,000 images",
        paper=_HASHGAN,
        description="100 queries per class, the rest is the gallery (database), on which the model is "
                    "trained; mAP@all, also mAP@1000 and precision@1000.",
    ),
    Protocol(
        "cifar10-hashgan", query_per_class=100, top_k=None, also_reports=("mAP@1000", "precision@1000"),
        aliases=("hashgan-cifar10",),
        sizes={"query": 1_000, "train": 59_000, "database": 59_000},
        pool="CIFAR-10, all 60,000 images",
        paper=_HASHGAN,
        description="100 queries per class, the rest is the gallery (database), on which the model is "
                    "trained; mAP@all, also mAP@1000 and precision@1000.",
    ),
    Protocol(
        "flickr25k", query_size=1000, train_size=10_000, top_k=None,
        aliases=("mirflickr25k", "hqt-flickr25k", "bihalf-flickr25k"),
        sizes={"query": 1_000, "train": 10_000, "database": 24_000},
        pool="MIRFLICKR-25K, 25,000 images, 24 labels (multi-hot)",
        paper=f"{_HQT} Flickr25k; Bi-half (AAAI 2021) Flickr25k",
        description="1,000 queries drawn uniformly, the rest is the database, "
                    "10,000 training images drawn from it; mAP@all.",
    ),
    Protocol(
        "flickr25k-dsah", query_size=1000, train_size=10_000, top_k=5000, also_reports=("precision@100",),
        aliases=("dsah-flickr25k",),
        sizes={"query": 1_000, "train": 10_000, "database": 24_000},
        pool="MIRFLICKR-25K, 25,000 images, 24 labels (multi-hot)",
        paper=_DSAH,
        description="As flickr25k (1,000 queries, 10,000 training images from the database), evaluated with "
                    "mAP@5000 (and precision@100).",
    ),
    Protocol(
        "nuswide-21", query_size=2100, train_size=10_500, top_k=5000, also_reports=("precision@100",),
        aliases=("dsah-nuswide", "nus-wide-21"),
        sizes={"query": 2_100, "train": 10_500, "database": 267_548},
        pool="NUS-WIDE labelled with its 21 most frequent concepts (269,648 images as DSAH counts them)",
        paper=_DSAH,
        description="2,100 queries drawn uniformly, the rest is the database, "
                    "10,500 training images drawn from it; mAP@5000 (and precision@100).",
    ),
    Protocol(
        "nuswide-10", query_size=5000, train_size=10_500, top_k=None,
        aliases=("nuswide_ii", "bihalf-nuswide-ii", "hqt-nuswide-i"),
        sizes={"query": 5_000, "train": 10_500, "database": 181_577},
        pool="NUS-WIDE, the 186,577 images with one of the 10 most frequent concepts",
        paper=f"{_HQT} NUS-WIDE(I); Bi-half (AAAI 2021) Nus-wide(II)",
        description="5,000 queries drawn uniformly, the rest is the database, "
                    "10,500 training images drawn from it; mAP@all.",
    ),
    Protocol(
        "digits", query_per_class=30, top_k=None,
        sizes={"query": 300, "train": 1_497, "database": 1_497},
        pool="scikit-learn's 8x8 digits, 1,797 images (tfhash.data.sources.load_digits, embedded)",
        paper="tfhash's offline demo (the recipes' `--preset demo`); not from a paper",
        description="30 queries per class, the other 1,497 images are both the training set and the "
                    "database; mAP@all.",
    ),
):
    register_protocol(_protocol)
del _protocol
