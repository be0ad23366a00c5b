"""Truncated, empty and non-image files (issue 12, item 10): named before use, or skipped on request."""

import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.data import feature_bank as feature_bank_module
from tfhash.data.feature_bank import FeatureBank
from tfhash.data.sources import load_image_folder
from tfhash.data.sources.image_folder import find_bad_images

RNG = np.random.default_rng(0)


@pytest.fixture
def folder(tmp_path):
    """<class>/<image>: 4 good images (JPEG, PNG, a JPEG with bytes after its end) and 3 bad .jpg files."""
    root = tmp_path / "images"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
    jpeg = tf.io.encode_jpeg(RNG.integers(0, 256, (12, 12, 3), dtype=np.uint8), quality=90).numpy()
    files = {
        "a/good.jpg": jpeg,
        "a/good.png": tf.io.encode_png(RNG.integers(0, 256, (12, 12, 3), dtype=np.uint8)).numpy(),
        "b/padded.jpg": jpeg + b"\x00\x00trailing bytes",  # decodes: not reported
        "b/good.jpg": jpeg,
        "a/truncated.jpg": jpeg[: len(jpeg) // 2],
        "b/empty.jpg": b"",
        "b/garbage.jpg": bytes(RNG.integers(0, 256, 300, dtype=np.uint8)),
    }
    for name, content in files.items():
        (root / name).write_bytes(content)
    return root


def test_find_bad_images_names_each_file_and_what_is_wrong(folder):
    paths = sorted(str(p) for p in folder.rglob("*.*"))
    bad = dict(find_bad_images(paths))
    assert sorted(os.path.basename(p) for p in bad) == ["empty.jpg", "garbage.jpg", "truncated.jpg"]
    reasons = {os.path.basename(p): reason for p, reason in bad.items()}
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert reasons["garbage.jpg"].startswith("not a JPEG, PNG, GIF or BMP file")
    assert "end-of-image marker" in reasons["truncated.jpg"]
    assert "decoding fails: jpeg::Uncompress failed" in reasons["truncated.jpg"]  # TensorFlow's own words
    assert find_bad_images([folder / "missing.jpg"])[0][1].startswith("cannot be read")


def test_load_image_folder_raises_naming_the_files_or_skips_them_with_a_warning(folder):
    with pytest.raises(ValueError) as raised:
        load_image_folder(folder)
    message = str(raised.value)
    assert message.startswith("3 image file(s)") and 'on_bad_image="skip"' in message
    for name in ("a/truncated.jpg", "b/empty.jpg", "b/garbage.jpg"):
        assert str(folder / name) in message
    with pytest.warns(UserWarning, match=r"3 image file\(s\) .* skipped"):
        pool = load_image_folder(folder, on_bad_image="skip")
    assert sorted(os.path.relpath(p, folder) for p in pool.samples) == [
        "a/good.jpg", "a/good.png", "b/good.jpg", "b/padded.jpg"
    ]
    np.testing.assert_array_equal(pool.labels, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="`on_bad_image`"):
        load_image_folder(folder, on_bad_image="ignore")


def backbone():
    model = keras.Sequential(
        [keras.Input((12, 12, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
         keras.layers.Dense(4)],
        name="tiny",
    )
    model.image_size = 12
    return model


def files_pool(folder):
    from tfhash.data import ImageSet

    paths = np.array(sorted(str(p) for p in folder.rglob("*.*")))
    return ImageSet("files", paths, np.zeros(len(paths), np.int64))


def test_feature_bank_names_bad_files_before_extracting_and_caches_nothing(folder, tmp_path):
    cache = tmp_path / "cache"
    pool = files_pool(folder)
    with pytest.raises(ValueError, match=r"FeatureBank: 3 image file\(s\) of 'files' / train") as raised:
        FeatureBank(
            backbone(), pool, protocol="p", train=np.arange(len(pool)), directory=str(cache), verbose=0
        )
    assert str(folder / "b" / "empty.jpg") in str(raised.value)
    assert not cache.exists() or os.listdir(cache) == []


def test_feature_bank_names_a_file_that_fails_during_extraction(folder, tmp_path, monkeypatch):
    # Damage the quick check does not see (here: the check switched off) is named when extraction meets it.
    monkeypatch.setattr(feature_bank_module, "find_bad_images", lambda paths: [])
    cache = tmp_path / "cache"
    pool = files_pool(folder)
    with pytest.raises(ValueError, match="cannot be decoded") as raised:
        FeatureBank(backbone(), pool, protocol="p", evaluation={"database": np.arange(len(pool))},
                    directory=str(cache), batch_size=2, verbose=0)
    bad = [str(folder / name) for name in ("a/truncated.jpg", "b/empty.jpg", "b/garbage.jpg")]
    assert any(path in str(raised.value) for path in bad)
    assert not cache.exists() or os.listdir(cache) == []


def test_feature_bank_keys_image_files_by_their_contents(folder, tmp_path):
    # The cache key holds the files' contents, not their paths: the same images elsewhere hit the cache, and
    # an image changed in place is extracted again.
    for name in ("a/truncated.jpg", "b/empty.jpg", "b/garbage.jpg"):
        (folder / name).unlink()
    cache, model = str(tmp_path / "cache"), backbone()

    def extracted(root):
        pool = files_pool(root)
        bank = FeatureBank(model, pool, protocol="p", evaluation={"database": np.arange(len(pool))},
                           directory=cache, verbose=0)
        return bank.extracted, bank.evaluation["database"]

    assert extracted(folder)[0] == ["database"]
    moved = tmp_path / "elsewhere" / "images"
    shutil.copytree(folder, moved)
    done, features = extracted(moved)
    assert done == [] and features.shape == (4, 4)
    (moved / "a" / "good.png").write_bytes(tf.io.encode_png(np.zeros((12, 12, 3), np.uint8)).numpy())
    assert extracted(moved)[0] == ["database"]
