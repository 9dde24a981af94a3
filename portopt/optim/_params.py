"""What counts as a parameter, how torch names types in its messages, and writing a
value into an array in place."""

from __future__ import annotations

import sys
from typing import Any

import array_api_compat

from ..parameter import Parameter, SparseGrad


def is_torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def is_param(x: Any) -> bool:
    """Whether ``x`` can be optimized: a :class:`Parameter` or a torch tensor."""
    return isinstance(x, Parameter) or is_torch_tensor(x)


def data_of(p: Any) -> Any:
    """The array a parameter's values live in (a torch tensor is its own storage)."""
    return p.data if isinstance(p, Parameter) else p


def is_sparse(grad: Any) -> bool:
    return isinstance(grad, SparseGrad) or (is_torch_tensor(grad) and grad.is_sparse)


def typename(obj: Any) -> str:
    """The type name torch prints in its messages (``float``, ``numpy.ndarray``)."""
    if is_torch_tensor(obj):
        return obj.type()
    module = getattr(obj, "__module__", "") or ""
    if hasattr(obj, "__qualname__"):
        qualname = obj.__qualname__
    elif hasattr(obj, "__name__"):
        qualname = obj.__name__
    else:
        module = type(obj).__module__ or ""
        qualname = type(obj).__qualname__
    return qualname if module in ("", "builtins") else f"{module}.{qualname}"


def write_into(dst: Any, value: Any) -> None:
    """Store ``value`` into the array ``dst`` in place, as torch's ``copy_``/``fill_``:
    an array of another backend is converted, one of another dtype cast to ``dst``'s
    (a float average of an integer buffer is truncated); numbers are written as they are."""
    from ..backends import get_backend

    be = get_backend(dst)
    if array_api_compat.is_array_api_obj(value):
        if type(get_backend(value)) is not type(be):
            value = be.convert(value)
        if value.dtype != dst.dtype:
            value = be.xp.astype(value, dst.dtype)
    be.assign(dst, value)
