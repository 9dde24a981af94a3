"""NumPy arrays (on the host), and the ndarray model NumPy and CuPy share."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ._base import Backend


class NdarrayBackend(Backend):
    """Libraries with NumPy's ndarray model: ``copyto``, strided complex views, and
    ``state["step"]`` as a NumPy host scalar (torch keeps it on the CPU, so that reading
    it never waits for a device)."""

    @property
    def lib(self) -> Any:
        return sys.modules[self.module_name]

    def assign(self, dst: Any, src: Any) -> Any:
        self.lib.copyto(dst, src, casting="same_kind")
        return dst

    def step_scalar(self, value: float) -> Any:
        # np.float32 rather than a 0-d array: NumPy arithmetic on 0-d arrays returns
        # scalars, so this keeps the type the same before and after a step.
        return np.float32(value)

    def convert_step(self, value: Any) -> Any:
        from . import get_backend

        return np.array(get_backend(value).to_numpy(value), copy=True)[()]

    def view_as_real(self, x: Any) -> Any:
        try:  # a strided view when the last axis is contiguous, as torch.view_as_real
            return x.view(x.real.dtype).reshape(*x.shape, 2)
        except ValueError:
            return self.lib.stack((x.real, x.imag), axis=-1)

    def view_as_complex(self, x: Any) -> Any:
        c = self.lib.ascontiguousarray(x)
        return c.view(np.result_type(c.dtype, np.complex64)).reshape(c.shape[:-1])


class NumpyBackend(NdarrayBackend):
    name = "numpy"
    module_name = "numpy"

    @classmethod
    def owns(cls, x: Any) -> bool:
        # NumPy scalars too: 0-d arithmetic returns them, and `step` is one
        np_ = sys.modules["numpy"]
        return isinstance(x, (np_.ndarray, np_.generic))

    def is_writable(self, x: Any) -> bool:
        return isinstance(x, np.ndarray) and bool(x.flags.writeable)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def index_add(self, x: Any, rows: Any, values: Any) -> Any:
        out = np.array(x, copy=True)
        np.add.at(out, rows, values)  # unbuffered: repeated rows accumulate in order
        return out

    def put_rows(self, x: Any, rows: Any, values: Any) -> Any:
        out = np.array(x, copy=True)
        out[rows] = values
        return out

    def from_numpy(self, a: np.ndarray, *, device: Any = None) -> Any:
        if device not in (None, "cpu"):
            raise ValueError(f"NumPy arrays live on 'cpu', not on {device!r}")
        return np.array(a, copy=True)
