import numpy as np
import pytest
from PIL import Image

from tfhash.visualization import image_grid, save_image_grid


def constant_tiles(num_images, height, width, channels=None):
    """Tile i is filled with the value 10·(i + 1) (in every channel)."""
    shape = (num_images, height, width) + (() if channels is None else (channels,))
    values = 10 * (np.arange(num_images) + 1)
    return np.broadcast_to(values.reshape((-1,) + (1,) * (len(shape) - 1)), shape).astype(np.uint8)


def test_layout_row_major_with_padding():
    images = constant_tiles(6, 2, 3)  # 2 × 3 pixel tiles
    grid = image_grid(images, rows=2, columns=3, padding=1, pad_value=0)
    assert grid.dtype == np.uint8
    assert grid.shape == (2 * 2 + 3 * 1, 3 * 3 + 4 * 1, 1)
    expected = np.zeros(grid.shape[:2], np.uint8)
    for index in range(6):
        row, column = divmod(index, 3)
        top, left = 1 + row * 3, 1 + column * 4
        np.testing.assert_array_equal(grid[top : top + 2, left : left + 3, 0], 10 * (index + 1))
        expected[top : top + 2, left : left + 3] = 10 * (index + 1)
    np.testing.assert_array_equal(grid[..., 0], expected)  # everything else is padding
    for border in (grid[0], grid[-1], grid[:, 0], grid[:, -1]):
        np.testing.assert_array_equal(border, 0)
    np.testing.assert_array_equal(grid[:, 4, 0], 0)  # vertical gap between columns 0 and 1
    np.testing.assert_array_equal(grid[3, :, 0], 0)  # horizontal gap between rows 0 and 1


def test_no_padding_is_plain_tiling():
    images = constant_tiles(4, 2, 2)
    grid = image_grid(images, rows=2, padding=0)
    np.testing.assert_array_equal(
        grid[..., 0],
        [[10, 10, 20, 20], [10, 10, 20, 20], [30, 30, 40, 40], [30, 30, 40, 40]],
    )


def test_rgb_tiles_keep_their_channels():
    images = np.zeros((2, 1, 1, 3), np.uint8)
    images[0, 0, 0] = [255, 0, 0]
    images[1, 0, 0] = [0, 0, 255]
    grid = image_grid(images, rows=1, padding=1, pad_value=7)
    assert grid.shape == (3, 5, 3)
    np.testing.assert_array_equal(grid[1, 1], [255, 0, 0])
    np.testing.assert_array_equal(grid[1, 3], [0, 0, 255])
    np.testing.assert_array_equal(grid[0, 0], [7, 7, 7])


def test_gray_with_and_without_channel_axis_agree():
    images = constant_tiles(3, 2, 2)
    np.testing.assert_array_equal(image_grid(images, rows=1), image_grid(images[..., np.newaxis], rows=1))


def test_fewer_images_than_cells_leave_pad_value():
    images = constant_tiles(5, 2, 2)
    grid = image_grid(images, rows=2, columns=4, padding=1, pad_value=99)
    assert grid.shape == (7, 13, 1)
    np.testing.assert_array_equal(grid[1:3, 10:12, 0], 40)  # image 3: row 0, column 3
    np.testing.assert_array_equal(grid[4:6, 1:3, 0], 50)  # image 4: row 1, column 0
    np.testing.assert_array_equal(grid[4:7, 3:, 0], 99)  # row 1, columns 1 to 3: empty cells and padding


def test_default_columns_is_ceiling():
    images = constant_tiles(7, 1, 1)
    grid = image_grid(images, rows=3, padding=0)
    assert grid.shape == (3, 3, 1)  # ⌈7 / 3⌉ = 3 columns
    np.testing.assert_array_equal(grid[..., 0], [[10, 20, 30], [40, 50, 60], [70, 255, 255]])
    assert image_grid(images, rows=10, padding=0).shape == (10, 1, 1)


@pytest.mark.parametrize(
    "values, value_range, expected",
    [
        ([0.0, 0.5, 1.0, -0.2, 1.3], (0, 1), [0, 128, 255, 0, 255]),  # 127.5 rounds to even 128; clipped
        ([-1.0, 0.0, 1.0, -3.0, 2.0], (-1, 1), [0, 128, 255, 0, 255]),
        ([0, 100, 255, 300, -5], (0, 255), [0, 100, 255, 255, 0]),
        ([0.25, 0.75, 1.0, 0.0, 0.5], (0.0, 1.0), [64, 191, 255, 0, 128]),
    ],
)
def test_value_ranges(values, value_range, expected):
    images = np.array(values).reshape(5, 1, 1)
    grid = image_grid(images, rows=1, padding=0, value_range=value_range)
    np.testing.assert_array_equal(grid[0, :, 0], expected)


def test_uint8_passes_through_unchanged():
    images = np.random.default_rng(0).integers(0, 256, (4, 3, 5, 3)).astype(np.uint8)
    grid = image_grid(images, rows=2, padding=0)
    np.testing.assert_array_equal(grid[:3, :5], images[0])
    np.testing.assert_array_equal(grid[3:, 5:], images[3])


