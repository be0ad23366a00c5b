"""The base of every tfhash hashing model: backbone → hash head → binarizer, training step, encoding, HQT."""

import keras
import tensorflow as tf

from tfhash._validation import check_int
from tfhash.layers.sign_ste import _sign


class Hasher(keras.Model):
    """Base class of the hashing models: (backbone) → hash head → binarizer, trained by a custom step.

    A subclass builds ``self.head`` (continuous activations ``h``) and, optionally, ``self.binarizer`` (the
    layer giving the training codes; None keeps ``h``) in its ``__init__`` and implements `self_loss`. The base
    does the rest:

    - ``call(inputs, training)``: backbone features → head → binarizer. Inputs are images (batch, H, W, C),
      uint8 or float in [0, 255], when the model has a backbone, else features (batch, feature_size).
    - `encode`: ±1 codes, ``sign(call(inputs, training=False))`` with ``sign(0) = +1``; ``predict`` returns
      them too.
    - ``train_step`` / ``test_step``: data are ``(inputs, sample_index)`` batches, as the tfhash pipelines
      and the feature bank yield them (``inputs`` a tensor, or a pair of views for two-view methods), or
      ``inputs`` alone for methods and regularisers that need no per-sample state. Both share `compute_losses`;
      each named loss term is a `keras.metrics.Mean` tracker shown in the progress bar. ``test_step`` computes
      the same terms in inference mode on such batches; retrieval quality is measured by
      `tfhash.callbacks.RetrievalEvaluation`, not by ``evaluate``.
    - The optional HQT regulariser (`tfhash.models.HQTRegularizer`): with ``hqt`` set, the loss is
      ``(1 − α)·L_self + α·L_HQT`` (HQT Eq. 3) on the codes the subclass returns from `self_loss`.
    - ``export(path)``: a SavedModel for serving (see `tfhash.export`).

    Under `tf.distribute`, the loss is divided by the number of replicas before the gradient (as Keras's own
    step does) and the trackers record the unscaled value.

    Args:
        num_bits: int >= 1, the code length K.
        backbone: None (the model takes features) or a backbone from `tfhash.backbones.get` (the model takes
            images; frozen or trainable as built).
        feature_size: int, width of the input features; required without a backbone (it builds the model),
            ignored with one (the backbone's ``feature_size``).
        hqt: None or an `HQTRegularizer`; the model builds it with ``num_bits``.
        seed: int or None, seed of the head's initializers and of the model's random draws.
        **kwargs: standard `keras.Model` arguments (``name``, ...).

    Example (any subclass; here Bi-half with the HQT regulariser on cached features):

    >>> model = BiHalfHasher(64, feature_size=bank.feature_size, hqt=HQTRegularizer(num_samples=5000), seed=0)
    >>> model.compile(optimizer=keras.optimizers.SGD(1e-4, momentum=0.9), jit_compile=True)
    >>> model.fit(bank.training_dataset(32, drop_remainder=True), epochs=300,
    ...           callbacks=[HQTPseudoBits(HyperQuantizationTree(64, seed=0), bank.train[0, 0])])
    >>> codes = model.predict(bank.evaluation_dataset("database", batch_size=1024))   # ±1
    >>> model.with_backbone(tfhash.backbones.get("efficientnet_lite0")).export("saved_models/bihalf_64")

    Reference:
        DESIGN.md ("Sample-indexed state", "One class per method", "HQT is one implementation"); the methods'
        papers are cited by each subclass.
    """

    #: names of the terms `self_loss` returns besides the total (one tracker each); set by subclasses.
    loss_terms = ()

    def __init__(self, num_bits, backbone=None, feature_size=None, hqt=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_bits = check_int(num_bits, "num_bits", minimum=1)
        self.seed = check_int(seed, "seed", allow_none=True)
        if backbone is not None and not isinstance(backbone, keras.Model):
            raise ValueError(f"`backbone` must be None or a keras.Model (tfhash.backbones.get), got {backbone!r}.")
        self.backbone = backbone
        if backbone is None:
            self.feature_size = check_int(feature_size, "feature_size", minimum=1)
        else:
            self.feature_size = int(backbone.feature_size)
        if hqt is not None and type(hqt).__name__ != "HQTRegularizer":
            raise ValueError(f"`hqt` must be None or a tfhash.models.HQTRegularizer, got {hqt!r}.")
        self.hqt = hqt
        if hqt is not None and not hqt.built:
            hqt.build((None, self.num_bits))
        if hqt is not None and hqt.num_bits != self.num_bits:
            raise ValueError(f"`hqt` was built for {hqt.num_bits} bits, but the model has num_bits={self.num_bits}.")
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.binarizer = None
        names = ("loss", *self.loss_terms) + (("self_loss", "hqt_loss") if hqt is not None else ())
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}

    # --- subclass interface -------------------------------------------------------------------------------

    def self_loss(self, inputs, sample_index, training):
        """The method's own loss on a batch: returns ``(loss, terms, codes)``.

        ``loss`` is the scalar L_self; ``terms`` a dict of the named parts listed in ``loss_terms``;
        ``codes`` a list of the training codes of each view (the logits of the HQT regulariser).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement self_loss (the method's own loss).")

    def initializer(self, offset=0):
        """A Glorot-uniform kernel initializer seeded from the model's seed (``offset`` tells layers apart)."""
        return keras.initializers.GlorotUniform(seed=None if self.seed is None else self.seed + offset)

    def _finish_init(self):
        """Builds the model for its input shape; subclasses call it at the end of their ``__init__``."""
        self.build(self.input_shape_)

    # --- forward ------------------------------------------------------------------------------------------

    @property
    def input_shape_(self):
        """The shape of one batch of inputs: ``(None, H, W, C)`` with a backbone, else ``(None, feature_size)``."""
        if self.backbone is not None:
            return (None, *self.backbone.image_shape)
        return (None, self.feature_size)

    def build(self, input_shape):
        if self.backbone is not None:
            self.backbone.build(input_shape)
        self.head.build((None, self.feature_size))
        if self.binarizer is not None:
            self.binarizer.build((None, self.num_bits))
        self.built = True

    def features(self, inputs, training=False):
        """Backbone features of images, or the inputs themselves (as float32) for a head-only model."""
        if self.backbone is not None:
            return self.backbone(inputs, training=training)
        return tf.cast(inputs, tf.float32)

    def call(self, inputs, training=False):
        return self.codes(self.features(inputs, training=training), training=training)

    def codes(self, features, training=False):
        """Head and binarizer on backbone features: the training codes, or the inference output."""
        activations = self.head(features, training=training)
        if self.binarizer is None:
            return activations
        return self.binarizer(activations, training=training)

    def encode(self, inputs):
        """±1 codes (float32) of a batch of inputs (images, or features for a head-only model)."""
        return _sign(self(inputs, training=False))

    def predict_step(self, data):
        inputs = data[0] if isinstance(data, tuple) else data
        return self.encode(inputs)

    # --- training -----------------------------------------------------------------------------------------

    @property
    def metrics(self):
        return list(self.trackers.values())

    def compute_losses(self, data, training):
        """All loss terms of a batch as a dict ``name -> scalar``, the total under ``"loss"``."""
        inputs, sample_index = _unpack(data)
        loss, terms, codes = self.self_loss(inputs, sample_index, training)
        losses = dict(terms)
        if self.hqt is not None:
            if sample_index is None:
                raise ValueError(
                    "The HQT regulariser gathers pseudo bits by sample index: the data must yield "
                    "(inputs, sample_index) batches (tfhash.data.training_dataset, FeatureBank.training_dataset)."
                )
            hqt_loss = tf.add_n([self.hqt(code, sample_index) for code in codes]) / len(codes)
            losses["self_loss"], losses["hqt_loss"] = loss, hqt_loss
            loss = self.hqt.combine(loss, hqt_loss)
        if self.losses:  # weight regularizers of the head or a fine-tuned backbone
            loss = loss + tf.add_n(self.losses)
        losses["loss"] = loss
        return losses

    def train_step(self, data):
        with tf.GradientTape() as tape:
            losses = self.compute_losses(data, training=True)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(losses["loss"] / replicas)
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        return self._track(losses)

    def test_step(self, data):
        return self._track(self.compute_losses(data, training=False))

    def _track(self, losses):
        for name, value in losses.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def with_backbone(self, backbone):
        """The same hasher for images: ``backbone`` in front of a copy of this head-only model's trained layers.

        A hasher trained on cached features (a `FeatureBank` of a frozen backbone) takes features; put the
        backbone back in front to encode or export images. The copy shares no variables with this model; its
        own weights (head, binarizer and per-sample state) are copied. The HQT regulariser is left out: its
        pseudo bits are training state, not part of an encoder.

        Example:

        >>> image_model = model.with_backbone(tfhash.backbones.get("efficientnet_lite0"))
        >>> image_model.export("saved_models/cibhash_64")        # takes uint8 images
        """
        if self.backbone is not None:
            raise ValueError(f"{self.name} already has a backbone ({self.backbone.name}).")
        if not isinstance(backbone, keras.Model) or getattr(backbone, "feature_size", None) != self.feature_size:
            raise ValueError(
                f"`backbone` must be a tfhash backbone with feature_size={self.feature_size} (the features this "
                f"model was trained on), got {backbone!r}."
            )
        excluded = ("backbone", "feature_size", "hqt", "name", "trainable", "dtype")
        config = {key: value for key, value in self.get_config().items() if key not in excluded}
        image_model = type(self)(**config, backbone=backbone)
        # Match variables by their path below the model (the two models' names differ).
        trained = {variable.path.split("/", 1)[-1]: variable for variable in self.weights}
        backbone_variables = {id(variable) for variable in backbone.weights}
        for variable in image_model.weights:
            if id(variable) in backbone_variables:
                continue
            source = trained.get(variable.path.split("/", 1)[-1])
            if source is None or tuple(source.shape) != tuple(variable.shape):
                raise ValueError(f"No trained weight of {self.name} matches {variable.path}.")
            variable.assign(source)
        return image_model

    # --- saving -------------------------------------------------------------------------------------------

    def get_config(self):
        config = {
            "num_bits": self.num_bits,
            "backbone": None if self.backbone is None else keras.saving.serialize_keras_object(self.backbone),
            "feature_size": self.feature_size,
            "hqt": None if self.hqt is None else keras.saving.serialize_keras_object(self.hqt),
            "seed": self.seed,
        }
        return {**super().get_config(), **config}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("backbone", "hqt"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    def export(self, filepath, format="tf_saved_model", verbose=True, **kwargs):
        """Writes a serving SavedModel: images (and features) → ±1 and packed codes; see `tfhash.export`."""
        from tfhash.export import export_encoder

        if format != "tf_saved_model":
            raise ValueError(f"Hasher.export writes format='tf_saved_model' only, got format={format!r}.")
        return export_encoder(self, filepath, verbose=verbose, **kwargs)


def _unpack(data):
    """``(inputs, sample_index)`` from a batch of ``(inputs, sample_index)`` or of ``inputs`` alone."""
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[1], (tuple, list)):
        if isinstance(data[0], (tuple, list)) or _is_index(data[1]):
            return data[0], data[1]
    return data, None


def _is_index(value):
    return value.dtype.is_integer and value.shape.rank == 1
