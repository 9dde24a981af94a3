"""Helpers shared by more than one kernel: torch's fused elementwise forms and complex views.

Everything here is written against the array's own namespace and returns new arrays.
"""

from __future__ import annotations

import math
import numbers
import struct
import sys
from typing import Any

import array_api_compat

from ..backends import get_backend


def round_to_float32(x: float) -> float:
    """The float32 nearest to ``x``, as a Python float (torch casts scalars to float)."""
    try:
        return struct.unpack("f", struct.pack("f", x))[0]
    except OverflowError:  # beyond float32's range: a cast gives infinity
        return math.copysign(math.inf, x)


def _emulate_fma(x: Any) -> bool:
    """Whether ``x`` is a real float32 array, whose fused multiply-adds portopt can
    reproduce exactly: the product of two float32 numbers is exact in float64, so one
    float64 addition and a cast back round (almost always) as a hardware FMA does."""
    xp = array_api_compat.array_namespace(x)
    return x.dtype == xp.float32


def _fma32(a: Any, b: Any, c: Any) -> Any:
    """``a * b + c`` rounded once, for float32 arrays ``b`` and ``c`` and a scalar or
    float32 array ``a``."""
    xp = array_api_compat.array_namespace(b, c)
    wide = xp.float64
    a = xp.astype(a, wide) if array_api_compat.is_array_api_obj(a) else a
    return xp.astype(a * xp.astype(b, wide) + xp.astype(c, wide), xp.float32)


# torch computes `add(alpha=)`, `lerp` and `addcmul` with fused multiply-adds on CPUs
# with AVX2 (and on CUDA). The three helpers below round the same way: torch tensors
# use torch's own op, float32 arrays an exact emulation, and other dtypes (float64,
# complex) two roundings, one ULP or so away from torch.


def add_scaled(a: Any, b: Any, alpha: Any) -> Any:
    """``a + alpha * b`` as torch's ``a.add(b, alpha=alpha)`` rounds it."""
    if array_api_compat.is_torch_array(a) and not array_api_compat.is_array_api_obj(alpha):
        return sys.modules["torch"].add(a, b, alpha=alpha)
    if not array_api_compat.is_array_api_obj(alpha) and _emulate_fma(a):
        return _fma32(round_to_float32(alpha), b, a)
    return a + alpha * b


def lerp(start: Any, end: Any, weight: float) -> Any:
    """``start + weight * (end - start)`` as torch's ``start.lerp(end, weight)``.

    torch switches form at ``|weight| = 0.5`` so that the result is exact at both
    ends: ``start + w (end - start)`` below, ``end + (w - 1)(end - start)`` above.
    """
    if array_api_compat.is_torch_array(start):
        return sys.modules["torch"].lerp(start, end, weight)
    diff = end - start
    if _emulate_fma(start):
        w = round_to_float32(weight)
        if abs(w) < 0.5:
            return _fma32(w, diff, start)
        return _fma32(round_to_float32(w - 1), diff, end)
    if abs(weight) < 0.5:
        return start + weight * diff
    return end - diff * (1 - weight)


def addcmul(a: Any, t1: Any, t2: Any, value: float) -> Any:
    """``a + value * t1 * t2`` as torch's ``a.addcmul(t1, t2, value=value)``:
    ``value * t1`` is rounded, then multiplied by ``t2`` and added in one rounding."""
    if array_api_compat.is_torch_array(a) and not array_api_compat.is_array_api_obj(value):
        return sys.modules["torch"].addcmul(a, t1, t2, value=value)
    if not array_api_compat.is_array_api_obj(value) and _emulate_fma(a):
        return _fma32(value * t1, t2, a)
    return a + value * t1 * t2


def view_as_real(x: Any) -> Any:
    """A complex array as reals with a trailing axis (re, im), as ``torch.view_as_real``.

    Real arrays pass through. The backend gives a strided view where its library can.
    """
    xp = array_api_compat.array_namespace(x)
    if not xp.isdtype(x.dtype, "complex floating"):
        return x
    return get_backend(x).view_as_real(x)


