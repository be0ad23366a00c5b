"""The papers' augmentation views as `Compose` presets (torchvision pipelines of the authors' code), by name."""

from tfhash.data.augment.color_jitter import ColorJitter
from tfhash.data.augment.compose import Compose
from tfhash.data.augment.gaussian_blur import GaussianBlur
from tfhash.data.augment.random_grayscale import RandomGrayscale
from tfhash.data.augment.random_horizontal_flip import RandomHorizontalFlip
from tfhash.data.augment.random_resized_crop import RandomResizedCrop


def cibhash_view(image_size=224, seed=None):
    """The CIBHash training view: crop, flip, colour jitter, grayscale, blur.

    ``RandomResizedCrop(image_size, scale=(0.5, 1))``, ``RandomHorizontalFlip(0.5)``,
    ``ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.7)``, ``RandomGrayscale(0.2)``,
    ``GaussianBlur(3, sigma=(0.1, 2), p=0.5)``.
    Both views of CIBHash use it: pass ``(view, view)`` to the training pipeline.

    Args:
        image_size: int or (height, width), output size (224 for VGG16).
        seed: int or None, seed of the composition's own generator (the pipelines pass per-sample seeds).

    Returns:
        A `Compose`.

    Example:

    >>> view = cibhash_view(224)
    >>> view(np.zeros((2, 32, 32, 3), np.uint8), training=True).shape
    TensorShape([2, 224, 224, 3])

    Reference:
        Qiu et al., "Unsupervised Hashing with Contrastive Information Bottleneck", IJCAI 2021, section 4.1,
        and its released code (the blur: OpenCV, kernel 3, sigma in [0.1, 2.0], p = 0.5).
    """
    return Compose(
        [
            RandomResizedCrop(image_size, scale=(0.5, 1.0)),
            RandomHorizontalFlip(0.5),
            ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.7),
            RandomGrayscale(0.2),
            GaussianBlur(3, sigma=(0.1, 2.0), p=0.5),
        ],
        seed=seed,
        name="cibhash_view",
    )


def cimon_weak_view(image_size=224, scale=(0.08, 1.0), seed=None):
    """The CIMON weak view: ``RandomResizedCrop(image_size, scale)`` and ``RandomHorizontalFlip(0.5)``.

    Args:
        image_size: int or (height, width), output size.
        scale: crop area range; the paper states none, so torchvision's default (0.08, 1) is used.
        seed: int or None, seed of the composition's own generator.

    Returns:
        A `Compose`.

    Example:

    >>> weak, strong = cimon_weak_view(224), cimon_strong_view(224)

    Reference:
        Luo et al., "CIMON: Towards High-quality Hash Codes", IJCAI 2021, section 3 (weak and strong views).
    """
    return Compose(
        [RandomResizedCrop(image_size, scale=scale), RandomHorizontalFlip(0.5)],
        seed=seed,
        name="cimon_weak_view",
    )


def cimon_strong_view(image_size=224, seed=None):
    """The CIMON strong view: crop, colour jitter, grayscale, blur.

    ``RandomResizedCrop(image_size, scale=(0.2, 1))``, ``ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8)``,
    ``RandomGrayscale(0.2)``, ``GaussianBlur(3, sigma=(0.1, 2), p=0.5)``. The jitter strengths and the blur
    kernel are not given with the view; they are those of the CIBHash view (SimCLR's strengths).

    Args:
        image_size: int or (height, width), output size.
        seed: int or None, seed of the composition's own generator.

    Returns:
        A `Compose`.

    Example:

    >>> strong = cimon_strong_view(224)

    Reference:
        Luo et al., "CIMON: Towards High-quality Hash Codes", IJCAI 2021, section 3 (weak and strong views).
    """
    return Compose(
        [
            RandomResizedCrop(image_size, scale=(0.2, 1.0)),
            ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
            RandomGrayscale(0.2),
            GaussianBlur(3, sigma=(0.1, 2.0), p=0.5),
        ],
        seed=seed,
        name="cimon_strong_view",
    )


PRESETS = {
    "cibhash_view": cibhash_view,
    "cimon_weak_view": cimon_weak_view,
    "cimon_strong_view": cimon_strong_view,
}
NAMES = tuple(PRESETS)


def get(name, image_size=224, **kwargs):
    """An augmentation preset by name, for recipes and configuration files.

    Args:
        name: one of `NAMES`: ``"cibhash_view"`` (`cibhash_view`), ``"cimon_weak_view"`` (`cimon_weak_view`)
            or ``"cimon_strong_view"`` (`cimon_strong_view`).
        image_size: int or (height, width), the output size (the backbone's input size).
        **kwargs: further arguments of the preset (``seed``; ``scale`` for ``"cimon_weak_view"``).

    Returns:
        A `Compose`.

    Raises:
        ValueError: unknown name; the message lists the valid ones.

    Example:

    >>> weak, strong = get("cimon_weak_view", 224), get("cimon_strong_view", 224)
    >>> weak.name
    'cimon_weak_view'
    """
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"Unknown augmentation preset {name!r}; valid names: {', '.join(NAMES)}.")
    return PRESETS[name](image_size, **kwargs)
