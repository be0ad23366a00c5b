"""The serving interface of a hashing model: everything `tfhash.export` needs to write its SavedModel.

A model declares what it serves by returning a `ServingInterface` from ``serving_interface()``
(`tfhash.models.HashingModel` and its subclasses do): the input it encodes (uint8 images of a shape, and / or
features of a width), the functions that map those inputs to ±1 codes, how images are preprocessed, and the
names recorded in the SavedModel's metadata. `tfhash.export.export_encoder` reads only this object, so it
serves any model that declares one and never looks inside the model.
"""

import dataclasses
from typing import Callable, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class ServingInterface:
    """What a hashing model serves: its inputs, the encoding functions, and the names of the metadata.

    The functions are traced by `tf.function` when the model is exported: they must be TensorFlow-traceable
    and read the model's variables (the SavedModel keeps exactly the variables they read, so training state
    such as optimizer slots or HQT pseudo bits stays out).

    Args:
        num_bits: int >= 1, the code length K.
        model_class: str, the model's class name (metadata ``model_class``).
        model_name: str, the model's name (metadata ``model_name``).
        image_shape: ``(H, W, C)`` of the uint8 images the model encodes, or None when it takes features only.
        encode_images: with ``image_shape``: a function ``images (batch, H, W, C) uint8 -> float32 ±1 codes
            (batch, K)``, preprocessing included (the ``"serving_default"`` signature); else None.
        feature_size: int, the width of the features the hash head takes, or None when the model takes images
            only.
        encode_features: with ``feature_size``: a function ``features (batch, feature_size) float32 ->
            float32 ±1 codes`` (the ``"encode_features"`` signature, also ``"serving_default"`` without
            images); else None.
        preprocessing: str or None, how pixels in [0, 255] are mapped to the network's input (metadata).
        backbone_class: str or None, the class name of the backbone in front of the hash head (metadata).
        variables: sequence of the model's variables in its own order: the SavedModel stores the variables
            the functions read in this order (deterministic SavedModels); others go last, by name.

    Example (what `tfhash.models.HashGAN.serving_interface` returns, in short):

    >>> ServingInterface(num_bits=model.num_bits, model_class="HashGAN", model_name=model.name,
    ...                  image_shape=(28, 28, 1), encode_images=model.encode,
    ...                  preprocessing="pixels / 255 scaled to [0, 1]", variables=model.variables)

    Reference:
        DESIGN.md ("serving: model.export() SavedModel"); issue 11 part 5 (export depends on a declared
        serving interface, not on model internals).
    """

    num_bits: int
    model_class: str
    model_name: str
    image_shape: Optional[Tuple[int, int, int]] = None
    encode_images: Optional[Callable] = None
    feature_size: Optional[int] = None
    encode_features: Optional[Callable] = None
    preprocessing: Optional[str] = None
    backbone_class: Optional[str] = None
    variables: tuple = ()

    def __post_init__(self):
        def check_positive(value, name):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ServingInterface: `{name}` must be an int >= 1, got {value!r}.")

        check_positive(self.num_bits, "num_bits")
        if self.image_shape is not None:
            shape = tuple(self.image_shape)
            if len(shape) != 3:
                raise ValueError(
                    f"ServingInterface: `image_shape` must be (H, W, C), got {self.image_shape!r}."
                )
            for size in shape:
                check_positive(size, "image_shape")
            object.__setattr__(self, "image_shape", shape)
        if self.feature_size is not None:
            check_positive(self.feature_size, "feature_size")
        for shape, function, names in (
            (self.image_shape, self.encode_images, ("image_shape", "encode_images")),
            (self.feature_size, self.encode_features, ("feature_size", "encode_features")),
        ):
            if (shape is None) != (function is None):
                raise ValueError(
                    f"ServingInterface: `{names[0]}` and `{names[1]}` go together (both or neither)."
                )
            if function is not None and not callable(function):
                raise ValueError(f"ServingInterface: `{names[1]}` must be callable, got {function!r}.")
        if self.image_shape is None and self.feature_size is None:
            raise ValueError(
                "ServingInterface: the model must serve images, features or both; it declares neither."
            )
        object.__setattr__(self, "variables", tuple(self.variables))
