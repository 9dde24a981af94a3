"""Fixtures shared by the unit tests: the backends as an enum, ``xp`` as a fixture.

Every backend that can be imported runs; ``PORTOPT_TEST_BACKENDS=numpy,torch`` narrows
the list (optional). The unit tests pass without torch: its cases skip with a reason.
"""

from __future__ import annotations

import enum
import os
from typing import Any

import numpy as np
import pytest

import portopt


class Backend(enum.Enum):
    NUMPY = "numpy"
    ARRAY_API_STRICT = "array_api_strict"
    TORCH = "torch"
    TORCH_CUDA = "torch_cuda"
    CUPY = "cupy"

    @property
    def module_name(self) -> str:
        return "torch" if self is Backend.TORCH_CUDA else self.value


def _selected() -> list[Backend]:
    wanted = os.environ.get("PORTOPT_TEST_BACKENDS")
    if not wanted:
        return list(Backend)
    names = {n.strip() for n in wanted.split(",") if n.strip()}
    return [b for b in Backend if b.value in names]


class Lib:
    """One backend as the tests use it: its namespace and array helpers."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        mod = pytest.importorskip(backend.module_name)
        if backend is Backend.ARRAY_API_STRICT:
            mod.set_array_api_strict_flags(api_version="2025.12")
        if backend is Backend.TORCH_CUDA and not mod.cuda.is_available():
            pytest.skip("torch has no CUDA device here")
        if backend is Backend.CUPY:
            try:
                if mod.cuda.runtime.getDeviceCount() < 1:
                    raise RuntimeError("no device")
            except Exception as exc:
                pytest.skip(f"CuPy found no CUDA device ({exc})")
        self.mod = mod
        import array_api_compat

        self.xp = array_api_compat.array_namespace(self.asarray(np.zeros(1)))

    @property
    def name(self) -> str:
        return self.backend.value

    def asarray(self, a: Any, dtype: str | None = None) -> Any:
        a = np.array(a, dtype=dtype, copy=True)
        if self.backend is Backend.NUMPY:
            return a
        if self.backend is Backend.TORCH:
            return self.mod.from_numpy(a)
        if self.backend is Backend.TORCH_CUDA:
            return self.mod.from_numpy(a).cuda()
        if self.backend is Backend.CUPY:
            return self.mod.asarray(a)
        return self.mod.asarray(a)

    def param(self, a: Any, dtype: str | None = None) -> Any:
        arr = self.asarray(a, dtype)
        return arr if self.backend in (Backend.TORCH, Backend.TORCH_CUDA) else portopt.Parameter(arr)

    def numpy(self, x: Any) -> np.ndarray:
        from portopt.backends import get_backend

        if isinstance(x, portopt.Parameter):
            x = x.data
        return np.asarray(get_backend(x).to_numpy(x))


@pytest.fixture(params=_selected(), ids=lambda b: b.value)
def lib(request: pytest.FixtureRequest) -> Lib:
    """Each available backend in turn."""
    return Lib(request.param)


@pytest.fixture
def xp(lib: Lib) -> Any:
    return lib.xp


@pytest.fixture
def torch() -> Any:
    """torch, the oracle; tests that need it skip when it is not installed."""
    return pytest.importorskip("torch")


# -- shared fixtures ------------------------------------------------------------------------


@pytest.fixture
def backend_registry():
    """``portopt.backends``, its registry restored after the test (for tests that register
    backends of their own)."""
    from portopt import backends

    saved = list(backends._REGISTRY)
    yield backends
    backends._REGISTRY[:] = saved
    backends._by_type.clear()


class Frozen(np.ndarray):
    """An array type whose backend declares it immutable (see the ``frozen`` fixture)."""


@pytest.fixture
def frozen(backend_registry):
    """The :class:`Frozen` array type, with a registered backend that declares it
    immutable: portopt must rebind what it cannot write in place."""

    @backend_registry.register_backend
    class FrozenBackend(backend_registry.NumpyBackend):
        name = "frozen"
        mutable = False

        @classmethod
        def owns(cls, x):
            return isinstance(x, Frozen)

    return Frozen


@pytest.fixture(scope="module")
def one_thread():
    """One thread for numba's compiled kernels, torch's ops and BLAS while a module's tests
    run (``pytestmark = pytest.mark.usefixtures("one_thread")``): their arrays are tiny,
    and on cores busy with other work waking thread pools is what takes the time."""
    import contextlib
    import functools

    with contextlib.ExitStack() as stack:
        for name in ("numba", "torch"):
            try:
                module = __import__(name)
            except ImportError:
                continue
            stack.callback(functools.partial(module.set_num_threads, module.get_num_threads()))
            module.set_num_threads(1)
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            pass
        else:
            stack.enter_context(threadpool_limits(limits=1))
        yield
