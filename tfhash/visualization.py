"""Figures written as PNG files, atomically: precision-recall curves, and grids of images.

`plot_pr_curves` draws the precision-recall curves by Hamming radius of several code lengths (the
``"pr_curve_by_radius"`` of `tfhash.metrics.retrieval_report`) into one figure: the recipes' ``pr_curve.png``.

`image_grid` / `save_image_grid` tile images into one grid image. The motivating use is HashGAN's figure
of generated images (Ghasedi Dizaji et al., "Unsupervised Deep Generative Adversarial Hashing Network",
CVPR 2018): each row holds images generated from one binary input b′, the columns vary the uniform noise z′, so
a row shows what one code means and a column what the noise changes. Generate ``rows × columns`` images in that
order (row-major) and pass them to `image_grid` or `save_image_grid`.

numpy, Pillow and matplotlib (its Agg canvas, imported when a curve is drawn; no pyplot); no TensorFlow, no
display.
"""

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from tfhash._atomic import write_atomically
from tfhash._validation import check_int, check_number

# Channels that Pillow writes as a PNG from a uint8 array: gray, gray + alpha, RGB, RGBA.
_PNG_CHANNELS = (1, 2, 3, 4)


def _as_image_stack(images):
    """Returns `images` as a real array (N, H, W, C) with N, H, W, C >= 1 and finite values."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4:
        raise ValueError(
            "`images` must be a stack of images (N, H, W, C) or of gray images (N, H, W), "
            f"got shape {images.shape}."
        )
    if 0 in images.shape:
        raise ValueError(f"`images` must hold at least one non-empty image, got shape {images.shape}.")
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"`images` must have an integer or float dtype, got dtype {images.dtype.name}.")
    if np.issubdtype(images.dtype, np.floating) and not np.all(np.isfinite(images)):
        raise ValueError("`images` holds NaN or infinite values.")
    return images


def _check_value_range(value_range):
    if isinstance(value_range, (str, bytes)) or not hasattr(value_range, "__len__") or len(value_range) != 2:
        raise ValueError(f"`value_range` must be a pair (low, high), got {value_range!r}.")
    low = check_number(value_range[0], "value_range[0]")
    high = check_number(value_range[1], "value_range[1]")
    if not low < high:
        raise ValueError(f"`value_range` must have low < high, got {value_range!r}.")
    return low, high


def _to_uint8(images, low, high):
    """Clips to [low, high] and maps that interval linearly onto 0..255, rounding to the nearest integer."""
    if images.dtype == np.uint8 and (low, high) == (0.0, 255.0):
        return images
    scaled = (np.clip(images.astype(np.float64), low, high) - low) * (255.0 / (high - low))
    return np.rint(scaled).astype(np.uint8)


def image_grid(images, rows, columns=None, padding=2, pad_value=255, value_range=(0, 255)):
    """Tiles images row-major into one uint8 image, with `padding` pixels between tiles and around the border.

    Image i goes to row i // columns, column i % columns. The result has shape
    (rows·H + (rows + 1)·padding, columns·W + (columns + 1)·padding, C); cells beyond the last image are
    filled with `pad_value`, like the padding.

    Args:
        images: (N, H, W, C) images, or (N, H, W) gray images (which give C = 1); any integer or float dtype.
            A 3-D array is always read as a stack of gray images, never as one colour image.
        rows: number of rows of the grid, >= 1.
        columns: number of columns, >= 1; None uses ⌈N / rows⌉. rows × columns must hold all N images.
        padding: pixels between neighbouring tiles and around the border, >= 0.
        pad_value: 0..255, the output (uint8) value of the padding and of empty cells, in every channel.
        value_range: (low, high) of the input values: they are clipped to it and mapped linearly to 0..255.
            The default (0, 255) suits uint8 images; pass (0, 1) or (−1, 1) for float images (e.g. a tanh
            generator's output).

    Returns:
        uint8 numpy array (H_total, W_total, C).

    Example:

    >>> grid = image_grid(np.zeros((6, 28, 28), "uint8"), rows=2)
    >>> grid.shape
    (62, 92, 1)
    """
    images = _as_image_stack(images)
    num_images, height, width, channels = images.shape
    rows = check_int(rows, "rows", minimum=1)
    columns = check_int(columns, "columns", minimum=1, allow_none=True)
    if columns is None:
        columns = math.ceil(num_images / rows)
    elif num_images > rows * columns:
        raise ValueError(
            f"`images` holds {num_images} images but the grid has only rows × columns = {rows} × {columns} "
            f"= {rows * columns} cells."
        )
    padding = check_int(padding, "padding", minimum=0)
    pad_value = check_int(pad_value, "pad_value", minimum=0)
    if pad_value > 255:
        raise ValueError(f"`pad_value` must be an integer in 0..255 (a uint8 value), got {pad_value!r}.")
    low, high = _check_value_range(value_range)
    tiles = _to_uint8(images, low, high)
    grid = np.full(
        (rows * height + (rows + 1) * padding, columns * width + (columns + 1) * padding, channels),
        pad_value,
        dtype=np.uint8,
    )
    for index, tile in enumerate(tiles):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        grid[top : top + height, left : left + width] = tile
    return grid


def save_image_grid(path, images, rows, columns=None, padding=2, pad_value=255, value_range=(0, 255)):
    """Writes `image_grid` of the images as a PNG file, atomically.

    The PNG is written to a hidden temporary file beside `path` and moved onto `path` with `os.replace`, so
    `path` never holds a half-written image (a failed write removes the temporary and leaves any previous file
    in place). Missing parent directories are created. Gray grids (C = 1) are written as 8-bit gray PNGs,
    C = 2, 3, 4 as gray + alpha, RGB and RGBA.

    Args:
        path: the PNG file to write (str or path-like); it is PNG whatever its suffix.
        images, rows, columns, padding, pad_value, value_range: as for `image_grid`.

    Returns:
        `path` as a str.

    Example:

    >>> generated = np.random.default_rng(0).uniform(-1, 1, (4 * 8, 28, 28))  # 4 codes b′ × 8 noises z′
    >>> save_image_grid("generated.png", generated, rows=4, value_range=(-1, 1))  # doctest: +SKIP
    'generated.png'

    Reference:
        Ghasedi Dizaji et al., "Unsupervised Deep Generative Adversarial Hashing Network", CVPR 2018 (the
        figure of images generated from fixed binary inputs).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"`path` must be a str or path-like file name, got {path!r}.")
    grid = image_grid(images, rows, columns, padding, pad_value, value_range)
    channels = grid.shape[2]
    if channels not in _PNG_CHANNELS:
        raise ValueError(
            f"`images` must have 1, 2, 3 or 4 channels to be written as a PNG, got {channels} channels."
        )
    picture = Image.fromarray(grid[..., 0] if channels == 1 else grid)
    path = Path(path)
    write_atomically(path, lambda temporary: picture.save(temporary, format="PNG"))
    return str(path)


