"""Runnable experiments: ``python -m tfhash.recipes.<name>``. Recipes compose library objects only.

- ``quickstart``: a Bi-half head on the raw digits pixels against LSH, offline, seconds.
- ``bihalf``, ``greedyhash``, ``cibhash``, ``cimon``, ``hqt_bihalf``, ``hqt_cibhash``, ``hqt_cimon``: each
  paper's experiment (``--preset paper``, the default) or an offline demonstration (``--preset demo``), set by
  the configuration files in the top-level ``recipes/`` folder.
- ``hashgan_mnist``, ``hashgan_cifar10``: HashGAN trained from scratch on images, several runs averaged, with
  clustering figures and a grid of generated images.

Every recipe but quickstart runs through `tfhash.recipes.runner` (configuration, flags, runs, outputs) and the
steps of its family, `tfhash.recipes.families` (a hasher on backbone features; a GAN).
"""
