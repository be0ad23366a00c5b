"""Packaging hook for what pyproject.toml cannot express: installing the top-level ``recipes/`` folder.

The recipes' configuration files live in ``recipes/`` at the top of the repository (beside ``tfhash/``); a
wheel carries them inside the package as ``tfhash/recipes/configs/``, where ``tfhash.recipes.runner`` finds
them after a non-editable ``pip install .`` (a source checkout or editable install reads ``recipes/``
directly). Everything else about the package is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["tfhash", "tfhash.*"]), "tfhash.recipes.configs"],
    package_dir={"tfhash.recipes.configs": "recipes"},
    package_data={"tfhash.recipes.configs": ["*.toml", "README.md"]},
)
