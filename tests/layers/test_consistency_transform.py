"""ConsistencyTransform: each output is a shifted (flipped) copy of its input, seeded, XLA-compilable."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from tfhash.layers import ConsistencyTransform


def images(n=6, size=9, channels=2):
    return np.random.default_rng(0).normal(size=(n, size, size, channels)).astype(np.float32)


def shifted_candidates(image, shift, flip):
    """Every translation of ``image`` by (dy, dx) in [-shift, shift]² (reflect padding), and their flips."""
    padded = np.pad(image, [(shift, shift), (shift, shift), (0, 0)], mode="reflect")
    size_y, size_x = image.shape[:2]
    candidates = [
        padded[dy : dy + size_y, dx : dx + size_x]
        for dy in range(2 * shift + 1)
        for dx in range(2 * shift + 1)
    ]
    return candidates + ([c[:, ::-1] for c in candidates] if flip else [])


@pytest.mark.parametrize("flip", [False, True])
def test_every_output_is_one_of_the_shifts_of_its_input(flip):
    x = images()
    out = ConsistencyTransform(max_shift=2, horizontal_flip=flip, seed=1)(x, training=True).numpy()
    for image, result in zip(x, out):
        assert any(np.array_equal(result, c) for c in shifted_candidates(image, 2, flip))


def test_shifts_and_flips_vary_between_images():
    x = np.repeat(images(1), 64, axis=0)
    out = ConsistencyTransform(max_shift=1, horizontal_flip=True, seed=0)(x, training=True).numpy()
    distinct = {result.tobytes() for result in out}
    assert len(distinct) > 9  # 18 possible results, 64 draws


def test_noise_has_the_given_standard_deviation():
    x = np.zeros((8, 16, 16, 1), np.float32)
    out = ConsistencyTransform(noise_stddev=0.15, seed=0)(x, training=True).numpy()
    assert abs(out.std() - 0.15) < 0.01 and abs(out.mean()) < 0.01


def test_identity_at_inference_and_when_nothing_is_set():
    x = images()
    np.testing.assert_array_equal(ConsistencyTransform(2, True, 0.1)(x, training=False).numpy(), x)
    np.testing.assert_array_equal(ConsistencyTransform()(x, training=True).numpy(), x)


def test_seeded_and_jit_compiles():
    x = images()
    first = ConsistencyTransform(max_shift=2, horizontal_flip=True, noise_stddev=0.1, seed=3)
    second = ConsistencyTransform(max_shift=2, horizontal_flip=True, noise_stddev=0.1, seed=3)
    np.testing.assert_array_equal(first(x, training=True).numpy(), second(x, training=True).numpy())
    layer = ConsistencyTransform(max_shift=2, horizontal_flip=True, seed=3)
    compiled = tf.function(lambda batch: layer(batch, training=True), jit_compile=True)
    out = compiled(tf.constant(x)).numpy()
    for image, result in zip(x, out):
        assert any(np.array_equal(result, c) for c in shifted_candidates(image, 2, True))


def test_config_round_trip():
    layer = ConsistencyTransform(max_shift=3, horizontal_flip=True, noise_stddev=0.2, seed=5)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert (clone.max_shift, clone.horizontal_flip, clone.noise_stddev, clone.seed) == (3, True, 0.2, 5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_shift": -1}, "max_shift"),
        ({"horizontal_flip": 1}, "horizontal_flip"),
        ({"noise_stddev": -0.1}, "noise_stddev"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConsistencyTransform(**kwargs)


def test_shift_larger_than_the_image_and_bad_rank_are_refused():
    with pytest.raises(ValueError, match="max_shift"):
        ConsistencyTransform(max_shift=9)(images(size=9), training=True)
    with pytest.raises(ValueError, match="images"):
        ConsistencyTransform(max_shift=1)(np.zeros((4, 9, 9), np.float32), training=True)
