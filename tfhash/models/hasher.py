"""The base of every tfhash hashing model: backbone → hash head → binarizer, training step, encoding, HQT."""

import math

import keras
import tensorflow as tf

from tfhash import batches
from tfhash._validation import check_int
from tfhash.callbacks.hqt_pseudo_bits import HQTPseudoBits
from tfhash.models.hashing_model import HashingModel
from tfhash.serving import ServingInterface

#: the values of `Hasher`'s ``head_init``: PyTorch's ``nn.Linear`` default, Keras's ``Dense`` default, and a
#: truncated normal of standard deviation 1e-3 (DSAH's released TensorFlow head)
HEAD_INITS = ("torch", "glorot", "normal_1e-3")
# the bias initializers' seeds lie this far above their kernels' (`Hasher.head_initializers`)
_BIAS_SEED_OFFSET = 1000


class Hasher(HashingModel):
    """Base class of the hashing models: (backbone) → hash head → binarizer, trained by a custom step.

    A subclass builds ``self.head`` (continuous activations ``h``; its Dense layers initialised by
    `head_initializers`) and, optionally, ``self.binarizer`` (the layer giving the training codes; None keeps
    ``h``) in its ``__init__``, sets ``default_head_init`` and implements `self_loss`. The base does the rest:

    - ``call(inputs, training)``: backbone features → head → binarizer. Inputs are images (batch, H, W, C),
      uint8 or float in [0, 255], when the model has a backbone, else features (batch, feature_size).
    - `encode`: ±1 codes, ``sign(call(inputs, training=False))`` with ``sign(0) = +1``; ``predict`` returns
      them too (for any batch `tfhash.batches.inputs_of` reads). `encode`, ``predict``, the trackers and
      ``export`` come from `tfhash.models.HashingModel`; `serving_interface` declares what ``export`` serves.
    - ``train_step`` / ``test_step``: data are named batches ``{"inputs": x, "sample_index": i}``, as the
      tfhash pipelines and the feature bank yield them (``x`` a tensor, or a pair of views ``(view_a,
      view_b)`` for two-view methods; `tfhash.batches`), or ``inputs`` alone (``fit(x)``) for methods and
      regularisers that need no per-sample state. ``fit(x, y)`` is refused: the hashers train without targets.
      Both steps share `compute_losses`; each named loss term is a `keras.metrics.Mean` tracker shown in the
      progress bar. ``test_step`` computes the same terms in inference mode on such batches; retrieval quality
      is measured by `tfhash.callbacks.RetrievalEvaluation`, not by ``evaluate``.
    - The optional HQT regulariser (`tfhash.models.HQTRegularizer`): with ``hqt`` set, the loss is
      ``(1 − α)·L_self + α·L_HQT`` (HQT Eq. 3) on the codes the subclass returns from `self_loss`.
    - Label-free supervision (HQT pseudo bits, a subclass's sample-indexed state) is written by refresher
      callbacks that the model builds from its own configuration: ``model.supervision_refreshers(features)``.
      ``fit`` refuses to start when a state is unassigned and no refresher for it is among the callbacks.
    - Random draws (a stochastic binarizer's noise) come from seed generators whose states are saved in
      ``.keras`` files, so a reloaded model continues training exactly as the original would.
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
        head_init: how the head's Dense layers are initialised (`head_initializers`): ``"torch"``, PyTorch's
            ``nn.Linear`` default, kernel and bias ``U(−1/√fan_in, 1/√fan_in)``; ``"glorot"``, Keras's ``Dense``
            default, Glorot-uniform kernel and zero bias; ``"normal_1e-3"``, kernel and bias drawn from a normal
            of standard deviation 0.001 truncated at two deviations; None (the default), the method's own,
            ``default_head_init``: that of the framework its authors released it in (each subclass says
            which). Configurations saved without it load with the method's default.
        **kwargs: standard `keras.Model` arguments (``name``, ...).

    Example (any subclass; here Bi-half with the HQT regulariser on cached features):

    >>> model = BiHalfHasher(64, feature_size=bank.feature_size, hqt=HQTRegularizer(num_samples=5000), seed=0)
    >>> model.compile(optimizer=keras.optimizers.SGD(1e-4, momentum=0.9), jit_compile=True)
    >>> data = bank.training_dataset(32, epochs=300, drop_remainder=True)   # {"inputs", "sample_index"}
    >>> model.fit(data, epochs=300,   # steps_per_epoch comes from the stream (the epochs it was built for)
    ...           callbacks=model.supervision_refreshers(bank.train[0, 0]))     # HQTPseudoBits, tree seed 0
    >>> codes = model.predict(bank.evaluation_dataset("database", batch_size=1024))   # ±1
    >>> model.with_backbone(tfhash.backbones.get("efficientnet_lite0")).export("saved_models/bihalf_64")

    Reference:
        DESIGN.md ("Sample-indexed state", "One class per method", "HQT is one implementation"); the methods'
        papers are cited by each subclass.
    """

    #: names of the terms `self_loss` returns besides the total (one tracker each); set by subclasses.
    loss_terms = ()
    #: views of every sample in a training batch: 1 (``inputs`` is a tensor) or 2 (a pair); set by subclasses.
    num_views = 1
    #: the ``head_init`` of a model built without one (one of `HEAD_INITS`): its authors' framework's default;
    #: set by subclasses (Keras's own, ``"glorot"``, for a method released in Keras or TensorFlow).
    default_head_init = "glorot"

    def __init__(self, num_bits, backbone=None, feature_size=None, hqt=None, seed=None, head_init=None, **kwargs):
        super().__init__(num_bits, **kwargs)
        self.seed = check_int(seed, "seed", allow_none=True)
        if head_init is None:
            head_init = self.default_head_init
        if not isinstance(head_init, str) or head_init not in HEAD_INITS:
            raise ValueError(
                f"`head_init` must be one of {', '.join(map(repr, HEAD_INITS))} or None (the method's default, "
                f"{self.default_head_init!r}), got {head_init!r}."
            )
        self.head_init = head_init
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
        self._create_trackers(names)

    # --- subclass interface -------------------------------------------------------------------------------

    def self_loss(self, inputs, sample_index, training):
        """The method's own loss on a batch: returns ``(loss, terms, codes)``.

        ``loss`` is the scalar L_self; ``terms`` a dict of the named parts listed in ``loss_terms``;
        ``codes`` a list of the training codes of each view (the logits of the HQT regulariser).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement self_loss (the method's own loss).")

    def head_initializers(self, fan_in, offset=0, use_bias=True):
        """The initializers of one Dense layer of the head under `head_init`, as ``Dense`` keyword arguments.

        - ``"torch"``: PyTorch's ``nn.Linear`` default (``reset_parameters``: ``kaiming_uniform_(a=√5)`` for the
          weight, whose bound is ``gain·√(3/fan_in) = √(1/3)·√(3/fan_in)``, and the same bound for the bias):
          kernel and bias ``U(−1/√fan_in, 1/√fan_in)``, with ``fan_in`` the layer's input width for both. The
          kernel is ``VarianceScaling(1/3, "fan_in", "uniform")``; the bias a ``RandomUniform`` with that
          bound (``VarianceScaling`` on the bias's own shape would take its fan-in as the number of units).
        - ``"glorot"``: Keras's ``Dense`` default, a Glorot-uniform kernel and a zero bias.
        - ``"normal_1e-3"``: kernel and bias ``TruncatedNormal(0, 0.001)`` (re-drawn beyond two deviations, as
          ``tf.random.truncated_normal``), the new layers of DSAH's released code (``Vgg.get_fc_var``).

        Seeds derive from the model's seed: the kernel's is ``seed + offset`` (as every tfhash version before
        ``head_init``, so ``"glorot"`` reproduces their weights), the bias's ``seed + offset + 1000`` (its own
        stream: a stateless draw with the kernel's seed would repeat the kernel's first row). ``offset`` tells
        a head's layers apart; subclasses keep their derived seeds (a sampler's, ...) below 1000.

        Args:
            fan_in: int, the layer's input width (the features' or the previous layer's).
            offset: int >= 0, the layer's position among the head's seeded initializers.
            use_bias: bool, whether the layer has a bias (False: no ``bias_initializer`` is returned).

        Returns:
            A dict with ``kernel_initializer`` and, with ``use_bias``, ``bias_initializer``.
        """
        kernel_seed = None if self.seed is None else self.seed + offset
        bias_seed = None if self.seed is None else self.seed + offset + _BIAS_SEED_OFFSET
        if self.head_init == "torch":
            bound = 1.0 / math.sqrt(check_int(fan_in, "fan_in", minimum=1))
            kernel = keras.initializers.VarianceScaling(1.0 / 3.0, mode="fan_in", distribution="uniform",
                                                        seed=kernel_seed)
            bias = keras.initializers.RandomUniform(-bound, bound, seed=bias_seed)
        elif self.head_init == "normal_1e-3":
            kernel = keras.initializers.TruncatedNormal(stddev=1e-3, seed=kernel_seed)
            bias = keras.initializers.TruncatedNormal(stddev=1e-3, seed=bias_seed)
        else:
            kernel, bias = keras.initializers.GlorotUniform(seed=kernel_seed), keras.initializers.Zeros()
        return {"kernel_initializer": kernel, **({"bias_initializer": bias} if use_bias else {})}

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

    # --- serving ------------------------------------------------------------------------------------------

    def serving_interface(self):
        """What the model serves (`tfhash.serving.ServingInterface`), read by `export`.

        With a backbone: uint8 images (``serving_default``, the backbone's preprocessing inside) and backbone
        features (``encode_features``, the hash head alone); head-only: features only. Both give `encode`'s
        codes.

        Raises:
            ValueError: the model is not built.
        """
        self._check_built()
        if getattr(self, "head", None) is None:
            raise ValueError(f"`model` ({type(self).__name__}) is not built: build it before exporting it.")
        backbone = self.backbone
        if backbone is None:
            images, encode_images, encode_features = None, None, self.encode
        else:
            images, encode_images = tuple(int(s) for s in backbone.image_shape), self.encode
            encode_features = self.encode_features

        return ServingInterface(
            num_bits=self.num_bits,
            model_class=type(self).__name__,
            model_name=self.name,
            image_shape=images,
            encode_images=encode_images,
            feature_size=int(self.feature_size),
            encode_features=encode_features,
            preprocessing=None if backbone is None else getattr(backbone, "preprocessing", None),
            backbone_class=None if backbone is None else type(backbone).__name__,
            variables=self.variables,
        )

    def encode_features(self, features):
        """±1 codes of backbone features: the hash head and binarizer alone (`encode` for a head-only model)."""
        return self.binarize_outputs(self.codes(features, training=False))

    # --- training -----------------------------------------------------------------------------------------

    @property
    def needs_sample_index(self):
        """Whether training batches must carry ``"sample_index"``: the model gathers per-sample state (HQT)."""
        return self.hqt is not None

    def compute_losses(self, data, training):
        """All loss terms of a batch as a dict ``name -> scalar``, the total under ``"loss"``.

        ``data`` is read by `tfhash.batches.unpack`: a dict ``{"inputs": ..., "sample_index": ...}`` (the index
        required when `needs_sample_index`), or the inputs alone; ``inputs`` must have `num_views` views.
        """
        inputs, sample_index = batches.unpack(
            data, owner=type(self).__name__, needs_index=self.needs_sample_index, views=self.num_views
        )
        loss, terms, codes = self.self_loss(inputs, sample_index, training)
        losses = dict(terms)
        if self.hqt is not None:
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

    # --- supervision ------------------------------------------------------------------------------------

    def supervision_refreshers(self, features, verbose=0, *, inputs=None, labels=None):
        """The callbacks that write the label-free supervision this model needs, built from its configuration.

        The base contributes `tfhash.callbacks.HQTPseudoBits` when the model has an HQT regulariser (its tree
        from ``hqt.tree``, seeded with the model's seed unless ``tree`` sets one, redrawn every
        ``hqt.every_n_epochs``); subclasses with their own sample-indexed state add their refresher
        (`CIMONHasher`: `tfhash.callbacks.CIMONPseudoSimilarityRefresher`). A model without such state returns
        ``[]``. Pass them to ``fit``; a restored model keeps its state (the refreshers only fill unassigned
        state, and redraw every n epochs where so configured).

        Args:
            features: the training set's features in sample-index order, (n, d) (the backbone features of the
                training images, e.g. ``bank.train[0, 0]``), or a callable ``model -> features``; see each
                refresher for what else it takes.
            verbose: 0 silent, 1 one line per refresh.
            inputs: None, or the training set's model inputs in sample-index order (e.g. its images for a model
                with a backbone), for refreshers that encode the training set with the current model (DSAH's
                neighbour discovery); the others ignore it.
            labels: None, or the training labels in sample-index order, for the refreshers' logs only (the
                quality of the supervision against them); never used for training.

        Returns:
            A list of `tfhash.callbacks.SupervisionRefresher`.

        Example:

        >>> model.fit(data, epochs=60, callbacks=[*model.supervision_refreshers(train_features), evaluation])
        """
        if self.hqt is None:
            return []
        return [self.hqt.refresher(features, seed=self._supervision_seed(), verbose=verbose)]

    def _supervision_seed(self):
        """The default seed of the supervision builders: the model's seed (0 without one, their own default)."""
        return 0 if self.seed is None else self.seed

    def _unassigned_supervision(self):
        """``(description, refresher class, how to assign it by hand)`` of each declared, unassigned state."""
        if self.hqt is None or bool(keras.ops.convert_to_numpy(self.hqt.assigned)):
            return []
        return [("HQT pseudo bits", HQTPseudoBits, "model.hqt.assign(HyperQuantizationTree(...).pseudo_bits(x))")]

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, after checks that Keras cannot make: no targets, and every state has a writer.

        Raises:
            ValueError: ``y`` was given (tfhash hashers train without targets; ``fit(x, y)`` would train on
                the wrong data), or a declared supervision state (HQT pseudo bits, ...) is unassigned and none
                of the ``callbacks`` is a refresher for it (see `supervision_refreshers`).
        """
        y = kwargs.get("y", args[1] if len(args) > 1 else None)
        if y is not None:
            raise ValueError(
                f"{type(self).__name__}.fit got targets `y`: tfhash hashers train without targets. Pass the "
                "inputs alone (fit(x)), or named batches {'inputs': x, 'sample_index': i} "
                "(tfhash.data.training_dataset, FeatureBank.training_dataset; see tfhash.batches)."
            )
        callbacks = kwargs.get("callbacks", args[5] if len(args) > 5 else None)
        if isinstance(callbacks, keras.callbacks.CallbackList):
            callbacks = callbacks.callbacks
        callbacks = list(callbacks or [])
        for description, refresher, by_hand in self._unassigned_supervision():
            if not any(isinstance(callback, refresher) for callback in callbacks):
                raise ValueError(
                    f"{type(self).__name__} has no {description} yet, and no {refresher.__name__} is among the "
                    "callbacks: train with `callbacks=model.supervision_refreshers(train_features)` (the "
                    f"refreshers this model needs), or assign the state before training ({by_hand})."
                )
        return super().fit(*args, **kwargs)

    # --- saving -------------------------------------------------------------------------------------------

    def get_config(self):
        config = {
            "num_bits": self.num_bits,
            "backbone": None if self.backbone is None else keras.saving.serialize_keras_object(self.backbone),
            "feature_size": self.feature_size,
            "hqt": None if self.hqt is None else keras.saving.serialize_keras_object(self.hqt),
            "seed": self.seed,
            "head_init": self.head_init,
        }
        return {**super().get_config(), **config}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("backbone", "hqt"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
