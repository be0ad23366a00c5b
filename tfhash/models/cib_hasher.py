"""CIBHash: contrastive learning on stochastic binary codes of two views, with an information bottleneck."""


import keras
import tensorflow as tf

from tfhash._validation import check_int, check_number
from tfhash.layers.stochastic_binary import StochasticBinary
from tfhash.losses.bernoulli_kl import symmetric_bernoulli_kl
from tfhash.losses.nt_xent import nt_xent_loss
from tfhash.models.hasher import Hasher

_TWO_VIEWS = (
    "CIBHasher trains on two augmented views of every sample: the data must yield "
    "{{'inputs': (view_a, view_b), 'sample_index': i}} batches (a FeatureBank built with a pair of "
    "augmentations, or tfhash.data.training_dataset with augment=(view, view)), or {{'inputs': (view_a, "
    "view_b)}} without HQT; got {}."
)


@keras.saving.register_keras_serializable(package="tfhash")
class CIBHasher(Hasher):
    """CIBHash: features → Dense(hidden) → ReLU → Dense(K) → sigmoid → p → `StochasticBinary` → ±1 codes.

    Each sample comes as two augmented views: batches ``{"inputs": (view_a, view_b), "sample_index": i}``
    (`tfhash.batches`; the index is needed only with ``hqt``). The head gives the per-bit Bernoulli
    probabilities ``p`` of each view's code and the stochastic binary layer draws the codes
    ``b ~ Bernoulli(p)`` (as ±1) with a straight-through gradient. The loss is

        ``L = NT-Xent(b⁽¹⁾, b⁽²⁾; τ) + β · (KL(p⁽¹⁾ ‖ p⁽²⁾) + KL(p⁽²⁾ ‖ p⁽¹⁾)) / 2``

    with NT-Xent over the 2N codes of the batch (cosine similarity; each code's positive is the other view of
    its sample, the other 2N − 2 codes are its negatives; `tfhash.losses.nt_xent_loss`) and the KL of the
    codes' Bernoulli distributions summed over bits and averaged over the batch
    (`tfhash.losses.symmetric_bernoulli_kl`). With ``hqt`` the codes of both views are the HQT logits, and
    ``L_HQT`` is the mean over the two views. Encoding is ``1[p ≥ 0.5]`` as ±1, the sign of the last
    layer's logit (up to float32 rounding of the sigmoid to exactly 0.5 for logits within ~1e-7 of 0).

    Paper vs released code (zexuanqiu/CIBHash, model/CIBHash.py), and what is followed here:

    - Binarisation in training: the paper samples ``b = (sign(p − u) + 1)/2``, ``u ~ U(0, 1)``
      (``stochastic=True``, the default); the released code thresholds, ``sign(p − 0.5)``
      (``stochastic=False``).
    - Codes in the contrastive loss: the released code applies NT-Xent to the ±1 codes ``sign(p − 0.5)``
      (the paper's layer outputs b ∈ {0, 1}, whose cosine differs and is undefined for an all-zero code);
      tfhash uses ±1 codes, with the released code's straight-through gradient of 1 with respect to ``p``
      (``StochasticBinary``'s ``2b − 1`` passes 2; the model halves it).
    - KL gradient: the released code detaches the second argument of each KL (``kl_stop_gradient=True``);
      the paper's objective has no such stop (``False``, the default). The value is the same.
    - Released defaults: τ = 0.3, β = 0.001, Adam 1e-3, batch 64, 60 epochs (≥ 80 at 16 bits); frozen VGG16
      fc7 (4096-d) features, hidden width 1024.

    Both views pass through the backbone and the head in one concatenated batch: the same result as two
    passes, except for a trainable backbone with batch normalisation, whose batch statistics then span both
    views. Under `tf.distribute` each replica contrasts its own share of the batch (no gathering across
    replicas), as the released single-GPU code sees a batch of 64: scale the global batch with the replicas.

    Args:
        num_bits: code length K.
        hidden_units: int >= 1, width of the hidden ReLU layer (1024 in the paper).
        temperature: float > 0, τ of NT-Xent (0.3).
        kl_weight: float >= 0, β, the weight of the symmetric KL (0.001).
        stochastic: bool, sample the training codes (the paper) or threshold them at 0.5 (the released code).
        kl_stop_gradient: bool, detach the target of each KL as the released code does (see above).
        head_init: ``"torch"`` (the default: the released PyTorch code's ``nn.Linear(4096, 1024)`` and
            ``nn.Linear(1024, K)`` keep PyTorch's default initialisation, kernel and bias ``U(±1/√fan_in)``, with
            fan_in the feature size and the hidden width) or ``"glorot"`` (Keras's); see
            `Hasher.head_initializers`.
        backbone, feature_size, hqt, seed, **kwargs: see `Hasher`.

    Example:

    >>> bank = FeatureBank(vgg16, images, protocol, augment=(cibhash_view(224), cibhash_view(224)), views=5)
    >>> model = CIBHasher(64, feature_size=4096, seed=0)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
    >>> data = bank.training_dataset(batch_size=64, epochs=60)   # {"inputs": (view_a, view_b), ...}
    >>> model.fit(data, epochs=60)
    >>> codes = model.predict(bank.evaluation_dataset("database", batch_size=256))   # ±1

    Reference:
        Qiu et al., "Unsupervised Hashing with Contrastive Information Bottleneck", IJCAI 2021: the
        probabilistic binary layer ``b = (sign(σ(f(x)) − u) + 1)/2`` with the straight-through gradient
        ``∂b/∂σ(f(x)) = 1``, the contrastive loss on the two views' codes
        ``ℓ_i⁽¹⁾ = −log exp(cos(b_i⁽¹⁾, b_i⁽²⁾)/τ) / Σ_{b ≠ b_i⁽¹⁾} exp(cos(b_i⁽¹⁾, b)/τ)`` over the batch's
        2N codes, and the final CIB objective ``(1/N) Σ_i [(ℓ_i⁽¹⁾ + ℓ_i⁽²⁾)/2 + (β/2)(KL(P(b|x_i⁽¹⁾) ‖
        P(b|x_i⁽²⁾)) + KL(P(b|x_i⁽²⁾) ‖ P(b|x_i⁽¹⁾)))]``; released code
        https://github.com/qiuzx2/CIBHash (stored as zexuanqiu/CIBHash), model/CIBHash.py.
    """

    loss_terms = ("contrastive", "kl")
    num_views = 2
    default_head_init = "torch"

    def __init__(
        self,
        num_bits,
        hidden_units=1024,
        temperature=0.3,
        kl_weight=0.001,
        stochastic=True,
        kl_stop_gradient=False,
        backbone=None,
        feature_size=None,
        hqt=None,
        seed=None,
        head_init=None,
        **kwargs,
    ):
        super().__init__(num_bits, backbone=backbone, feature_size=feature_size, hqt=hqt, seed=seed,
                         head_init=head_init, **kwargs)
        self.hidden_units = check_int(hidden_units, "hidden_units", minimum=1)
        self.temperature = check_number(temperature, "temperature", minimum=0, exclusive_minimum=True)
        self.kl_weight = check_number(kl_weight, "kl_weight", minimum=0)
        for name, value in (("stochastic", stochastic), ("kl_stop_gradient", kl_stop_gradient)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be a bool, got {value!r}.")
        self.stochastic, self.kl_stop_gradient = stochastic, kl_stop_gradient
        # The head ends in probabilities: the binarizer thresholds / samples them and the KL compares them.
        hidden = keras.layers.Dense(
            self.hidden_units, activation="relu", **self.head_initializers(self.feature_size, 0), name="hidden"
        )
        hash_layer = keras.layers.Dense(
            num_bits, activation="sigmoid", **self.head_initializers(self.hidden_units, 1), name="hash"
        )
        self.head = keras.Sequential([hidden, hash_layer], name="head")
        # Its own stream (offset from the initializers' seeds) so that sampling does not mirror the weights.
        sampling_seed = None if self.seed is None else self.seed + 2
        self.binarizer = StochasticBinary(
            stochastic=stochastic, signed=True, seed=sampling_seed, name="binary"
        )
        self._finish_init()

    def self_loss(self, inputs, sample_index, training):
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
            found = f"a single tensor of shape {inputs.shape}" if hasattr(inputs, "shape") else repr(inputs)
            raise ValueError(_TWO_VIEWS.format(found))
        view_a, view_b = inputs
        n = tf.shape(view_a)[0]
        features = self.features(tf.concat([view_a, view_b], axis=0), training=training)
        probabilities = self.head(features, training=training)
        codes = self.binarizer(probabilities, training=training)
        # Same values, half the straight-through gradient: d codes / d p = 1, as sign(p − 0.5) in the
        # released code, which keeps the contrastive and KL gradients in the released proportion.
        codes = 0.5 * codes + tf.stop_gradient(0.5 * codes)
        p_a, p_b = probabilities[:n], probabilities[n:]
        codes_a, codes_b = codes[:n], codes[n:]
        contrastive = nt_xent_loss(codes_a, codes_b, self.temperature)
        kl = symmetric_bernoulli_kl(p_a, p_b, stop_gradient=self.kl_stop_gradient)
        loss = contrastive + self.kl_weight * kl
        return loss, {"contrastive": contrastive, "kl": kl}, [codes_a, codes_b]

    def get_config(self):
        config = {
            "hidden_units": self.hidden_units,
            "temperature": self.temperature,
            "kl_weight": self.kl_weight,
            "stochastic": self.stochastic,
            "kl_stop_gradient": self.kl_stop_gradient,
        }
        return {**super().get_config(), **config}
