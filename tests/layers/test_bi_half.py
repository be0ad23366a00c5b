import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.layers import BiHalf


def bi_half_reference(u):
    """Per column, a stable descending sort; the first floor(N/2) rows become +1."""
    b = -np.ones_like(u)
    for j in range(u.shape[1]):
        b[np.argsort(-u[:, j], kind="stable")[: len(u) // 2], j] = 1
    return b


def random_u(n, k, seed, ties=True):
    rng = np.random.default_rng(seed)
    # Few distinct values make ties frequent, which is where tie-breaking bugs show.
    values = rng.integers(-2, 3, size=(n, k)) if ties else rng.normal(size=(n, k))
    return values.astype("float32")


def value_and_grad(layer, u, w):
    u = tf.convert_to_tensor(u)
    with tf.GradientTape() as tape:
        tape.watch(u)
        b = layer(u, training=True)
        loss = tf.reduce_sum(w * b)
    return b, tape.gradient(loss, u)


@pytest.mark.parametrize("n", [2, 3, 7, 8, 33])
@pytest.mark.parametrize("ties", [True, False])
def test_training_forward_matches_reference(n, ties):
    u = random_u(n, 6, seed=n, ties=ties)
    b = BiHalf()(u, training=True).numpy()
    np.testing.assert_array_equal(b, bi_half_reference(u))
    np.testing.assert_array_equal((b == 1).sum(axis=0), np.full(6, n // 2))
    np.testing.assert_array_equal((b == -1).sum(axis=0), np.full(6, n - n // 2))


def test_ties_are_broken_by_batch_position():
    u = np.array(
        [
            [0.5, 1.0, 0.0],
            [0.5, 1.0, 1.0],
            [0.5, 0.0, 1.0],
            [0.5, 1.0, 1.0],
            [0.5, 0.0, 0.0],
        ],
        "float32",
    )
    # Column 0: all equal, the first floor(5/2) = 2 rows win. Columns 1 and 2: three rows tie at 1.0 for two
    # places, the two earliest win.
    expected = np.array(
        [
            [1, 1, -1],
            [1, 1, 1],
            [-1, -1, 1],
            [-1, -1, -1],
            [-1, -1, -1],
        ],
        "float32",
    )
    np.testing.assert_array_equal(BiHalf()(u, training=True), expected)


def test_inference_is_sign_and_encodes_a_single_row():
    layer = BiHalf()
    u = np.array([[-1.0, 0.0, -0.0, 2.0]], "float32")
    for training in (False, None):
        np.testing.assert_array_equal(layer(u, training=training), [[-1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(layer(random_u(5, 3, 0)), np.where(random_u(5, 3, 0) >= 0, 1.0, -1.0))


@pytest.mark.parametrize("gamma", [6.0, 0.0, 2.5])
@pytest.mark.parametrize("n", [4, 7])
def test_gradient_matches_closed_form(gamma, n):
    k = 5
    u = random_u(n, k, seed=1, ties=False)
    w = np.random.default_rng(2).normal(size=(n, k)).astype("float32")
    b, grad = value_and_grad(BiHalf(gamma=gamma), u, w)
    np.testing.assert_allclose(grad, w + gamma * (u - b.numpy()) / (n * k), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_tf_function_matches_eager(jit_compile):
    layer = BiHalf(gamma=3.0)
    u = random_u(9, 4, seed=3)
    w = np.random.default_rng(4).normal(size=u.shape).astype("float32")
    b_eager, grad_eager = value_and_grad(layer, u, w)
    compiled = tf.function(lambda u: value_and_grad(layer, u, w), jit_compile=jit_compile)
    b, grad = compiled(tf.constant(u))
    np.testing.assert_array_equal(b, b_eager)
    np.testing.assert_allclose(grad, grad_eager, rtol=1e-6, atol=1e-7)


def test_batch_of_one_in_training_raises_statically():
    layer = BiHalf()
    with pytest.raises(ValueError, match="at least 2 rows"):
        layer(tf.zeros((1, 4)), training=True)
    with pytest.raises(ValueError, match="at least 2 rows"):
        tf.function(lambda u: layer(u, training=True))(tf.zeros((1, 4)))


def test_batch_of_one_in_training_raises_at_run_time_for_a_dynamic_batch():
    layer = BiHalf()
    encode = tf.function(lambda u: layer(u, training=True), input_signature=[tf.TensorSpec([None, 4])])
    np.testing.assert_array_equal(encode(tf.zeros((2, 4))), [[1.0] * 4, [-1.0] * 4])
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 2 rows"):
        encode(tf.zeros((1, 4)))


@pytest.mark.parametrize("gamma", [-1.0, float("nan"), float("inf"), "6", True, None])
def test_invalid_gamma(gamma):
    with pytest.raises(ValueError, match="gamma"):
        BiHalf(gamma=gamma)


def test_compute_output_shape():
    assert BiHalf().compute_output_shape((None, 16)) == (None, 16)


def test_serialization_round_trip(tmp_path):
    layer = BiHalf(gamma=2.5, name="bi_half")
    u = random_u(6, 8, seed=5)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, BiHalf) and clone.get_config() == layer.get_config()
    w = np.random.default_rng(6).normal(size=u.shape).astype("float32")
    for got, expected in zip(value_and_grad(clone, u, w), value_and_grad(layer, u, w)):
        np.testing.assert_array_equal(got, expected)

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8), layer])
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert loaded.layers[-1].get_config() == layer.get_config()
    for training in (True, False):
        np.testing.assert_array_equal(loaded(u, training=training), model(u, training=training))


def test_mirrored_strategy_ranks_per_replica_and_scales_the_pull_term(mirrored_strategy):
    strategy = mirrored_strategy
    replicas, n, k, gamma = 2, 5, 3, 6.0
    rng = np.random.default_rng(7)
    # Replica 0's rows all exceed replica 1's: a global ranking would give replica 0 every +1.
    halves_u = [rng.normal(size=(n, k)).astype("float32") + offset for offset in (10.0, -10.0)]
    halves_w = [rng.normal(size=(n, k)).astype("float32") for _ in range(replicas)]
    with strategy.scope():
        layer = BiHalf(gamma=gamma)

    def replica_step(u, w):
        with tf.GradientTape() as tape:
            tape.watch(u)
            b = layer(u, training=True)
            # What Keras 3 does to each replica's loss before differentiating.
            loss = tf.reduce_sum(w * b) / strategy.num_replicas_in_sync
        return b, tape.gradient(loss, u)

    inputs = strategy.experimental_distribute_values_from_function(
        lambda ctx: (halves_u[ctx.replica_id_in_sync_group], halves_w[ctx.replica_id_in_sync_group])
    )
    b, grad = tf.function(lambda inputs: strategy.run(replica_step, args=inputs))(inputs)

    per_replica = zip(strategy.experimental_local_results(b), strategy.experimental_local_results(grad))
    for r, (b_r, grad_r) in enumerate(per_replica):
        u_r, w_r = halves_u[r], halves_w[r]
        np.testing.assert_array_equal(b_r, bi_half_reference(u_r))
        np.testing.assert_array_equal((b_r.numpy() == 1).sum(axis=0), np.full(k, n // 2))
        # Each replica's gradient is 1/replicas of single-device training on its own rows ...
        _, grad_single = value_and_grad(BiHalf(gamma=gamma), u_r, w_r)
        np.testing.assert_allclose(grad_r, grad_single.numpy() / replicas, rtol=1e-6, atol=1e-7)
        # ... i.e. the loss gradient of the global mean loss plus the pull term of the global batch N = 2n.
        global_pull = gamma * (u_r - b_r.numpy()) / (replicas * n * k)
        np.testing.assert_allclose(grad_r, w_r / replicas + global_pull, rtol=1e-6, atol=1e-7)
