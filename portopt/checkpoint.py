"""Checkpoints without pickle (:func:`save`, :func:`load`), and state for torch (:func:`to_torch`).

The format
----------
A checkpoint is NumPy's ``.npz`` layout without pickle: a ZIP archive whose members are
stored uncompressed (``ZIP_STORED``). Every array is one ``.npy`` member (``arr_0.npy``,
``arr_1.npy``, ...) with a plain, little-endian dtype; one JSON member, ``portopt.json``,
holds everything else::

    {"format": "portopt.checkpoint", "version": 1, "object": NODE}

where a NODE is ``null``, ``true``/``false``, a JSON integer (a Python int), a JSON string,
or an object with one tag: ``{"float": "0.001"}`` (``repr`` of the float, so ``"nan"``,
``"-inf"`` and ``"-0.0"`` come back exactly; a NaN other than the usual one is written as
``"nan:<16 hex digits of its bits>"``), ``{"list": [NODE, ...]}``, ``{"tuple": [...]}``,
``{"dict": [[KEY, NODE], ...]}`` and ``{"odict": ...}`` (an ``OrderedDict``; a KEY is a
JSON string or integer, so ``0`` and ``"0"`` stay apart), ``{"array": ARRAY}`` and
``{"sparse": {"indices": ARRAY, "values": ARRAY, "shape": [...], "coalesced": bool}}``
(a :class:`~portopt.SparseGrad` or a torch sparse COO tensor). ARRAY is ``{"member",
"dtype", "shape", "scalar", "backend", "device"}``: the member holding the data, the dtype
name, the shape, whether it was a NumPy scalar (``np.float32(3.0)``) rather than an array,
and the library and device it came from (recorded, not used to place the data). torch's
``bfloat16`` is stored as its 16-bit pattern (a ``uint16`` member) with dtype
``"bfloat16"``.

Why this format: it needs no new dependency (NumPy and the standard library); every dtype
the optimizers keep is a ``.npy`` dtype, complex64 and complex128 included; ZIP keeps a
CRC-32 of every member, which :func:`load` checks, so a flipped bit in an array or in the
JSON is found rather than loaded; and any NumPy reads the arrays back
(``np.load(path)`` with its default ``allow_pickle=False``; ``portopt.json`` comes back as
bytes), as does any ZIP tool. safetensors was the other candidate: it would add the
safetensors package as a dependency, keeps no checksum of the data, has no complex128
dtype, and holds a flat map of names to tensors with string-only metadata, so nesting,
scalars and int keys would need a convention of our own anyway. ``torch.save`` (pickle)
was never one: loading a pickle runs code chosen by whoever wrote the file.

Loading
-------
:func:`load` never unpickles and never calls ``np.load``. It reads the whole file and
checks it before building anything: the ZIP end record sits exactly at the end of the
file, the central directory and each local header agree, the members tile the file from
byte 0 to the directory with nothing before, between or after them, no member is
compressed, encrypted or present twice, each member's CRC-32 matches, the JSON parses
(no duplicate keys, no NaN literals) and follows the schema above, the set of members is
exactly ``portopt.json`` plus the arrays it names, and each ``.npy`` header has the dtype
and shape the JSON gives and a size that matches its member byte for byte (so a header
claiming gigabytes fails before anything is allocated). Anything else raises
:class:`CheckpointError` naming what is wrong.

Caps (module constants): ``portopt.json`` at most :data:`MAX_JSON_BYTES` (16 MiB), the
object nested at most :data:`MAX_DEPTH` (100) containers deep, at most
:data:`MAX_MEMBERS` (2**20) members and :data:`MAX_DIRECTORY_BYTES` (128 MiB) of ZIP
directory, ``.npy`` headers at most :data:`MAX_NPY_HEADER` (4096) bytes with at most
:data:`MAX_NDIM` (64) dimensions. Arrays are not capped beyond the file's own size: memory
is only allocated for data the file actually holds.

Saving
------
:func:`save` converts and checks the whole object first (a ``TypeError`` naming where an
unsupported value sits, before any file is opened), then writes a temporary file
``.<name>.<random>.tmp`` in the target's folder, flushes and ``fsync``s it, and renames it
over the target with ``os.replace``, then ``fsync``s the folder. A reader sees the old
checkpoint or the new one, never a mix. On any error the temporary file is removed and the
error propagates unchanged; a process killed mid-save can leave its temporary file behind
(the old checkpoint is untouched), which is safe to delete. Saving through a symbolic
link replaces the file it points to and keeps the link; an existing file's permission bits
are kept.

Not kept: which values were the same object (each occurrence is saved, and loaded, as its
own copy), ``requires_grad`` and ``nn.Parameter``-ness of tensors, and the ``_metadata``
attribute torch attaches to a module's ``state_dict``.
"""

from __future__ import annotations

import ast
import errno
import importlib
import io
import json
import math
import os
import re
import secrets
import stat
import struct
import sys
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import array_api_compat
import numpy as np

