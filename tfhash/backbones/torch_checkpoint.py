"""Read PyTorch ``.pth`` state dicts into numpy arrays without importing torch.

A PyTorch checkpoint is a pickle whose tensors point, through pickle's *persistent ids*, at raw storages kept
outside the pickle. Two layouts exist:

* zip (``torch.save`` since PyTorch 1.6): a zip archive ``<prefix>/data.pkl`` + ``<prefix>/data/<key>`` (one
  raw little-endian buffer per storage) + optionally ``<prefix>/byteorder``;
* legacy: five pickles in a row (magic number, protocol version, system info, the object, the list of storage
  keys), then for each key an int64 element count followed by the storage's raw bytes.

Unpickling runs code named by the file, so the unpickler here resolves only the few globals a state dict
needs (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``, the typed storage classes) and
refuses any other.
Tensors become C-contiguous numpy arrays with their PyTorch shape (e.g. conv kernels stay OIHW).
"""

import collections
import io
import pickle
import struct
import zipfile

import numpy as np

__all__ = ["load_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# torch's typed storage classes (still the names pickled by torch 2.x) and their element types.
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Storage:
    """A storage named by the pickle; its bytes arrive later (after the pickle, in the legacy format)."""

    def __init__(self, dtype, numel):
        self.dtype = np.dtype(dtype)
        self.numel = numel
        self.array = None


class _TensorRef:
    """Arguments of ``torch._utils._rebuild_tensor_v2``, turned into an array once the storage is filled."""

    def __init__(self, storage, offset, size, stride, *_):  # *_: requires_grad, backward hooks, metadata
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self):
        data = self.storage.array
        # as_strided reads raw memory: check that every element lies inside the storage first.
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride) if n > 0)
        if any(s < 0 for s in self.stride) or (0 not in self.size and last >= data.size):
            raise ValueError(f"corrupt checkpoint: tensor of size {self.size} overruns its storage")
        if 0 in self.size:
            return np.zeros(self.size, data.dtype)
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :], self.size, [s * data.itemsize for s in self.stride], writeable=False
        )
        return view.copy()  # C-contiguous, owning its memory


def _storage_class(name):
    # Unpickling a storage class only needs a marker that persistent_load can recognise.
    return ("storage_class", name)


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _TensorRef,
    **{("torch", name): _storage_class(name) for name in _STORAGE_DTYPES},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages):
        super().__init__(file)
        self.storages = storages  # key -> _Storage, shared by the tensors that view the same storage

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only tensors, storages and OrderedDict may appear in a "
                "state dict read without torch"
            ) from None

    def persistent_load(self, pid):
        # zip: ('storage', class, key, location, numel); legacy adds view_metadata (slices, torch < 0.4).
        if pid[0] != "storage" or not isinstance(pid[1], tuple) or pid[1][0] != "storage_class":
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views (checkpoints from PyTorch < 0.4) are not supported")
        key, numel = str(pid[2]), pid[4]
        if key not in self.storages:
            self.storages[key] = _Storage(_STORAGE_DTYPES[pid[1][1]], numel)
        return self.storages[key]


def _materialize(obj):
    if isinstance(obj, _TensorRef):
        return obj.to_numpy()
    if isinstance(obj, dict):
        return type(obj)((k, _materialize(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def _load_zip(path):
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError(f"{path} is a zip file but not a PyTorch checkpoint (no <prefix>/data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in archive.namelist():
            byteorder = archive.read(prefix + "byteorder").decode().strip()
        storages = {}
        result = _Unpickler(io.BytesIO(archive.read(pickles[0])), storages).load()
        for key, storage in storages.items():
            dtype = storage.dtype.newbyteorder("<" if byteorder == "little" else ">")
            raw = archive.read(f"{prefix}data/{key}")
            storage.array = np.frombuffer(raw, dtype, count=storage.numel).astype(storage.dtype)
    return result, storages


def _load_legacy(path):
    with open(path, "rb") as f:
        storages = {}
        if _Unpickler(f, storages).load() != _LEGACY_MAGIC:
            raise ValueError(f"{path} is neither a zip nor a legacy PyTorch checkpoint (bad magic number)")
        _Unpickler(f, storages).load()  # protocol version
        sys_info = _Unpickler(f, storages).load()
        order = "<" if sys_info.get("little_endian", True) else ">"
        result = _Unpickler(f, storages).load()
        for key in _Unpickler(f, storages).load():
            storage = storages[str(key)]
            (numel,) = struct.unpack(order + "q", f.read(8))
            dtype = storage.dtype.newbyteorder(order)
            storage.array = np.frombuffer(f.read(numel * dtype.itemsize), dtype).astype(storage.dtype)
    return result, storages


def load_state_dict(path):
    """Loads a PyTorch checkpoint (zip or legacy format) with numpy arrays in place of tensors.

    Args:
        path: path to a ``.pth`` / ``.pt`` file written by ``torch.save`` (typically ``model.state_dict()``).

    Returns:
        The pickled object with every tensor replaced by a C-contiguous numpy array of the tensor's shape and
        dtype: for a state dict, an ``OrderedDict`` ``{parameter name: array}``.

    Raises:
        pickle.UnpicklingError: the file names anything but tensors, storages and ``OrderedDict`` (such as a
            pickled ``nn.Module``), which this reader refuses to execute.
        ValueError: the file is not a PyTorch checkpoint, or is truncated.

    Example:

    >>> state = load_state_dict("model.pth")  # doctest: +SKIP
    >>> state["_conv_stem.weight"].shape  # doctest: +SKIP
    (32, 3, 3, 3)

    Reference:
        PyTorch's ``torch/serialization.py`` (``_legacy_load``, ``_load``) and ``torch/_utils.py``
        (``_rebuild_tensor_v2``) define both layouts.
    """
    path = str(path)
    result, storages = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    for key, storage in storages.items():
        if storage.array is None or storage.array.size < storage.numel:
            raise ValueError(f"{path} is truncated: storage {key} is missing or short")
    return _materialize(result)
