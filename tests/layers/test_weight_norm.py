import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.layers import WeightNormConv2D, WeightNormConv2DTranspose, WeightNormDense

RNG = np.random.default_rng(0)
X_DENSE = RNG.normal(size=(5, 4)).astype("float32")
X_CONV = RNG.normal(size=(2, 5, 6, 3)).astype("float32")

# Each case: layer factory, input, axes of the kernel the norm runs over (all but the output unit's).
CASES = {
    "dense": (lambda **kw: WeightNormDense(3, seed=1, **kw), X_DENSE, (0,)),
    "conv": (lambda **kw: WeightNormConv2D(4, (3, 2), strides=2, seed=1, **kw), X_CONV, (0, 1, 2)),
    "conv_transpose": (
        lambda **kw: WeightNormConv2DTranspose(4, (3, 2), strides=2, seed=1, **kw),
        X_CONV,
        (0, 1, 3),
    ),
}


def _built(case, **kwargs):
    """A built layer of `case` with random (not the initial 1 / 0) g and bias, and its input."""
    make, x, axes = CASES[case]
    layer = make(**kwargs)
    layer.build(x.shape)
    layer.g.assign(RNG.uniform(0.5, 2.0, size=layer.g.shape).astype("float32"))
    if layer.use_bias:
        layer.bias.assign(RNG.normal(size=layer.bias.shape).astype("float32"))
    return layer, x, axes


def _np_weight(v, g, axes):
    shape = [1 if i in axes else -1 for i in range(v.ndim)]
    return g.reshape(shape) * v / np.sqrt(np.sum(v**2, axis=axes, keepdims=True))


def _same_padding(size, k, s):
    # TensorFlow's "SAME": total padding so that out = ceil(size / s), the smaller half before.
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2


def _np_conv2d(x, w, strides, padding):
    """Direct loops: y[n, i, j, o] = sum_{a, b, c} xpad[n, i s + a, j s + b, c] w[a, b, c, o]."""
    (kh, kw, _, out), (sh, sw) = w.shape, strides
    if padding == "same":
        ph, pw = _same_padding(x.shape[1], kh, sh), _same_padding(x.shape[2], kw, sw)
        oh, ow = -(-x.shape[1] // sh), -(-x.shape[2] // sw)
        x = np.pad(x, [(0, 0), (ph, kh + sh * oh), (pw, kw + sw * ow), (0, 0)])
    else:
        oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    y = np.zeros((x.shape[0], oh, ow, out))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :]
            y[:, i, j, :] = np.einsum("nabc,abco->no", patch, w)
    return y


def _np_conv2d_transpose(x, w, strides, padding):
    """Scatter-add: every input pixel adds x[n, i, j, :] w[a, b, o, :] at (i s + a, j s + b), then crop."""
    (kh, kw, out, _), (sh, sw) = w.shape, strides
    n, h, wd, _ = x.shape
    full = np.zeros((n, (h - 1) * sh + kh, (wd - 1) * sw + kw, out))
    for i in range(h):
        for j in range(wd):
            full[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :] += np.einsum(
                "nc,aboc->nabo", x[:, i, j], w
            )
    if padding == "valid":
        return full
    # "same" output is size * s; the crop is the padding the matching forward convolution would use.
    oh, ow = h * sh, wd * sw
    ph, pw = _same_padding(oh, kh, sh), _same_padding(ow, kw, sw)
    return full[:, ph : ph + oh, pw : pw + ow, :]


def _np_forward(layer, x, axes):
    v, g = layer.kernel.numpy().astype("float64"), layer.g.numpy().astype("float64")
    w = _np_weight(v, g, axes)
    x = x.astype("float64")
    if isinstance(layer, WeightNormDense):
        y = x @ w
    elif isinstance(layer, WeightNormConv2DTranspose):
        y = _np_conv2d_transpose(x, w, layer.strides, layer.padding)
    else:
        y = _np_conv2d(x, w, layer.strides, layer.padding)
    return y + layer.bias.numpy() if layer.use_bias else y


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_forward_matches_numpy_reference(name, padding):
    kwargs = {} if name == "dense" else {"padding": padding}
    layer, x, axes = _built(name, **kwargs)
    out = layer(x)
    expected = _np_forward(layer, x, axes)
    assert out.shape == expected.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        layer.normalized_kernel(),
        _np_weight(layer.kernel.numpy(), layer.g.numpy(), axes),
        rtol=1e-6,
        atol=1e-7,
    )


@pytest.mark.parametrize("cls", [WeightNormConv2D, WeightNormConv2DTranspose])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv_activation_no_bias_and_other_strides(cls, padding):
    # Strides (1, 3) and a square kernel exercise other paddings than the cases above.
    layer = cls(4, 3, strides=(1, 3), padding=padding, activation="relu", use_bias=False, seed=2)
    layer.build(X_CONV.shape)
    axes = (0, 1, 2) if cls is WeightNormConv2D else (0, 1, 3)
    np.testing.assert_allclose(layer(X_CONV), np.maximum(_np_forward(layer, X_CONV, axes), 0), atol=1e-5)


def test_dense_activation_no_bias():
    layer = WeightNormDense(3, activation="relu", use_bias=False, seed=2)
    layer.build(X_DENSE.shape)
    expected = np.maximum(_np_forward(layer, X_DENSE, (0,)), 0)
    np.testing.assert_allclose(layer(X_DENSE), expected, rtol=1e-5, atol=1e-6)