from ._checkpoint_zip import (
    _SIG_END,
    _SIG_LOCAL,
    Entry,
    ZipReader,
    write_zip,
)
from ._checkpoint_zip import CHUNK as _CHUNK
from ._checkpoint_zip import MAX_DIRECTORY_BYTES as MAX_DIRECTORY_BYTES  # documented here too
from ._checkpoint_zip import MAX_MEMBERS as MAX_MEMBERS
from .backends import get_backend
from .parameter import Parameter, SparseGrad

__all__ = ["CheckpointError", "load", "save", "to_torch"]

#: The format marker in ``portopt.json``, and the version this module writes and reads.
FORMAT = "portopt.checkpoint"
VERSION = 1

#: Caps on what load reads (besides the ZIP layer's MAX_MEMBERS and MAX_DIRECTORY_BYTES).
MAX_JSON_BYTES = 16 * 2**20
MAX_DEPTH = 100
MAX_NPY_HEADER = 4096
MAX_NDIM = 64

_INDEX = "portopt.json"
_MAX_INT_BITS = 13_000

_DTYPE_NAMES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                "uint64", "float16", "float32", "float64", "complex64", "complex128")
#: The dtype each dtype name is stored as: little-endian, and bfloat16 as its bit pattern.
_STORED = {name: np.dtype(name).newbyteorder("<") for name in _DTYPE_NAMES}
_STORED["bfloat16"] = np.dtype("<u2")


class CheckpointError(ValueError):
    """A file that :func:`load` will not load: not a portopt checkpoint, damaged,
    truncated or tampered with, or holding what the requested backend cannot represent.
    The message names the file and what is wrong."""


# -- save -------------------------------------------------------------------------------


def save(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write ``obj`` to ``path`` as a checkpoint, atomically and without pickle.

    Args:
        obj: any nesting of dicts (str or int keys) and ``OrderedDict``s, lists, tuples,
            str, int, float, bool, ``None``, and arrays: NumPy arrays and scalars, torch
            tensors (any device; sparse COO too), CuPy and array-api-strict arrays and
            :class:`~portopt.SparseGrad`. Optimizer, scheduler and ``AveragedModel``
            state_dicts of portopt and torch are such objects.
        path: the file to write. An existing file there is replaced only once the new
            one is completely on disk (see the module docstring).

    Raises:
        TypeError: a value, key or dtype a checkpoint cannot hold; the message says where
            in ``obj`` it sits. Raised before any file is opened.
        ValueError: ``obj`` is nested deeper than :data:`MAX_DEPTH` (a reference cycle,
            say), or ``path`` exists and is not a regular file.
        OSError: from the file system, unchanged (``ENOSPC``, ``EACCES``, ...); the
            previous file at ``path`` is then intact and no temporary file is left.

    Example:
        >>> import numpy as np, portopt
        >>> w = portopt.Parameter(np.zeros(3))
        >>> opt = portopt.optim.Adam([w])
        >>> portopt.save({"optimizer": opt.state_dict(), "epoch": 3}, "ckpt.npz")
    """
    members = _members(obj)
    target, existing = _target(path)
    _replace_atomically(target, existing, lambda f: write_zip(f, members))


def _members(obj: Any) -> list[tuple[str, int, int, Callable[[], Iterator[Any]]]]:
    """``(name, size, crc32, chunks)`` of every archive member, the index first."""
    arrays: list[np.ndarray] = []
    doc = {"format": FORMAT, "version": VERSION, "object": _encode(obj, "obj", 0, arrays)}
    index = json.dumps(doc, ensure_ascii=True, allow_nan=False,
                       separators=(",", ":")).encode("ascii")
    members = [(_INDEX, len(index), zlib.crc32(index), lambda: iter((index,)))]
    for i, host in enumerate(arrays):
        members.append(_npy_member(f"arr_{i}.npy", host))
    return members


def _encode(value: Any, path: str, depth: int, arrays: list[np.ndarray]) -> Any:
    """The JSON node for ``value``; its arrays are appended to ``arrays`` as host copies."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{path}: nested deeper than {MAX_DEPTH} levels (a reference cycle?)")
    kind = type(value)
    if kind is int:
        return _checked_int(value, path)
    if value is None or kind in (bool, str):
        return value
    if kind is float:
        return {"float": _float_text(value)}
    if kind in (dict, OrderedDict):
        items = []
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(
                    f"{path} has the key {key!r} of type {type(key).__name__}; checkpoint "
                    "dict keys must be str or int"
                )
            if type(key) is int:
                _checked_int(key, path)
            items.append([key, _encode(item, f"{path}[{key!r}]", depth + 1, arrays)])
        return {"dict" if kind is dict else "odict": items}
    if kind in (list, tuple):
        return {kind.__name__: [_encode(item, f"{path}[{i}]", depth + 1, arrays)
                                for i, item in enumerate(value)]}
    if kind is SparseGrad:
        return _sparse_node(value.indices, value.values, value.shape, False, path, arrays)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor) and value.layout != torch.strided:
        if value.layout != torch.sparse_coo:
            raise TypeError(f"{path} is a torch tensor of layout {value.layout}; a checkpoint "
                            "holds strided and sparse COO tensors")
        return _sparse_node(value._indices(), value._values(), tuple(value.shape),
                            value.is_coalesced(), path, arrays)
    if array_api_compat.is_array_api_obj(value):
        return {"array": _array_entry(value, path, arrays)}
    if kind is Parameter:
        raise TypeError(f"{path} is a portopt.Parameter; save its array, {path}.data")
    raise TypeError(
        f"{path} is a {_typename(value)}, which a checkpoint cannot hold: it holds dicts, "
        "lists, tuples, str, int, float, bool, None and arrays"
    )


