"""Runnable experiments: ``python -m tfhash.recipes.<name>``. Recipes compose library objects only.

- ``quickstart``: a Bi-half head on the raw digits pixels against LSH, offline, seconds.
- ``bihalf``, ``greedyhash``, ``cibhash``, ``cimon``, ``hqt_bihalf``, ``hqt_cibhash``, ``hqt_cimon``: each
  paper's experiment (``--preset paper``, the default) or an offline demonstration (``--preset demo``), set by
  the configuration files in the top-level ``recipes/`` folder and run by `tfhash.recipes.runner`.
"""
