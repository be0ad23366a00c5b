"""Serving SavedModels of hashing models: images (or features) in, ±1 codes and packed uint8 codes out.

`export_encoder` (also ``model.export(path)``) writes a SavedModel that holds only what inference needs: the
variables the encoding graph reads (backbone, hash head, binarizer), never the optimizer nor sample-indexed
training state such as HQT pseudo bits. Its serving signatures:

- ``"serving_default"``: ``images`` uint8 ``(batch, H, W, C)`` at the model's input size, preprocessing inside
  the graph → ``{"codes": float32 ±1 (batch, K), "packed": uint8 (batch, ceil(K / 8))}``;
- ``"encode_features"``: ``features`` float32 ``(batch, feature_size)`` → the same outputs (hash head only).

A head-only model (no backbone) has the features signature only, also as ``"serving_default"``; a `HashGAN`,
which encodes images with its own network and has no feature input, has the images signature only. Any batch
size works. The exporter reads a model only through the `tfhash.serving.ServingInterface` that its
``serving_interface()`` declares (inputs, encoding functions, preprocessing text, names), so it serves any
model declaring one and imports no model class. The metadata (code length, feature size, image shape, bit
order, model class, versions) is the JSON file ``assets/tfhash_encoder.json`` inside the SavedModel, so the
model is usable with TensorFlow alone:

    loaded = tf.saved_model.load(path)
    out = loaded.signatures["serving_default"](images=tf.constant(images_uint8))
    out["codes"], out["packed"]

`load_encoder` wraps this in a small `Encoder` (batching, argument checks, numpy out), and
``python -m tfhash encode`` runs it on .npy files and image files from the command line.
"""

import json
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfhash.codes import pack_codes
from tfhash.serving import ServingInterface

METADATA_FILE = "tfhash_encoder.json"
FORMAT = "tfhash-encoder"
FORMAT_VERSION = 1


class _EncoderModule(tf.Module):
    """The SavedModel's root: the variables the signatures read and the metadata asset, nothing else."""

    def __init__(self, metadata_path):
        super().__init__(name="tfhash_encoder")
        self.metadata_file = tf.saved_model.Asset(metadata_path)
        self.inference_variables = []


def _outputs(encode, inputs, num_bits, bitorder):
    """The signatures' outputs: ``encode(inputs)`` as float32 ±1 codes, and packed."""
    # An empty batch skips the network: some fused CPU kernels (batch norm after a convolution) reject it.
    codes = tf.cond(
        tf.shape(inputs)[0] > 0,
        lambda: tf.cast(encode(inputs), tf.float32),
        lambda: tf.zeros((0, num_bits), tf.float32),
    )
    # Boolean bits skip pack_codes' value check, which ±1 codes from the sign never need.
    return {"codes": codes, "packed": pack_codes(codes > 0, bitorder=bitorder)}


