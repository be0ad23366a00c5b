"""Variational autoencoder with a binary latent code: the hash layer of UCSH (Zhang et al.)."""

import math

import keras
import tensorflow as tf

from tfhash._validation import check_int, check_number
from tfhash.layers.sign_ste import SignSTE
from tfhash.layers.stochastic_binary import StochasticBinary

#: the values of `BinaryLatentVAE`'s ``sampling``
SAMPLINGS = ("deterministic", "stochastic")
#: the keys of each entry of `BinaryLatentVAE`'s ``dense_initializers``
INITIALIZER_KEYS = ("kernel_initializer", "bias_initializer")
#: the decoder's hidden widths of a layer built with a decoder and ``decoder_units=None``
DEFAULT_DECODER_UNITS = (1024,)


def kl_to_fair_bernoulli(logits):
    """Per-bit ``KL(Bernoulli(q) ‖ Bernoulli(1/2))`` of ``q = sigmoid(logits)``, in the dtype of ``logits``.

    ``KL = q log(2q) + (1 − q) log(2(1 − q)) = log 2 + q log q + (1 − q) log(1 − q)``, written with
    ``log q = log_sigmoid(l)``, ``1 − q = sigmoid(−l)`` and ``log(1 − q) = log_sigmoid(−l)``: every factor is
    finite for finite logits, so a saturated bit (``q`` rounded to exactly 0 or 1) gives exactly ``log 2``
    and a finite gradient, ``q (1 − q) l``.
    """
    log_2 = tf.constant(math.log(2.0), logits.dtype)
    return (
        log_2
        + tf.math.sigmoid(logits) * tf.math.log_sigmoid(logits)
        + tf.math.sigmoid(-logits) * tf.math.log_sigmoid(-logits)
    )


