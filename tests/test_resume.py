"""Exact resume in a new process (issue 12, item 7), for every method.

For each method: an uninterrupted 4-epoch run, and a 2-epoch run saved as ``.keras`` and continued to epoch 4
in a new Python process (``load_model``, data built with ``initial_epoch=2``, ``fit(..., initial_epoch=2,
steps_per_epoch=...)``, the refreshers the model asks for). The final weights, the supervision state (HQT
pseudo bits redrawn every epoch, CIMON's pseudo-similarity, DSAH's neighbour similarity grown every epoch,
UCSH's clusters redrawn every epoch), the seed-generator states and the optimizer's variables must be equal, bit
for bit.

The data: a `FeatureBank` of a tiny seeded dense backbone over random 10 x 10 images, 3 stored
flipped views per image (one view, or a pair of views for the two-view methods), so each epoch's order and
each sample's choice of views depend on the epoch; HashGAN trains on 28 x 28 images through
`tfhash.data.training_dataset`. The continuing process rebuilds the bank from its cache and sets no global
seed: everything it needs comes from the saved model and (seed, epoch).

This file is also the continuing process's script: ``python tests/test_resume.py <directory> <methods...>``.
"""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tfhash import batches
from tfhash.data import FeatureBank, ImageSet, training_dataset
from tfhash.data.augment import RandomHorizontalFlip
from tfhash.models import (BiHalfHasher, CIBHasher, CIMONHasher, DSAHHasher, GreedyHasher, HashGAN, HQTRegularizer,
                           UCSHHasher)

N, BATCH, BITS, FEATURES = 32, 8, 8, 16
SEED = 3
EPOCHS, SAVED_AT = 4, 2
METHODS = ("bihalf", "greedy", "cib", "cimon", "dsah", "ucsh", "bihalf_hqt", "hashgan")
TWO_VIEW = ("cib", "cimon")


def backbone():
    """uint8 (B, 10, 10, 3) -> (B, 16), the same weights in every process."""
    model = keras.Sequential(
        [
            keras.Input((10, 10, 3)),
            keras.layers.Rescaling(1 / 127.5, offset=-1.0),
            keras.layers.Flatten(),
            keras.layers.Dense(FEATURES, kernel_initializer=keras.initializers.GlorotUniform(0)),
        ],
        name="tiny",
    )
    model.image_size = 10
    return model


def pixels(shape):
    return np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)


def bank(directory, two_view):
    pool = ImageSet("random", pixels((N, 10, 10, 3)), np.zeros(N, np.int64))
    flip = RandomHorizontalFlip()
    return FeatureBank(
        backbone(), pool, protocol="resume", train=np.arange(N), augment=(flip, flip) if two_view else flip,
        views=3, seed=SEED, directory=str(directory), batch_size=N, verbose=0,
    )


def build(method):
    """A compiled, untrained model of ``method``."""
    if method == "hashgan":
        model = HashGAN(BITS, seed=SEED)
        model.compile(d_optimizer=keras.optimizers.Adam(1e-3), g_optimizer=keras.optimizers.Adam(1e-3),
                      jit_compile=False)
        return model
    models = {
        "bihalf": lambda: BiHalfHasher(BITS, feature_size=FEATURES, seed=SEED),
        "greedy": lambda: GreedyHasher(BITS, feature_size=FEATURES, seed=SEED),
        "cib": lambda: CIBHasher(BITS, hidden_units=16, feature_size=FEATURES, seed=SEED),
        "cimon": lambda: CIMONHasher(
            BITS, num_samples=N, feature_size=FEATURES, pseudo_similarity={"num_clusters": 4}, seed=SEED
        ),
        "dsah": lambda: DSAHHasher(  # an AND round after every epoch: W grows across the interruption
            BITS, num_samples=N, feature_size=FEATURES, hidden_units=12, update_every_n_epochs=1,
            neighbor_discovery={"num_neighbors": 4, "num_shared_neighbors": 4, "gamma": 0.0}, seed=SEED,
        ),
        "ucsh": lambda: UCSHHasher(  # sampled codes and clusters redrawn every epoch
            BITS, num_samples=N, feature_size=FEATURES, num_clusters=3, decoder_units=[8], sampling="stochastic",
            refresh_every_n_epochs=1, seed=SEED,
        ),
        "bihalf_hqt": lambda: BiHalfHasher(
            BITS, feature_size=FEATURES, hqt=HQTRegularizer(N, every_n_epochs=1), seed=SEED
        ),
    }
    model = models[method]()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    return model


