"""Reads PyTorch checkpoints (`torch.save` files) into numpy arrays without torch, and without running their code.

Both of torch's formats are read: the zip archive (`torch.save`'s default since torch 1.6: `<root>/data.pkl`, one
`<root>/data/<key>` file per storage, `<root>/byteorder`) and the legacy stream (pickled magic number, protocol and
system info, the pickled object, the list of storage keys, then each storage's element count and bytes) in which
torchvision's `googlenet-1378be20.pth` (2019) is written.

The pickle is read by an unpickler that resolves only the globals a plain state dict needs, the ones
`torch.load(weights_only=True)` allows for it (OrderedDict, torch's tensor and parameter rebuild functions, storage
types); any other global (a module class, `os.system`, ...) is refused with an error naming the file and the global,
before anything is called. The arrays are bit-identical to the tensors torch loads (tests/test_weights_torch_reader.py
compares them when torch is installed).

Example:
>>> load("googlenet-1378be20.pth")["fc.weight"].shape  # doctest: +SKIP
(1000, 1024)
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import struct
import zipfile

import numpy as np

# torch storage types -> numpy dtypes (bfloat16 through ml_dtypes, which TensorFlow installs).
_STORAGE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """The checkpoint's pickle names a global that a plain state dict does not need; nothing of it was run."""


def _dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


class _StorageType:
    """Stands for torch.FloatStorage & co. inside the pickle: only its dtype matters."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _dtype(_STORAGE_DTYPES[name])


@dataclasses.dataclass(frozen=True)
class _TensorRef:
    """A tensor as torch pickles it: a view of a flat storage. Made into an array once the storages are read (the
    legacy format stores their bytes after the pickle)."""

    storage: np.ndarray
    offset: int
    size: tuple
    stride: tuple

    def array(self) -> np.ndarray:
        storage, offset, size, stride = self.storage, self.offset, self.size, self.stride
        if not size:
            return np.array(storage[offset], copy=True)
        if 0 in size:
            return np.zeros(size, storage.dtype)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if offset < 0 or last >= storage.size or min(stride) < 0:
            raise ValueError(f"a tensor of size {size}, stride {stride}, offset {offset} overruns its storage")
        view = np.lib.stride_tricks.as_strided(
            storage[offset:], shape=size, strides=[s * storage.itemsize for s in stride], writeable=False
        )
        return np.array(view, copy=True, order="C")


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """torch._utils._rebuild_tensor_v2."""
    del requires_grad, backward_hooks, metadata  # autograd state: not part of the values
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _materialize(obj):
    if isinstance(obj, _TensorRef):
        return obj.array()
    if isinstance(obj, dict):
        return type(obj)((k, _materialize(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    """torch._utils._rebuild_parameter(_with_state): a Parameter is its data."""
    del requires_grad, backward_hooks, state
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, path: str, load_storage):
        super().__init__(file)
        self.path = path
        self.load_storage = load_storage

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"checkpoint: {self.path!r} contains pickled Python objects, not only tensors: it refers to the global "
                f"{module}.{name}, which a plain state dict (name -> tensor) does not need. It was not loaded, since "
                f"unpickling it could run code (torch.load(weights_only=True) refuses it too). Save "
                f"`model.state_dict()` instead of the model or other objects."
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            shown = pid[0] if isinstance(pid, tuple) and pid else type(pid).__name__
            raise UnsafeCheckpointError(
                f"checkpoint: {self.path!r} contains pickled Python objects, not only tensors: a persistent object "
                f"of kind {shown!r} is not a tensor storage (a pickled module?). It was not loaded."
            )
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        return self.load_storage(storage_type.dtype, key, numel)


def _load_zip(path: str):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            raise ValueError(f"checkpoint: {path!r} is a zip archive without data.pkl: not a torch.save file")
        root = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if f"{root}byteorder" in names:
            byteorder = archive.read(f"{root}byteorder").decode().strip()
        cache = {}

        def load_storage(dtype, key, numel):
            if key not in cache:
                member = f"{root}data/{key}"
                if member not in names:
                    raise ValueError(f"checkpoint: {path!r} lacks the storage {member!r}: a damaged archive")
                raw = archive.read(member)
                order = "<" if byteorder == "little" else ">"
                array = np.frombuffer(raw, dtype.newbyteorder(order) if dtype.itemsize > 1 else dtype)
                if array.size < numel:
                    raise ValueError(f"checkpoint: {path!r} storage {member!r} holds {array.size} of {numel} values")
                cache[key] = array[:numel].astype(dtype, copy=False)
            return cache[key]

        return _Unpickler(io.BytesIO(archive.read(pickles[0])), path, load_storage).load()


def _load_legacy(path: str):
    with open(path, "rb") as f:
        data = f.read()
    stream = io.BytesIO(data)
    header = _Unpickler(stream, path, None)
    if header.load() != _LEGACY_MAGIC:
        raise ValueError(f"checkpoint: {path!r} is a pickle but not a torch.save file (no torch magic number)")
    protocol = _Unpickler(stream, path, None).load()
    if protocol != _LEGACY_PROTOCOL:
        raise ValueError(f"checkpoint: {path!r} has torch legacy protocol {protocol!r}, expected {_LEGACY_PROTOCOL}")
    sys_info = _Unpickler(stream, path, None).load()
    little = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
    storages = {}

    def load_storage(dtype, key, numel):
        if key not in storages:
            storages[key] = np.empty(numel, dtype)  # filled once the data section is read, below
        return storages[key]

    result = _Unpickler(stream, path, load_storage).load()
    keys = _Unpickler(stream, path, None).load()
    offset = stream.tell()
    for key in keys:
        key = str(key)
        if key not in storages:
            raise ValueError(f"checkpoint: {path!r} lists a storage {key!r} that no tensor uses: a damaged file")
        storage = storages[key]
        if offset + 8 > len(data):
            raise ValueError(f"checkpoint: {path!r} ends before storage {key!r}: a truncated download?")
        (numel,) = struct.unpack("<q" if little else ">q", data[offset : offset + 8])
        nbytes = numel * storage.itemsize
        offset += 8
        if numel != storage.size or offset + nbytes > len(data):
            raise ValueError(f"checkpoint: {path!r} ends inside storage {key!r}: a truncated download?")
        dtype = storage.dtype.newbyteorder("<" if little else ">") if storage.itemsize > 1 else storage.dtype
        storage[...] = np.frombuffer(data, dtype, numel, offset)
        offset += nbytes
    return result


def load(path) -> dict:
    """The object of a torch.save file whose pickle needs only state-dict globals, tensors as numpy arrays.

    Raises UnsafeCheckpointError for any other global, ValueError for a damaged, truncated or non-torch file.
    """
    path = os.fspath(path)
    try:
        obj = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
        return _materialize(obj)
    except UnsafeCheckpointError:
        raise
    except ValueError as err:
        if str(err).startswith("checkpoint:"):
            raise
        raise ValueError(f"checkpoint: {path!r} is damaged: {err}") from err
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, struct.error, KeyError, IndexError, TypeError) as err:
        raise ValueError(
            f"checkpoint: {path!r} could not be read as a PyTorch checkpoint ({type(err).__name__}: {err}): a "
            f"truncated download, or not a .pth file"
        ) from err


__all__ = ["UnsafeCheckpointError", "load"]
