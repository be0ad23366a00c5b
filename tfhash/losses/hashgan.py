"""HashGAN's loss terms (Ghasedi Dizaji et al., CVPR 2018, Eq. 2–5) as pure functions of a batch.

``t`` are the encoder's sigmoid outputs, ``t_ik = P(b_ik = 1 | x_i)`` in (0, 1), shape (batch, K). The paper
writes the minimum-entropy and consistency terms of Eq. 3 as sums over the images, the ℓ2 term of Eq. 4 as an
expectation; every function here returns a batch mean of the per-image sums over the K bits, and
`tfhash.models.HashGAN` can multiply the two summed terms by the batch size (``sum_over_images=True``, the
literal reading; not its default, see there). Logarithms are natural and probabilities are clipped to
[eps, 1 − eps].
"""

import tensorflow as tf

_EPS = 1e-7


def _probabilities(t):
    return tf.clip_by_value(tf.cast(t, tf.float32), _EPS, 1.0 - _EPS)


def _binary_entropy(p):
    return -(p * tf.math.log(p) + (1.0 - p) * tf.math.log(1.0 - p))


def min_entropy_bits_loss(t):
    """Eq. 3, first term: ``mean_i Σ_k H(t_ik)``, the binary entropy of each bit; 0 for t ∈ {0, 1}.

    Minimising it pushes every bit of every image towards 0 or 1 (a quantization loss without a sign).

    Example:

    >>> float(min_entropy_bits_loss([[0.5, 0.5]]))  # 2 log 2
    1.386...
    """
    return tf.reduce_mean(tf.reduce_sum(_binary_entropy(_probabilities(t)), axis=1))


def uniform_frequency_loss(t):
    """Eq. 3, second term: ``Σ_k f_k log f_k + (1 − f_k) log(1 − f_k)`` with ``f_k = mean_i t_ik``.

    The negative entropy of each bit's frequency over the batch: minimal (−K log 2) when every bit is 1 for
    half of the images, so bits do not collapse to a constant.
    """
    frequency = tf.reduce_mean(_probabilities(t), axis=0)
    return -tf.reduce_sum(_binary_entropy(frequency))


def consistent_bits_loss(t, t_transformed):
    """Eq. 3, third term: ``mean_i Σ_k (t_ik − t̃_ik)²`` between an image and its transformed version."""
    difference = tf.cast(t, tf.float32) - tf.cast(t_transformed, tf.float32)
    return tf.reduce_mean(tf.reduce_sum(tf.square(difference), axis=1))


def independent_bits_loss(kernel):
    """Eq. 3, fourth term: ``‖Wᵀ W − I‖²`` (squared Frobenius norm) of the encoder's last-layer kernel.

    ``kernel`` is W of shape (hidden, K) (a Keras Dense kernel), so ``Wᵀ W`` is K × K: one row and column per
    bit. (An unofficial port builds the hidden × hidden product instead.)
    """
    w = tf.cast(kernel, tf.float32)
    gram = tf.matmul(w, w, transpose_a=True)
    return tf.reduce_sum(tf.square(gram - tf.eye(tf.shape(w)[1])))


def collaborative_loss(t_generated, generator_bits):
    """Eq. 4: ``mean_i Σ_k (E(G(z_i))_k − b'_ik)²``, the encoder's outputs on generated images against the
    binary vector ``b'`` ∈ {0, 1}^K given to the generator (weight 0.1 in the paper)."""
    difference = tf.cast(t_generated, tf.float32) - tf.cast(generator_bits, tf.float32)
    return tf.reduce_mean(tf.reduce_sum(tf.square(difference), axis=1))


def feature_matching_loss(real_features, generated_features):
    """Eq. 5: ``‖mean_x F(x) − mean_z F(G(z))‖²`` over the batch, F the shared last hidden layer of D / E."""
    real_mean = tf.reduce_mean(tf.cast(real_features, tf.float32), axis=0)
    generated_mean = tf.reduce_mean(tf.cast(generated_features, tf.float32), axis=0)
    return tf.reduce_sum(tf.square(real_mean - generated_mean))


def adversarial_loss(real_logits, generated_logits):
    """Eq. 2 for the discriminator, as a loss to minimise: ``−mean log D(x) − mean log(1 − D(G(z)))``.

    Takes D's logits (before the sigmoid) and uses the numerically stable cross-entropy with logits.
    """
    real = tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(real_logits), real_logits)
    generated = tf.nn.sigmoid_cross_entropy_with_logits(tf.zeros_like(generated_logits), generated_logits)
    return tf.reduce_mean(real) + tf.reduce_mean(generated)
