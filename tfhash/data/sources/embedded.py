"""The embedded default dataset: scikit-learn's copy of the UCI handwritten digits (no download, no files)."""

import numpy as np
import sklearn.datasets

from tfhash.data.image_set import ImageSet


def load_digits():
    """scikit-learn's 8×8 handwritten digits: 1,797 images of 10 classes, shipped inside scikit-learn.

    The 0–16 gray levels are scaled to 0–255 uint8 so the images look like any other pixel source.

    Returns:
        ImageSet "digits" of uint8 pixels (1797, 8, 8, 1), int64 labels 0–9, every sample in partition "train"
        (the set has no official test split: protocols draw queries from the pool).

    Example:
        >>> pool = load_digits()
        >>> pool.samples.shape, pool.samples.dtype.name, int(pool.samples.max())
        ((1797, 8, 8, 1), 'uint8', 255)

    Reference:
        E. Alpaydin, C. Kaynak. Optical Recognition of Handwritten Digits. UCI Machine Learning Repository,
        1998.
    """
    digits = sklearn.datasets.load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    return ImageSet("digits", pixels, labels, None, tuple(map(str, digits.target_names)))