@keras.saving.register_keras_serializable(package="tfhash")
class BinaryLatentVAE(keras.layers.Layer):
    """Variational autoencoder whose latent variable is a ±1 hash code; the layer returns the codes.

    Encoder: ``logits = Dense(num_bits)(x)``, ``q = sigmoid(logits)``, the probability that each bit is +1
    under the approximate posterior. Codes ``b ∈ {−1, +1}``:

    - ``sampling="deterministic"``: ``b = +1`` where ``q >= 0.5``, i.e. ``b = sign(logits)`` with
      ``sign(0) = +1`` (thresholded on the logits, so a logit too small for ``sigmoid`` to leave 0.5 keeps its
      sign).
    - ``sampling="stochastic"``: in training ``b = +1`` with probability ``q`` (`StochasticBinary`, ``u < q``
      with ``u ~ U[0, 1)`` from the layer's `keras.random.SeedGenerator`); in inference deterministic.
    - Gradient of both: straight-through on the probability, ``b`` forward and ``2q − 1`` backward, so
      ``db/dlogits = 2 q (1 − q)`` (the paper's STE).
    - ``relaxation=True`` (the paper's UCSH-R ablation, "replacing STE by continuous relaxation"): in training
      ``b = 2q − 1 = tanh(logits / 2)``, not binarised; in inference still ``sign(logits)``.

    Decoder: ``b → [Dense(u) → ReLU for u in decoder_units] → Dense(output_size)``, linear, reconstructing
    the features. ``decoder=False`` builds the encoder alone, for a model that uses the codes without the
    ELBO (UCSH-V): no decoder weights, and `reconstruct` and `elbo_terms` raise a ValueError.

    `elbo_terms` gives the negative ELBO of Eq. 1:

    - ``reconstruction = mean_i ‖x_i − x̂_i‖² / d``, with ``x̂ = decoder(b)`` and ``d`` the feature width: the
      Gaussian negative log-likelihood ``−log N(x; x̂, (d/2)·I)`` up to an additive constant, estimated with
      one code per sample (the sampled code, or the posterior's mode with deterministic sampling).
    - ``kl = mean_i Σ_k KL(Bernoulli(q_ik) ‖ Bernoulli(1/2))``, per bit
      ``q log(2q) + (1 − q) log(2(1 − q))``, computed from the logits: exact, and finite, for saturated bits.
    - ``loss = reconstruction + kl_weight · kl``: with ``kl_weight=1`` the −ELBO for that decoder variance; a
      Gaussian decoder of variance ``σ²`` corresponds to ``kl_weight = 2σ²/d`` (its −ELBO divided by
      ``d/(2σ²)``).

    A hashing model adds ``α · loss`` to its own objective (Eq. 7; UCSH's ``α = 1e-3``). The terms are
    computed in float32 whatever the layer's dtype policy; the codes are in its compute dtype.

    How the KL acts depends on the codes. Deterministic codes depend only on the signs of the logits, so the
    KL does not act on them directly: it pulls the logits towards 0 (``q`` towards 1/2), where a small update
    flips a bit. Sampled codes become noisier as ``q`` nears 1/2, so there ``kl_weight`` trades reliable codes
    against the prior (on 24-dimensional toy features trained on ``loss`` alone, ``kl_weight=1`` left many
    bits near ``q = 1/2`` and ``0.1`` did not).
    Relaxed codes (``relaxation=True``) train the decoder on values in ``(−1, 1)`` but inference gives ±1:
    ``elbo_terms(..., training=False)`` measures that gap.

    Paper's notation and sign: Eq. 1 writes the ELBO ``L_V = E[log q(x|b)] − KL[p(b|x) ‖ q(b)]`` (decoder
    ``q(x|b)``, encoder ``p(b|x)``, prior ``q(b)``), but Eq. 7 minimises ``α L_V``: the term minimised is the
    negative ELBO, ``loss`` here. The paper does not state the prior nor the decoder's likelihood; this layer
    takes a uniform Bernoulli(1/2) prior per bit and the Gaussian likelihood above.

    Initialisation: by default Glorot-uniform kernels and zero biases (Keras's ``Dense`` default), the
    kernels seeded from ``seed`` (the encoder's with ``seed + 1``, the decoder's ``i``-th Dense with
    ``seed + 2 + i``, so that the sampling noise, seeded ``seed``, does not repeat an initializer's draws).
    ``dense_initializers`` replaces them all, e.g. by a model that initialises every Dense layer of its head
    its own way (`tfhash.models.Hasher.head_initializers`).

    Randomness: ``seed`` seeds the default initializers (above) and the sampling noise. A ``.keras`` file
    stores the seed, not the generator's state: a reloaded layer restarts its random stream from the seed (as
    `StochasticBinary`).

    Args:
        num_bits: int >= 1, the code length K.
        output_size: int >= 1 or None, the width of the decoder's output (of the features it reconstructs);
            None takes the input width when the layer is built. Must be None with ``decoder=False``.
        decoder_units: None or a sequence of ints >= 1, the widths of the decoder's hidden ReLU layers (empty:
            a linear decoder). None: ``(1024,)``. With ``decoder=False``: None or empty (widths of a decoder
            the layer does not build are refused, as is an ``output_size``).
        decoder: bool. False builds the encoder alone (see Decoder above).
        sampling: ``"deterministic"`` or ``"stochastic"``, how training codes are drawn (see above).
        relaxation: bool. If True, training codes are ``2q − 1`` (UCSH-R); ``sampling`` must then be
            ``"deterministic"``.
        kl_weight: float >= 0, the weight of ``kl`` in ``loss``.
        seed: int >= 0 or None, seed of the default initializers and of the sampling noise.
        dense_initializers: None (the seeded defaults, see Initialisation) or a list with one dict
            ``{"kernel_initializer": ..., "bias_initializer": ...}`` per Dense layer, in build order: the
            encoder, the decoder's hidden layers, the decoder's output (the encoder's alone with
            ``decoder=False``). Each value is a Keras initializer object, name or serialized configuration
            (`keras.initializers.get`); the layers use them when they are built.
        **kwargs: standard `keras.layers.Layer` arguments (``name``, ``dtype``, ...).

    Call arguments:
        inputs: float tensor of features, shape ``(batch, d)``.
        training: bool. True draws training codes (sampled, thresholded or relaxed); False or None gives
            ``sign(logits)``.

    Returns:
        The codes ``b``, shape ``(batch, num_bits)``, in the layer's compute dtype: ±1 (``2q − 1`` in training
        with ``relaxation=True``).

    Example (a binary autoencoder hasher trained on the −ELBO alone):

    >>> class BinaryAutoencoderHasher(keras.Model):
    ...     def __init__(self, num_bits, **kwargs):
    ...         super().__init__(**kwargs)
    ...         self.vae = BinaryLatentVAE(num_bits, decoder_units=(256,), seed=0)
    ...
    ...     def call(self, features, training=False):
    ...         if not training:
    ...             return self.vae(features)
    ...         terms = self.vae.elbo_terms(features, training=True)
    ...         self.add_loss(terms["loss"])
    ...         return terms["codes"]
    >>> model = BinaryAutoencoderHasher(16)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
    >>> model.fit(features, epochs=20, batch_size=64)      # no targets: the loss is the layer's −ELBO
    >>> codes = model.predict(features)                    # ±1, sign(logits)

    An encoder alone, with PyTorch's ``nn.Linear`` initialisation for 512 features (``U(±1/√512)``):

    >>> bound = 1 / math.sqrt(512)
    >>> hash_layer = BinaryLatentVAE(64, decoder=False, dense_initializers=[{
    ...     "kernel_initializer": keras.initializers.RandomUniform(-bound, bound, seed=0),
    ...     "bias_initializer": keras.initializers.RandomUniform(-bound, bound, seed=1)}])

    Reference:
        Zhang et al., "Unsupervised Hashing by Clustering and Separating" (UCSH): Sec. 2.2, the binary latent
        VAE and its ELBO with KL regularisation (Eq. 1); Sec. 2.4, the overall loss
        ``L_2 + α L_V + β L_C + γ L_S`` (Eq. 7) trained with the straight-through estimator; Sec. 3, the
        UCSH-R ablation (continuous relaxation instead of the STE) and ``α = 1e-3``.
    """

    def __init__(
        self,
        num_bits,
        output_size=None,
        decoder_units=None,
        sampling="deterministic",
        relaxation=False,
        kl_weight=1.0,
        seed=None,
        decoder=True,
        dense_initializers=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_bits = check_int(num_bits, "num_bits", minimum=1)
        if not isinstance(decoder, bool):
            raise ValueError(f"`decoder` must be a bool, got {decoder!r}.")
        self.decoder = decoder
        self.output_size = check_int(output_size, "output_size", minimum=1, allow_none=True)
        if decoder_units is None:
            decoder_units = DEFAULT_DECODER_UNITS if decoder else ()
        if not isinstance(decoder_units, (list, tuple)):
            raise ValueError(
                f"`decoder_units` must be None or a list or tuple of integers >= 1, got {decoder_units!r}."
            )
        self.decoder_units = tuple(
            check_int(units, f"decoder_units[{i}]", minimum=1) for i, units in enumerate(decoder_units)
        )
        if not decoder and (self.output_size is not None or self.decoder_units):
            raise ValueError(
                f"`output_size` (got {output_size!r}) and `decoder_units` (got {decoder_units!r}) describe "
                "the decoder: with decoder=False they must be None (or decoder_units empty)."
            )
        if not isinstance(sampling, str) or sampling not in SAMPLINGS:
            raise ValueError(
                f"`sampling` must be one of {', '.join(map(repr, SAMPLINGS))}, got {sampling!r}."
            )
        self.sampling = sampling
        if not isinstance(relaxation, bool):
            raise ValueError(f"`relaxation` must be a bool, got {relaxation!r}.")
        if relaxation and sampling != "deterministic":
            raise ValueError(
                f"`sampling` must be 'deterministic' with relaxation=True (relaxed codes are not sampled), "
                f"got {sampling!r}."
            )
        self.relaxation = relaxation
        self.kl_weight = check_number(kl_weight, "kl_weight", minimum=0)
        self.seed = check_int(seed, "seed", minimum=0, allow_none=True)
        self.dense_initializers = self._check_dense_initializers(dense_initializers)
        self.sign = SignSTE(dtype=self.dtype_policy, name="sign")
        self.sampler = None
        if sampling == "stochastic":
            self.sampler = StochasticBinary(
                stochastic=True, signed=True, seed=self.seed, dtype=self.dtype_policy, name="sampler"
            )

    def _check_dense_initializers(self, dense_initializers):
        """``dense_initializers`` with every value resolved to an initializer; a ValueError naming it."""
        if dense_initializers is None:
            return None
        layers = "the encoder"
        expected = 1
        if self.decoder:
            layers += f", {len(self.decoder_units)} decoder hidden layer(s) and the decoder output"
            expected += len(self.decoder_units) + 1
        if not isinstance(dense_initializers, (list, tuple)) or len(dense_initializers) != expected:
            raise ValueError(
                f"`dense_initializers` must be None or a list with one dict per Dense layer, {expected} here "
                f"({layers}), got {dense_initializers!r}."
            )
        resolved = []
        for i, entry in enumerate(dense_initializers):
            name = f"dense_initializers[{i}]"
            if not isinstance(entry, dict) or set(entry) != set(INITIALIZER_KEYS):
                raise ValueError(
                    f"`{name}` must be a dict with the keys {', '.join(map(repr, INITIALIZER_KEYS))}, "
                    f"got {entry!r}."
                )
            resolved.append({key: _initializer(entry[key], f"{name}['{key}']") for key in INITIALIZER_KEYS})
        return resolved

    def _dense_initializers(self, index):
        """The ``Dense`` initializer arguments of the layer's ``index``-th Dense layer, in build order."""
        if self.dense_initializers is not None:
            return self.dense_initializers[index]
        seed = None if self.seed is None else self.seed + 1 + index
        return {"kernel_initializer": keras.initializers.GlorotUniform(seed=seed)}

    def build(self, input_shape):
        input_size = int(input_shape[-1])
        self.encoder = keras.layers.Dense(
            self.num_bits, **self._dense_initializers(0), dtype=self.dtype_policy, name="encoder"
        )
        self.encoder.build((None, input_size))
        self.decoder_layers = []
        if not self.decoder:
            return
        output_size = input_size if self.output_size is None else self.output_size
        width = self.num_bits
        sizes = (*self.decoder_units, output_size)
        for i, units in enumerate(sizes):
            is_output = i == len(sizes) - 1
            dense = keras.layers.Dense(
                units,
                activation=None if is_output else "relu",
                **self._dense_initializers(1 + i),
                dtype=self.dtype_policy,
                name="decoder_output" if is_output else f"decoder_hidden_{i}",
            )
            dense.build((None, width))
            self.decoder_layers.append(dense)
            width = units

    def call(self, inputs, training=False):
        return self.binarize(self.logits(inputs), training=training)

    def logits(self, inputs):
        """The encoder's output, ``logit q``, shape ``(batch, num_bits)``, in the compute dtype."""
        inputs = tf.convert_to_tensor(inputs)
        if not self.built:
            self.build(inputs.shape)
        return self.encoder(inputs)

    def probabilities(self, inputs):
        """``q = sigmoid(logits)``, the probability that each bit is +1, in float32."""
        return tf.math.sigmoid(tf.cast(self.logits(inputs), tf.float32))

    def binarize(self, logits, training=False):
        """The codes of given encoder logits (the second half of ``call``; see the class docstring)."""
        logits = tf.convert_to_tensor(logits, dtype=self.compute_dtype)
        # 2q − 1 as tanh(logits / 2): its sign is exactly that of the logits, and d/dlogits = 2q(1 − q).
        signed_probabilities = tf.math.tanh(logits / 2)
        if training and self.relaxation:
            return signed_probabilities
        if training and self.sampler is not None:
            return self.sampler(tf.math.sigmoid(logits), training=True)
        return self.sign(signed_probabilities)

    def reconstruct(self, codes, training=False):
        """The decoder's reconstruction of the features from codes, shape ``(batch, output_size)``."""
        if not self.decoder:
            raise ValueError(f"{self.name} has no decoder (decoder=False): it cannot `reconstruct` codes.")
        if not self.built:
            raise ValueError(
                f"{self.name} is not built: call it on features (or build it) before `reconstruct`, so that "
                "the decoder knows the width of what it reconstructs."
            )
        outputs = tf.convert_to_tensor(codes, dtype=self.compute_dtype)
        for dense in self.decoder_layers:
            outputs = dense(outputs, training=training)
        return outputs

    def elbo_terms(self, inputs, training=False, targets=None):
        """The codes and the terms of the negative ELBO (Eq. 1) on a batch of features.

        Args:
            inputs: float tensor of features, shape ``(batch, d)``.
            training: bool, how the codes are drawn (as in ``call``).
            targets: float tensor, shape ``(batch, output_size)``, the features the decoder reconstructs; None
                (the default) reconstructs ``inputs``.

        Returns:
            A dict: ``"codes"`` (``b``, as ``call`` returns them), ``"probabilities"`` (``q``, float32), and
            the float32 scalars ``"reconstruction"``, ``"kl"`` and ``"loss"``
            (``= reconstruction + kl_weight · kl``).

        Raises:
            ValueError: the layer has no decoder (``decoder=False``). Without a reconstruction there is no
                ELBO, and a dict of the KL alone, without ``"loss"``, would only fail later; the KL term is
                ``mean(sum(kl_to_fair_bernoulli(layer.logits(x)), axis=-1))``.
        """
        if not self.decoder:
            raise ValueError(
                f"{self.name} has no decoder (decoder=False), hence no reconstruction term and no ELBO: "
                "`elbo_terms` needs decoder=True. The KL term alone is "
                "`mean(sum(kl_to_fair_bernoulli(layer.logits(x)), axis=-1))`."
            )
        inputs = tf.convert_to_tensor(inputs)
        logits = self.logits(inputs)
        codes = self.binarize(logits, training=training)
        targets = inputs if targets is None else tf.convert_to_tensor(targets)
        error = tf.cast(targets, tf.float32) - tf.cast(self.reconstruct(codes, training=training), tf.float32)
        reconstruction = tf.reduce_mean(tf.square(error))  # the mean over the batch of ‖x − x̂‖² / d
        logits = tf.cast(logits, tf.float32)
        kl = tf.reduce_mean(tf.reduce_sum(kl_to_fair_bernoulli(logits), axis=-1))
        return {
            "codes": codes,
            "probabilities": tf.math.sigmoid(logits),
            "reconstruction": reconstruction,
            "kl": kl,
            "loss": reconstruction + self.kl_weight * kl,
        }

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.num_bits)

    def get_config(self):
        config = {
            "num_bits": self.num_bits,
            "output_size": self.output_size,
            "decoder_units": list(self.decoder_units),
            "sampling": self.sampling,
            "relaxation": self.relaxation,
            "kl_weight": self.kl_weight,
            "seed": self.seed,
            "decoder": self.decoder,
            "dense_initializers": None if self.dense_initializers is None else [
                {key: keras.initializers.serialize(initializer) for key, initializer in entry.items()}
                for entry in self.dense_initializers
            ],
        }
        return {**super().get_config(), **config}


def _initializer(identifier, name):
    """`keras.initializers.get(identifier)`; a ValueError naming `name` for anything else (None included)."""
    try:
        initializer = keras.initializers.get(identifier)
    except (ValueError, TypeError) as error:
        raise ValueError(f"`{name}` is not a Keras initializer: {identifier!r} ({error}).") from None
    if initializer is None:
        raise ValueError(f"`{name}` is not a Keras initializer: {identifier!r}.")
    return initializer
