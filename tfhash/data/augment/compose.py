"""Compose: a seeded sequence of augmentations."""

import keras

from tfhash.data.augment.augmentation import Augmentation, fold_seed


@keras.saving.register_keras_serializable(package="tfhash")
class Compose(Augmentation):
    """Applies augmentations one after the other, each with its own seed stream drawn from one seed.

    The ``k``-th augmentation receives the seed ``stateless_fold_in(seed, k)`` (int64), so the composition is
    reproducible from a single seed (its own generator's, or the per-sample seed the pipelines pass) and the
    seeds of the inner layers are not used. Unlike `keras.Sequential`, it forwards that per-sample seed, which
    the pipelines need.

    Args:
        layers: a list of `Augmentation` layers (other Compose included), applied in order.
        seed: int or None, seed of the composition's generator (see `Augmentation`).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    >>> view = Compose([RandomResizedCrop(32, scale=(0.5, 1.0)), RandomHorizontalFlip()], seed=0)
    >>> view(np.zeros((2, 40, 40, 3), np.uint8), training=True).shape
    TensorShape([2, 32, 32, 3])
    """

    def __init__(self, layers, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        layers = list(layers)
        if not layers or not all(isinstance(layer, Augmentation) for layer in layers):
            raise ValueError(
                "`layers` must be a non-empty list of tfhash.data.augment layers (they take the per-sample "
                f"seeds the pipelines pass), got {layers!r}."
            )
        self.layers = layers

    def augment(self, images, seed):
        for k, layer in enumerate(self.layers):
            # `augment` directly: the images are already checked float32 batches, and skipping each layer's
            # Keras `__call__` keeps the traced pipeline functions quick to build.
            images = layer.augment(images, fold_seed(seed, k))
        return images

    def compute_output_shape(self, input_shape):
        for layer in self.layers:
            input_shape = layer.compute_output_shape(input_shape)
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "layers": [keras.saving.serialize_keras_object(layer) for layer in self.layers],
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layers"] = [keras.saving.deserialize_keras_object(layer) for layer in config["layers"]]
        return cls(**config)
