"""SimilarityPreservingLoss and cosine_similarity_matrix against a numpy reference written from the papers.

GreedyHash (Su et al., NeurIPS 2018, unsupervised loss) and Bi-half (Li & van Gemert, AAAI 2021) keep
the cosine similarities of the features in the codes: L = 1/N² Σ_i Σ_j (cos(b_i, b_j) − cos(x_i, x_j))².
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfhash.losses import SimilarityPreservingLoss, cosine_similarity_matrix

N, D, K = 7, 20, 8


def cosine(u, v):
    norms = np.linalg.norm(u) * np.linalg.norm(v)
    return 0.0 if norms == 0 else float(u @ v) / norms


def reference(features, codes):
    """Per-sample row means of the squared differences, pair by pair in float64 (the loss is their mean)."""
    features, codes = np.asarray(features, np.float64), np.asarray(codes, np.float64)
    n = len(features)
    rows = np.zeros(n)
    for i in range(n):
        for j in range(n):
            rows[i] += (cosine(codes[i], codes[j]) - cosine(features[i], features[j])) ** 2 / n
    return rows


@pytest.fixture
def batch():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(N, D)).astype("float32")
    relaxed = rng.normal(size=(N, K)).astype("float32")
    return features, relaxed


def test_cosine_similarity_matrix_matches_numpy(batch):
    features, _ = batch
    features = features.copy()
    features[2] = 0.0  # a zero row has similarity 0 to everything, itself included
    expected = np.array([[cosine(u, v) for v in features] for u in features])
    np.testing.assert_allclose(cosine_similarity_matrix(features).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("signed", [False, True], ids=["relaxed", "binary"])
def test_loss_matches_the_equation(batch, signed):
    features, codes = batch
    if signed:
        codes = np.where(codes >= 0, 1.0, -1.0).astype("float32")
    rows = reference(features, codes)
    loss = SimilarityPreservingLoss()
    np.testing.assert_allclose(float(loss(features, codes)), rows.mean(), rtol=1e-5)
    np.testing.assert_allclose(loss.call(tf.constant(features), tf.constant(codes)).numpy(), rows, rtol=1e-5)
    summed = SimilarityPreservingLoss(reduction="sum")
    np.testing.assert_allclose(float(summed(features, codes)), rows.sum(), rtol=1e-5)
    weights = np.arange(N, dtype="float32")
    np.testing.assert_allclose(
        float(loss(features, codes, sample_weight=weights)), (rows * weights).sum() / N, rtol=1e-5
    )


def test_zero_exactly_when_the_similarities_are_kept(batch):
    features, _ = batch
    loss = SimilarityPreservingLoss()
    assert float(loss(features, features)) == pytest.approx(0.0, abs=1e-7)
    # Cosines ignore each row's positive scale and a rotation of the code space.
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(D, D)))[0]
    scaled = features @ rotation * np.arange(1, N + 1)[:, None]
    assert float(loss(features, scaled.astype("float32"))) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(features, -features)) == pytest.approx(0.0, abs=1e-6)  # cos(-u, -v) = cos(u, v)
    # Codes that make every pair orthogonal lose the mean squared off-diagonal feature cosine.
    codes = np.eye(N, dtype="float32")
    off_diagonal = reference(features, codes).mean()
    cosines = np.array([[cosine(u, v) for v in features] for u in features])
    assert off_diagonal == pytest.approx(((cosines - np.eye(N)) ** 2).mean(), rel=1e-6)
    assert float(loss(features, codes)) == pytest.approx(off_diagonal, rel=1e-5)


def test_gradient_matches_finite_differences(batch):
    features, codes = batch
    codes = tf.Variable(codes.astype("float64"))
    loss = SimilarityPreservingLoss(dtype="float64")
    with tf.GradientTape() as tape:
        value = loss(features.astype("float64"), codes)
    gradient = tape.gradient(value, codes).numpy()
    step, numeric = 1e-6, np.zeros_like(gradient)
    base = codes.numpy()
    for index in np.ndindex(*base.shape):
        plus, minus = base.copy(), base.copy()
        plus[index] += step
        minus[index] -= step
        numeric[index] = (reference(features, plus).mean() - reference(features, minus).mean()) / (2 * step)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-4, atol=1e-7)


def test_trains_a_linear_head_to_lower_the_loss(batch):
    features, _ = batch
    model = keras.Sequential(
        [keras.Input((D,)), keras.layers.Dense(K, kernel_initializer=keras.initializers.GlorotUniform(0))]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=SimilarityPreservingLoss())
    history = model.fit(features, features, batch_size=N, epochs=20, verbose=0, shuffle=False).history["loss"]
    assert np.isfinite(history).all() and history[-1] < history[0]


@pytest.mark.parametrize(
    "y_true, y_pred, match",
    [
        (np.ones((4, D)), np.ones((5, K)), "4 feature rows .* 5 code rows"),
        (np.ones((4,)), np.ones((4,)), "shapes"),
        (np.ones((2, 4, D)), np.ones((2, 4, K)), "shapes"),
    ],
    ids=["different samples", "vectors", "rank 3"],
)
def test_a_wrong_call_is_refused_with_a_clear_error(y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        SimilarityPreservingLoss()(y_true, y_pred)


def test_config():
    loss = SimilarityPreservingLoss(name="sp", reduction="sum")
    clone = SimilarityPreservingLoss.from_config(loss.get_config())
    assert clone.name == "sp" and clone.reduction == "sum"
