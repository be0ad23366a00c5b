"""Seeded image augmentations as Keras layers, and the papers' views as presets.

Every layer takes a batch (B, H, W, C) of uint8 or float pixels in [0, 255] and returns float32 in [0, 255];
it augments only with ``training=True``. Randomness is stateless and per image (see `Augmentation`).
The papers' views are presets, also by name: ``get(name, image_size)`` for a name in ``NAMES``.
"""

from tfhash.data.augment.augmentation import Augmentation
from tfhash.data.augment.color_jitter import ColorJitter
from tfhash.data.augment.compose import Compose
from tfhash.data.augment.gaussian_blur import GaussianBlur
from tfhash.data.augment.gaussian_noise import GaussianNoise
from tfhash.data.augment.presets import NAMES, cibhash_view, cimon_strong_view, cimon_weak_view, get
from tfhash.data.augment.random_affine import RandomAffine
from tfhash.data.augment.random_grayscale import RandomGrayscale
from tfhash.data.augment.random_horizontal_flip import RandomHorizontalFlip
from tfhash.data.augment.random_resized_crop import RandomResizedCrop

__all__ = [
    "Augmentation",
    "ColorJitter",
    "Compose",
    "GaussianBlur",
    "GaussianNoise",
    "NAMES",
    "RandomAffine",
    "RandomGrayscale",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "cibhash_view",
    "cimon_strong_view",
    "cimon_weak_view",
    "get",
]