def plot_pr_curves(path, results, title):
    """Precision-recall curves by Hamming radius, one per code length, written atomically as a PNG.

    Each curve joins the (recall, precision) points of radius 0, 1, …, K; points where either is undefined
    (None) are left out.

    Args:
        path: the PNG file to write (str or path-like); missing parent directories are created, and a failed
            write leaves any previous file in place.
        results: sequence of dicts, one per curve, each with ``"bits"`` (the legend) and
            ``"pr_curve_by_radius"`` (``{"precision": [...], "recall": [...]}``, as `tfhash.metrics.retrieval_report` returns it).
        title: str, the figure's title.

    Returns:
        `path` as a str.

    Example:

    >>> report = tfhash.metrics.retrieval_report(query_codes, db_codes, query_labels, db_labels)
    >>> plot_pr_curves("pr_curve.png", [{"bits": 16, **report}], "Bi-half on digits")  # doctest: +SKIP
    'pr_curve.png'
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend, no display needed (Agg canvas)

    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"`path` must be a str or path-like file name, got {path!r}.")
    figure = Figure(figsize=(5.5, 4.5), dpi=100)
    axes = figure.subplots()
    for row in results:
        curve = row["pr_curve_by_radius"]
        points = [
            (r, p) for r, p in zip(curve["recall"], curve["precision"]) if r is not None and p is not None
        ]
        axes.plot([r for r, _ in points], [p for _, p in points], marker=".", label=f"{row['bits']} bits")
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title=title)
    axes.grid(alpha=0.3)
    axes.legend(title="Hamming radius 0..K")
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png"))
    return str(path)


def plot_search(path, objectives, name, title):
    """A search's objective over its trials (failed or unfinished ones left out) and the best so far, as a PNG.

    Args:
        path: the PNG file to write (atomically, as `plot_pr_curves`).
        objectives: sequence, the objective of each trial in trial order, None where a trial has none.
        name: str, the objective's name (the y axis).
        title: str, the figure's title.

    Returns:
        `path` as a str.

    Example:

    >>> plot_search("objective.png", [0.41, None, 0.45, 0.43], "val_map@1000", "bihalf search")  # doctest: +SKIP
    'objective.png'
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5, 4.0), dpi=100)
    axes = figure.subplots()
    trials = [(number, value) for number, value in enumerate(objectives, 1) if value is not None]
    if trials:
        numbers, values = zip(*trials)
        axes.plot(numbers, values, "o", label="trial")
        axes.step(numbers, np.maximum.accumulate(values), where="post", label="best so far")
        axes.legend()
    axes.set(xlabel="trial", ylabel=name, title=title)
    axes.grid(alpha=0.3)
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png"))
    return str(path)