def _sparse_node(indices: Any, values: Any, shape: Any, coalesced: bool, path: str,
                 arrays: list[np.ndarray]) -> dict[str, Any]:
    return {"sparse": {"indices": _array_entry(indices, f"{path}.indices", arrays),
                       "values": _array_entry(values, f"{path}.values", arrays),
                       "shape": [int(n) for n in shape], "coalesced": bool(coalesced)}}


def _array_entry(value: Any, path: str, arrays: list[np.ndarray]) -> dict[str, Any]:
    host, dtype, backend, device = _to_host(value, path)
    entry = {"member": f"arr_{len(arrays)}.npy", "dtype": dtype, "shape": list(host.shape),
             "scalar": isinstance(value, np.generic), "backend": backend, "device": device}
    arrays.append(host)
    return entry


def _to_host(value: Any, path: str) -> tuple[np.ndarray, str, str, str]:
    """A C-contiguous little-endian NumPy copy (or view) of ``value``, its dtype name,
    and the library and device it came from."""
    torch = sys.modules.get("torch")
    cupy = sys.modules.get("cupy")
    name = None
    if isinstance(value, (np.ndarray, np.generic)):
        if isinstance(value, np.ndarray) and type(value) not in (np.ndarray, np.memmap):
            raise TypeError(f"{path} is a {_typename(value)}, an ndarray subclass whose "
                            "extra state a checkpoint would drop; save np.asarray(...) of it")
        host, backend, device = np.asarray(value), "numpy", "cpu"
    elif torch is not None and isinstance(value, torch.Tensor):
        name = str(value.dtype).removeprefix("torch.")
        if name not in _STORED:
            raise TypeError(f"{path} has dtype torch.{name}, which a checkpoint cannot hold")
        if value.device.type == "meta":
            raise TypeError(f"{path} is a tensor on the meta device, which has no values")
        tensor = value.detach().cpu().resolve_conj().resolve_neg()
        if name == "bfloat16":  # NumPy has no bfloat16: keep the 16-bit pattern
            host = tensor.view(torch.int16).numpy().view(np.uint16)
        else:
            host = tensor.numpy()
        backend, device = "torch", str(value.device)
    elif cupy is not None and isinstance(value, cupy.ndarray):
        host, backend, device = cupy.asnumpy(value), "cupy", f"cuda:{value.device.id}"
    else:
        try:
            be = get_backend(value)
        except TypeError:
            raise TypeError(f"{path} is a {_typename(value)}, an array type portopt has no "
                            "backend for") from None
        host, backend, device = np.asarray(be.to_numpy(value)), be.name, str(be.device(value))
    if name is None:
        name = host.dtype.name
        if name not in _STORED or host.dtype.kind not in "biufc":
            raise TypeError(f"{path} has dtype {host.dtype}, which a checkpoint cannot hold "
                            f"(it holds {', '.join(_STORED)})")
    return np.asarray(host, dtype=_STORED[name], order="C"), name, backend, device


def _checked_int(value: int, path: str) -> int:
    # JSON holds ints in decimal, and Python parses at most 4300 digits by default
    if value.bit_length() > _MAX_INT_BITS:
        raise ValueError(f"{path}: an int of {value.bit_length()} bits, more than a checkpoint "
                         f"holds ({_MAX_INT_BITS} bits, about 4000 digits)")
    return value


def _typename(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else \
        f"{kind.__module__}.{kind.__qualname__}"


def _float_text(x: float) -> str:
    text = repr(x)
    if x != x and struct.pack("<d", x) != struct.pack("<d", float("nan")):
        text = "nan:" + struct.pack(">d", x).hex()  # a NaN with its sign or payload
    return text


def _npy_member(name: str, host: np.ndarray) -> tuple[str, int, int, Callable[[], Iterator[Any]]]:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(host))
    head = header.getvalue()
    data = memoryview(host.reshape(-1).view(np.uint8))

    def chunks() -> Iterator[Any]:
        yield head
        for start in range(0, data.nbytes, _CHUNK):
            yield data[start:start + _CHUNK]

    return name, len(head) + data.nbytes, zlib.crc32(data, zlib.crc32(head)), chunks