def export_encoder(model, filepath, verbose=True, bitorder="big", overwrite=False):
    """Writes a serving SavedModel of a hashing model: images (and features) → ±1 and packed uint8 codes.

    The model is read only through the `tfhash.serving.ServingInterface` it declares
    (``model.serving_interface()``): its inputs, its encoding functions and the names of the metadata.
    The export is atomic: the SavedModel is written into a hidden temporary directory beside ``filepath``
    and renamed into place, so an interrupted export never leaves a half-written model at ``filepath`` (only,
    at worst, a ``.<name>.tmp-*`` directory beside it).

    Args:
        model: a built `tfhash.models.HashingModel` (a `Hasher` subclass or `HashGAN`), any object with a
            ``serving_interface()`` method returning a `ServingInterface`, or a `ServingInterface`.
        filepath: str or path-like, the SavedModel directory to write (local file system).
        verbose: bool, print where the model went and its signatures.
        bitorder: ``"big"`` (numpy.packbits' default) or ``"little"`` (faiss), the layout of the packed codes
            (see `tfhash.codes.pack_codes`); recorded in the metadata.
        overwrite: bool. False (the default) refuses to replace an existing SavedModel at ``filepath``, since
            an exported model is often the only copy of a trained one; True replaces it (atomically). A path
            holding anything else than a SavedModel (a file, a non-empty directory) is never replaced; an
            empty directory is.

    Returns:
        str, the path of the SavedModel.

    Raises:
        ValueError: ``model`` declares no serving interface or is not built, a bad ``bitorder``, or
            ``filepath`` holds something that may not be replaced.

    Example:

    >>> model = tfhash.models.BiHalfHasher(16, feature_size=32, seed=0)
    >>> model.export("saved_models/bi_half_16", overwrite=True)    # or export_encoder(model, ...)
    >>> encoder = tfhash.load_encoder("saved_models/bi_half_16")
    >>> encoder.encode_features(features, packed=True)             # uint8 (n, 2)
    """
    interface = _serving_interface(model)
    if bitorder not in ("big", "little"):
        raise ValueError(f"`bitorder` must be 'big' or 'little', got {bitorder!r}.")
    for name, value in (("verbose", verbose), ("overwrite", overwrite)):
        if not isinstance(value, bool):
            raise ValueError(f"`{name}` must be a bool, got {value!r}.")
    target = Path(os.fspath(filepath)).absolute()
    _check_target(target, overwrite)  # fail before the (possibly long) tracing and writing
    target.parent.mkdir(parents=True, exist_ok=True)

    metadata = _metadata(interface, bitorder)
    with tempfile.TemporaryDirectory(prefix="tfhash-metadata-") as scratch:
        metadata_path = Path(scratch) / METADATA_FILE
        metadata_path.write_text(json.dumps(metadata, indent=2) + "\n")
        module = _EncoderModule(str(metadata_path))
        signatures = _signatures(interface, bitorder)
        module.inference_variables.extend(_captured_variables(interface, signatures.values()))
        # Not mkdtemp: its 0700 mode would become the model's; os.mkdir applies the umask like any directory.
        staging = target.parent / f".{target.name}.tmp-{secrets.token_hex(4)}"
        staging.mkdir()
        try:
            tf.saved_model.save(module, str(staging), signatures=signatures)
            _replace(staging, target, overwrite)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    if verbose:
        print(f"Saved the {metadata['model_class']} encoder ({interface.num_bits} bits) at '{target}'.")
        for name, spec in metadata["signatures"].items():
            print(f"  signature {name!r}: {spec}")
    return str(target)


def _serving_interface(model):
    """The `ServingInterface` ``model`` declares (``model`` itself when it is one)."""
    if isinstance(model, ServingInterface):
        return model
    declare = getattr(model, "serving_interface", None)
    if not callable(declare):
        raise ValueError(
            "`model` must be a tfhash.models.Hasher (e.g. BiHalfHasher) or HashGAN (a "
            "tfhash.models.HashingModel), or declare a tfhash.serving.ServingInterface with "
            f"serving_interface(); got {type(model).__name__}."
        )
    interface = declare()  # raises ValueError for a model that is not built
    if not isinstance(interface, ServingInterface):
        raise ValueError(
            f"{type(model).__name__}.serving_interface() must return a tfhash.serving.ServingInterface, got "
            f"{type(interface).__name__}."
        )
    return interface


def _signatures(interface, bitorder):
    """Concrete functions of the SavedModel's signatures, by signature name."""
    num_bits, signatures = interface.num_bits, {}
    if interface.image_shape is not None:
        images_spec = tf.TensorSpec((None, *interface.image_shape), tf.uint8, name="images")

        @tf.function(input_signature=[images_spec])
        def encode_images(images):
            return _outputs(interface.encode_images, images, num_bits, bitorder)

        signatures["serving_default"] = encode_images.get_concrete_function()
    if interface.feature_size is not None:
        features_spec = tf.TensorSpec((None, interface.feature_size), tf.float32, name="features")

        @tf.function(input_signature=[features_spec])
        def encode_features(features):
            return _outputs(interface.encode_features, features, num_bits, bitorder)

        signatures["encode_features"] = encode_features.get_concrete_function()
        signatures.setdefault("serving_default", signatures["encode_features"])
    return signatures


def _captured_variables(interface, functions):
    """The variables the functions read, in the model's order (deterministic SavedModels).

    Tracking exactly these keeps the inference state of any model (backbone, head, binarizer, batch norm
    statistics) and leaves out the optimizer, the HQT pseudo bits and other per-sample training state.
    """
    captured = {}
    for function in functions:
        captured.update((id(variable), variable) for variable in function.variables)
    # A Keras variable's `.value` is the tf.Variable a graph captures.
    order = {id(getattr(variable, "value", variable)): i for i, variable in enumerate(interface.variables)}
    return sorted(captured.values(), key=lambda v: (order.get(id(v), len(order)), v.name))


