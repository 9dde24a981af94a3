"""portopt.save / portopt.load: round trips of every scalar kind, nesting and dtype, arrays of
each backend loaded on each backend, and optimizer, scheduler and AveragedModel state that
resumes exactly where the original goes on. The oracles are the saved values themselves
(compared type by type and bit by bit), the original optimizer continuing, and torch.optim.
Damaged, foreign and hostile files, and failures while saving, are test_checkpoint_faults.py.
"""

from __future__ import annotations

import collections
import copy
import enum
import inspect
import json
import math
import struct
import zipfile

import numpy as np
import pytest
from helpers import raises

import portopt
from portopt import _checkpoint_zip, checkpoint, optim
from portopt.optim import lr_scheduler, swa_utils
from portopt.testing._tolerances import TOLERANCES

# -- comparing -------------------------------------------------------------------------


def _is_tensor(x):
    return type(x).__module__.startswith("torch") and hasattr(x, "layout")


def _tensor_bytes(t):
    import torch

    t = t.detach().cpu().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes()


def identical(a, b, where="obj"):
    """``a`` and ``b`` are the same value: the same types all the way down (tuple or list,
    int or str keys, bool or int), floats bit for bit, arrays of one library with one dtype,
    shape and device and the same bytes."""
    assert type(a) is type(b), f"{where}: {type(a)} vs {type(b)}"
    if isinstance(a, dict):
        assert [(type(k), k) for k in a] == [(type(k), k) for k in b], where
        for key in a:
            identical(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            identical(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b), f"{where}: {a!r} vs {b!r}"
    elif isinstance(a, (np.ndarray, np.generic)):
        assert (a.dtype, a.shape) == (b.dtype, b.shape), where
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), where
    elif isinstance(a, portopt.SparseGrad):
        assert a.shape == b.shape, where
        identical(a.indices, b.indices, f"{where}.indices")
        identical(a.values, b.values, f"{where}.values")
    elif _is_tensor(a):
        assert (a.dtype, a.device, a.layout, a.shape) == (b.dtype, b.device, b.layout, b.shape)
        if a.is_sparse:
            assert a.is_coalesced() == b.is_coalesced(), where
            identical(a._indices(), b._indices(), f"{where}.indices")
            identical(a._values(), b._values(), f"{where}.values")
        else:
            assert _tensor_bytes(a) == _tensor_bytes(b), where
    else:
        assert a == b, where


def round_trip(obj, tmp_path, **kwargs):
    path = tmp_path / "ckpt.npz"
    portopt.save(obj, path)
    return portopt.load(path, **kwargs)


def _nan(bits):
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


# -- scalars and nesting ---------------------------------------------------------------

SCALARS = {
    "none": None, "true": True, "false": False, "zero": 0, "negative": -7,
    "big-int": 2**100, "big-negative": -(2**80), "empty-str": "", "str": "lr",
    "unicode": "ünï☃ \n\t\"quoted\" \\ \x00", "lone-surrogate": "\ud800",
    "float": 0.1, "float-int": 3.0, "neg-zero": -0.0, "zero-float": 0.0, "inf": math.inf,
    "neg-inf": -math.inf, "nan": math.nan, "neg-nan": _nan(0xFFF8000000000000),
    "nan-payload": _nan(0x7FF8000000000123), "denormal": 5e-324,
    "max": 1.7976931348623157e308, "1e16": 1e16, "1e-7": 1e-7, "eps": 2.220446049250313e-16,
}


@pytest.mark.parametrize("value", SCALARS.values(), ids=SCALARS.keys())
def test_every_scalar_kind_comes_back_exactly(value, tmp_path):
    identical([value, (value,), {"v": value}], round_trip([value, (value,), {"v": value}],
                                                          tmp_path))


def test_nesting_container_types_and_key_types_are_kept(tmp_path):
    obj = {
        "a": [1, (2, [3.5, ()]), {}, []],
        0: {"0": [], 0: ((),), -5: "negative key", 10**30: "big key", "": "empty key"},
        "bools": [True, 1, False, 0, 1.0],
        "deep": {"x": {"y": {"z": [None, (None,)]}}},
        "ordered": collections.OrderedDict([("b", 1), ("a", collections.OrderedDict())]),
        "tuple-of-lists": ([], [[]], ([],)),
    }
    identical(obj, round_trip(obj, tmp_path))