# -- writing atomically -----------------------------------------------------------------


def _target(path: Any) -> tuple[str, os.stat_result | None]:
    """The file to replace (a symbolic link resolved) and its status, if it exists."""
    name = os.fspath(path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    target = os.path.realpath(name)
    try:
        existing = os.stat(target)
    except FileNotFoundError:
        return target, None
    if stat.S_ISDIR(existing.st_mode):
        raise IsADirectoryError(errno.EISDIR, "a checkpoint cannot replace a directory", name)
    if not stat.S_ISREG(existing.st_mode):
        raise ValueError(f"{name} exists and is not a regular file; save only replaces files")
    return target, existing


def _replace_atomically(target: str, existing: os.stat_result | None,
                        write: Callable[[Any], None]) -> None:
    folder, name = os.path.split(target)
    fd, temp = _create_temp(folder, name)
    f = None
    try:
        if existing is not None and hasattr(os, "fchmod"):
            os.fchmod(fd, stat.S_IMODE(existing.st_mode))
        f = os.fdopen(fd, "wb")
        write(f)
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(temp, target)
    except BaseException:
        _discard(f, fd, temp)
        raise
    _sync_folder(folder)


def _create_temp(folder: str, name: str) -> tuple[int, str]:
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
             | getattr(os, "O_BINARY", 0))
    for _ in range(100):
        temp = os.path.join(folder, f".{name[:200]}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temp, flags, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", folder)


def _discard(f: Any, fd: int, temp: str) -> None:
    """Close and remove the temporary file, quietly: the error that got us here is the
    one to report (closing after a failed write can fail again, with the same ENOSPC)."""
    try:
        if f is None:
            os.close(fd)
        else:
            f.close()
    except OSError:
        pass
    try:
        os.unlink(temp)
    except OSError:
        pass


