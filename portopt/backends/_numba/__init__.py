"""Fused single-pass kernels for NumPy arrays, compiled by numba (the ``fast`` extra).

One kernel per algorithm, in a module of its own named after it (``adam_step`` in
``adam.py``), imported when first asked for; the variants (maximize, weight-decay mode,
AMSGrad, Nesterov, ...) are arguments, never separate kernels. Each reads every element
once and writes the parameter and its state in place, chunks in parallel. The
arithmetic is the generic kernel's, operation for operation, so a fused step lands on
the same bits:

* torch's fused multiply-adds (``add(alpha=)``, ``lerp``, ``addcmul``) are rounded once,
  through float64 for float32 arrays, as ``portopt/optim/_math.py`` emulates them, and
  as two operations for float64 arrays, as the generic kernel computes them there;
* host scalars (bias corrections, ``1 - beta``) are computed in Python by the caller and
  arrive already rounded to the array's dtype (``portopt.optim._fast.cast``), as NumPy
  rounds a Python float before it meets a float32 array.

A param group's state lives in flat buffers whose views are the per-parameter state; its
parameters and gradients are reached where they are, through a chunk table of addresses
(``_common.py``). No Python code runs per parameter.

numba's own cache keeps the compiled kernels on disk between processes.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._common import (
    CHUNK,
    all_writeable,
    array_layout,
    gradient_rows,
    parameter_rows,
    parameter_slots,
)

__all__ = ["CHUNK", "all_writeable", "array_layout", "gradient_rows", "parameter_rows",
           "parameter_slots"]


def __getattr__(name: str) -> Any:
    """``<algorithm>_step``: the kernel of that algorithm, from its module."""
    if not name.endswith("_step") or name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(f"{__name__}.{name.removesuffix('_step')}")
    except ModuleNotFoundError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    kernel = getattr(module, name)
    globals()[name] = kernel
    return kernel
