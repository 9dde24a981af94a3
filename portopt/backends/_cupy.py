"""CuPy arrays, on a CUDA (or ROCm) device."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ._numpy import NdarrayBackend


class CupyBackend(NdarrayBackend):
    name = "cupy"
    module_name = "cupy"

    @classmethod
    def owns(cls, x: Any) -> bool:
        return isinstance(x, sys.modules["cupy"].ndarray)

    def __init__(self, example: Any) -> None:
        super().__init__(example)
        import cupyx  # noqa: F401  (scatter_add; CuPy is loaded already)

    def device(self, x: Any) -> Any:
        return x.device

    def index_add(self, x: Any, rows: Any, values: Any) -> Any:
        out = x.copy()
        sys.modules["cupyx"].scatter_add(out, rows, values)
        return out

    def to_numpy(self, x: Any) -> np.ndarray:
        return self.lib.asnumpy(x)

    def from_numpy(self, a: np.ndarray, *, device: Any = None) -> Any:
        cp = self.lib
        if device is None:
            return cp.array(a, copy=True)
        with cp.cuda.Device(getattr(device, "id", device)):
            return cp.array(a, copy=True)