def _sync_folder(folder: str) -> None:
    """Make the rename durable. Windows cannot open a folder; some file systems cannot
    sync one (EINVAL): there the rename is as durable as the system makes it."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


# -- load -------------------------------------------------------------------------------


def load(path: str | os.PathLike[str], *, backend: str = "numpy", device: Any = None) -> Any:
    """Read a checkpoint written by :func:`save`, checking all of it before building anything.

    Args:
        path: the checkpoint file.
        backend: ``"numpy"`` (default), ``"torch"`` or ``"cupy"``: the library of the
            arrays in the result. NumPy scalars come back as NumPy scalars on ``"numpy"``
            and ``"cupy"`` (host values, as portopt keeps ``step`` on CuPy) and as 0-d
            tensors on ``"torch"``; sparse values as :class:`~portopt.SparseGrad` or as
            torch sparse COO tensors.
        device: where to put the arrays: a torch device (default CPU) or a CuPy device id
            (default the current device). Not allowed with ``"numpy"``.

    Returns:
        The saved object: the same nesting, container types (tuple or list, dict or
        ``OrderedDict``), key types, scalars and dtypes.

    Raises:
        CheckpointError: ``path`` is not a portopt checkpoint (a ``torch.save`` file, a
            plain ``.npz``, safetensors, ...), or it is truncated, damaged or tampered
            with, or holds bfloat16 arrays and ``backend`` has no bfloat16. Nothing is
            built and no code from the file runs.
        FileNotFoundError: ``path`` does not exist (other ``OSError``s likewise).
        ValueError: an unknown ``backend``, or a ``device`` given with ``"numpy"``.
        ModuleNotFoundError: ``backend`` is a library that is not installed.
    """
    place = _placement(backend, device)
    where = os.fspath(path)
    info = os.stat(path)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), where)
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"{where}: not a regular file")
    with open(path, "rb", buffering=0) as f:
        reader = _Reader(f, os.fstat(f.fileno()).st_size, str(where))
        tree = reader.read(place)
    return _build(tree, reader.arrays, place)


def _placement(backend: str, device: Any) -> Any:
    if backend not in ("numpy", "torch", "cupy"):
        raise ValueError(f"backend must be 'numpy', 'torch' or 'cupy', got {backend!r}")
    if backend == "numpy":
        if device is not None:
            raise ValueError(f"device={device!r} needs backend='torch' or 'cupy'; NumPy arrays "
                             "live on the host")
        return _NumpyPlacement()
    try:
        lib = importlib.import_module(backend)
    except ModuleNotFoundError as exc:
        if exc.name != backend:
            raise
        raise ModuleNotFoundError(
            f"load(..., backend={backend!r}) needs {'CuPy' if backend == 'cupy' else 'torch'}, "
            "which is not installed", name=backend) from None
    return _TorchPlacement(lib, device) if backend == "torch" else _CupyPlacement(lib, device)


class _NumpyPlacement:
    name, has_bfloat16 = "NumPy", False

    def array(self, host: np.ndarray, entry: dict[str, Any]) -> Any:
        return host[()] if entry["scalar"] else host

    def sparse(self, indices: np.ndarray, values: np.ndarray, entry: dict[str, Any],
               shape: tuple[int, ...], coalesced: bool) -> Any:
        # the reader checked the invariants (indices in range) on the host
        return SparseGrad(self.array(indices, {"scalar": False}), self.array(values, entry),
                          shape, check_invariants=False)


class _CupyPlacement(_NumpyPlacement):
    name = "CuPy"

    def __init__(self, cupy: Any, device: Any) -> None:
        if device is not None:
            device = getattr(device, "id", device)
            if type(device) is not int:
                raise ValueError(f"a CuPy device is an int id or cupy.cuda.Device, got {device!r}")
        self.cupy, self.device = cupy, device

    def array(self, host: np.ndarray, entry: dict[str, Any]) -> Any:
        if entry["scalar"]:
            return host[()]
        if self.device is None:
            return self.cupy.asarray(host)
        with self.cupy.cuda.Device(self.device):
            return self.cupy.asarray(host)


class _TorchPlacement:
    name, has_bfloat16 = "torch", True

    def __init__(self, torch: Any, device: Any) -> None:
        if device is not None:
            try:
                device = torch.device(device)
            except (RuntimeError, TypeError) as exc:
                raise ValueError(f"{device!r} is not a torch device ({exc})") from None
        self.torch, self.device = torch, device

    def array(self, host: np.ndarray, entry: dict[str, Any]) -> Any:
        torch = self.torch
        if entry["dtype"] == "bfloat16":
            tensor = torch.from_numpy(host.view(np.int16)).view(torch.bfloat16)
        else:
            tensor = torch.from_numpy(host)
        return tensor if self.device is None else tensor.to(self.device)

    def sparse(self, indices: np.ndarray, values: np.ndarray, entry: dict[str, Any],
               shape: tuple[int, ...], coalesced: bool) -> Any:
        torch = self.torch
        # the reader checked the invariants (indices in range) on the host
        tensor = torch.sparse_coo_tensor(torch.from_numpy(indices.astype(np.int64)),
                                         self.array(values, entry), shape, device=self.device,
                                         check_invariants=False)
        # coalesce() of a coalesced tensor changes nothing; the flag alone is not trusted
        return tensor.coalesce() if coalesced else tensor


def _build(node: Any, arrays: dict[str, np.ndarray], place: Any) -> Any:
    """The object a checked JSON node stands for (the reader has checked every node)."""
    if node is None or type(node) in (bool, int, str):
        return node
    ((tag, body),) = node.items()
    if tag == "float":
        return _parse_float(body)
    if tag in ("list", "tuple"):
        items = [_build(item, arrays, place) for item in body]
        return items if tag == "list" else tuple(items)
    if tag in ("dict", "odict"):
        pairs = [(key, _build(item, arrays, place)) for key, item in body]
        return dict(pairs) if tag == "dict" else OrderedDict(pairs)
    if tag == "array":
        return place.array(arrays[body["member"]], body)
    indices, values = arrays[body["indices"]["member"]], arrays[body["values"]["member"]]
    return place.sparse(indices, values, body["values"], tuple(body["shape"]), body["coalesced"])


_FLOAT = re.compile(r"-?(?:inf|\d+\.\d+(?:e[+-]\d+)?|\d+e[+-]\d+)|nan|nan:[0-9a-f]{16}")


def _parse_float(text: str) -> float:
    if text.startswith("nan:"):
        return struct.unpack(">d", bytes.fromhex(text[4:]))[0]
    return float(text)


class _Reader(ZipReader):
    """Reads and checks one checkpoint file; :attr:`arrays` holds the host arrays."""

    error = CheckpointError

    def __init__(self, f: Any, size: int, where: str) -> None:
        super().__init__(f, size, where)
        self.arrays: dict[str, np.ndarray] = {}
        self.refs: dict[str, tuple[dict[str, Any], str]] = {}
        self.sparse: list[tuple[dict[str, Any], str]] = []

    # -- the whole file ----------------------------------------------------------------

    def read(self, place: Any) -> Any:
        """Check the file and read its arrays; returns the checked object tree."""
        self.sniff()
        self.directory()
        tree = self.index()
        if not place.has_bfloat16:
            for spec, path in self.refs.values():
                if spec["dtype"] == "bfloat16":
                    raise self.fail(f"{path} is a bfloat16 array, and {place.name} has no "
                                    "bfloat16 dtype; load it with backend='torch'")
        for entry in sorted((self.entries[m] for m in self.refs), key=lambda e: e.offset):
            spec, path = self.refs[entry.name]
            self.arrays[entry.name] = self.array(entry, spec, path)
        for body, path in self.sparse:
            self.check_sparse_indices(body, path)
        return tree

    def sniff(self) -> None:
        """Name foreign files that do not even start like a ZIP archive."""
        head = self.read_at(0, min(self.size, 16))
        if head.startswith(_SIG_LOCAL):
            return
        if not head:
            raise self.fail("not a portopt checkpoint: the file is empty")
        known = [(b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\x93NUMPY", "a single .npy array"),
                 (b"\x1f\x8b", "gzip-compressed data"), (_SIG_END, "an empty ZIP archive"),
                 (b"%PDF", "a PDF document")]
        for magic, what in known:
            if head.startswith(magic):
                raise self.fail(f"not a portopt checkpoint: it is {what}")
        if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
            raise self.fail("not a portopt checkpoint: it is a pickle (torch.save's legacy "
                            "format, or pickle.dump); portopt never unpickles")
        if len(head) >= 9 and head[8:9] == b"{" and \
                int.from_bytes(head[:8], "little") <= self.size - 8:
            raise self.fail("not a portopt checkpoint: it is a safetensors file")
        try:
            head.decode("utf-8")
            text = all(c >= 32 or c in b"\t\n\r" for c in head)
        except UnicodeDecodeError:
            text = False
        what = "text" if text else f"data starting with {head[:8]!r}"
        raise self.fail(f"not a portopt checkpoint: it is {what}, not a ZIP archive")

    def identify(self, entries: list[Entry]) -> None:
        """Name ZIP archives that are not checkpoints by what they hold."""
        names = [e.name for e in entries]
        if _INDEX in names:
            return
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            raise self.fail("not a portopt checkpoint: it is a torch.save file, whose data is "
                            "a pickle; portopt never unpickles (load it with torch.load("
                            "weights_only=True) and save it with portopt.save)")
        if all(n.endswith(".npy") for n in names):
            raise self.fail("not a portopt checkpoint: a plain NumPy .npz archive (no "
                            f"{_INDEX} member describing the object)")
        raise self.fail(f"not a portopt checkpoint: a ZIP archive without a {_INDEX} member")

    # -- the JSON index ----------------------------------------------------------------

    def index(self) -> Any:
        e = self.entries[_INDEX]
        if e.size > MAX_JSON_BYTES:
            raise self.fail(f"{_INDEX} is {e.size} bytes, more than the cap of {MAX_JSON_BYTES}")
        raw = self.read_at(e.data_at, e.size)
        if zlib.crc32(raw) != e.crc:
            raise self.fail(f"member {_INDEX!r} fails its CRC-32 check: the file is damaged")
        try:
            doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys,
                             parse_constant=_no_constant)
        except UnicodeDecodeError:
            raise self.fail(f"{_INDEX} is not UTF-8 text") from None
        except RecursionError:
            raise self.fail(f"{_INDEX} is nested too deeply to parse") from None
        except _BadJson as exc:
            raise self.fail(f"{_INDEX}: {exc}") from None
        except ValueError as exc:
            raise self.fail(f"{_INDEX} is not valid JSON ({exc})") from None
        if type(doc) is not dict:
            raise self.fail(f"{_INDEX} is not a JSON object, so it has no format marker")
        marker = doc.get("format")
        if marker != FORMAT:
            raise self.fail(f"{_INDEX} has no format marker" if marker is None else
                            f"unknown format {marker!r} (this portopt reads {FORMAT!r})")
        version = doc.get("version")
        if type(version) is not int:
            raise self.fail(f"{_INDEX} has no format version")
        if version != VERSION:
            raise self.fail(f"format version {version} (this portopt reads version {VERSION})")
        if set(doc) != {"format", "version", "object"}:
            raise self.fail(f"{_INDEX} has keys {sorted(doc)}; expected format, version, "
                            "object")
        tree = doc["object"]
        self.check(tree, "obj", 0)
        for name in self.entries:
            if name != _INDEX and name not in self.refs:
                raise self.fail(f"unexpected member {name!r}: {_INDEX} does not refer to it")
        return tree

    def check(self, node: Any, path: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise self.fail(f"{path}: nested deeper than the cap of {MAX_DEPTH}")
        kind = type(node)
        if node is None or kind in (bool, int, str):
            return
        if kind is not dict:
            raise self.fail(f"{path}: an untagged JSON {'number' if kind is float else 'list'}")
        if len(node) != 1:
            raise self.fail(f"{path}: a node must have exactly one tag, not {sorted(node)}")
        ((tag, body),) = node.items()
        if tag == "float":
            if type(body) is not str or not _FLOAT.fullmatch(body) or (
                    body.startswith("nan:") and _parse_float(body) == _parse_float(body)):
                raise self.fail(f"{path}: {body!r} is not a float")
        elif tag in ("list", "tuple"):
            if type(body) is not list:
                raise self.fail(f"{path}: a {tag} node must hold a JSON list")
            for i, item in enumerate(body):
                self.check(item, f"{path}[{i}]", depth + 1)
        elif tag in ("dict", "odict"):
            self.check_dict(body, path, depth)
        elif tag == "array":
            self.check_array(body, path)
        elif tag == "sparse":
            self.check_sparse(body, path)
        else:
            raise self.fail(f"{path}: unknown tag {tag!r}")

    def check_dict(self, body: Any, path: str, depth: int) -> None:
        if type(body) is not list:
            raise self.fail(f"{path}: a dict node must hold a list of [key, value] pairs")
        seen: set[Any] = set()
        for pair in body:
            if type(pair) is not list or len(pair) != 2:
                raise self.fail(f"{path}: a dict item must be a [key, value] pair")
            key = pair[0]
            if type(key) not in (str, int):
                raise self.fail(f"{path}: the key {key!r} is a JSON "
                                f"{_json_type(key)}; keys are strings or integers")
            if key in seen:
                raise self.fail(f"{path}: the key {key!r} appears twice")
            seen.add(key)
            self.check(pair[1], f"{path}[{key!r}]", depth + 1)

    def check_array(self, body: Any, path: str) -> None:
        keys = {"member", "dtype", "shape", "scalar", "backend", "device"}
        if type(body) is not dict or set(body) != keys:
            raise self.fail(f"{path}: an array entry must have exactly the keys "
                            f"{', '.join(sorted(keys))}")
        member, dtype, shape = body["member"], body["dtype"], body["shape"]
        if type(member) is not str or member == _INDEX:
            raise self.fail(f"{path}: bad member name {member!r}")
        if type(dtype) is not str or dtype not in _STORED:
            raise self.fail(f"{path}: unknown dtype {dtype!r}")
        if (type(shape) is not list or len(shape) > MAX_NDIM
                or any(type(n) is not int or n < 0 for n in shape)):
            raise self.fail(f"{path}: bad shape {shape!r}")
        if math.prod(max(n, 1) for n in shape) * _STORED[dtype].itemsize >= 2**62:
            raise self.fail(f"{path}: shape {shape} is too large for any array")
        if type(body["scalar"]) is not bool or (body["scalar"] and shape):
            raise self.fail(f"{path}: bad scalar flag {body['scalar']!r}")
        if type(body["backend"]) is not str or type(body["device"]) is not str:
            raise self.fail(f"{path}: backend and device must be strings")
        if member not in self.entries:
            raise self.fail(f"{path}: its member {member!r} is missing from the archive")
        if member in self.refs:
            raise self.fail(f"{path}: its member {member!r} is also {self.refs[member][1]}")
        self.refs[member] = (body, path)

    def check_sparse(self, body: Any, path: str) -> None:
        keys = {"indices", "values", "shape", "coalesced"}
        if type(body) is not dict or set(body) != keys:
            raise self.fail(f"{path}: a sparse entry must have exactly the keys "
                            f"{', '.join(sorted(keys))}")
        self.check_array(body["indices"], f"{path}.indices")
        self.check_array(body["values"], f"{path}.values")
        indices, values, shape = body["indices"], body["values"], body["shape"]
        if (type(shape) is not list or len(shape) > MAX_NDIM
                or any(type(n) is not int or n < 0 for n in shape)
                or math.prod(shape) >= 2**63):
            raise self.fail(f"{path}: bad sparse shape {shape!r}")
        ishape, vshape = indices["shape"], values["shape"]
        if (not indices["dtype"].startswith(("int", "uint")) or len(ishape) != 2
                or indices["scalar"] or values["scalar"] or len(vshape) < 1
                or ishape[1] != vshape[0] or len(shape) != ishape[0] + len(vshape) - 1
                or vshape[1:] != shape[ishape[0]:] or type(body["coalesced"]) is not bool):
            raise self.fail(f"{path}: indices {ishape} ({indices['dtype']}), values {vshape} "
                            f"and shape {shape} do not make a sparse COO array")
        self.sparse.append((body, path))

    def check_sparse_indices(self, body: dict[str, Any], path: str) -> None:
        indices = self.arrays[body["indices"]["member"]]
        if indices.size == 0:
            return
        for d, n in enumerate(body["shape"][:indices.shape[0]]):
            low, high = int(indices[d].min()), int(indices[d].max())
            if low < 0 or high >= n:
                raise self.fail(f"{path}: index {low if low < 0 else high} of dimension {d} "
                                f"lies outside its size {n}")

    # -- the .npy members --------------------------------------------------------------

    def array(self, e: Entry, spec: dict[str, Any], path: str) -> np.ndarray:
        """Read one ``.npy`` member into a new array, after checking its header against
        the index and its size against the member; the CRC covers header and data."""
        where = f"{path}: member {e.name!r}"
        prefix = self.read_at(e.data_at, min(e.size, 12))
        if not prefix.startswith(b"\x93NUMPY") or len(prefix) < 10:
            what = "a pickle" if prefix[:1] == b"\x80" else "not a .npy array"
            raise self.bad_member(e, f"{where} is {what}")
        version = prefix[6:8]
        if version == b"\x01\x00":
            start, header_size = 10, struct.unpack("<H", prefix[8:10])[0]
        elif version in (b"\x02\x00", b"\x03\x00") and len(prefix) == 12:
            start, header_size = 12, struct.unpack("<I", prefix[8:12])[0]
        else:
            raise self.bad_member(e, f"{where} has an unknown .npy version {tuple(version)}")
        if header_size > MAX_NPY_HEADER or start + header_size > e.size:
            raise self.bad_member(e, f"{where} has a .npy header of {header_size} bytes "
                                     f"in a member of {e.size}")
        header = self.read_at(e.data_at + start, header_size)
        problem = _header_problem(header, version, spec)
        if problem:
            raise self.bad_member(e, f"{where}: {problem}")
        dtype = _STORED[spec["dtype"]]
        data_size = e.size - start - header_size
        if math.prod(spec["shape"]) * dtype.itemsize != data_size:
            raise self.bad_member(e, f"{where} holds {data_size} bytes of data, but its header "
                                     f"promises {math.prod(spec['shape']) * dtype.itemsize} "
                                     f"(shape {tuple(spec['shape'])}, {spec['dtype']})")
        out = np.empty(spec["shape"], dtype=dtype)
        flat = memoryview(out.reshape(-1).view(np.uint8))
        crc = zlib.crc32(header, zlib.crc32(prefix[:start]))
        at = e.data_at + start + header_size
        for done in range(0, data_size, _CHUNK):
            n = min(_CHUNK, data_size - done)
            self.f.seek(at + done)
            chunk = flat[done:done + n]
            got = 0
            while got < n:
                read = self.f.readinto(chunk[got:])
                if not read:
                    raise self.fail(f"{where}: the file ends early (it changed while read?)")
                got += read
            crc = zlib.crc32(chunk, crc)
        if crc != e.crc:
            raise self.fail(f"member {e.name!r} fails its CRC-32 check: the file is damaged")
        return out


def _header_problem(header: bytes, version: bytes, spec: dict[str, Any]) -> str | None:
    """What is wrong with a ``.npy`` header given the index entry, or ``None``.

    The header is a Python literal; ``ast.literal_eval`` builds literals only and runs
    no code."""
    try:
        text = header.decode("utf-8" if version == b"\x03\x00" else "latin-1")
        meta = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError,
            UnicodeDecodeError):
        return "its .npy header is not a Python literal"
    if type(meta) is not dict or set(meta) != {"descr", "fortran_order", "shape"}:
        return "its .npy header does not have exactly descr, fortran_order and shape"
    descr, expected = meta["descr"], _STORED[spec["dtype"]].str
    if descr != expected:
        if "O" in str(descr):
            return ("its .npy header has an object dtype, whose data is a pickle; "
                    "portopt never unpickles")
        return f"its .npy dtype {descr!r} is not {expected!r} ({spec['dtype']}, as the index says)"
    if meta["fortran_order"] is not False:
        return "its .npy header says Fortran order; checkpoints are written in C order"
    if meta["shape"] != tuple(spec["shape"]):
        return f"its .npy shape {meta['shape']!r} is not the index's {tuple(spec['shape'])}"
    return None


class _BadJson(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _BadJson(f"the key {key!r} appears twice in one JSON object")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise _BadJson(f"{name} is not JSON (floats are stored as tagged strings)")


def _json_type(value: Any) -> str:
    return {bool: "boolean", float: "number", list: "list", dict: "object",
            type(None): "null"}.get(type(value), type(value).__name__)


# -- torch interop ----------------------------------------------------------------------


def to_torch(obj: Any) -> Any:
    """A copy of ``obj`` with every array turned into a torch tensor.

    ``obj`` is any nesting of dicts, lists and tuples (an optimizer's ``state_dict``,
    say). NumPy and array-api-strict arrays become CPU tensors, CuPy arrays CUDA tensors
    on the same device; dtypes are kept, so ``step`` stays float32. A
    :class:`~portopt.SparseGrad` becomes a sparse COO tensor. torch tensors are
    returned as they are; other values are kept.

    Raises:
        ModuleNotFoundError: torch is not installed.
    """
    import torch  # the caller asked for torch tensors

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(convert(v) for v in value)
        if isinstance(value, SparseGrad):  # e.g. SGD's momentum buffer
            return torch.sparse_coo_tensor(convert(value.indices), convert(value.values),
                                           value.shape, check_invariants=False)
        if isinstance(value, torch.Tensor) or not array_api_compat.is_array_api_obj(value):
            return value
        if isinstance(value, np.generic):
            return torch.from_numpy(np.array(value))
        if "cupy" in sys.modules and isinstance(value, sys.modules["cupy"].ndarray):
            return torch.from_dlpack(value).clone()
        return torch.from_numpy(np.array(get_backend(value).to_numpy(value), copy=True))

    return convert(obj)
