"""Session-wide test setup.

Two logical CPU devices let `tf.distribute.MirroredStrategy` tests run on one machine; this must happen before
TensorFlow's runtime is initialised, hence at import time here rather than in a test module.

Real-data checks (marker ``real_data``) read ../shared/data beside the checkout, or the directory named by the
environment variable TFHASH_SHARED_DATA, and skip with the reason where it is absent. Archives they unpack
(the CIFAR-10 .tar.gz) go to a temporary directory of the session (`tfhash_cache_dir`), never to ~/.cache.

Long end-to-end tests are marked ``slow``; the default run (setup.cfg) deselects them and
``python -m pytest -m slow`` runs them (.ci/run runs both).
"""

import os
from pathlib import Path

import pytest
import tensorflow as tf

try:
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
except RuntimeError:  # the runtime was already initialised: tests needing two devices skip themselves
    pass

SHARED_DATA = Path(os.environ.get("TFHASH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CACHE_DIR_ENV = "TFHASH_CACHE_DIR"  # tfhash.data.sources' extraction cache (default ~/.cache/tfhash)


@pytest.fixture(scope="session", autouse=True)
def tfhash_cache_dir(tmp_path_factory):
    """The extraction cache of the session: $TFHASH_CACHE_DIR points into pytest's temporary directory.

    `tfhash.data.sources` extracts archives (CIFAR-10's .tar.gz) under $TFHASH_CACHE_DIR, by default
    ~/.cache/tfhash; the tests (and the subprocesses they start) extract into this directory instead, once per
    session for all of them.
    """
    path = tmp_path_factory.mktemp("tfhash-cache")
    previous = os.environ.get(CACHE_DIR_ENV)
    os.environ[CACHE_DIR_ENV] = str(path)
    yield path
    if previous is None:
        os.environ.pop(CACHE_DIR_ENV, None)
    else:
        os.environ[CACHE_DIR_ENV] = previous


@pytest.fixture(scope="session")
def shared_data():
    """The directory of real datasets (MNIST, Fashion-MNIST, CIFAR-10); skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real data not found at {SHARED_DATA}: place the shared datasets there or set TFHASH_SHARED_DATA"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One MirroredStrategy over the 2 logical CPUs for the whole session.

    Several MirroredStrategy objects in one process can clash in their collective-op instance keys (a shape
    mismatch "in the collective instance" error in a later test), so every test shares this one.
    """
    devices = [device.name for device in tf.config.list_logical_devices("CPU")[:2]]
    if len(devices) < 2:
        pytest.skip("needs 2 logical CPU devices; tests/conftest.py configures them before TF initialises")
    return tf.distribute.MirroredStrategy(devices)