def test_nesting_is_capped_at_max_depth(tmp_path):
    deep = 0
    for _ in range(checkpoint.MAX_DEPTH):
        deep = [deep]
    identical(deep, round_trip(deep, tmp_path))  # MAX_DEPTH containers: fine
    path = tmp_path / "deeper.npz"
    with pytest.raises(ValueError, match=r"nested deeper than 100 levels"):
        portopt.save([deep], path)
    cycle = {"a": []}
    cycle["a"].append(cycle)
    with pytest.raises(ValueError, match=r"reference cycle"):
        portopt.save(cycle, path)
    assert list(tmp_path.iterdir()) == [tmp_path / "ckpt.npz"]


# -- arrays ----------------------------------------------------------------------------

NUMPY_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                "uint64", "float16", "float32", "float64", "complex64", "complex128"]
SHAPES = [(), (0,), (3,), (2, 3), (1, 0, 2)]


def _values(dtype, shape, seed=0):
    """Random values spanning the dtype (extremes included for integers)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        out = rng.random(shape) > 0.5
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        out = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    else:
        out = rng.standard_normal(shape) * 100
        if dtype.kind == "c":
            out = out + 1j * rng.standard_normal(shape)
    return np.asarray(out, dtype=dtype)  # an array even for shape ()


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
def test_every_numpy_dtype_and_shape_round_trips(dtype, shape, tmp_path):
    obj = {"array": _values(dtype, shape), "scalar": np.dtype(dtype).type(1)}
    loaded = round_trip(obj, tmp_path)
    identical(obj, loaded)
    assert loaded["array"].flags.writeable and loaded["array"].flags.c_contiguous


def test_special_float_values_in_arrays_are_bit_exact(tmp_path):
    specials = [math.nan, _nan(0xFFF8000000000000), _nan(0x7FF8000000000123), math.inf,
                -math.inf, -0.0, 5e-324]
    obj = [np.array(specials), np.array(specials[:6], dtype=np.float32),
           np.array([complex(math.nan, -0.0), complex(-math.inf, 1)])]
    identical(obj, round_trip(obj, tmp_path))


def test_strided_and_big_endian_arrays_are_saved_by_value(tmp_path):
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    obj = [base[::2, ::3], base.T, base.astype(">f8"), np.arange(5, dtype=">i4")[::-1]]
    loaded = round_trip(obj, tmp_path)
    for original, back in zip(obj, loaded):
        assert type(back) is np.ndarray and back.flags.c_contiguous
        assert back.dtype == original.dtype.newbyteorder("=")
        np.testing.assert_array_equal(back, original)


def test_numpy_scalars_stay_scalars_and_0d_arrays_stay_arrays(tmp_path):
    obj = [np.float32(1.5), np.array(1.5, dtype=np.float32), np.bool_(True), np.int64(-3),
           np.complex128(1 - 2j), np.float64(0.1)]
    loaded = round_trip(obj, tmp_path)
    identical(obj, loaded)
    assert [type(x) for x in loaded] == [np.float32, np.ndarray, np.bool_, np.int64,
                                         np.complex128, np.float64]


def test_the_file_is_a_stored_zip_that_numpy_reads(tmp_path):
    obj = {"w": np.arange(6.0).reshape(2, 3), "c": np.array([1 + 2j], np.complex64), "lr": 0.1}
    path = tmp_path / "ckpt.npz"
    portopt.save(obj, path)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert [i.compress_type for i in archive.infolist()] == [zipfile.ZIP_STORED] * 3
        doc = json.loads(archive.read("portopt.json"))
    assert (doc["format"], doc["version"]) == ("portopt.checkpoint", 1)
    with np.load(path) as npz:  # allow_pickle=False, NumPy's default
        assert sorted(npz.files) == ["arr_0", "arr_1", "portopt.json"]
        np.testing.assert_array_equal(npz["arr_0"], obj["w"])
        np.testing.assert_array_equal(npz["arr_1"], obj["c"])


def test_the_same_object_gives_the_same_bytes(tmp_path):
    obj = {"w": np.arange(3.0), "step": np.float32(2), "groups": [{"lr": 0.1}]}
    portopt.save(obj, tmp_path / "a.npz")
    portopt.save(obj, tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_zip64_records_are_written_and_read(tmp_path, monkeypatch):
    # Real ZIP64 needs 4 GiB or 65535 members; lowering the thresholds makes this small
    # file use every ZIP64 record (member sizes, offsets, end record and locator).
    monkeypatch.setattr(_checkpoint_zip, "_ZIP64_FROM_SIZE", 100)
    monkeypatch.setattr(_checkpoint_zip, "_ZIP64_FROM_COUNT", 2)
    obj = {"w": np.arange(40.0), "b": np.ones(3, np.float32), "lr": 0.5}
    path = tmp_path / "ckpt.npz"
    portopt.save(obj, path)
    data = path.read_bytes()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    with zipfile.ZipFile(path) as archive:  # an independent reader
        assert archive.testzip() is None
        assert archive.getinfo("arr_0.npy").header_offset > 100
    with np.load(path) as npz:
        np.testing.assert_array_equal(npz["arr_0"], obj["w"])
    identical(obj, portopt.load(path))


def test_an_archive_repacked_by_zipfile_still_loads(tmp_path):
    obj = {"w": np.arange(5.0), "n": [np.int32(3)], 2: "two"}
    path = tmp_path / "ckpt.npz"
    portopt.save(obj, path)
    with zipfile.ZipFile(path) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    repacked = tmp_path / "repacked.npz"
    with zipfile.ZipFile(repacked, "w", zipfile.ZIP_STORED) as archive:
        for name, data in reversed(members):  # another order, another writer
            archive.writestr(name, data)
    identical(obj, portopt.load(repacked))


# -- arrays of each backend on each backend ---------------------------------------------

STRICT_DTYPES = ["bool", "int8", "int64", "uint32", "float32", "float64", "complex64",
                 "complex128"]
SOURCES = [("numpy", d) for d in NUMPY_DTYPES] + [("array_api_strict", d) for d in
                                                    STRICT_DTYPES] + \
    [("torch", d) for d in NUMPY_DTYPES]


def _array_of(library, host):
    if library == "numpy":
        return host.copy()
    mod = pytest.importorskip(library)
    if library == "torch":
        return mod.from_numpy(host.copy())
    mod.set_array_api_strict_flags(api_version="2025.12")
    return mod.asarray(host.copy())


def _load_target(target):
    reason = {"torch": "torch is not installed", "cupy": "CuPy is not installed"}
    if target != "numpy":
        pytest.importorskip(target, reason=reason[target])


def _to_numpy(x):
    if _is_tensor(x):
        return x.detach().cpu().numpy()
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


@pytest.mark.parametrize("target", ["numpy", "torch", "cupy"])
@pytest.mark.parametrize("source,dtype", SOURCES, ids=[f"{s}-{d}" for s, d in SOURCES])
def test_arrays_of_each_backend_load_on_each_backend(source, dtype, target, tmp_path):
    _load_target(target)
    host = _values(dtype, (2, 3))
    obj = {"w": _array_of(source, host), "rows": [_array_of(source, host[0])]}
    loaded = round_trip(obj, tmp_path, backend=target)
    for back, want in ((loaded["w"], host), (loaded["rows"][0], host[0])):
        assert type(back).__module__.split(".")[0] == target
        out = _to_numpy(back)
        assert out.dtype == host.dtype
        np.testing.assert_array_equal(out, want)


def test_numpy_scalars_become_0d_tensors_on_torch(torch, tmp_path):
    loaded = round_trip({"step": np.float32(3.0), "n": np.int64(2)}, tmp_path, backend="torch")
    identical(loaded, {"step": torch.tensor(3.0), "n": torch.tensor(2)})


TORCH_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "float16", "bfloat16",
                "float32", "float64", "complex64", "complex128"]


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_every_torch_dtype_round_trips_on_torch(dtype, torch, tmp_path):
    gen = torch.Generator().manual_seed(0)
    full = torch.randn(2, 3, dtype=torch.float64, generator=gen) * 50
    tensor = full.to(getattr(torch, dtype))
    obj = {"t": tensor, "zero-d": tensor[0, 0].clone(), "empty": tensor[:0]}
    identical(obj, round_trip(obj, tmp_path, backend="torch"))


def test_bfloat16_keeps_its_bits_and_numpy_refuses_it_by_name(torch, tmp_path):
    bits = torch.from_numpy(np.array([0x3FC0, 0xC000, 0x7F80, 0xFFC1, 0x0001, 0x8000],
                                     dtype=np.uint16).view(np.int16))
    tensor = bits.view(torch.bfloat16)  # 1.5, -2, inf, a NaN, the smallest subnormal, -0
    obj = {"state": {0: {"exp_avg": tensor}}}
    path = tmp_path / "ckpt.npz"
    portopt.save(obj, path)
    back = portopt.load(path, backend="torch")["state"][0]["exp_avg"]
    assert back.dtype == torch.bfloat16
    assert back.view(torch.int16).tolist() == bits.tolist()
    raises(portopt.CheckpointError,
           f"{path}: obj['state'][0]['exp_avg'] is a bfloat16 array, and NumPy has no "
           "bfloat16 dtype; load it with backend='torch'", portopt.load, path)


def test_torch_tensor_views_and_parameters_are_saved_by_value(torch, tmp_path):
    base = torch.arange(12, dtype=torch.float64).reshape(3, 4)
    z = torch.complex(base, -base)
    obj = {"param": torch.nn.Parameter(base.clone()), "t": base.T, "step": base[::2, 1::2],
           "conj": z.conj(), "neg": z.conj().imag}  # the last two carry conj and neg bits
    loaded = round_trip(obj, tmp_path, backend="torch")
    for key in obj:
        assert type(loaded[key]) is torch.Tensor and not loaded[key].requires_grad
        np.testing.assert_array_equal(loaded[key].numpy(), obj[key].detach().resolve_conj()
                                      .resolve_neg().numpy())


def test_torch_cuda_tensors_come_back_on_the_cpu_or_the_device_asked(torch, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device here")
    tensor = torch.arange(4.0, device="cuda")
    path = tmp_path / "ckpt.npz"
    portopt.save({"t": tensor}, path)
    assert portopt.load(path, backend="torch")["t"].device.type == "cpu"
    back = portopt.load(path, backend="torch", device="cuda")["t"]
    identical(back, tensor)
    np.testing.assert_array_equal(portopt.load(path)["t"], np.arange(4.0))


# -- sparse ----------------------------------------------------------------------------


def test_sparse_grad_round_trips_and_becomes_a_torch_sparse_tensor(tmp_path):
    grad = portopt.SparseGrad(np.array([[2, 0, 2]]), np.array([[1.0, 2.0], [3.0, 4.0],
                                                               [5.0, 6.0]]), (4, 2))
    identical({"g": grad}, round_trip({"g": grad}, tmp_path))
    torch = pytest.importorskip("torch", reason="torch is not installed")
    back = round_trip({"g": grad}, tmp_path, backend="torch")["g"]
    assert back.is_sparse and not back.is_coalesced() and tuple(back.shape) == (4, 2)
    assert back._indices().tolist() == [[2, 0, 2]]
    assert back._values().tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    assert back.to_dense().tolist() == [[3.0, 4.0], [0.0, 0.0], [6.0, 8.0], [0.0, 0.0]]
    assert back.dtype == torch.float64


@pytest.mark.parametrize("coalesced", [False, True], ids=["uncoalesced", "coalesced"])
def test_torch_sparse_coo_tensors_round_trip(coalesced, torch, tmp_path):
    tensor = torch.sparse_coo_tensor(torch.tensor([[1, 0, 1], [2, 2, 2]]),
                                     torch.tensor([[1.0], [2.0], [3.0]]), (3, 4, 1),
                                     check_invariants=True)
    if coalesced:
        tensor = tensor.coalesce()
    identical({"m": tensor}, round_trip({"m": tensor}, tmp_path, backend="torch"))
    back = round_trip({"m": tensor}, tmp_path)["m"]
    assert isinstance(back, portopt.SparseGrad) and back.shape == (3, 4, 1)
    np.testing.assert_array_equal(back.indices, tensor._indices().numpy())
    np.testing.assert_array_equal(back.values, tensor._values().numpy())


# -- what cannot be saved --------------------------------------------------------------


class _Color(enum.IntEnum):
    RED = 1


_Point = collections.namedtuple("_Point", "x y")

UNSAVABLE = {
    "function": ({"a": [1, lambda: 0]}, "obj['a'][1]", "function"),
    "object": ([0, object()], "obj[1]", "object"),
    "set": ({"s": {1, 2}}, "obj['s']", "set"),
    "bytes": ({"b": b"raw"}, "obj['b']", "bytes"),
    "float-key": ({"g": {1.5: 1}}, "obj['g']", "key 1.5 of type float"),
    "bool-key": ({True: 1}, "obj", "key True of type bool"),
    "tuple-key": ({(1, 2): 1}, "obj", "key (1, 2) of type tuple"),
    "str-array": ({"a": np.array(["x"])}, "obj['a']", "dtype <U1"),
    "object-array": ({"a": np.array([None, 1], dtype=object)}, "obj['a']", "dtype object"),
    "datetime": ([np.datetime64("2024-01-01")], "obj[0]", "dtype datetime64[D]"),
    "longdouble": ([np.zeros(2, np.longdouble)], "obj[0]", "dtype float128"),
    "masked": ([np.ma.masked_array([1.0], mask=[True])], "obj[0]", "MaskedArray"),
    "parameter": ({"w": portopt.Parameter(np.zeros(2))}, "obj['w']", "portopt.Parameter"),
    "namedtuple": ([_Point(1, 2)], "obj[0]", "_Point"),
    "defaultdict": ([collections.defaultdict(list)], "obj[0]", "defaultdict"),
    "int-enum": ([_Color.RED], "obj[0]", "_Color"),
}


@pytest.mark.parametrize("obj,where,what", UNSAVABLE.values(), ids=UNSAVABLE.keys())
def test_unsavable_values_raise_type_error_naming_where_before_any_file(obj, where, what,
                                                                          tmp_path):
    with pytest.raises(TypeError) as info:
        portopt.save(obj, tmp_path / "ckpt.npz")
    message = str(info.value)
    assert message.startswith(where + " ") and what in message, message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dtype", ["complex32", "float8_e4m3fn"])
@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
def test_torch_dtypes_without_a_npy_twin_raise_type_error(dtype, torch, tmp_path):
    tensor = torch.zeros(2).to(getattr(torch, dtype))
    raises(TypeError, f"obj['t'] has dtype torch.{dtype}, which a checkpoint cannot hold",
           portopt.save, {"t": tensor}, tmp_path / "ckpt.npz")
    assert list(tmp_path.iterdir()) == []


# -- load's arguments ------------------------------------------------------------------


def test_load_argument_errors(tmp_path):
    path = tmp_path / "ckpt.npz"
    portopt.save({"w": np.zeros(2)}, path)
    raises(ValueError, "backend must be 'numpy', 'torch' or 'cupy', got 'jax'",
           portopt.load, path, backend="jax")
    raises(ValueError, "device='cpu' needs backend='torch' or 'cupy'; NumPy arrays live on "
           "the host", portopt.load, path, device="cpu")
    with pytest.raises(FileNotFoundError):
        portopt.load(tmp_path / "missing.npz")
    with pytest.raises(IsADirectoryError):
        portopt.load(tmp_path)


def test_loading_to_cupy_without_cupy_says_so(tmp_path):
    try:
        import cupy  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("CuPy is installed here")
    path = tmp_path / "ckpt.npz"
    portopt.save({"w": np.zeros(2)}, path)
    raises(ModuleNotFoundError, "load(..., backend='cupy') needs CuPy, which is not installed",
           portopt.load, path, backend="cupy")


# -- optimizers ------------------------------------------------------------------------

SHAPE = (4, 3)
OPTIMIZERS = [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}, "dense"),
    ("SGD", {"lr": 0.1, "momentum": 0.9}, "sparse"),
    ("Adam", {"lr": 0.01, "amsgrad": True}, "dense"),
    ("AdamW", {"lr": 0.01}, "dense"),
    ("Adadelta", {}, "dense"),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01}, "dense"),
    ("Adagrad", {"lr": 0.1}, "sparse"),
    ("Adamax", {}, "dense"),
    ("ASGD", {"t0": 1.0}, "dense"),
    ("LBFGS", {"lr": 0.5, "history_size": 3, "line_search_fn": "strong_wolfe"}, "closure"),
    ("NAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}, "dense"),
    ("RAdam", {}, "dense"),
    ("RMSprop", {"centered": True, "momentum": 0.5}, "dense"),
    ("Rprop", {}, "dense"),
    ("SparseAdam", {"lr": 0.01}, "sparse"),
    ("Adafactor", {}, "dense"),
    ("Muon", {"lr": 0.01}, "dense"),
]
OPT_IDS = [f"{name}-{grads}-{i}" for i, (name, _, grads) in enumerate(OPTIMIZERS)]
# load_state_dict casts floating state to the parameter's dtype (torch's rule, kept by
# portopt): NAdam's float32 mu_product becomes float64, so a resumed NAdam leaves the
# original's float32 rounding behind (torch's own NAdam too, by the same 1.5e-12).
# Every other optimizer resumes bit for bit.
CAST_ON_LOAD = {"NAdam"}
INIT = np.random.default_rng(7).standard_normal(SHAPE)


def _gradient(step, weights):
    """The gradient of step ``step``: dense ``(values,)`` or sparse ``(rows, values)``."""
    rng = np.random.default_rng(100 + step)
    rows = rng.integers(0, SHAPE[0], 3)
    return np.sin(weights) + 0.1 * rng.standard_normal(SHAPE), rows, rng.standard_normal((3, 3))


def _portopt_optimizer(name, params, kwargs):
    """A portopt optimizer on its generic path (foreach=False where the class takes it):
    what is saved does not depend on the path, and the compiled one costs a JIT."""
    cls = getattr(optim, name)
    if "foreach" in inspect.signature(cls).parameters:
        kwargs = {**kwargs, "foreach": False}
    return cls(params, **kwargs)


def _run_portopt(opt, w, grads, steps):
    for step in steps:
        dense, rows, values = _gradient(step, w.data)
        if grads == "closure":
            def closure():
                w.grad = 2.0 * w.data * (1.0 + np.arange(SHAPE[1]))
                return float(np.sum(w.data**2 * (1.0 + np.arange(SHAPE[1]))))

            opt.step(closure)
            continue
        w.grad = dense if grads == "dense" else portopt.SparseGrad(rows[None], values, SHAPE)
        opt.step()


def _run_torch(torch, opt, w, grads, steps):
    for step in steps:
        dense, rows, values = _gradient(step, w.detach().numpy())
        if grads == "closure":
            def closure():
                opt.zero_grad()
                loss = (w**2 * (1.0 + torch.arange(SHAPE[1]))).sum()
                loss.backward()
                return loss

            opt.step(closure)
            continue
        w.grad = torch.from_numpy(dense) if grads == "dense" else torch.sparse_coo_tensor(
            torch.from_numpy(rows[None]), torch.from_numpy(values), SHAPE, check_invariants=True)
        opt.step()


@pytest.mark.parametrize("name,kwargs,grads", OPTIMIZERS, ids=OPT_IDS)
def test_portopt_optimizer_state_round_trips_and_resumes_identically(name, kwargs, grads,
                                                                     tmp_path):
    w = portopt.Parameter(INIT.copy())
    opt = _portopt_optimizer(name, [w], kwargs)
    _run_portopt(opt, w, grads, range(3))
    state = opt.state_dict()
    loaded = round_trip(state, tmp_path)
    identical(state, loaded)

    def resume(state_dict):
        p = portopt.Parameter(w.data.copy())
        opt = _portopt_optimizer(name, [p], kwargs)
        opt.load_state_dict(state_dict)
        _run_portopt(opt, p, grads, range(3, 6))
        return p, opt

    w_file, from_file = resume(loaded)
    w_memory, from_memory = resume(copy.deepcopy(state))
    _run_portopt(opt, w, grads, range(3, 6))  # the oracle: the original, going on
    identical(w_memory.data, w_file.data)
    if name not in CAST_ON_LOAD:
        identical(w.data, w_file.data)
    # load_state_dict casts some state to the parameter's dtype (ASGD's eta, as torch does),
    # so the state is compared with the same state_dict loaded from memory
    identical(from_memory.state_dict(), from_file.state_dict())


@pytest.mark.parametrize("name,kwargs,grads", OPTIMIZERS, ids=OPT_IDS)
@pytest.mark.filterwarnings("ignore:Sparse invariant checks are implicitly disabled")
def test_torch_optimizer_state_round_trips_and_resumes_identically(name, kwargs, grads, torch,
                                                                   tmp_path):
    cls = getattr(torch.optim, name)
    w = torch.tensor(INIT, requires_grad=True)
    opt = cls([w], **kwargs)
    _run_torch(torch, opt, w, grads, range(3))
    state = opt.state_dict()
    loaded = round_trip(state, tmp_path, backend="torch")
    identical(state, loaded)

    def resume(state_dict):
        p = w.detach().clone().requires_grad_(True)
        opt = cls([p], **kwargs)
        opt.load_state_dict(state_dict)
        _run_torch(torch, opt, p, grads, range(3, 6))
        return p, opt

    w_file, from_file = resume(loaded)
    w_memory, from_memory = resume(copy.deepcopy(state))
    _run_torch(torch, opt, w, grads, range(3, 6))
    identical(w_memory.detach(), w_file.detach())
    if name not in CAST_ON_LOAD:
        identical(w.detach(), w_file.detach())
    identical(from_memory.state_dict(), from_file.state_dict())


INTEROP = [case for case in OPTIMIZERS if case[2] == "dense"]


@pytest.mark.parametrize("name,kwargs,grads", INTEROP, ids=[c[0] for c in INTEROP])
def test_a_torch_state_dict_file_resumes_in_portopt(name, kwargs, grads, torch, tmp_path):
    w = torch.tensor(INIT, requires_grad=True)
    original = getattr(torch.optim, name)([w], **kwargs)
    _run_torch(torch, original, w, grads, range(3))
    state = original.state_dict()
    loaded = round_trip(state, tmp_path)  # NumPy arrays now

    def portopt_resumes(state_dict):
        p = portopt.Parameter(w.detach().numpy().copy())
        opt = _portopt_optimizer(name, [p], kwargs)
        opt.load_state_dict(state_dict)
        _run_portopt(opt, p, grads, range(3, 6))
        return p.data

    # the oracle: torch resuming from the same state, in memory
    reference = w.detach().clone().requires_grad_(True)
    opt = getattr(torch.optim, name)([reference], **kwargs)
    opt.load_state_dict(copy.deepcopy(state))
    _run_torch(torch, opt, reference, grads, range(3, 6))

    from_file = portopt_resumes(loaded)
    identical(from_file, portopt_resumes(state))  # the file holds exactly what torch held
    tol = TOLERANCES["float64"]
    np.testing.assert_allclose(from_file, reference.detach().numpy(), rtol=tol.rtol,
                               atol=tol.atol)


@pytest.mark.parametrize("name,kwargs,grads", INTEROP, ids=[c[0] for c in INTEROP])
def test_a_portopt_state_dict_file_resumes_in_torch(name, kwargs, grads, torch, tmp_path):
    w = portopt.Parameter(INIT.copy())
    original = _portopt_optimizer(name, [w], kwargs)
    _run_portopt(original, w, grads, range(3))
    state = original.state_dict()
    loaded = round_trip(state, tmp_path, backend="torch")

    def torch_resumes(state_dict):
        p = torch.tensor(w.data, requires_grad=True)
        opt = getattr(torch.optim, name)([p], **kwargs)
        opt.load_state_dict(state_dict)
        _run_torch(torch, opt, p, grads, range(3, 6))
        return p.detach().numpy()

    # the oracle: portopt resuming from the same state, in memory
    reference = portopt.Parameter(w.data.copy())
    opt = _portopt_optimizer(name, [reference], kwargs)
    opt.load_state_dict(copy.deepcopy(state))
    _run_portopt(opt, reference, grads, range(3, 6))

    from_file = torch_resumes(loaded)
    identical(from_file, torch_resumes(checkpoint.to_torch(state)))
    tol = TOLERANCES["float64"]
    np.testing.assert_allclose(from_file, reference.data, rtol=tol.rtol, atol=tol.atol)


# -- schedulers and averaged models ----------------------------------------------------

SCHEDULERS = {
    "OneCycleLR": lambda ls, opt: ls.OneCycleLR(opt, max_lr=1.0, total_steps=20),
    "ReduceLROnPlateau": lambda ls, opt: ls.ReduceLROnPlateau(opt, patience=1, factor=0.5),
    "CyclicLR": lambda ls, opt: ls.CyclicLR(opt, 0.01, 0.1, step_size_up=3),
    "SequentialLR": lambda ls, opt: ls.SequentialLR(
        opt, [ls.LinearLR(opt, 0.5, total_iters=3), ls.ExponentialLR(opt, 0.9)], milestones=[3]),
    "CosineAnnealingWarmRestarts": lambda ls, opt: ls.CosineAnnealingWarmRestarts(opt, T_0=3),
    "ChainedScheduler": lambda ls, opt: ls.ChainedScheduler(
        [ls.ConstantLR(opt, 0.5, total_iters=2), ls.ExponentialLR(opt, 0.9)]),
}
METRICS = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.2, 0.2]


def _schedule(opt, sched, steps):
    for step in steps:
        opt.step()  # no gradients: nothing moves, but torch wants a step before the schedule's
        if type(sched).__name__ == "ReduceLROnPlateau":
            sched.step(METRICS[step])
        else:
            sched.step()


def _group_values(opt):
    return [(g["lr"], g["momentum"]) for g in opt.param_groups]


def _scheduler_resumes(make_sched, optimizer_cls, schedulers, param, tmp_path, backend):
    opt = optimizer_cls([param()], lr=0.1, momentum=0.9)
    sched = make_sched(schedulers, opt)
    _schedule(opt, sched, range(4))
    saved = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "epoch": 4}
    loaded = round_trip(saved, tmp_path, backend=backend)
    identical(saved["scheduler"], loaded["scheduler"])

    opt2 = optimizer_cls([param()], lr=0.1, momentum=0.9)
    sched2 = make_sched(schedulers, opt2)
    opt2.load_state_dict(loaded["optimizer"])
    sched2.load_state_dict(loaded["scheduler"])
    assert loaded["epoch"] == 4
    for step in range(4, 9):
        _schedule(opt, sched, [step])
        _schedule(opt2, sched2, [step])
        identical(_group_values(opt), _group_values(opt2))
        identical(sched.state_dict(), sched2.state_dict())


@pytest.mark.parametrize("name", SCHEDULERS)
def test_portopt_scheduler_state_resumes_identically(name, tmp_path):
    _scheduler_resumes(SCHEDULERS[name], optim.SGD, lr_scheduler,
                       lambda: portopt.Parameter(np.zeros(2)), tmp_path, "numpy")


@pytest.mark.parametrize("name", SCHEDULERS)
def test_torch_scheduler_state_resumes_identically(name, torch, tmp_path):
    _scheduler_resumes(SCHEDULERS[name], torch.optim.SGD, torch.optim.lr_scheduler,
                       lambda: torch.zeros(2, requires_grad=True), tmp_path, "torch")


def _train_net(torch, net, steps):
    with torch.no_grad():
        for k in steps:
            for p in net.parameters():
                p.mul_(0.9).add_(0.01 * (k + 1))


@pytest.mark.parametrize("flavour", ["portopt", "torch"])
def test_averaged_model_state_resumes_identically(flavour, torch, tmp_path):
    averaged_model = (swa_utils if flavour == "portopt" else torch.optim.swa_utils).AveragedModel
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    avg = averaged_model(net)
    for k in range(3):
        _train_net(torch, net, [k])
        avg.update_parameters(net)
    state = avg.state_dict()
    loaded = round_trip(state, tmp_path, backend="torch")
    identical(state, loaded)  # an OrderedDict of tensors, n_averaged included

    avg2 = averaged_model(net)
    avg2.load_state_dict(loaded)
    for k in range(3, 5):
        _train_net(torch, net, [k])
        avg.update_parameters(net)
        avg2.update_parameters(net)
    identical(avg.state_dict(), avg2.state_dict())


def test_averaged_protocol_model_arrays_resume_identically(tmp_path):
    from portopt.testing._models import Linear, Sequential

    rng = np.random.default_rng(0)
    model = Sequential(Linear(rng.standard_normal((2, 3)), rng.standard_normal(2)))
    avg = swa_utils.AveragedModel(model)
    for k in range(3):
        for p in model.parameters():
            p.data[...] = p.data * 0.9 + k
        avg.update_parameters(model)
    saved = {"n_averaged": avg.n_averaged, "parameters": [p.data for p in avg.parameters()]}
    loaded = round_trip(saved, tmp_path)
    identical(saved, loaded)

    avg2 = swa_utils.AveragedModel(model)
    avg2.n_averaged = loaded["n_averaged"]
    for p, value in zip(avg2.parameters(), loaded["parameters"]):
        p.data[...] = value
    for k in range(3, 5):
        for p in model.parameters():
            p.data[...] = p.data * 0.9 + k
        avg.update_parameters(model)
        avg2.update_parameters(model)
    identical([p.data for p in avg.parameters()], [p.data for p in avg2.parameters()])
    identical(avg.n_averaged, avg2.n_averaged)


def test_a_dict_of_several_states_resumes_identically(torch, tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    swa = torch.optim.swa_utils.AveragedModel(net)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))

    def train(net, opt, sched, swa, steps):
        for _ in steps:
            opt.zero_grad()
            net(x).square().sum().backward()
            opt.step()
            sched.step()
            swa.update_parameters(net)

    train(net, opt, sched, swa, range(3))
    saved = {"model": net.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "swa": swa.state_dict(), "epoch": 3,
             "history": [0.5, 0.25]}
    loaded = round_trip(saved, tmp_path, backend="torch")
    identical(saved, loaded)

    net2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.AdamW(net2.parameters(), lr=0.01)
    sched2 = torch.optim.lr_scheduler.OneCycleLR(opt2, max_lr=0.1, total_steps=10)
    swa2 = torch.optim.swa_utils.AveragedModel(net2)
    net2.load_state_dict(loaded["model"])
    opt2.load_state_dict(loaded["optimizer"])
    sched2.load_state_dict(loaded["scheduler"])
    swa2.load_state_dict(loaded["swa"])
    train(net, opt, sched, swa, range(3, 6))
    train(net2, opt2, sched2, swa2, range(3, 6))
    identical(net.state_dict(), net2.state_dict())
    identical(swa.state_dict(), swa2.state_dict())
    identical(opt.state_dict(), opt2.state_dict())
