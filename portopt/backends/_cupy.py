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


    def device(self, x: Any) -> Any:
        return x.device

    # index_add: the generic passes, since CuPy's atomic scatter_add sums repeated rows
    # in no fixed order

    def put_rows(self, x: Any, rows: Any, values: Any) -> Any:
        out = x.copy()
        out[rows] = values
        return out

    def to_numpy(self, x: Any) -> np.ndarray:
        return self.lib.asnumpy(x)

    def from_numpy(self, a: np.ndarray, *, device: Any = None) -> Any:
        cp = self.lib
        if device is None:
            return cp.array(a, copy=True)
        with cp.cuda.Device(getattr(device, "id", device)):
            return cp.array(a, copy=True)
