"""Moving state between portopt and torch.

:func:`to_torch` turns a portopt ``state_dict`` (arrays of any backend) into one that
``torch.optim``'s ``load_state_dict`` accepts. The other direction needs no helper:
portopt's ``load_state_dict`` takes torch's state_dicts as they are.
"""

from __future__ import annotations

import sys
from typing import Any

import array_api_compat
import numpy as np

from .backends import get_backend
from .parameter import SparseGrad

__all__ = ["to_torch"]


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
