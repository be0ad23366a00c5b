"""ImageSet: a pool of labelled images, the common currency of sources, protocols and pipelines."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class ImageSet:
    """A pool of labelled samples: every source returns one, protocols split it, pipelines read it.

    Samples are held in one of three forms:
    - pixels: uint8 array (N, H, W, C), in memory;
    - files: 1-D str array (N,) of image paths (JPEG / PNG), decoded lazily by the pipelines;
    - features: float array (N, D), e.g. backbone features a user brings.

    Args:
        name: dataset name, e.g. "cifar10"; used in cache keys and result records.
        samples: the pixels, paths or features (see above).
        labels: (N,) integer class ids, or (N, classes) multi-hot 0/1 matrix.
        partition: (N,) str, the source's own split of each sample ("train", "test"); protocols that use the
            official test set read it. None means every sample is "train".
        class_names: names of the classes, in label order (optional).

    Example:
        >>> pool = ImageSet("toy", np.zeros((4, 8, 8, 1), np.uint8), np.array([0, 1, 0, 1]))
        >>> len(pool.subset([0, 2])), pool.kind
        (2, 'pixels')
    """

    name: str
    samples: np.ndarray
    labels: np.ndarray
    partition: np.ndarray = None
    class_names: tuple = ()

    def __post_init__(self):
        samples, labels = np.asarray(self.samples), np.asarray(self.labels)
        if samples.ndim == 0 or len(samples) == 0:
            raise ValueError(f"`samples` of ImageSet {self.name!r} is empty.")
        if len(labels) != len(samples):
            raise ValueError(
                f"ImageSet {self.name!r} has {len(samples)} samples but {len(labels)} labels: they must match."
            )
        if labels.ndim not in (1, 2) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError("`labels` must be integer class ids (N,) or a 0/1 multi-hot matrix (N, classes).")
        partition = np.full(len(samples), "train") if self.partition is None else np.asarray(self.partition)
        if partition.shape != (len(samples),):
            raise ValueError(f"`partition` must have shape ({len(samples)},), got {partition.shape}.")
        object.__setattr__(self, "samples", samples)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "partition", partition.astype(str))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.kind == "pixels" and samples.dtype != np.uint8:
            raise ValueError(f"pixel `samples` must be uint8 (N, H, W, C), got {samples.dtype}.")

    @property
    def kind(self):
        """"pixels", "files" or "features"."""
        if self.samples.ndim == 4:
            return "pixels"
        if self.samples.ndim == 1 and self.samples.dtype.kind in "US":
            return "files"
        if self.samples.ndim == 2 and np.issubdtype(self.samples.dtype, np.floating):
            return "features"
        raise ValueError(
            f"`samples` of ImageSet {self.name!r} must be uint8 pixels (N, H, W, C), file paths (N,) or float "
            f"features (N, D); got dtype {self.samples.dtype} and shape {self.samples.shape}."
        )

    @property
    def multi_label(self):
        return self.labels.ndim == 2

    @property
    def num_classes(self):
        return self.labels.shape[1] if self.multi_label else int(self.labels.max()) + 1

    def __len__(self):
        return len(self.samples)

    def subset(self, indices):
        """The samples at `indices` (a new ImageSet, same name and classes)."""
        indices = np.asarray(indices)
        return ImageSet(self.name, self.samples[indices], self.labels[indices], self.partition[indices],
                        self.class_names)
