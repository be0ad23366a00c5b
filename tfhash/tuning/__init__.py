"""Keras-Tuner searches over the recipes: search spaces written in a recipe's TOML, one command to search.

- `SearchSpace`: the search entries of a configuration (``{ choice = [...] }``, ``{ range = [lo, hi] }``,
  ``{ log_range = [lo, hi] }``) as Keras-Tuner hyperparameters.
- `RecipeHyperModel`: a recipe as a `keras_tuner.HyperModel`, scored by ``val_map@k`` on a validation carve-out
  of the training images (`validation_split`); the protocol's queries are never read.
- `build_tuner`, `write_outputs`: Keras-Tuner's tuners with a progress line per trial, the results table, the
  objective plot and the best configuration as a recipe file.

The command line is ``python -m tfhash.tune`` (`tfhash.tune`).
"""

from tfhash.tuning.recipe_hyper_model import RecipeHyperModel
from tfhash.tuning.search import TUNERS, build_tuner, trial_rows, write_outputs
from tfhash.tuning.search_space import SearchSpace, SearchSpaceError
from tfhash.tuning.toml_writer import dumps_toml, write_toml
from tfhash.tuning.validation_split import validation_split

__all__ = [
    "RecipeHyperModel",
    "SearchSpace",
    "SearchSpaceError",
    "TUNERS",
    "build_tuner",
    "dumps_toml",
    "trial_rows",
    "validation_split",
    "write_outputs",
    "write_toml",
]
