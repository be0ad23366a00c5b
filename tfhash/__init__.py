"""tfhash: deep unsupervised image hashing in TensorFlow 2 / Keras 3.

Subpackages: ``tfhash.layers`` (binarizers), ``tfhash.metrics`` (retrieval evaluation and code statistics as TF
ops), ``tfhash.callbacks`` (``RetrievalEvaluation``), ``tfhash.losses``, ``tfhash.codes`` (bit packing),
``tfhash.data`` (sources, protocols, pipelines, augmentation, feature bank), ``tfhash.backbones``,
``tfhash.supervision`` (label-free supervision builders: the Hyper-Quantization Tree), ``tfhash.models`` (one
hashing model per method, the HQT regulariser) and ``tfhash.recipes``
(runnable experiments).
"""

import os

# tfhash builds on tf.data, tf.custom_gradient and SavedModel: Keras must run on its TensorFlow backend.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tfhash._logging import filtered_native_startup_log  # noqa: E402

# TensorFlow's native libraries log at load time, twice and whatever TF_CPP_MIN_LOG_LEVEL says (see
# tfhash._logging): in tfhash's own command lines their start-up lines are filtered by that level, written once.
with filtered_native_startup_log():
    import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        f"tfhash needs the TensorFlow backend of Keras, but KERAS_BACKEND is {keras.backend.backend()!r}. "
        "Set KERAS_BACKEND=tensorflow before importing keras."
    )

from tfhash import backbones, callbacks, codes, data, layers, losses, metrics, models, supervision  # noqa: E402,F401
from tfhash.export import load_encoder  # noqa: E402,F401

__version__ = "0.1.0"
