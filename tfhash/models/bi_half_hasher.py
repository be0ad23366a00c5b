"""Bi-half hashing: a bias-free linear head, the Bi-half layer, and the similarity-preserving loss."""

import keras

from tfhash.layers.bi_half import BiHalf
from tfhash.losses.similarity_preserving import SimilarityPreservingLoss
from tfhash.models.hasher import Hasher


@keras.saving.register_keras_serializable(package="tfhash")
class BiHalfHasher(Hasher):
    """Bi-half: features → bias-free Dense(K) → `BiHalf` → codes; ``L = MSE(cos(b_i, b_j), cos(x_i, x_j))``.

    The loss compares the codes' cosine similarities with those of the backbone features ``x`` over all pairs
    of the batch (`SimilarityPreservingLoss`); the released code pairs the first half of a batch with the
    second, an unbiased subset of the same pairs. Train on ``{"inputs": features, "sample_index": i}`` batches
    of a `FeatureBank` (frozen backbone, the paper's setting), on image batches of
    `tfhash.data.training_dataset` with a backbone, or on the inputs alone (``fit(features)``) without HQT.
    With ``drop_remainder=False`` a last batch of one sample would break the Bi-half layer: drop it.

    Args:
        num_bits: code length K.
        gamma: float >= 0, the Bi-half pull-term weight (6 for images in the paper's code).
        head_init: ``"torch"`` (the default: the released PyTorch code's bias-free ``nn.Linear(4096, K)`` keeps
            PyTorch's default initialisation, kernel ``U(±1/√fan_in)``) or ``"glorot"`` (Keras's); see
            `Hasher.head_initializers`.
        backbone, feature_size, hqt, seed, **kwargs: see `Hasher`.

    Example:

    >>> model = BiHalfHasher(64, feature_size=4096, seed=0)
    >>> model.compile(optimizer=keras.optimizers.SGD(1e-4, momentum=0.9, weight_decay=5e-4))
    >>> data = bank.training_dataset(batch_size=32, epochs=300, drop_remainder=True)   # all 300 epochs
    >>> model.fit(data, epochs=300)   # steps_per_epoch comes from the stream
    >>> codes = model.predict(bank.evaluation_dataset("database", batch_size=256))   # ±1

    Reference:
        Li & van Gemert, "Deep Unsupervised Image Hashing by Maximizing Bit Entropy", AAAI 2021: the Bi-half
        layer (forward ``B = π₀(U)``, backward ``dL/dU = dL/dB + γ(U − B)``) and the cosine
        similarity-preserving loss; released code liyunqianggyn/Deep-Unsupervised-Image-Hashing.
    """

    loss_terms = ("similarity",)
    default_head_init = "torch"

    def __init__(self, num_bits, gamma=6.0, backbone=None, feature_size=None, hqt=None, seed=None, head_init=None,
                 **kwargs):
        super().__init__(num_bits, backbone=backbone, feature_size=feature_size, hqt=hqt, seed=seed,
                         head_init=head_init, **kwargs)
        self.gamma = gamma
        self.head = keras.layers.Dense(
            num_bits, use_bias=False, **self.head_initializers(self.feature_size, use_bias=False), name="hash"
        )
        self.binarizer = BiHalf(gamma=gamma, name="bi_half")
        self.similarity = SimilarityPreservingLoss()
        self._finish_init()

    def self_loss(self, inputs, sample_index, training):
        features = self.features(inputs, training=training)
        codes = self.codes(features, training=training)
        loss = self.similarity(features, codes)
        return loss, {"similarity": loss}, [codes]

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma}
