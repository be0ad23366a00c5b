import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.data.augment import (
    Augmentation,
    ColorJitter,
    Compose,
    GaussianBlur,
    GaussianNoise,
    RandomAffine,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    cibhash_view,
    cimon_strong_view,
    cimon_weak_view,
)
from tfhash.data.augment.augmentation import fold_seed

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (6, 12, 10, 3)).astype(np.uint8)
SEED = tf.constant([3, 7], tf.int64)


def all_layers():
    """One configured instance of every augmentation, random enough that two seeds give two outputs."""
    return [
        RandomResizedCrop((8, 9), scale=(0.3, 1.0), seed=1),
        RandomHorizontalFlip(p=0.5, seed=1),
        ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0, seed=1),
        RandomGrayscale(p=0.5, seed=1),
        GaussianBlur(3, sigma=(0.5, 2.0), p=1.0, seed=1),
        RandomAffine(degrees=20, translate=(0.2, 0.1), p=1.0, seed=1),
        GaussianNoise(20.0, seed=1),
        Compose([RandomResizedCrop(8), RandomHorizontalFlip(), ColorJitter(0.4, 0.4, 0.4, 0.1)], seed=1),
        cibhash_view(16, seed=1),
        cimon_weak_view(16, seed=1),
        cimon_strong_view(16, seed=1),
    ]


LAYER_IDS = [f"{type(layer).__name__}-{layer.name}" for layer in all_layers()]


def make(index):
    return all_layers()[index]


@pytest.mark.parametrize("index", range(len(LAYER_IDS)), ids=LAYER_IDS)
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_shape_dtype_and_range(index, dtype):
    layer = make(index)
    out = layer(IMAGES.astype(dtype), training=True)
    assert out.dtype == tf.float32
    assert tuple(out.shape) == layer.compute_output_shape(IMAGES.shape)
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.0


@pytest.mark.parametrize("index", range(len(LAYER_IDS)), ids=LAYER_IDS)
def test_inactive_unless_training(index):
    layer = make(index)
    for training in (False, None):
        out = layer(IMAGES, training=training)
        assert out.dtype == tf.float32
        np.testing.assert_array_equal(out, IMAGES.astype(np.float32))


@pytest.mark.parametrize("index", range(len(LAYER_IDS)), ids=LAYER_IDS)
def test_deterministic_under_a_seed(index):
    # The layer's own generator: same seed, same sequence of outputs; its draws advance between calls.
    first, second = make(index), make(index)
    a1, a2 = first(IMAGES, training=True), first(IMAGES, training=True)
    np.testing.assert_array_equal(a1, second(IMAGES, training=True))
    np.testing.assert_array_equal(a2, second(IMAGES, training=True))
    assert not np.array_equal(a1, a2)
    # A per-call stateless seed (what the pipelines pass) overrides the generator.
    np.testing.assert_array_equal(
        first(IMAGES, training=True, seed=SEED), second(IMAGES, training=True, seed=SEED)
    )
    other = first(IMAGES, training=True, seed=SEED + 1)
    assert not np.array_equal(first(IMAGES, training=True, seed=SEED), other)
    if make(index).seed is not None:
        config = {**make(index).get_config(), "seed": 2}
        different = type(first).from_config(config)
        assert not np.array_equal(a1, different(IMAGES, training=True))


def test_layers_work_in_tf_function():
    view = cibhash_view(16)
    out = tf.function(lambda x, s: view(x, training=True, seed=s))(IMAGES, SEED)
    np.testing.assert_allclose(out, view(IMAGES, training=True, seed=SEED), atol=1e-3)


@pytest.mark.parametrize(
    "layer",
    [
        RandomHorizontalFlip(p=0.0),
        ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.0),
        RandomGrayscale(p=0.0),
        GaussianBlur(3, p=0.0),
        RandomAffine(30, (0.3, 0.3), p=0.0),
        GaussianNoise(30.0, p=0.0),
        ColorJitter(),  # all ranges are the identity
        GaussianBlur(1),  # a 1 x 1 kernel
        RandomAffine(),  # no rotation, no shift
        GaussianNoise(0.0),
    ],
    ids=lambda layer: layer.name,
)
def test_identity_cases(layer):
    np.testing.assert_array_equal(layer(IMAGES, training=True, seed=SEED), IMAGES.astype(np.float32))


