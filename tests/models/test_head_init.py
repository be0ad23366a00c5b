"""`head_init`: each hasher's head starts as its authors' framework initialises it (issue 12, item 12).

The reference is the closed form of PyTorch's ``nn.Linear.reset_parameters``: ``kaiming_uniform_(weight,
a=√5)`` draws U(−b, b) with b = gain·√(3/fan_in), gain = √(2/(1 + a²)) = √(1/3), so b = 1/√fan_in, and the
bias is U(−1/√fan_in, 1/√fan_in) with the same fan_in (the layer's input width). Uniform on (−b, b) has
variance b²/3 = 1/(3·fan_in). "glorot" is Keras's Dense default (Glorot-uniform kernel, zero bias), the weights
every tfhash hasher had before ``head_init``.
"""

import json

import keras
import numpy as np
import pytest
from scipy import stats

from tfhash.models import BiHalfHasher, CIBHasher, CIMONHasher, GreedyHasher
from tfhash.models.hasher import HEAD_INITS, Hasher

D, K = 1280, 16


def build(model_class, **kwargs):
    extra = {"num_samples": 8} if model_class is CIMONHasher else {}
    return model_class(K, feature_size=kwargs.pop("feature_size", D), **extra, **kwargs)


def dense_layers(model):
    """The head's Dense layers, with the input width of each."""
    layers = model.head.layers if isinstance(model.head, keras.Sequential) else [model.head]
    widths = [model.feature_size] + [layer.units for layer in layers[:-1]]
    return list(zip(layers, widths))


ALL = [BiHalfHasher, GreedyHasher, CIBHasher, CIMONHasher]


@pytest.mark.parametrize("model_class", ALL)
def test_every_method_defaults_to_its_authors_framework(model_class):
    # all four were released in PyTorch
    assert model_class.default_head_init == "torch"
    assert build(model_class, seed=0).head_init == "torch"
    assert "head_init" in model_class.__doc__ and "torch" in model_class.__doc__


