"""The backends the conformance suite runs on, and how it builds arrays on each."""

from __future__ import annotations

import enum
import importlib
from typing import Any

import numpy as np

from ..parameter import Parameter


class TestBackend(enum.Enum):
    """A backend under test; the value is its pytest id and its name in reports."""

    NUMPY = "numpy"
    ARRAY_API_STRICT = "array_api_strict"
    TORCH = "torch"
    CUPY = "cupy"

    __test__ = False  # not a pytest test class

    def unavailable(self) -> str | None:
        """Why this backend cannot run here, or ``None`` when it can."""
        try:
            module = importlib.import_module(self.value)
        except ImportError as exc:
            return f"{self.value} is not installed ({exc})"
        if self is TestBackend.CUPY:
            try:
                if module.cuda.runtime.getDeviceCount() < 1:
                    return "CuPy found no CUDA device"
            except Exception as exc:  # CUDA driver missing or broken
                return f"CuPy found no usable CUDA device ({type(exc).__name__}: {exc})"
        return None

    @property
    def module(self) -> Any:
        mod = importlib.import_module(self.value)
        if self is TestBackend.ARRAY_API_STRICT:
            mod.set_array_api_strict_flags(api_version="2025.12")
        return mod

    def array(self, a: np.ndarray) -> Any:
        """A copy of NumPy array ``a`` in this backend."""
        mod = self.module
        if self is TestBackend.TORCH:
            return mod.from_numpy(np.array(a, copy=True))
        if self is TestBackend.CUPY:
            return mod.array(a)
        if self is TestBackend.NUMPY:
            return np.array(a, copy=True)
        return mod.asarray(np.array(a, copy=True))

    def param(self, a: np.ndarray) -> Any:
        """An optimizable parameter holding a copy of ``a``: a tensor, or a Parameter."""
        arr = self.array(a)
        return arr if self is TestBackend.TORCH else Parameter(arr)


def available_backends() -> list[TestBackend]:
    """The backends that can run on this machine, in table order."""
    return [b for b in TestBackend if b.unavailable() is None]
