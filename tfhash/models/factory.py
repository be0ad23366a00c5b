"""Hashing models by name, for recipes and configuration files (as `tfhash.backbones.get` for backbones)."""

import importlib

# name -> (module, class): imported when asked for, so that this table imports no model.
_MODELS = {
    "bihalf": ("tfhash.models.bi_half_hasher", "BiHalfHasher"),
    "greedyhash": ("tfhash.models.greedy_hasher", "GreedyHasher"),
    "cibhash": ("tfhash.models.cib_hasher", "CIBHasher"),
    "cimon": ("tfhash.models.cimon_hasher", "CIMONHasher"),
    "dsah": ("tfhash.models.dsah_hasher", "DSAHHasher"),
    "ucsh": ("tfhash.models.ucsh_hasher", "UCSHHasher"),
    "hashgan": ("tfhash.models.hash_gan", "HashGAN"),
}
NAMES = tuple(_MODELS)


def get_class(name):
    """The model class registered as ``name`` (one of `NAMES`), e.g. to check a configuration before building.

    Raises:
        ValueError: unknown name; the message lists the valid ones.

    Example:

    >>> get_class("bihalf").__name__
    'BiHalfHasher'
    """
    if not isinstance(name, str) or name not in _MODELS:
        raise ValueError(f"Unknown model {name!r}; valid names: {', '.join(NAMES)}.")
    module, cls = _MODELS[name]
    return getattr(importlib.import_module(module), cls)


def get(name, **config):
    """Builds a hashing model by name.

    Args:
        name: one of `NAMES`: ``"bihalf"`` (`BiHalfHasher`), ``"greedyhash"`` (`GreedyHasher`), ``"cibhash"``
            (`CIBHasher`), ``"cimon"`` (`CIMONHasher`), ``"dsah"`` (`DSAHHasher`), ``"ucsh"``
            (`UCSHHasher`) or ``"hashgan"`` (`HashGAN`).
        **config: the class's constructor arguments (``num_bits`` and, e.g., ``feature_size``, ``backbone``,
            ``hqt``, ``seed`` and the method's hyper-parameters: a recipe's ``[model]`` table).

    Returns:
        The model, a `keras.Model`.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
        TypeError, ValueError: an argument the class does not take (Python's or Keras's message names it).

    Example:

    >>> model = get("bihalf", num_bits=16, feature_size=64, gamma=6.0)
    >>> type(model).__name__, model.num_bits
    ('BiHalfHasher', 16)
    """
    return get_class(name)(**config)