@pytest.mark.parametrize("model_class", ALL)
def test_torch_init_matches_the_closed_form_bounds_and_variance(model_class):
    model = build(model_class, seed=3, **({"hidden_units": 64} if model_class is CIBHasher else {}))
    layers = dense_layers(model)
    assert len(layers) == (2 if model_class is CIBHasher else 1)
    for layer, fan_in in layers:
        bound = 1.0 / np.sqrt(fan_in)
        kernel = layer.kernel.numpy().ravel()
        assert np.all(np.abs(kernel) <= bound)
        assert np.abs(kernel).max() > 0.98 * bound  # the full range is used, not a narrower one
        np.testing.assert_allclose(kernel.var(), 1.0 / (3 * fan_in), rtol=0.06)
        assert abs(kernel.mean()) < 4 * bound / np.sqrt(3 * kernel.size)
        # uniform on (−b, b): Kolmogorov–Smirnov against the closed-form distribution (fixed seed: no flakes)
        assert stats.kstest(kernel, stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-3
        if model_class is BiHalfHasher:
            assert not layer.use_bias and layer.bias is None  # the released head has no bias
        else:
            bias = layer.bias.numpy()
            assert np.all(np.abs(bias) <= bound) and np.all(bias != 0)
            # its own stream: not a copy of the kernel's first row (a stateless draw with the kernel's seed)
            assert abs(np.corrcoef(bias, layer.kernel.numpy()[0])[0, 1]) < 0.9


def test_the_bias_bound_is_the_layers_fan_in_not_its_width():
    # 4096 hidden units from 256 inputs: the bias must be U(±1/√256), not U(±1/√4096) (VarianceScaling's
    # fan_in of a 1-D shape is its length)
    model = CIBHasher(K, hidden_units=4096, feature_size=256, seed=0)
    bias = model.head.layers[0].bias.numpy()
    bound = 1.0 / np.sqrt(256)
    assert np.all(np.abs(bias) <= bound) and np.abs(bias).max() > 0.98 * bound
    np.testing.assert_allclose(bias.var(), bound**2 / 3, rtol=0.08)
    assert stats.kstest(bias, stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-3


@pytest.mark.parametrize("model_class", ALL)
@pytest.mark.parametrize("head_init", HEAD_INITS)
def test_the_initial_weights_are_determined_by_the_seed(model_class, head_init):
    extra = {"hidden_units": 8} if model_class is CIBHasher else {}

    def weights(seed):
        return [w.numpy() for w in build(model_class, seed=seed, head_init=head_init, **extra).trainable_weights]

    first, again, other = weights(5), weights(5), weights(6)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("model_class", ALL)
def test_glorot_reproduces_the_weights_of_earlier_versions(model_class):
    # earlier versions: GlorotUniform(seed + offset) kernels (offsets 0, 1 for CIBHasher's two layers), zero bias
    seed, hidden = 7, 24
    model = build(model_class, seed=seed, head_init="glorot", **({"hidden_units": hidden}
                                                                  if model_class is CIBHasher else {}))
    for offset, (layer, fan_in) in enumerate(dense_layers(model)):
        expected = keras.initializers.GlorotUniform(seed=seed + offset)((fan_in, layer.units))
        np.testing.assert_array_equal(layer.kernel.numpy(), keras.ops.convert_to_numpy(expected))
        if layer.use_bias:
            np.testing.assert_array_equal(layer.bias.numpy(), np.zeros(layer.units, "float32"))


@pytest.mark.parametrize("model_class", ALL)
@pytest.mark.parametrize("head_init", [None, *HEAD_INITS])
def test_config_round_trip(model_class, head_init):
    model = build(model_class, seed=1, head_init=head_init)
    config = model.get_config()
    assert config["head_init"] == (head_init or "torch")
    restored = type(model).from_config(json.loads(json.dumps(config)))
    assert restored.head_init == model.head_init
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("model_class", ALL)
def test_a_config_saved_before_head_init_takes_the_methods_default(model_class):
    config = build(model_class, seed=2, head_init="glorot").get_config()
    del config["head_init"]
    restored = model_class.from_config(config)
    assert restored.head_init == model_class.default_head_init == "torch"


def test_saved_model_file_keeps_head_init(tmp_path):
    model = GreedyHasher(K, feature_size=12, seed=0, head_init="glorot")
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    assert restored.head_init == "glorot"
    np.testing.assert_array_equal(restored.head.kernel.numpy(), model.head.kernel.numpy())


@pytest.mark.parametrize("value", ["pytorch", "Torch", "xavier", "", 1, ["torch"]])
def test_a_wrong_head_init_is_refused_naming_the_argument(value):
    with pytest.raises(ValueError, match="`head_init` must be one of 'torch', 'glorot'"):
        GreedyHasher(K, feature_size=12, head_init=value)


def test_with_backbone_keeps_head_init():
    class Backbone(keras.Model):
        feature_size, image_shape = 12, (4, 4, 3)

        def call(self, images):
            return keras.ops.reshape(keras.ops.cast(images, "float32"), (-1, 48))[:, :12]

    model = GreedyHasher(K, feature_size=12, seed=0, head_init="glorot")
    image_model = model.with_backbone(Backbone())
    assert image_model.head_init == "glorot"


def test_the_base_default_is_keras():
    assert Hasher.default_head_init == "glorot" and HEAD_INITS == ("torch", "glorot", "normal_1e-3")


def test_normal_1e3_draws_a_truncated_normal_of_deviation_1e3_for_kernel_and_bias():
    # DSAH's released head: tf.random.truncated_normal(shape, 0.0, 0.001) for weights and biases
    model = CIBHasher(K, hidden_units=2048, feature_size=256, seed=0, head_init="normal_1e-3")
    layer = model.head.layers[0]
    truncated = stats.truncnorm(-2, 2, scale=1e-3)
    for values in (layer.kernel.numpy().ravel(), layer.bias.numpy()):
        assert np.all(np.abs(values) <= 2e-3)
        assert stats.kstest(values, truncated.cdf).pvalue > 1e-3
    assert abs(np.corrcoef(layer.bias.numpy(), layer.kernel.numpy()[0, :2048])[0, 1]) < 0.9