def _metadata(interface, bitorder):
    import keras

    import tfhash

    image_shape, feature_size, num_bits = interface.image_shape, interface.feature_size, interface.num_bits
    outputs = f"-> codes float32 ±1 (None, {num_bits}), packed uint8 (None, {-(-num_bits // 8)})"
    signatures = {}
    if image_shape is not None:
        signatures["serving_default"] = f"images uint8 (None, {', '.join(map(str, image_shape))}) {outputs}"
    if feature_size is not None:
        signatures["encode_features"] = f"features float32 (None, {feature_size}) {outputs}"
        signatures.setdefault("serving_default", signatures["encode_features"])
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "num_bits": int(num_bits),
        "feature_size": feature_size,
        "image_shape": None if image_shape is None else list(image_shape),
        "bitorder": bitorder,
        "model_class": interface.model_class,
        "model_name": interface.model_name,
        "backbone_class": interface.backbone_class,
        "preprocessing": interface.preprocessing,
        "signatures": signatures,
        "tfhash_version": tfhash.__version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
    }


def _is_saved_model(path):
    return path.is_dir() and any((path / name).is_file() for name in ("saved_model.pb", "saved_model.pbtxt"))


def _check_target(target, overwrite):
    if not os.path.lexists(target):
        return
    if target.is_dir() and not any(target.iterdir()):
        return  # an empty directory holds nothing to lose
    if not _is_saved_model(target):
        kind = "directory" if target.is_dir() else "file"
        raise ValueError(
            f"`filepath` {str(target)!r} is an existing {kind} that is not a SavedModel: refusing to replace "
            "it. Choose another path or remove it."
        )
    if not overwrite:
        raise ValueError(
            f"`filepath` {str(target)!r} already holds a SavedModel: pass overwrite=True to replace it."
        )


def _replace(staging, target, overwrite):
    """Moves the finished SavedModel `staging` to `target`; an existing one is swapped out, then deleted."""
    _check_target(target, overwrite)  # again: the path may have changed while the model was written
    if not os.path.lexists(target):
        os.rename(staging, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rename(target, old / "model")
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old / "model", target)  # put the previous model back
        raise
    shutil.rmtree(old, ignore_errors=True)


# --- loading ----------------------------------------------------------------------------------------------