def test_flip_is_exact_and_p_one_flips_all():
    out = RandomHorizontalFlip(p=1.0)(IMAGES, training=True, seed=SEED)
    np.testing.assert_array_equal(out, IMAGES[:, :, ::-1].astype(np.float32))


def test_flip_with_p_half_flips_some_exactly():
    images = RNG.integers(0, 256, (64, 4, 5, 3)).astype(np.uint8)
    out = RandomHorizontalFlip(p=0.5)(images, training=True, seed=SEED).numpy()
    flipped = np.all(out == images[:, :, ::-1], axis=(1, 2, 3))
    kept = np.all(out == images, axis=(1, 2, 3))
    assert np.all(flipped | kept) and 16 < flipped.sum() < 48


def test_grayscale_gives_equal_channels_with_luma():
    out = RandomGrayscale(p=1.0)(IMAGES, training=True, seed=SEED).numpy()
    luma = IMAGES.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], out[..., 0])
    np.testing.assert_allclose(out[..., 0], luma, atol=1e-3)


def test_grayscale_probability_per_image():
    images = RNG.integers(0, 256, (64, 3, 3, 3)).astype(np.uint8)
    out = RandomGrayscale(p=0.2)(images, training=True, seed=SEED).numpy()
    gray = np.all(out[..., :1] == out, axis=(1, 2, 3))
    np.testing.assert_array_equal(out[~gray], images[~gray])
    assert 3 <= gray.sum() <= 25


def test_grayscale_passes_single_channel_through():
    images = IMAGES[..., :1]
    np.testing.assert_array_equal(RandomGrayscale(p=1.0)(images, training=True), images.astype(np.float32))


def reference_blur(image, kernel_size, sigma):
    """2-D convolution with the outer product of the normalised 1-D Gaussian, mirrored borders, in float64."""
    offsets = np.arange(kernel_size) - kernel_size // 2
    g = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = np.outer(g, g) / g.sum() ** 2
    r = kernel_size // 2
    padded = np.pad(image.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="reflect")
    out = np.zeros(image.shape)
    for dy in range(kernel_size):
        for dx in range(kernel_size):
            out += kernel[dy, dx] * padded[dy : dy + image.shape[0], dx : dx + image.shape[1]]
    return out


@pytest.mark.parametrize("kernel_size, sigma", [(3, 0.8), (3, 2.0), (5, 1.3)])
def test_blur_matches_numpy_convolution(kernel_size, sigma):
    images = RNG.integers(0, 256, (2, 6, 7, 3)).astype(np.uint8)
    out = GaussianBlur(kernel_size, sigma=(sigma, sigma), p=1.0)(images, training=True, seed=SEED)
    for image, result in zip(images, out.numpy()):
        np.testing.assert_allclose(result, reference_blur(image, kernel_size, sigma), atol=1e-3)


def test_blur_sigma_drawn_per_image_within_range():
    # A single bright pixel in the middle: the blurred centre value decreases with sigma.
    images = np.zeros((32, 5, 5, 1), np.uint8)
    images[:, 2, 2] = 255
    out = GaussianBlur(3, sigma=(0.5, 2.0), p=1.0)(images, training=True, seed=SEED).numpy()[:, 2, 2, 0]
    centre = {s: reference_blur(images[0], 3, s)[2, 2, 0] for s in (0.5, 2.0)}
    assert np.all(out <= centre[0.5] + 1e-3) and np.all(out >= centre[2.0] - 1e-3)
    assert len(np.unique(out.round(3))) > 20