def train(model, method, directory, epochs, initial_epoch=0, data_from=None):
    """``fit`` from ``initial_epoch`` to ``epochs`` on the method's data, with the refreshers it needs.

    ``data_from``: the epoch the data starts at, when not ``initial_epoch`` (the control: the batches of
    epochs 0 and 1 again, which is what the pipelines served a new process before the fix).
    """
    data_from = initial_epoch if data_from is None else data_from
    data_until = data_from + epochs - initial_epoch
    if method == "hashgan":
        pool = ImageSet("digits", pixels((N, 28, 28, 1)), np.zeros(N, np.int64))
        data = training_dataset(pool, np.arange(N), BATCH, epochs=data_until, initial_epoch=data_from,
                                seed=SEED, drop_remainder=True, channels=1)
        callbacks = []
    else:
        features = bank(directory, method in TWO_VIEW)
        data = features.training_dataset(
            BATCH, epochs=data_until, initial_epoch=data_from, drop_remainder=True
        )
        callbacks = model.supervision_refreshers(features.train[0, 0])
    if data_from != initial_epoch:  # the control replays other epochs on purpose: fit would refuse the stream
        delattr(data, batches.EPOCH_STREAM)
    model.fit(data, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=N // BATCH,
              callbacks=callbacks, shuffle=False, verbose=0)


def state(model):
    """Every variable of the model and its optimizer(s), in order: ``{"000": value, ...}`` and their paths
    (auto-numbered names such as ``adam_1/...`` differ between processes; the order does not)."""
    optimizers = [getattr(model, name, None) for name in ("optimizer", "d_optimizer", "g_optimizer")]
    variables = list(model.variables) + [v for o in optimizers if o is not None for v in o.variables]
    seen, values, paths = set(), {}, []
    for variable in variables:
        if id(variable) not in seen:
            seen.add(id(variable))
            values[f"{len(paths):03d}"] = keras.ops.convert_to_numpy(variable)
            paths.append(variable.path)
    return values, paths


def continue_in_this_process(directory, methods):
    """The new process: load each saved model, train it on to EPOCHS, save its state."""
    directory = Path(directory)
    for method in methods:
        model = keras.saving.load_model(directory / f"{method}.keras")
        train(model, method, directory, EPOCHS, initial_epoch=SAVED_AT)
        np.savez(directory / f"{method}-resumed.npz", **state(model)[0])
    # The control: BiHalfHasher continued on epoch 0 and 1's batches must end elsewhere.
    model = keras.saving.load_model(directory / "bihalf.keras")
    train(model, "bihalf", directory, EPOCHS, initial_epoch=SAVED_AT, data_from=0)
    np.savez(directory / "bihalf-replayed.npz", **state(model)[0])


@pytest.mark.slow
def test_a_run_resumed_in_a_new_process_equals_the_uninterrupted_run(tmp_path):
    uninterrupted = {}
    for method in METHODS:
        keras.utils.set_random_seed(0)
        model = build(method)
        train(model, method, tmp_path, EPOCHS)
        uninterrupted[method] = state(model)
        keras.utils.set_random_seed(0)
        model = build(method)
        train(model, method, tmp_path, SAVED_AT)
        model.save(tmp_path / f"{method}.keras")
    done = subprocess.run(
        [sys.executable, __file__, str(tmp_path), *METHODS], capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for method in METHODS:
        resumed = dict(np.load(tmp_path / f"{method}-resumed.npz"))
        expected, paths = uninterrupted[method]
        assert sorted(resumed) == sorted(expected), method
        different = [paths[int(k)] for k in sorted(expected) if not np.array_equal(expected[k], resumed[k])]
        assert not different, f"{method}: {different}"
    replayed = np.load(tmp_path / "bihalf-replayed.npz")
    expected, paths = uninterrupted["bihalf"]
    assert not np.array_equal(replayed["001"], expected["001"]) and paths[1].endswith("hash/kernel")
    # The state compared includes what a resume must carry: redrawn HQT bits, CIMON's similarity, seeds.
    paths = {method: " ".join(uninterrupted[method][1]) for method in METHODS}
    assert "pseudo_bits" in paths["bihalf_hqt"] and "cluster_ids" in paths["cimon"]
    assert "neighbor_similarity" in paths["dsah"] and "cluster_targets" in paths["ucsh"]
    assert all("seed_generator_state" in p and "/iteration" in p for p in paths.values())


if __name__ == "__main__":
    continue_in_this_process(sys.argv[1], sys.argv[2:])