class Encoder:
    """An exported tfhash encoder, loaded with TensorFlow alone (no tfhash model class is needed).

    Attributes:
        path: str, the SavedModel directory.
        num_bits: int, the code length K.
        feature_size: int, the width of the features the hash head takes.
        image_shape: ``(H, W, C)`` of the images `encode` takes, or None for a head-only model.
        bitorder: ``"big"`` or ``"little"``, the layout of the packed codes.
        metadata: dict, everything the export recorded (model class, versions, signatures).
        saved_model: the object `tf.saved_model.load` returned (``.signatures`` are the serving functions).
    """

    def __init__(self, path, saved_model, metadata):
        self.path = path
        self.saved_model = saved_model
        self.metadata = metadata
        self.num_bits = int(metadata["num_bits"])
        self.feature_size = None if metadata["feature_size"] is None else int(metadata["feature_size"])
        self.image_shape = None if metadata["image_shape"] is None else tuple(metadata["image_shape"])
        self.bitorder = metadata["bitorder"]

    def __repr__(self):
        takes = f"image_shape={self.image_shape}" if self.image_shape else f"feature_size={self.feature_size}"
        model = self.metadata.get("model_class")
        return f"<tfhash Encoder {model} num_bits={self.num_bits} {takes} at {self.path!r}>"

    def encode(self, images, batch_size=256, packed=False):
        """Codes of images, through the backbone and the hash head (the ``serving_default`` signature).

        Args:
            images: uint8 array or tensor ``(n, H, W, C)`` with ``(H, W, C) = image_shape`` (raw pixels: the
                preprocessing is inside the model), encoded ``batch_size`` rows at a time; or an iterable of
                such batches (a generator, a `tf.data.Dataset`; a batch may be an ``(images, ...)`` tuple).
            batch_size: int >= 1, rows per call when ``images`` is one array.
            packed: bool. False returns ±1 float32 codes ``(n, K)``; True packed uint8 codes
                ``(n, ceil(K / 8))`` in the layout of `tfhash.codes.pack_codes` with ``bitorder``.

        Returns:
            A numpy array, as above.

        Raises:
            ValueError: a head-only encoder (use `encode_features`), or ``images`` of a wrong shape or dtype.

        Example:

        >>> encoder = tfhash.load_encoder("saved_models/demo")
        >>> encoder.encode(images_uint8, packed=True).shape
        (100, 4)
        """
        if self.image_shape is None:
            raise ValueError(
                f"This encoder ({self.metadata.get('model_class')}) has no backbone: it encodes features of "
                f"width {self.feature_size}, not images. Use `encode_features`."
            )
        return self._run("serving_default", "images", images, batch_size, packed)

    def encode_features(self, features, batch_size=256, packed=False):
        """Codes of backbone features, through the hash head alone (the ``encode_features`` signature).

        Args:
            features: real array or tensor ``(n, feature_size)`` (cast to float32), or an iterable of such
                batches (a generator, a `tf.data.Dataset`; a batch may be a ``(features, ...)`` tuple).
            batch_size: int >= 1, rows per call when ``features`` is one array.
            packed: bool, packed uint8 codes instead of ±1 float32 codes (see `encode`).

        Returns:
            A numpy array: float32 ``(n, K)`` or uint8 ``(n, ceil(K / 8))``.

        Raises:
            ValueError: ``features`` of the wrong shape or dtype.
        """
        if self.feature_size is None:
            raise ValueError(
                f"This encoder ({self.metadata.get('model_class')}) encodes images {self.image_shape}, not "
                "features: use `encode`."
            )
        return self._run("encode_features", "features", features, batch_size, packed)

    def _run(self, signature, argument, inputs, batch_size, packed):
        from tfhash._validation import check_int

        batch_size = check_int(batch_size, "batch_size", minimum=1)
        if not isinstance(packed, bool):
            raise ValueError(f"`packed` must be a bool, got {packed!r}.")
        function = self.saved_model.signatures[signature]
        key = "packed" if packed else "codes"
        outputs = []
        for batch in _batches(inputs, batch_size, argument):
            batch = self._check(batch, argument)
            try:
                outputs.append(function(**{argument: tf.constant(batch)})[key].numpy())
            except tf.errors.OpError as error:  # the inputs were checked: the model itself is at fault
                raise ValueError(
                    f"The SavedModel {self.path!r} failed to encode a batch ({_describe(error)}); it may be "
                    "damaged: export the model again."
                ) from error
        if not outputs:
            width = -(-self.num_bits // 8) if packed else self.num_bits
            return np.zeros((0, width), np.uint8 if packed else np.float32)
        return np.concatenate(outputs)

    def _check(self, batch, argument):
        if argument == "images":
            expected = (None, *self.image_shape)
            if batch.dtype != np.uint8:
                raise ValueError(
                    f"`images` must be uint8 pixels in [0, 255], got dtype {batch.dtype}; convert images "
                    "already in [0, 255] with np.clip(x, 0, 255).astype(np.uint8)."
                )
        else:
            expected = (None, self.feature_size)
            if batch.dtype == bool or not (
                np.issubdtype(batch.dtype, np.floating) or np.issubdtype(batch.dtype, np.integer)
            ):
                raise ValueError(f"`features` must be a real (float or int) array, got dtype {batch.dtype}.")
            batch = batch.astype(np.float32, copy=False)
        if batch.ndim != len(expected) or batch.shape[1:] != expected[1:]:
            shape = ", ".join("n" if s is None else str(s) for s in expected)
            hint = " (resize images to the model's input size first)" if argument == "images" else ""
            raise ValueError(f"`{argument}` must have shape ({shape}), got {batch.shape}{hint}.")
        return batch


def _batches(inputs, batch_size, argument):
    """numpy batches of an array (``batch_size`` rows at a time) or of an iterable of batches."""
    if isinstance(inputs, (np.ndarray, tf.Tensor, list, tuple)):
        array = np.asarray(inputs)
        if array.ndim == 0:
            yield array  # refused by the shape check
            return
        for start in range(0, len(array), batch_size):
            yield array[start : start + batch_size]
        return
    if isinstance(inputs, tf.data.Dataset):
        inputs = inputs.as_numpy_iterator()
    try:
        iterator = iter(inputs)
    except TypeError:
        raise ValueError(
            f"`{argument}` must be an array or an iterable of batches, got {type(inputs).__name__}."
        ) from None
    for batch in iterator:
        if isinstance(batch, dict) and "inputs" in batch:  # the named batches of tfhash's datasets
            batch = batch["inputs"]
        elif isinstance(batch, tuple):  # (inputs, sample_index) or (inputs, labels) batches of a dataset
            batch = batch[0]
        yield np.asarray(batch)


def load_encoder(path):
    """Loads a SavedModel written by `export_encoder` (``model.export``) as an `Encoder`.

    Only TensorFlow is needed: the model's classes are not imported, so a model exported by another version of
    tfhash, or with custom layers, loads the same.

    Args:
        path: str or path-like, the SavedModel directory.

    Returns:
        An `Encoder`.

    Raises:
        ValueError: ``path`` is not a SavedModel written by tfhash, or it is damaged (an empty
            ``saved_model.pb``, a missing ``variables/``, metadata that is not valid JSON, variables data that
            are truncated or corrupt): the message names the file.

    Example:

    >>> encoder = tfhash.load_encoder("saved_models/demo")
    >>> codes = encoder.encode(images_uint8)           # ±1 float32 (n, num_bits)
    >>> packed = encoder.encode(images_uint8, packed=True)
    """
    path = os.fspath(path)
    if not _is_saved_model(Path(path)):
        raise ValueError(f"`path` {path!r} is not a SavedModel directory (no saved_model.pb in it).")
    metadata_path = Path(path) / "assets" / METADATA_FILE
    if not metadata_path.is_file():
        raise ValueError(
            f"`path` {path!r} is a SavedModel but not a tfhash encoder (no assets/{METADATA_FILE}); "
            "export hashing models with model.export(path)."
        )
    metadata = _read_metadata(metadata_path)
    if metadata.get("format") != FORMAT or metadata.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"`path` {path!r} holds tfhash encoder format {metadata.get('format')!r} version "
            f"{metadata.get('format_version')!r}; this tfhash reads {FORMAT!r} up to version "
            f"{FORMAT_VERSION}."
        )
    _check_metadata(metadata, metadata_path)
    _check_files(Path(path))
    try:
        saved_model = tf.saved_model.load(path)
    except Exception as error:  # TensorFlow reports damaged files as IndexError, OpError, DecodeError, ...
        raise ValueError(
            f"The SavedModel {path!r} cannot be loaded: its files are damaged or incomplete "
            f"({_describe(error)}). Export the model again, or copy the whole directory again."
        ) from error
    return Encoder(path, saved_model, metadata)


