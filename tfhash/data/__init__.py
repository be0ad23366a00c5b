"""Data: sources, the papers' protocols, tf.data pipelines, augmentation and the feature bank.

Sources (`tfhash.data.sources`) return an `ImageSet`; a protocol (`get_protocol(name).split(pool, seed)`) gives
query / train / database indices into it; `training_dataset` / `evaluation_dataset` turn a pool and indices into
tf.data pipelines yielding ``(images, sample_index)`` / ``(images, labels)``; `FeatureBank` serves cached frozen-
backbone features with the same contract.
"""

from tfhash.data import augment, protocols, sources
from tfhash.data.feature_bank import FeatureBank
from tfhash.data.image_set import ImageSet
from tfhash.data.pipelines import evaluation_dataset, steps_per_epoch, training_dataset
from tfhash.data.protocols import Protocol, Split, get_protocol, list_protocols, register_protocol

__all__ = [
    "FeatureBank",
    "ImageSet",
    "Protocol",
    "Split",
    "augment",
    "evaluation_dataset",
    "get_protocol",
    "list_protocols",
    "protocols",
    "register_protocol",
    "sources",
    "steps_per_epoch",
    "training_dataset",
]
