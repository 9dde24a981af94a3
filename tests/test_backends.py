"""The backend layer: finding, caching, registering, writing in place, moving values."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from portopt import backends
from portopt.backends import Backend, get_backend, register_backend

EXPECTED_NAME = {"numpy": "numpy", "array_api_strict": "array_api_strict", "torch": "torch",
                 "torch_cuda": "torch", "cupy": "cupy"}


def test_get_backend_names_and_caches_per_type(lib):
    a, b = lib.asarray([1.0, 2.0]), lib.asarray([[3.0]])
    be = get_backend(a)
    assert be.name == EXPECTED_NAME[lib.name]
    assert get_backend(b) is be  # one instance per array type
    assert be.xp is lib.xp or be.xp.__name__ == lib.xp.__name__


@pytest.mark.parametrize("obj, shown", [
    ([1.0, 2.0], "builtins.list"),
    (1.5, "builtins.float"),
    (object(), "builtins.object"),
])
def test_unsupported_type_is_a_type_error_naming_it(obj, shown):
    with pytest.raises(TypeError, match=rf"portopt has no backend for arrays of type {shown}"):
        get_backend(obj)


class _Tagged(np.ndarray):
    """A third-party array type (a NumPy subclass, so array-api-compat knows it)."""


def test_register_backend_takes_precedence(backend_registry):
    before = get_backend(np.zeros(2).view(_Tagged))
    assert before.name == "numpy"  # a subclass of ndarray is NumPy's until someone claims it

    @register_backend
    class TaggedBackend(backends.NumpyBackend):
        name = "tagged"
        module_name = "numpy"

        @classmethod
        def owns(cls, x):
            return isinstance(x, _Tagged)

    be = get_backend(np.zeros(2).view(_Tagged))
    assert isinstance(be, TaggedBackend) and be.name == "tagged"
    assert get_backend(np.zeros(2)).name == "numpy"
    assert backends.registered_backends()[0] is TaggedBackend


def test_register_backend_rejects_what_is_not_a_backend(backend_registry):
    with pytest.raises(TypeError, match="expects a Backend subclass"):
        register_backend(object)

    class Nameless(Backend):
        pass

    with pytest.raises(ValueError, match="must set both `name` and `module_name`"):
        register_backend(Nameless)


def test_a_backend_is_asked_only_once_its_library_is_loaded(backend_registry, monkeypatch):
    calls = []

    @register_backend
    class Ghost(Backend):
        name = "ghost"
        module_name = "surely_not_an_imported_module"

        @classmethod
        def owns(cls, x):
            calls.append(x)
            return True

    assert "surely_not_an_imported_module" not in sys.modules
    assert get_backend(np.zeros(1)).name == "numpy"
    assert calls == []


def test_assign_writes_in_place(lib):
    dst = lib.asarray([1.0, 2.0, 3.0])
    be = get_backend(dst)
    out = be.assign(dst, lib.asarray([4.0, 5.0, 6.0]))
    assert out is dst
    np.testing.assert_array_equal(lib.numpy(dst), [4.0, 5.0, 6.0])


def test_numpy_read_only_arrays_are_reported():
    a = np.zeros(3)
    a.flags.writeable = False
    assert not get_backend(a).is_writable(a)
    assert get_backend(np.zeros(3)).is_writable(np.zeros(3))


@pytest.mark.parametrize("transpose", [False, True], ids=["contiguous", "transposed"])
def test_view_as_real_and_back_is_exact(lib, transpose):
    a = np.array([[1 + 2j, -3.5 + 0.25j, np.inf - 1j], [0j, -0.0 + 7j, 1e-300 + 1e300j]])
    x = lib.asarray(a.T if transpose else a)
    be = get_backend(x)
    r = be.view_as_real(x)
    expected = np.stack([(a.T if transpose else a).real, (a.T if transpose else a).imag], -1)
    np.testing.assert_array_equal(lib.numpy(r), expected)
    if lib.name == "array_api_strict":  # the generic recombination is exact for finite values
        finite = lib.asarray(np.nan_to_num(a.T if transpose else a, posinf=0.0, neginf=0.0))
        back = be.view_as_complex(be.view_as_real(finite))
        np.testing.assert_array_equal(lib.numpy(back), lib.numpy(finite))
    else:
        np.testing.assert_array_equal(lib.numpy(be.view_as_complex(r)), lib.numpy(x))


def test_convert_copies_across_backends_and_casts(lib):
    src = np.array([1.5, -2.0], dtype=np.float64)
    be = get_backend(lib.asarray([0.0]))
    out = be.convert(src, dtype=be.xp.float32)
    src[0] = 99.0  # the result must not alias the source
    assert get_backend(out) is be
    assert out.dtype == be.xp.float32
    np.testing.assert_array_equal(lib.numpy(out), np.array([1.5, -2.0], dtype=np.float32))


def test_convert_from_torch(lib, torch):
    t = torch.tensor([1.0, 2.0], dtype=torch.float64)
    be = get_backend(lib.asarray([0.0]))
    out = be.convert(t)
    t[0] = 5.0
    np.testing.assert_array_equal(lib.numpy(out), [1.0, 2.0])
    assert lib.numpy(out).dtype == np.float64


def test_torch_step_scalar_matches_torch_optim(torch):
    p = torch.zeros(2)
    p.grad = torch.ones(2)
    opt = torch.optim.Adam([p])
    opt.step()
    step = get_backend(p).step_scalar(1.0)
    assert step.dtype == opt.state[p]["step"].dtype and step.device == opt.state[p]["step"].device
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert get_backend(p).step_scalar(1.0).dtype == torch.float64
    finally:
        torch.set_default_dtype(old)


def test_numpy_step_scalar_is_float32():
    s = get_backend(np.zeros(1)).step_scalar(3.0)
    assert isinstance(s, np.float32) and s == 3.0
    assert isinstance(s + 1, np.float32)  # keeps its type through a step


def test_strict_devices_are_seen():
    xs = pytest.importorskip("array_api_strict")
    a = xs.asarray([1.0], device=xs.Device("device1"))
    assert get_backend(a).device(a) == xs.Device("device1")
    np.testing.assert_array_equal(get_backend(a).to_numpy(a), [1.0])