@pytest.mark.parametrize("channels", [None, 3, 4])
def test_png_round_trip(tmp_path, channels):
    images = np.random.default_rng(1).uniform(-1, 1, (6, 4, 5) + (() if channels is None else (channels,)))
    path = tmp_path / "grid.png"
    returned = save_image_grid(path, images, rows=2, padding=1, value_range=(-1, 1))
    assert returned == str(path)
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        assert picture.mode == {None: "L", 3: "RGB", 4: "RGBA"}[channels]
        pixels = np.asarray(picture)
    expected = image_grid(images, rows=2, padding=1, value_range=(-1, 1))
    np.testing.assert_array_equal(pixels, expected[..., 0] if channels is None else expected)


def test_save_creates_directories_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "figures" / "nested" / "generated.png"
    save_image_grid(str(path), constant_tiles(3, 2, 2), rows=1)
    assert sorted(p.name for p in path.parent.iterdir()) == ["generated.png"]
    save_image_grid(path, constant_tiles(4, 2, 2), rows=2)  # overwrites in place
    assert sorted(p.name for p in path.parent.iterdir()) == ["generated.png"]
    with Image.open(path) as picture:
        assert picture.size == (2 * 2 + 3 * 2, 2 * 2 + 3 * 2)


def test_failed_write_removes_temporary_and_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "grid.png"
    save_image_grid(path, constant_tiles(1, 2, 2), rows=1)
    previous = path.read_bytes()

    def failing_save(self, fp, *args, **kwargs):
        with open(fp, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_image_grid(path, constant_tiles(4, 2, 2), rows=2)
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]
    assert path.read_bytes() == previous


@pytest.mark.parametrize(
    "images, kwargs, match",
    [
        (np.zeros((2, 2)), {}, "`images` must be a stack of images"),
        (np.zeros((1, 2, 2, 3, 1)), {}, "`images` must be a stack of images"),
        (np.zeros((0, 2, 2)), {}, "`images` must hold at least one non-empty image"),
        (np.zeros((2, 0, 2)), {}, "`images` must hold at least one non-empty image"),
        (np.zeros((2, 2, 2), bool), {}, "`images` must have an integer or float dtype"),
        (np.full((2, 2, 2), "a"), {}, "`images` must have an integer or float dtype"),
        (np.full((2, 2, 2), np.nan), {}, "`images` holds NaN"),
        (np.zeros((2, 2, 2)), {"rows": 0}, "`rows` must be an integer >= 1"),
        (np.zeros((2, 2, 2)), {"rows": 1.5}, "`rows` must be an integer"),
        (np.zeros((2, 2, 2)), {"columns": 0}, "`columns` must be an integer >= 1 or None"),
        (np.zeros((5, 2, 2)), {"rows": 2, "columns": 2}, "`images` holds 5 images but the grid has only"),
        (np.zeros((2, 2, 2)), {"padding": -1}, "`padding` must be an integer >= 0"),
        (np.zeros((2, 2, 2)), {"pad_value": 256}, "`pad_value` must be an integer in 0..255"),
        (np.zeros((2, 2, 2)), {"pad_value": -1}, "`pad_value` must be an integer"),
        (np.zeros((2, 2, 2)), {"value_range": (1, 1)}, "`value_range` must have low < high"),
        (np.zeros((2, 2, 2)), {"value_range": (0, 1, 2)}, "`value_range` must be a pair"),
        (np.zeros((2, 2, 2)), {"value_range": 1.0}, "`value_range` must be a pair"),
        (np.zeros((2, 2, 2)), {"value_range": (0, np.inf)}, r"`value_range\[1\]` must be a finite number"),
    ],
)
def test_grid_errors(images, kwargs, match):
    kwargs = {"rows": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        image_grid(images, **kwargs)


def test_save_errors(tmp_path):
    with pytest.raises(ValueError, match="`images` must have 1, 2, 3 or 4 channels"):
        save_image_grid(tmp_path / "grid.png", np.zeros((2, 2, 2, 5)), rows=1)
    with pytest.raises(ValueError, match="`path` must be a str or path-like"):
        save_image_grid(3, np.zeros((2, 2, 2)), rows=1)
    with pytest.raises(ValueError, match="`rows` must be an integer"):
        save_image_grid(tmp_path / "grid.png", np.zeros((2, 2, 2)), rows=None)
    assert list(tmp_path.iterdir()) == []


# --- precision-recall curves --------------------------------------------------------------------------------


def test_plot_pr_curves_writes_a_png_atomically(tmp_path):
    from tfhash.visualization import plot_pr_curves

    results = [
        {"bits": 16, "pr_curve_by_radius": {"precision": [1.0, 0.8, 0.5], "recall": [0.1, 0.5, 1.0]}},
        {"bits": 32, "pr_curve_by_radius": {"precision": [None, 0.9, 0.5], "recall": [0.0, 0.4, 1.0]}},
    ]
    path = tmp_path / "runs" / "pr_curve.png"
    assert plot_pr_curves(path, results, "a title") == str(path)
    assert [p.name for p in path.parent.iterdir()] == ["pr_curve.png"]
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.size == (550, 450)
    with pytest.raises(ValueError, match="`path`"):
        plot_pr_curves(None, results, "a title")
