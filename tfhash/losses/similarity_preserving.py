"""Similarity-preserving loss: codes keep the cosine similarities of the features they encode."""

import keras
import tensorflow as tf


def cosine_similarity_matrix(x):
    """Pairwise cosine similarities of the rows of x, (n, n); a zero row has similarity 0 to everything."""
    x = tf.math.l2_normalize(tf.cast(x, tf.float32), axis=1)
    return tf.matmul(x, x, transpose_b=True)


@keras.saving.register_keras_serializable(package="tfhash")
class SimilarityPreservingLoss(keras.losses.Loss):
    """Mean squared difference between the codes' and the features' cosine similarities over all pairs in a batch.

    ``L = (1/N²) Σ_ij (cos(b_i, b_j) − cos(x_i, x_j))²`` with ``y_true = x`` (features, any width) and
    ``y_pred = b`` (codes or relaxed codes). Per sample it returns the row mean, so the default
    ``"sum_over_batch_size"`` reduction gives L.

    Example:
        >>> model.compile(optimizer="adam", loss=SimilarityPreservingLoss())
        >>> model.fit(features, features)  # the targets are the features themselves

    Reference:
        Su et al., GreedyHash, NeurIPS 2018 (its unsupervised loss ‖cos(B) − cos(X)‖²); Li & van Gemert, Bi-half,
        AAAI 2021 (same loss, with pairs drawn within the batch).
    """

    def __init__(self, name="similarity_preserving", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        _check_pairs(y_true, y_pred)
        difference = cosine_similarity_matrix(y_pred) - cosine_similarity_matrix(y_true)
        return tf.reduce_mean(tf.square(difference), axis=1)


def _check_pairs(features, codes):
    """Features and codes must be matrices of the same samples: a clear error, not a shape clash in TF."""
    shape, code_shape = tf.TensorShape(features.shape), tf.TensorShape(codes.shape)
    if shape.rank != 2 or code_shape.rank != 2:
        raise ValueError(
            "SimilarityPreservingLoss takes y_true = features (batch, d) and y_pred = codes (batch, k), got "
            f"shapes {shape} and {code_shape}."
        )
    rows, code_rows = shape[0], code_shape[0]
    if rows is not None and code_rows is not None and rows != code_rows:
        raise ValueError(
            f"SimilarityPreservingLoss got {rows} feature rows (y_true) but {code_rows} code rows (y_pred): "
            "they must be the same samples in the same order (model.fit(features, features))."
        )