def view_as_complex(x: Any) -> Any:
    """Inverse of :func:`view_as_real` for an array with a trailing axis of 2."""
    return get_backend(x).view_as_complex(x)


def is_complex(x: Any) -> bool:
    return bool(array_api_compat.array_namespace(x).isdtype(x.dtype, "complex floating"))


def host(x: Any) -> Any:
    """A scalar hyper-parameter as the Python float torch turns it into.

    Python floats make array arithmetic round the scalar to the array's dtype (NumPy's
    weak-scalar rule, torch's ``Scalar``), whereas a NumPy ``float64`` scalar would
    promote a float32 array. A torch tensor that requires grad stays a tensor, so a
    differentiable step lets autograd reach the hyper-parameter, as in torch.
    """
    if type(x) is float:
        return x
    if getattr(x, "requires_grad", False):
        return x
    return float(x)


def rdiv(numerator: Any, denominator: Any) -> Any:
    """``numerator / denominator`` for host scalars, rounded as torch rounds it.

    torch evaluates a Python number divided by a tensor as ``reciprocal(t) * number``
    (``Tensor.__rtruediv__``), which can differ from a true division in the last bit of
    a float32 result; with 0-d array hyper-parameters portopt does the same.
    """
    is_array = array_api_compat.is_array_api_obj
    if is_array(denominator) and not is_array(numerator):
        return (1 / denominator) * numerator
    return numerator / denominator


def spow(base: Any, exponent: float) -> Any:
    """``base ** exponent`` for a host scalar, rounded as torch rounds it.

    torch raises a 0-d CPU tensor to a Python power in double precision and rounds the
    result to the tensor's dtype; NumPy's array power can land one ULP away (measured:
    550 of 3420 float32 cases). For a 0-d array base of another library portopt does
    what torch does; torch tensors keep torch's own operator (and its autograd).

    Except for a few exponents, which torch's CPU kernel turns into products and
    quotients in the tensor's dtype, each rounded (``x ** 3`` is ``x * x * x``): one
    ULP from the double-precision power in about a quarter of cases, float32 and
    float64 alike (``0.999 ** 3.0`` in float32, Adam's third bias correction with
    array betas). Its ``x ** 0.5`` is its own ``sqrt``, which is not correctly rounded
    on the CPU, and which nothing here reproduces.
    """
    if not array_api_compat.is_array_api_obj(base) or array_api_compat.is_torch_array(base):
        return base ** exponent
    xp = array_api_compat.array_namespace(base)
    if exponent in _ROUNDED_POWERS:
        return _ROUNDED_POWERS[exponent](xp, base)
    return xp.asarray(float(base) ** exponent, dtype=base.dtype,
                      device=array_api_compat.device(base))


#: torch's CPU ``x ** exponent`` for the exponents it evaluates with rounded operations
_ROUNDED_POWERS = {
    2.0: lambda xp, x: xp.asarray(x * x),
    3.0: lambda xp, x: xp.asarray(x * x * x),
    -1.0: lambda xp, x: xp.asarray(1 / x),
    -2.0: lambda xp, x: xp.asarray(1 / (x * x)),
    -0.5: lambda xp, x: xp.asarray(1 / xp.sqrt(x)),
}


def as_arrays(xp: Any, *values: Any) -> tuple[Any, ...]:
    """Kernel outputs as arrays of ``xp`` (``None`` stays ``None``).

    NumPy returns scalars, not 0-d arrays, from arithmetic on 0-d arrays; a kernel
    promises arrays of its input's namespace whatever the shape.
    """
    return tuple(xp.asarray(v) if isinstance(v, numbers.Number) else v for v in values)


def detached_copy(x: Any) -> Any:
    """A copy of ``x`` outside any autograd graph (torch's ``x.detach().clone()``)."""
    if array_api_compat.is_torch_array(x):
        return x.detach().clone()
    return array_api_compat.array_namespace(x).asarray(x, copy=True)
