"""Runnable experiments: ``python -m tfhash.recipes.<name>``. Recipes compose library objects only."""
