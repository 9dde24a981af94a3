"""The fused fast path on NumPy: when a param group may take it, and the host scalars
its kernels need.

A group takes the fused kernel of its algorithm (``portopt/backends/_numba.py``) when
numba is installed and nothing in the group needs the generic kernel: ``foreach`` is not
``False`` (which asks for the reference path), neither ``differentiable`` nor
``capturable`` is set, the hyper-parameters are Python numbers, and every parameter is a
writable, C-contiguous, real float32/float64 NumPy array, listed once, with a dense
gradient of its shape and dtype and a state the generic kernel has already created (the
first step, which creates the state, runs the generic kernel). Otherwise the group runs
the generic kernel, whose numbers the fused one reproduces bit for bit.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ._checks import is_array
from ._math import round_to_float32
from ._params import is_sparse


@functools.cache
def kernels() -> Any:
    """The compiled kernels' module, or ``None`` without numba."""
    try:
        from ..backends import _numba
    except ImportError:
        return None
    return _numba


def _plain_array(x: Any, dtype: Any) -> bool:
    return (type(x) is np.ndarray and x.dtype == dtype and x.flags.c_contiguous
            and x.flags.writeable)


def eligible(group: dict[str, Any], work: list[Any], state: Any, keys: tuple[str, ...],
             numbers: tuple[str, ...]) -> bool:
    """Whether ``group`` can take the fused kernel (see the module docstring); ``keys`` are
    the state arrays the kernel updates, ``numbers`` the group entries it reads."""
    if not work or kernels() is None or group.get("foreach") is False:
        return False
    if group.get("differentiable") or group.get("capturable"):
        return False
    for k in numbers:
        values = group[k] if isinstance(group[k], (tuple, list)) else (group[k],)
        if any(is_array(v) for v in values):
            return False
    dtype = work[0].data.dtype
    if dtype not in (np.float32, np.float64):
        return False
    seen = set()
    for item in work:
        if id(item.param) in seen or is_sparse(item.grad):
            return False
        seen.add(id(item.param))
        if not (_plain_array(item.data, dtype) and _plain_array(item.grad, dtype)
                and item.grad.shape == item.data.shape):
            return False
        saved = state.get(item.param)
        if not saved or any(not _plain_array(saved.get(k), dtype)
                            or saved[k].shape != item.data.shape for k in keys):
            return False
    return True


def cast(value: float, dtype: Any) -> Any:
    """A host scalar as the generic kernel meets it: rounded to the array's dtype."""
    return np.float32(round_to_float32(value)) if dtype == np.float32 else np.float64(value)