_DAMAGED = "is damaged or incomplete"


def _read_metadata(metadata_path):
    """The metadata dict of ``assets/tfhash_encoder.json``; a clear error naming the file otherwise."""
    try:
        metadata = json.loads(metadata_path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"The metadata file {str(metadata_path)!r} {_DAMAGED}: it is not valid JSON ({error}). "
            "Export the model again."
        ) from None
    if not isinstance(metadata, dict):
        raise ValueError(
            f"The metadata file {str(metadata_path)!r} {_DAMAGED}: it holds a JSON "
            f"{type(metadata).__name__}, not an object."
        )
    return metadata


def _check_metadata(metadata, metadata_path):
    """The fields `Encoder` reads, checked so that a damaged file is named rather than failing later."""

    def is_size(value):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    image_shape = metadata.get("image_shape")
    problems = [
        (is_size(metadata.get("num_bits")), "num_bits"),
        (metadata.get("feature_size") is None or is_size(metadata.get("feature_size")), "feature_size"),
        (
            image_shape is None
            or (isinstance(image_shape, list) and len(image_shape) == 3 and all(map(is_size, image_shape))),
            "image_shape",
        ),
        (metadata.get("bitorder") in ("big", "little"), "bitorder"),
        (image_shape is not None or metadata.get("feature_size") is not None, "image_shape / feature_size"),
    ]
    bad = [name for valid, name in problems if not valid]
    if bad:
        raise ValueError(
            f"The metadata file {str(metadata_path)!r} {_DAMAGED}: missing or invalid "
            f"{', '.join(repr(name) for name in bad)}. Export the model again."
        )


def _check_files(path):
    """The files `tf.saved_model.load` needs, checked first: its own messages for them mislead."""
    graph = path / "saved_model.pb"
    if graph.is_file() and graph.stat().st_size == 0:
        raise ValueError(
            f"The SavedModel {str(path)!r} {_DAMAGED}: {str(graph)!r} is empty. Export the model again, or "
            "copy the whole directory again."
        )
    variables = path / "variables"
    if not (variables / "variables.index").is_file():
        missing = variables if not variables.is_dir() else variables / "variables.index"
        raise ValueError(
            f"The SavedModel {str(path)!r} {_DAMAGED}: {str(missing)!r} is missing (the model's weights). "
            "Copy the whole SavedModel directory, variables/ included, or export the model again."
        )


def _describe(error):
    """``"<ErrorType>: <first line>"`` of an exception, without TensorFlow's op decorations."""
    message = getattr(error, "message", None) or str(error)
    message = re.sub(r"\{\{[^}]*\}\}\s*", "", message)  # {{function_node ...}}
    message = re.sub(r"\s*\[Op:[^\]]*\]", "", message).strip()
    first = message.splitlines()[0] if message else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__
