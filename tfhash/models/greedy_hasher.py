"""GreedyHash: a linear head, sign with a straight-through gradient, similarity loss plus a cubic penalty."""

import keras
import tensorflow as tf

from tfhash._validation import check_number
from tfhash.layers.sign_ste import SignSTE
from tfhash.losses.similarity_preserving import SimilarityPreservingLoss
from tfhash.models.hasher import Hasher


@keras.saving.register_keras_serializable(package="tfhash")
class GreedyHasher(Hasher):
    """GreedyHash: features → Dense(K) → h → `SignSTE` → b; ``L = MSE(cos(b), cos(x)) + w·mean(| |h| − 1 |³)``.

    The sign is applied in the forward pass and the gradient passes straight through it (the greedy
    principle); the cubic term pulls ``h`` towards ±1 so that the straight-through gradient stays close to the
    true one. ``x`` are the backbone features, compared with the codes over all pairs of the batch.

    Args:
        num_bits: code length K.
        quantization_weight: float >= 0, the weight w of the cubic term (0.1 in the paper's unsupervised
            setting).
        head_init: ``"torch"`` (the default: the released PyTorch code's ``nn.Linear(4096, K)`` keeps PyTorch's
            default initialisation, kernel and bias ``U(±1/√fan_in)``; Keras's Glorot kernel is ~2.4× wider
            at 1,280 → 16 and learns far slower at the paper's SGD 1e-4) or ``"glorot"`` (Keras's); see
            `Hasher.head_initializers`.
        backbone, feature_size, hqt, seed, **kwargs: see `Hasher`.

    Example:

    >>> model = GreedyHasher(32, feature_size=4096, seed=0)
    >>> model.compile(optimizer=keras.optimizers.SGD(1e-4, momentum=0.9))
    >>> model.fit(bank.training_dataset(batch_size=32, epochs=60), epochs=60)

    Reference:
        Su et al., "Greedy Hash: Towards Fast Optimization for Accurate Hash Coding in CNN", NeurIPS 2018:
        Eq. 5–7 (sign forward, identity backward) and the unsupervised loss of §3.3,
        ``‖cos(B) − cos(X)‖² + α‖ |H| − 1 ‖³₃``.
    """

    loss_terms = ("similarity", "quantization")
    default_head_init = "torch"

    def __init__(self, num_bits, quantization_weight=0.1, backbone=None, feature_size=None, hqt=None, seed=None,
                 head_init=None, **kwargs):
        super().__init__(num_bits, backbone=backbone, feature_size=feature_size, hqt=hqt, seed=seed,
                         head_init=head_init, **kwargs)
        self.quantization_weight = check_number(quantization_weight, "quantization_weight", minimum=0)
        self.head = keras.layers.Dense(num_bits, **self.head_initializers(self.feature_size), name="hash")
        self.binarizer = SignSTE(name="sign")
        self.similarity = SimilarityPreservingLoss()
        self._finish_init()

    def self_loss(self, inputs, sample_index, training):
        features = self.features(inputs, training=training)
        activations = self.head(features, training=training)
        codes = self.binarizer(activations, training=training)
        similarity = self.similarity(features, codes)
        quantization = tf.reduce_mean(tf.abs(tf.abs(activations) - 1.0) ** 3)
        loss = similarity + self.quantization_weight * quantization
        return loss, {"similarity": similarity, "quantization": quantization}, [codes]

    def get_config(self):
        return {**super().get_config(), "quantization_weight": self.quantization_weight}