def test_dense_accepts_leading_axes():
    layer, _, axes = _built("dense")
    x = RNG.normal(size=(2, 3, 4)).astype("float32")
    out = layer(x)
    assert out.shape == (2, 3, 3) == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(out, _np_forward(layer, x, axes), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", CASES)
def test_gradients_match_closed_forms(name):
    layer, x, axes = _built(name)
    r = RNG.normal(size=layer(x).shape).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(r * layer(x))
    grad_v, grad_g = tape.gradient(loss, [layer.kernel, layer.g])

    # dL/dw of the same layer with w held as a plain tensor, then the paper's closed forms (eqs. 3-4).
    w = tf.constant(layer.normalized_kernel())
    with tf.GradientTape() as tape:
        tape.watch(w)
        loss = tf.reduce_sum(r * (layer._convolve(x, w) if name != "dense" else tf.matmul(x, w)))
    grad_w = tape.gradient(loss, w).numpy().astype("float64")
    v, g = layer.kernel.numpy().astype("float64"), layer.g.numpy().astype("float64")
    shape = [1 if i in axes else -1 for i in range(v.ndim)]
    norm = np.sqrt(np.sum(v**2, axis=axes, keepdims=True))
    expected_g = np.sum(grad_w * v / norm, axis=axes)
    expected_v = g.reshape(shape) / norm * grad_w - g.reshape(shape) * expected_g.reshape(shape) / norm**2 * v
    np.testing.assert_allclose(grad_g, expected_g, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grad_v, expected_v, rtol=1e-4, atol=1e-5)
    # The gradient w.r.t. v is orthogonal to v (per output unit): why the norm of v only grows.
    np.testing.assert_allclose(np.sum(grad_v.numpy() * v, axis=axes), 0, atol=1e-4)


@pytest.mark.parametrize("name", CASES)
def test_output_is_invariant_to_the_scale_of_v(name):
    layer, x, _ = _built(name)
    before = layer(x).numpy()
    layer.kernel.assign(layer.kernel * 37.5)
    np.testing.assert_allclose(layer(x), before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", CASES)
def test_initial_state_and_seed(name):
    make, x, _ = CASES[name]
    a, b = make(), make()
    a(x), b(x)
    np.testing.assert_array_equal(a.kernel, b.kernel)
    np.testing.assert_array_equal(a.g, np.ones(a.g.shape))
    np.testing.assert_array_equal(a.bias, np.zeros(a.bias.shape))
    assert {w.name for w in a.trainable_weights} == {"kernel", "g", "bias"}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("use_bias", [True, False])
def test_initialize_from_batch_standardises_preactivations(name, use_bias):
    make, _, _ = CASES[name]
    x = RNG.normal(2.0, 3.0, size=(32, 4) if name == "dense" else (8, 5, 6, 3)).astype("float32")
    layer = make(use_bias=use_bias)
    out = layer.initialize_from_batch(x).numpy().reshape(-1, layer.g.shape[0])
    np.testing.assert_allclose(out.std(axis=0), 1, rtol=1e-3)
    if use_bias:
        np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(out, layer(x).numpy().reshape(out.shape))


@pytest.mark.parametrize("name", CASES)
def test_jit_compiled_tf_function(name):
    layer, x, _ = _built(name)
    expected = layer(x)

    @tf.function(jit_compile=True)
    def step(inputs):
        with tf.GradientTape() as tape:
            out = layer(inputs)
            loss = tf.reduce_sum(out**2)
        return out, tape.gradient(loss, layer.trainable_weights)

    out, grads = step(tf.constant(x))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert all(np.all(np.isfinite(grad)) for grad in grads)


def test_unknown_batch_size_in_a_functional_model():
    inputs = keras.Input((5, 6, 3))
    outputs = WeightNormConv2DTranspose(2, 3, strides=2, padding="valid", seed=0)(inputs)
    assert outputs.shape == (None, 11, 13, 2)
    assert keras.Model(inputs, outputs)(X_CONV).shape == (2, 11, 13, 2)


@pytest.mark.parametrize("name", CASES)
def test_serialization_round_trips(name, tmp_path):
    layer, x, _ = _built(name, activation="leaky_relu", name="wn")
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    clone.set_weights(layer.get_weights())  # serialize_keras_object stores a build config: clone is built.
    np.testing.assert_array_equal(clone(x), layer(x))
    clone = type(layer).from_config(layer.get_config())
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x), layer(x))

    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert loaded.layers[-1].get_config() == layer.get_config()
    np.testing.assert_array_equal(loaded(x), model(x))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"units": 0}, "units"),
        ({"units": 2.5}, "units"),
        ({"units": True}, "units"),
        ({"units": 2, "use_bias": "yes"}, "use_bias"),
        ({"units": 2, "activation": "no_such_activation"}, "activation"),
        ({"units": 2, "kernel_initializer": "no_such_initializer"}, "kernel_initializer"),
        ({"units": 2, "seed": -1}, "seed"),
        ({"units": 2, "seed": 1.5}, "seed"),
        ({"units": 2, "kernel_initializer": "zeros", "seed": 0}, "seed"),
    ],
)
def test_dense_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WeightNormDense(**kwargs)


@pytest.mark.parametrize("cls", [WeightNormConv2D, WeightNormConv2DTranspose])
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"filters": 0}, "filters"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"kernel_size": (3,)}, "kernel_size"),
        ({"kernel_size": "3"}, "kernel_size"),
        ({"strides": (1, 0)}, "strides"),
        ({"padding": "full"}, "padding"),
        ({"padding": 1}, "padding"),
        ({"use_bias": 1}, "use_bias"),
        ({"seed": "0"}, "seed"),
    ],
)
def test_conv_invalid_arguments(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**{"filters": 2, "kernel_size": 3, **kwargs})


def test_conv_rejects_unknown_channels():
    with pytest.raises(ValueError, match="channel"):
        WeightNormConv2D(2, 3).build((None, 8, 8, None))
