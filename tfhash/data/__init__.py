"""Data: sources, protocols, tf.data pipelines, augmentation and the feature bank (see README)."""
