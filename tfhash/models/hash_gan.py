"""HashGAN: a generator, and a discriminator and a hash encoder that share all their layers but the last."""

import keras
import tensorflow as tf

from tfhash import batches
from tfhash._validation import check_int, check_number
from tfhash.layers import ConsistencyTransform, WeightNormDense
from tfhash.losses import hashgan as losses
from tfhash.models import improved_gan
from tfhash.models.hashing_model import HashingModel
from tfhash.serving import ServingInterface

# Paper §4: Adam(9e-4 decreasing linearly to 3e-4, β1 = 0.5, β2 = 0.999, ε = 1e-8).
_LEARNING_RATE, _FINAL_LEARNING_RATE = 9e-4, 3e-4


@keras.saving.register_keras_serializable(package="tfhash")
class HashGAN(HashingModel):
    """Unsupervised generative adversarial hashing (HashGAN), trained from scratch on images.

    Three networks: a generator G fed with ``z = [z′, b′]``, uniform noise ``z′ ~ U(0, 1)`` concatenated with
    a random binary vector ``b′ ∈ {0, 1}^K``; a discriminator D (sigmoid real/fake) and an encoder E (K
    sigmoid bits, ``t = E(x)``) that share every layer but their last, the *trunk*, whose output F is the last
    hidden layer. Each training step alternates (paper §3):

    1. D and E, jointly, on a batch of real images x, a transformed version x̃ of them
       (`ConsistencyTransform`) and generated images G(z):
       ``L_adv(D) + w·[λ·L_minEntropy(t) + L_uniFreq(t) + L_cons(t, t̃) + L_ind(W_E) + 0.1·L_2(E(G(z)), b′)]``
       (Eq. 1–4), where the hash and ℓ2 terms are off (``w = 0``) for the first ``hash_warmup_steps`` steps;
       every term is a batch mean (``sum_over_images=False``, the default; see that argument);
    2. G, on a fresh z, with feature matching ``‖mean F(x) − mean F(G(z))‖²`` (Eq. 5).

    The loss terms are the functions of `tfhash.losses.hashgan` (batch means, see there). Every term is a
    tracked metric; ``encoder_loss`` is the weighted D/E total. Codes: ``b = 1(E(x) > 0.5)``; `encode` returns
    them as ±1 (+1 for a bit of 1), like every tfhash model, and ``predict`` returns `encode`'s codes.

    Inputs are images ``(batch, H, W, C)``, uint8 or float pixels in [0, 255]; the model scales them to the
    architecture's range ([0, 1] for ``"mnist"``, [−1, 1] for ``"cifar10"``, the generator's output range).
    Training data are image batches, or the named batches of the tfhash pipelines (`tfhash.batches`:
    ``{"inputs": images, "sample_index": i}`` or ``{"inputs": images, "labels": y}``; only the images are
    read). Encoding, ``predict``, the trackers and ``export`` come from `tfhash.models.HashingModel`.

    Args:
        num_bits: int >= 1, the code length K (also the length of the generator's binary input b′).
        architecture: ``"mnist"`` (fully connected, 28 × 28 × 1) or ``"cifar10"`` (convolutional, 32 × 32 ×
            3), the Improved-GAN networks of `tfhash.models.improved_gan`.
        noise_dim: int >= 1, length of the uniform noise z′ (Improved-GAN: 100).
        min_entropy_weight: float >= 0, λ of the minimum-entropy term (paper: 1e-3 or 1e-2, "selected based on
            the final epoch loss value").
        uniform_frequency_weight, consistency_weight, independence_weight: floats >= 0, the other hash terms'
            weights (paper: 1; 0 removes a term, as in the ablation of Fig. 5).
        collaborative_weight: float >= 0, weight of the ℓ2 loss between E(G(z)) and b′ (paper: 0.1).
        hash_warmup_steps: int >= 0, D/E steps trained with the adversarial loss alone (paper: a tenth of
            training); counted by the D/E optimizer's iterations, so a reloaded model resumes the schedule.
        input_noise_stddev: float >= 0, Gaussian noise on the D/E input during training (paper: 0.15).
        sum_over_images: bool. Eq. 3 writes the minimum-entropy and consistency terms as sums over the images
            (Σ_i) while the uniform-frequency term averages inside (f_k = 1/N Σ_i t_ik) and Eq. 4 is an
            expectation. False (the default): every term is a batch mean. True: those two are sums over the
            (global) batch, the literal reading; with it the encoder collapsed on MNIST (every output 0.5
            within 3 epochs at a batch of 100: the 100-fold consistency term wins and the entropy's gradient
            vanishes at 0.5), so it is not the default.
        consistency_transform: a `ConsistencyTransform`, or None for the paper's: noise of σ 0.15 on MNIST,
            translations of up to 2 pixels and horizontal flips on CIFAR-10.
        seed: int or None, seed of the initializers and of every random draw of the model.
        **kwargs: standard `keras.Model` arguments (``name``, ...).

    Example:

    >>> model = HashGAN(32, architecture="mnist", hash_warmup_steps=steps // 10, seed=0)
    >>> model.compile(d_optimizer=HashGAN.paper_optimizer(steps), g_optimizer=HashGAN.paper_optimizer(steps))
    >>> model.initialize_from_batch(first_images)       # weight-norm data-dependent initialisation
    >>> data = training_dataset(pool, split.train, 100, epochs=epochs, drop_remainder=True, channels=1)
    >>> model.fit(data, epochs=epochs)                  # steps_per_epoch comes from the stream
    >>> codes = model.predict(query_images)            # ±1, +1 where E(x) > 0.5
    >>> model.export("saved_models/hashgan_mnist_32")

    Reference:
        K. Ghasedi Dizaji, F. Zheng, N. Sadoughi, Y. Yang, C. Deng, H. Huang, "Unsupervised Deep Generative
        Adversarial Hashing Network", CVPR 2018, Eq. 1–5 and §4 (implementation details); T. Salimans et al.,
        "Improved Techniques for Training GANs", NIPS 2016 (networks, feature matching).
    """

    #: the tracked terms besides ``encoder_loss``, in progress-bar order
    loss_terms = (
        "adversarial",
        "min_entropy",
        "uniform_frequency",
        "consistency",
        "independence",
        "collaborative",
        "feature_matching",
    )

    def __init__(
        self,
        num_bits,
        architecture="mnist",
        noise_dim=100,
        min_entropy_weight=1e-3,
        uniform_frequency_weight=1.0,
        consistency_weight=1.0,
        independence_weight=1.0,
        collaborative_weight=0.1,
        hash_warmup_steps=0,
        input_noise_stddev=0.15,
        sum_over_images=False,
        consistency_transform=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(num_bits, **kwargs)
        if architecture not in improved_gan.ARCHITECTURES:
            raise ValueError(
                f"`architecture` must be one of {sorted(improved_gan.ARCHITECTURES)}, got {architecture!r}."
            )
        self.architecture = architecture
        self.image_shape, self.pixel_range = improved_gan.ARCHITECTURES[architecture]
        self.noise_dim = check_int(noise_dim, "noise_dim", minimum=1)
        self.min_entropy_weight = check_number(min_entropy_weight, "min_entropy_weight", minimum=0.0)
        self.uniform_frequency_weight = check_number(
            uniform_frequency_weight, "uniform_frequency_weight", 0.0
        )
        self.consistency_weight = check_number(consistency_weight, "consistency_weight", minimum=0.0)
        self.independence_weight = check_number(independence_weight, "independence_weight", minimum=0.0)
        self.collaborative_weight = check_number(collaborative_weight, "collaborative_weight", minimum=0.0)
        self.hash_warmup_steps = check_int(hash_warmup_steps, "hash_warmup_steps", minimum=0)
        self.input_noise_stddev = check_number(input_noise_stddev, "input_noise_stddev", minimum=0.0)
        if not isinstance(sum_over_images, bool):
            raise ValueError(f"`sum_over_images` must be a bool, got {sum_over_images!r}.")
        self.sum_over_images = sum_over_images
        self.seed = check_int(seed, "seed", allow_none=True)
        if consistency_transform is None:
            consistency_transform = _paper_transform(architecture, self._seed(1))
        if not isinstance(consistency_transform, ConsistencyTransform):
            raise ValueError(
                "`consistency_transform` must be None or a tfhash.layers.ConsistencyTransform, got "
                f"{consistency_transform!r}."
            )
        self.consistency_transform = consistency_transform
        self.seed_generator = keras.random.SeedGenerator(self._seed(2))

        self.generator = improved_gan.generator(architecture, noise_dim + self.num_bits, seed=self._seed(100))
        self.trunk = improved_gan.trunk(architecture, self.input_noise_stddev, seed=self._seed(200))
        width = improved_gan.feature_size(architecture)
        self.discriminator_head = WeightNormDense(1, seed=self._seed(300), name="discriminator_head")
        self.encoder_head = WeightNormDense(self.num_bits, seed=self._seed(301), name="encoder_head")
        self.discriminator_head.build((None, width))
        self.encoder_head.build((None, width))
        self._create_trackers(("encoder_loss", *self.loss_terms))
        self.built = True

    def _seed(self, offset):
        return None if self.seed is None else self.seed + offset

    # --- networks -----------------------------------------------------------------------------------------

    def preprocess(self, images):
        """Pixels in [0, 255] → float32 images in the model's range (``pixel_range``)."""
        low, high = self.pixel_range
        return tf.cast(images, tf.float32) * ((high - low) / 255.0) + low

    def postprocess(self, images):
        """Images in the model's range → float32 pixels in [0, 255] (clipped)."""
        low, high = self.pixel_range
        return tf.clip_by_value((tf.cast(images, tf.float32) - low) * (255.0 / (high - low)), 0.0, 255.0)

    def call(self, inputs, training=False):
        """E(x): the K bit probabilities ``t`` of images in [0, 255]."""
        features = self.trunk(self.preprocess(inputs), training=training)
        return tf.sigmoid(self.encoder_head(features))

    def binarize_outputs(self, outputs):
        """±1 codes (float32) of bit probabilities: +1 where ``E(x) > 0.5`` (the paper's ``b = 1(t > 0.5)``).

        `encode` (from `HashingModel`) applies it to ``call(images)``.
        """
        return tf.where(outputs > 0.5, 1.0, -1.0)

    def sample_generator_inputs(self, batch_size):
        """``(z′, b′)``: uniform noise (batch, noise_dim) and random bits (batch, K) in {0, 1}, float32."""
        uniform = keras.random.uniform((batch_size, self.noise_dim), seed=self.seed_generator)
        draws = keras.random.uniform((batch_size, self.num_bits), seed=self.seed_generator)
        return uniform, tf.cast(draws < 0.5, tf.float32)

    def generate(self, generator_bits, uniform_noise=None, training=False):
        """G(z′ ⊕ b′) as float32 pixels in [0, 255], for bits ``b′`` (batch, K) in {0, 1}.

        Args:
            generator_bits: (batch, K) array of 0 / 1, the binary input b′ (the codes the images should get).
            uniform_noise: None (drawn from U(0, 1) with the model's seed generator) or (batch, noise_dim).
            training: bool, run the generator's batch normalisation in training mode.
        """
        generator_bits = tf.cast(generator_bits, tf.float32)
        if generator_bits.shape.rank != 2 or generator_bits.shape[-1] != self.num_bits:
            raise ValueError(
                f"`generator_bits` must have shape (batch, {self.num_bits}), got {generator_bits.shape}."
            )
        if uniform_noise is None:
            uniform_noise, _ = self.sample_generator_inputs(tf.shape(generator_bits)[0])
        uniform_noise = tf.cast(uniform_noise, tf.float32)
        if uniform_noise.shape.rank != 2 or uniform_noise.shape[-1] != self.noise_dim:
            raise ValueError(
                f"`uniform_noise` must have shape (batch, {self.noise_dim}), got {uniform_noise.shape}."
            )
        images = self.generator(tf.concat([uniform_noise, generator_bits], axis=1), training=training)
        return self.postprocess(images)

    def initialize_from_batch(self, images):
        """Data-dependent initialisation of the weight-normalised layers (Salimans & Kingma 2016, §2.2).

        Runs a batch of real images through the trunk and both heads, and a batch of generator inputs through
        the generator, setting each weight-normalised layer's scale and bias so that its pre-activations have
        zero mean and unit variance; noise and dropout are off during this pass. Call it once, before
        training, with a batch of a few hundred training images (Improved-GAN: 500 on MNIST).

        Args:
            images: (batch, H, W, C) real images, pixels in [0, 255].
        """
        images = tf.convert_to_tensor(images)
        if images.shape.rank != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"`images` must have shape (batch, {', '.join(map(str, self.image_shape))}), got "
                f"{images.shape}."
            )
        features = _initialize_stack(self.trunk, self.preprocess(images))
        self.discriminator_head.initialize_from_batch(features)
        self.encoder_head.initialize_from_batch(features)
        uniform, bits = self.sample_generator_inputs(images.shape[0])
        _initialize_stack(self.generator, tf.concat([uniform, bits], axis=1))

    # --- training -----------------------------------------------------------------------------------------

    @staticmethod
    def paper_optimizer(total_steps, learning_rate=_LEARNING_RATE):
        """The paper's Adam (β1 0.5, β2 0.999, ε 1e-8), its rate falling linearly over ``total_steps`` to a third
        of ``learning_rate`` (the paper's 9e-4 → 3e-4)."""
        total_steps = check_int(total_steps, "total_steps", minimum=1)
        learning_rate = check_number(learning_rate, "learning_rate", minimum=0.0)
        if learning_rate == 0:
            raise ValueError("`learning_rate` must be > 0, got 0.")
        schedule = keras.optimizers.schedules.PolynomialDecay(
            learning_rate, total_steps, end_learning_rate=learning_rate * _FINAL_LEARNING_RATE / _LEARNING_RATE,
            power=1.0,
        )
        return keras.optimizers.Adam(schedule, beta_1=0.5, beta_2=0.999, epsilon=1e-8)

    def compile(
        self, d_optimizer=None, g_optimizer=None, jit_compile="auto", steps_per_execution=1, run_eagerly=False
    ):
        """Configures training with one optimizer for D and E (shared) and one for G.

        Args:
            d_optimizer: a Keras optimizer (or its identifier) for the trunk and both heads; None: the paper's
                Adam at the constant initial rate 9e-4 (use `paper_optimizer` for the linear decay).
            g_optimizer: the same for the generator; must be another object than ``d_optimizer``.
            jit_compile, steps_per_execution, run_eagerly: as for `keras.Model.compile`.
        """
        d_optimizer = keras.optimizers.get(d_optimizer or _constant_adam())
        g_optimizer = keras.optimizers.get(g_optimizer or _constant_adam())
        if d_optimizer is g_optimizer:
            raise ValueError(
                "`d_optimizer` and `g_optimizer` must be two optimizer objects (each keeps its own state)."
            )
        super().compile(
            optimizer=d_optimizer,
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
            run_eagerly=run_eagerly,
        )
        self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer
        self._compile_arguments = {
            "jit_compile": jit_compile,
            "steps_per_execution": steps_per_execution,
            "run_eagerly": run_eagerly,
        }

    def get_compile_config(self):
        if not self.compiled:
            return {}
        return {
            "d_optimizer": keras.optimizers.serialize(self.d_optimizer),
            "g_optimizer": keras.optimizers.serialize(self.g_optimizer),
            **self._compile_arguments,
        }

    def compile_from_config(self, config):
        config = dict(config)
        for key in ("d_optimizer", "g_optimizer"):
            config[key] = keras.optimizers.deserialize(config[key])
        self.compile(**config)
        # Optimizer variables must exist before a saved model's optimizer state is loaded into them.
        self.d_optimizer.build(self.encoder_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    @property
    def encoder_variables(self):
        """Trainable variables of D and E: the shared trunk and both heads."""
        return (
            self.trunk.trainable_variables
            + self.discriminator_head.trainable_variables
            + self.encoder_head.trainable_variables
        )

    def encoder_losses(self, real, transformed, generated, generator_bits, hash_weight, training):
        """The D/E terms (Eq. 2–4) of a batch of images in the model's range; the total: ``encoder_loss``."""
        size = tf.shape(real)[0]
        features = self.trunk(tf.concat([real, transformed, generated], axis=0), training=training)
        discriminator_logits = self.discriminator_head(features)
        bits = tf.sigmoid(self.encoder_head(features))
        real_bits, transformed_bits, generated_bits = bits[:size], bits[size : 2 * size], bits[2 * size :]
        images = 1.0
        if self.sum_over_images:
            # The global batch: under tf.distribute the replicas' gradients add up to the whole batch's sum's.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            images = tf.cast(size * replicas, tf.float32)
        terms = {
            "adversarial": losses.adversarial_loss(
                discriminator_logits[:size], discriminator_logits[2 * size :]
            ),
            "min_entropy": images * losses.min_entropy_bits_loss(real_bits),
            "uniform_frequency": losses.uniform_frequency_loss(real_bits),
            "consistency": images * losses.consistent_bits_loss(real_bits, transformed_bits),
            "independence": losses.independent_bits_loss(self.encoder_head.normalized_kernel()),
            "collaborative": losses.collaborative_loss(generated_bits, generator_bits),
        }
        hashing = (
            self.min_entropy_weight * terms["min_entropy"]
            + self.uniform_frequency_weight * terms["uniform_frequency"]
            + self.consistency_weight * terms["consistency"]
            + self.independence_weight * terms["independence"]
            + self.collaborative_weight * terms["collaborative"]
        )
        terms["encoder_loss"] = terms["adversarial"] + hash_weight * hashing
        return terms

    def generator_loss(self, real, generated, training):
        """Feature matching (Eq. 5) between real and generated images in the model's range."""
        size = tf.shape(real)[0]
        features = self.trunk(tf.concat([real, generated], axis=0), training=training)
        return losses.feature_matching_loss(tf.stop_gradient(features[:size]), features[size:])

    def hash_weight(self):
        """1.0 once the D/E optimizer has taken ``hash_warmup_steps`` steps, else 0.0 (paper §4)."""
        return tf.cast(self.d_optimizer.iterations >= self.hash_warmup_steps, tf.float32)

    def _images(self, data):
        """The images of a training / evaluation batch (`tfhash.batches.unpack`), in the model's range."""
        return self.preprocess(batches.unpack(data, type(self).__name__)[0])

    def train_step(self, data):
        real = self._images(data)
        batch_size = tf.shape(real)[0]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync

        # 1. D and E. G's images are inputs here: this step does not train the generator.
        uniform, generator_bits = self.sample_generator_inputs(batch_size)
        generated = self.generator(tf.concat([uniform, generator_bits], axis=1), training=True)
        transformed = self.consistency_transform(real, training=True)
        with tf.GradientTape() as tape:
            terms = self.encoder_losses(
                real, transformed, generated, generator_bits, self.hash_weight(), training=True
            )
            scaled = self.d_optimizer.scale_loss(terms["encoder_loss"] / replicas)
        variables = self.encoder_variables
        self.d_optimizer.apply(tape.gradient(scaled, variables), variables)

        # 2. G, on fresh inputs, against the updated trunk.
        uniform, generator_bits = self.sample_generator_inputs(batch_size)
        with tf.GradientTape() as tape:
            generated = self.generator(tf.concat([uniform, generator_bits], axis=1), training=True)
            terms["feature_matching"] = self.generator_loss(real, generated, training=True)
            scaled = self.g_optimizer.scale_loss(terms["feature_matching"] / replicas)
        variables = self.generator.trainable_variables
        self.g_optimizer.apply(tape.gradient(scaled, variables), variables)
        return self._track(terms)

    def test_step(self, data):
        real = self._images(data)
        uniform, generator_bits = self.sample_generator_inputs(tf.shape(real)[0])
        generated = self.generator(tf.concat([uniform, generator_bits], axis=1), training=False)
        terms = self.encoder_losses(real, real, generated, generator_bits, self.hash_weight(), training=False)
        terms["feature_matching"] = self.generator_loss(real, generated, training=False)
        return self._track(terms)

    # --- saving and serving -------------------------------------------------------------------------------

    def get_config(self):
        return {
            **super().get_config(),
            "num_bits": self.num_bits,
            "architecture": self.architecture,
            "noise_dim": self.noise_dim,
            "min_entropy_weight": self.min_entropy_weight,
            "uniform_frequency_weight": self.uniform_frequency_weight,
            "consistency_weight": self.consistency_weight,
            "independence_weight": self.independence_weight,
            "collaborative_weight": self.collaborative_weight,
            "hash_warmup_steps": self.hash_warmup_steps,
            "input_noise_stddev": self.input_noise_stddev,
            "sum_over_images": self.sum_over_images,
            "consistency_transform": keras.saving.serialize_keras_object(self.consistency_transform),
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["consistency_transform"] = keras.saving.deserialize_keras_object(
            config["consistency_transform"]
        )
        return cls(**config)

    def serving_interface(self):
        """What the model serves (`tfhash.serving.ServingInterface`): uint8 images → `encode`'s codes.

        The encoder E takes images only (no feature input): the SavedModel has the ``serving_default``
        images signature, with the scaling to ``pixel_range`` inside.
        """
        self._check_built()
        low, high = self.pixel_range
        return ServingInterface(
            num_bits=self.num_bits,
            model_class=type(self).__name__,
            model_name=self.name,
            image_shape=tuple(int(s) for s in self.image_shape),
            encode_images=self.encode,
            preprocessing=f"pixels / 255 scaled to [{low:g}, {high:g}]",
            variables=self.variables,
        )


def _paper_transform(architecture, seed):
    if architecture == "mnist":
        return ConsistencyTransform(noise_stddev=0.15, seed=seed)
    return ConsistencyTransform(max_shift=2, horizontal_flip=True, seed=seed)


def _constant_adam():
    return keras.optimizers.Adam(_LEARNING_RATE, beta_1=0.5, beta_2=0.999, epsilon=1e-8)


def _initialize_stack(network, x):
    """Passes ``x`` through a Sequential network, initialising each weight-normalised layer from its input."""
    for layer in network.layers:
        if hasattr(layer, "initialize_from_batch"):
            x = layer.initialize_from_batch(x)
        else:
            # Batch normalisation normalises with the batch's statistics, as it will in training.
            x = layer(x, training=isinstance(layer, keras.layers.BatchNormalization))
    return x