def test_resized_crop_of_the_whole_image_is_a_resize():
    crop = RandomResizedCrop((20, 24), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    square = RNG.integers(0, 256, (3, 16, 16, 3)).astype(np.uint8)
    expected = tf.image.resize(square.astype(np.float32), (20, 24))
    np.testing.assert_allclose(crop(square, training=True, seed=SEED), expected, atol=2e-3)


def test_resized_crop_respects_scale_and_ratio():
    # Channel 0 holds the column, channel 1 the row: the crop's box can be read back from the output ramps.
    size, out_size = 64, 16
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    image = np.stack([cols, rows, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    images = np.repeat(image[None], 200, axis=0)
    out = RandomResizedCrop(out_size, scale=(0.25, 1.0), ratio=(3 / 4, 4 / 3))(
        images, training=True, seed=SEED
    )
    out = out.numpy()
    width = (out[:, 0, -1, 0] - out[:, 0, 0, 0]) * out_size / (out_size - 1)
    height = (out[:, -1, 0, 1] - out[:, 0, 0, 1]) * out_size / (out_size - 1)
    left = out[:, 0, 0, 0] - 0.5 * width / out_size + 0.5
    top = out[:, 0, 0, 1] - 0.5 * height / out_size + 0.5
    area = width * height / size**2
    assert np.all(area >= 0.25 - 0.03) and np.all(area <= 1.0 + 1e-3)
    assert np.all(width / height >= 3 / 4 - 0.03) and np.all(width / height <= 4 / 3 + 0.03)
    assert np.all(left >= -1e-3) and np.all(left + width <= size + 1e-3)
    assert np.all(top >= -1e-3) and np.all(top + height <= size + 1e-3)
    assert area.min() < 0.4 and area.max() > 0.85  # the range is explored


def test_resized_crop_falls_back_to_a_central_crop():
    # No box of area >= 90 % of a 1 x 20 strip has an aspect ratio in [1, 1]: the fallback is a central
    # 1 x 1 crop of the strip (torchvision's rule), here pixel 9 (left = (20 - 1) // 2).
    strip = np.arange(20, dtype=np.uint8).reshape(1, 1, 20, 1)
    out = RandomResizedCrop(1, scale=(0.9, 1.0), ratio=(1.0, 1.0))(strip, training=True, seed=SEED)
    np.testing.assert_allclose(out.numpy().ravel(), [9.0], atol=1e-4)


def channel_ratio(out, images):
    mask = (images > 20) & (images < 150)  # far from clipping for factors up to 1.4 (and 1.7 below)
    return out[mask] / images[mask]


def test_color_jitter_brightness_range():
    images = np.full((64, 2, 2, 3), 100, np.uint8)
    out = ColorJitter(brightness=0.4)(images, training=True, seed=SEED).numpy()
    factors = out[:, 0, 0, 0] / 100.0
    assert factors.min() >= 0.6 - 1e-6 and factors.max() <= 1.4 + 1e-6
    assert factors.min() < 0.7 and factors.max() > 1.3
    np.testing.assert_allclose(
        out, np.broadcast_to(factors[:, None, None, None] * 100.0, out.shape), rtol=1e-5
    )


def test_color_jitter_contrast_range():
    images = RNG.integers(60, 140, (64, 4, 4, 3)).astype(np.uint8)
    out = ColorJitter(contrast=(0.5, 1.5))(images, training=True, seed=SEED).numpy()
    mean = (images.astype(np.float64) @ [0.299, 0.587, 0.114]).mean(axis=(1, 2))[:, None, None, None]
    factors = ((out - mean) / (images - mean)).reshape(64, -1)
    np.testing.assert_allclose(factors, factors[:, :1].repeat(factors.shape[1], axis=1), rtol=1e-3, atol=1e-3)
    assert factors.min() >= 0.5 - 1e-3 and factors.max() <= 1.5 + 1e-3


def test_color_jitter_saturation_range():
    images = RNG.integers(60, 140, (64, 4, 4, 3)).astype(np.uint8)
    out = ColorJitter(saturation=0.4)(images, training=True, seed=SEED).numpy()
    gray = (images.astype(np.float64) @ [0.299, 0.587, 0.114])[..., None]
    factors = (out - gray) / (images - gray + 1e-9)
    valid = np.abs(images - gray) > 5
    per_image = [np.median(f[v]) for f, v in zip(factors, valid)]
    assert min(per_image) >= 0.6 - 1e-3 and max(per_image) <= 1.4 + 1e-3


def test_color_jitter_hue_shift_range():
    images = RNG.integers(0, 256, (64, 3, 3, 3)).astype(np.uint8)
    out = ColorJitter(hue=0.1)(images, training=True, seed=SEED)
    before = tf.image.rgb_to_hsv(images / 255.0).numpy()
    after = tf.image.rgb_to_hsv(out / 255.0).numpy()
    saturated = before[..., 1] > 0.3
    shift = (after[..., 0] - before[..., 0] + 0.5) % 1.0 - 0.5  # circular difference in (-0.5, 0.5]
    assert np.all(np.abs(shift[saturated]) <= 0.1 + 1e-3)
    assert np.abs(shift[saturated]).max() > 0.07
    np.testing.assert_allclose(after[..., 1:], before[..., 1:], atol=1e-3)  # saturation and value kept


def test_color_jitter_order():
    # brightness x2 then contrast 0 gives mean(gray(clip(2x))); the other order gives clip(2 mean(gray(x))).
    images = np.repeat(RNG.integers(50, 200, (1, 4, 4, 3)).astype(np.uint8), 64, axis=0)
    mean = (images[0].astype(np.float64) @ [0.299, 0.587, 0.114]).mean()
    bright_first = (np.minimum(2.0 * images[0], 255) @ [0.299, 0.587, 0.114]).mean()
    jitter = dict(brightness=(2.0, 2.0), contrast=(0.0, 0.0))
    fixed = ColorJitter(**jitter, random_order=False)(images, training=True, seed=SEED).numpy()
    np.testing.assert_allclose(fixed, bright_first, rtol=1e-5)
    random = ColorJitter(**jitter)(images, training=True, seed=SEED).numpy()[:, 0, 0, 0]
    orders = np.isclose(random, bright_first, rtol=1e-5), np.isclose(random, min(2 * mean, 255), rtol=1e-5)
    assert np.all(orders[0] | orders[1]) and 16 < orders[0].sum() < 48


def test_color_jitter_probability():
    images = np.repeat(RNG.integers(50, 200, (1, 4, 4, 3)).astype(np.uint8), 64, axis=0)
    out = ColorJitter(brightness=(2.0, 2.0), p=0.7)(images, training=True, seed=SEED).numpy()
    kept = np.all(out == images, axis=(1, 2, 3))
    np.testing.assert_allclose(out[~kept], np.minimum(2.0 * images[~kept], 255), rtol=1e-6)
    assert 8 < kept.sum() < 32


def test_affine_translation_is_an_integer_shift_with_zero_fill():
    images = RNG.integers(1, 256, (32, 6, 8, 1)).astype(np.uint8)
    out = RandomAffine(translate=(0.25, 0.0))(images, training=True, seed=SEED).numpy()
    shifts = set()
    for image, result in zip(images.astype(np.float32), out):
        for shift in range(-2, 3):
            expected = np.zeros_like(image)
            if shift >= 0:
                expected[:, shift:] = image[:, : 8 - shift]
            else:
                expected[:, :shift] = image[:, -shift:]
            if np.allclose(result, expected, atol=1e-3):
                shifts.add(shift)
                break
        else:
            raise AssertionError("an output is not a whole-pixel horizontal shift of its input")
    assert len(shifts) >= 3


def test_affine_rotation_keeps_the_centre():
    images = RNG.integers(0, 256, (8, 9, 9, 3)).astype(np.uint8)
    out = RandomAffine(degrees=30)(images, training=True, seed=SEED).numpy()
    np.testing.assert_allclose(out[:, 4, 4], images[:, 4, 4], atol=1e-2)
    assert not np.allclose(out, images)


def test_noise_statistics():
    images = np.full((4, 32, 32, 3), 128, np.uint8)
    noise = GaussianNoise(10.0)(images, training=True, seed=SEED).numpy() - 128.0
    assert abs(noise.mean()) < 0.5 and abs(noise.std() - 10.0) < 0.5


def test_compose_applies_layers_with_folded_seeds():
    crop, flip = RandomResizedCrop(8), RandomHorizontalFlip()
    out = Compose([crop, flip])(IMAGES, training=True, seed=SEED)
    first = crop(IMAGES, training=True, seed=fold_seed(SEED, 0))
    expected = flip(first, training=True, seed=fold_seed(SEED, 1))
    np.testing.assert_array_equal(out, expected)
    assert Compose([crop, flip]).compute_output_shape((None, 12, 10, 3)) == (None, 8, 8, 3)


def test_presets_follow_the_papers():
    layers = cibhash_view(224).layers
    assert [type(layer) for layer in layers] == [
        RandomResizedCrop,
        RandomHorizontalFlip,
        ColorJitter,
        RandomGrayscale,
        GaussianBlur,
    ]
    assert layers[0].size == (224, 224) and layers[0].scale == (0.5, 1.0)
    assert layers[2].brightness == (0.6, 1.4) and layers[2].hue == (-0.1, 0.1) and layers[2].p == 0.7
    assert layers[3].p == 0.2 and layers[4].kernel_size == 3 and layers[4].p == 0.5
    weak, strong = cimon_weak_view(32).layers, cimon_strong_view(32).layers
    assert [type(layer) for layer in weak] == [RandomResizedCrop, RandomHorizontalFlip]
    assert [type(layer) for layer in strong] == [
        RandomResizedCrop,
        ColorJitter,
        RandomGrayscale,
        GaussianBlur,
    ]
    assert strong[0].scale == (0.2, 1.0) and strong[1].p == 0.8 and strong[2].p == 0.2 and strong[3].p == 0.5
    assert cibhash_view((32, 48))(IMAGES, training=True).shape == (6, 32, 48, 3)


@pytest.mark.parametrize("index", range(len(LAYER_IDS)), ids=LAYER_IDS)
def test_serialization_round_trip(index):
    layer = make(index)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    np.testing.assert_array_equal(
        clone(IMAGES, training=True, seed=SEED), layer(IMAGES, training=True, seed=SEED)
    )


def test_saved_in_a_model(tmp_path):
    model = keras.Sequential([keras.Input((12, 10, 3)), cibhash_view(16, seed=0), keras.layers.Flatten()])
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.layers[0], Compose)
    np.testing.assert_array_equal(loaded(IMAGES), model(IMAGES))  # inference: no augmentation


def test_models_holding_an_augmentation_are_not_xla_compiled():
    model = keras.Sequential([keras.Input((12, 10, 3)), RandomResizedCrop(8), keras.layers.Flatten()])
    with pytest.warns(UserWarning, match="jit_compile"):
        model.compile(loss="mse", jit_compile=True)
    assert model.jit_compile is False


def test_custom_augmentation_subclass():
    class Invert(Augmentation):
        def augment(self, images, seed):
            return 255.0 - images

    np.testing.assert_array_equal(Invert()(IMAGES, training=True), 255.0 - IMAGES)


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: RandomResizedCrop(0), "size"),
        (lambda: RandomResizedCrop(8, scale=(0.0, 1.0)), "scale"),
        (lambda: RandomResizedCrop(8, scale=(0.5, 1.2)), "scale"),
        (lambda: RandomResizedCrop(8, ratio=(2.0, 1.0)), "ratio"),
        (lambda: RandomHorizontalFlip(p=1.5), "p"),
        (lambda: ColorJitter(brightness=-0.1), "brightness"),
        (lambda: ColorJitter(contrast=(1.5, 0.5)), "contrast"),
        (lambda: ColorJitter(hue=0.6), "hue"),
        (lambda: ColorJitter(random_order="yes"), "random_order"),
        (lambda: RandomGrayscale(p=-0.1), "p"),
        (lambda: GaussianBlur(4), "kernel_size"),
        (lambda: GaussianBlur(3, sigma=(0.0, 1.0)), "sigma"),
        (lambda: RandomAffine(degrees=200), "degrees"),
        (lambda: RandomAffine(translate=(0.5,)), "translate"),
        (lambda: RandomAffine(fill_mode="mirror"), "fill_mode"),
        (lambda: GaussianNoise(-1.0), "stddev"),
        (lambda: Compose([keras.layers.RandomFlip()]), "layers"),
        (lambda: RandomHorizontalFlip(seed=1.5), "seed"),
    ],
)
def test_invalid_arguments(build, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        build()


def test_invalid_inputs():
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        RandomHorizontalFlip()(IMAGES[0], training=True)
    with pytest.raises(ValueError, match="3 channels"):
        ColorJitter(saturation=0.4)(IMAGES[..., :1], training=True)


# --- presets by name ----------------------------------------------------------------------------------------


def _unnamed(config):
    """A layer config without its (auto-numbered) layer names."""
    if isinstance(config, dict):
        return {key: _unnamed(value) for key, value in config.items() if key != "name"}
    if isinstance(config, list):
        return [_unnamed(value) for value in config]
    return config


def test_presets_by_name_are_the_preset_functions():
    from tfhash.data import augment

    assert augment.NAMES == ("cibhash_view", "cimon_weak_view", "cimon_strong_view")
    for name in augment.NAMES:
        by_name, direct = augment.get(name, 64), getattr(augment, name)(64)
        assert by_name.name == name
        assert _unnamed(by_name.get_config()) == _unnamed(direct.get_config())
    weak = augment.get("cimon_weak_view", (32, 48), scale=(0.5, 1.0), seed=4)
    direct = augment.cimon_weak_view((32, 48), scale=(0.5, 1.0), seed=4)
    assert _unnamed(weak.get_config()) == _unnamed(direct.get_config())


def test_unknown_preset_lists_the_valid_ones():
    from tfhash.data import augment

    with pytest.raises(ValueError, match="cibhash_view, cimon_weak_view, cimon_strong_view"):
        augment.get("simclr_view", 224)
