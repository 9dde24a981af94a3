"""CuPy arrays, on a CUDA (or ROCm) device."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ._base import Backend


class CupyBackend(Backend):
    name = "cupy"
    module_name = "cupy"

    @classmethod
    def owns(cls, x: Any) -> bool:
        return isinstance(x, sys.modules["cupy"].ndarray)

    @property
    def cupy(self) -> Any:
        return sys.modules["cupy"]

    def device(self, x: Any) -> Any:
        return x.device

    def assign(self, dst: Any, src: Any) -> Any:
        self.cupy.copyto(dst, src, casting="same_kind")
        return dst

    def to_numpy(self, x: Any) -> np.ndarray:
        return self.cupy.asnumpy(x)

    def from_numpy(self, a: np.ndarray, *, device: Any = None) -> Any:
        cp = self.cupy
        if device is None:
            return cp.array(a, copy=True)
        with cp.cuda.Device(getattr(device, "id", device)):
            return cp.array(a, copy=True)

    def step_scalar(self, value: float, like: Any = None) -> Any:
        # torch keeps `step` on the CPU so that reading it never waits for the GPU;
        # a NumPy scalar plays that part here.
        return np.float32(value)

    def convert_step(self, value: Any) -> Any:
        from . import get_backend

        return np.array(get_backend(value).to_numpy(value), copy=True)[()]

    def view_as_real(self, x: Any) -> Any:
        try:
            return x.view(x.real.dtype).reshape(*x.shape, 2)
        except ValueError:
            return self.cupy.stack((x.real, x.imag), axis=-1)

    def view_as_complex(self, x: Any) -> Any:
        c = self.cupy.ascontiguousarray(x)
        return c.view(np.result_type(c.dtype, np.complex64)).reshape(c.shape[:-1])
