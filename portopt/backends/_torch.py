"""torch tensors, on any device; parameters are updated under ``torch.no_grad()``."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ._base import Backend


class TorchBackend(Backend):
    name = "torch"
    module_name = "torch"

    @classmethod
    def owns(cls, x: Any) -> bool:
        return isinstance(x, sys.modules["torch"].Tensor)

    @property
    def torch(self) -> Any:
        return sys.modules["torch"]

    def device(self, x: Any) -> Any:
        return x.device

    def is_floating(self, x: Any) -> bool:
        return bool(x.is_floating_point())

    def is_complex(self, x: Any) -> bool:
        return bool(x.is_complex())

    def assign(self, dst: Any, src: Any) -> Any:
        # Parameters are leaves that require grad: writing them is only legal with
        # autograd off. A differentiable step runs with it on, so that the copy is
        # recorded, as torch's in-place update is.
        if self.torch.is_grad_enabled():
            dst.copy_(src)
        else:
            with self.torch.no_grad():
                dst.copy_(src)
        return dst

    def index_add(self, x: Any, rows: Any, values: Any) -> Any:
        return x.index_add(0, rows, values)

    def put_rows(self, x: Any, rows: Any, values: Any) -> Any:
        return x.index_copy(0, rows, values)

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.detach().cpu().resolve_conj().resolve_neg().numpy()

    def from_numpy(self, a: np.ndarray, *, device: Any = None) -> Any:
        t = self.torch.from_numpy(np.array(a, copy=True))
        return t if device is None else t.to(device)

    def convert(self, value: Any, *, device: Any = None, dtype: Any = None) -> Any:
        if isinstance(value, self.torch.Tensor):
            return value.detach().to(device=device, dtype=dtype, copy=True)
        return super().convert(value, device=device, dtype=dtype)

    def step_scalar(self, value: float) -> Any:
        torch = self.torch
        dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        return torch.tensor(value, dtype=dtype)

    def convert_step(self, value: Any) -> Any:
        if isinstance(value, self.torch.Tensor):
            return value.detach().clone()
        return self.torch.from_numpy(np.array(_any_to_numpy(value), copy=True))

    def view_as_real(self, x: Any) -> Any:
        return self.torch.view_as_real(x)

    def view_as_complex(self, x: Any) -> Any:
        return self.torch.view_as_complex(x.contiguous())


def _any_to_numpy(value: Any) -> np.ndarray:
    from . import get_backend

    return get_backend(value).to_numpy(value)
