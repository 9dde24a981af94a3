"""What the fused kernels share: numba's settings, torch's fused multiply-add and
``lerp`` as the generic kernel rounds them, a vectorizable ``sqrt``, and the address
table that writes gathered parameters back."""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

# error_model="numpy": IEEE division (inf and NaN, as NumPy and torch give them) and no
# zero check inside the loops, which would keep them from being vectorized
JIT = {"parallel": True, "cache": True, "nogil": True, "error_model": "numpy"}


@intrinsic
def pointer(typingctx, address, like):  # noqa: ANN001, ANN202
    """The int64 ``address`` as a pointer to ``like``'s dtype (for ``numba.carray``)."""
    target = types.CPointer(like.dtype)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.inttoptr(args[0], context.get_value_type(target))

    return target(address, like), codegen


@intrinsic
def sqrt(typingctx, x):  # noqa: ANN001, ANN202
    """LLVM's ``sqrt``, correctly rounded in ``x``'s own dtype and vectorizable (NumPy's
    ``sqrt`` compiles to a libm call that stops the loop from being vectorized)."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        fn = builder.module.declare_intrinsic("llvm.sqrt", [args[0].type])
        return builder.call(fn, args)

    return x(x), codegen


@numba.njit(inline="always")
def tensor(addresses, sizes, k, like):  # noqa: ANN001, ANN202
    """Tensor ``k`` of an address table, as a flat array."""
    return numba.carray(pointer(addresses[k], like), (sizes[k],))


@numba.njit(inline="always", error_model="numpy")
def fma(a, b, c, single):  # noqa: ANN001, ANN202 - numba infers the types
    """``a * b + c`` rounded once for float32 (exact through float64), twice for float64."""
    if single:
        return np.float32(np.float64(a) * np.float64(b) + np.float64(c))
    return a * b + c


@numba.njit(inline="always")
def lerp(start, end, w, w_minus_1, one_minus_w, single):  # noqa: ANN001, ANN202
    """torch's ``lerp``: ``start + w*(end - start)`` below ``|w| = 0.5``, else
    ``end + (w - 1)*(end - start)`` (for float64 as the generic kernel writes it,
    ``end - (end - start)*(1 - w)``). The scalars arrive in the array's dtype, so that no
    operation widens a float32 computation."""
    diff = end - start
    if abs(w) < 0.5:
        if single:
            return fma(w, diff, start, True)
        return start + w * diff
    if single:
        return fma(w_minus_1, diff, end, True)
    return end - diff * one_minus_w


@numba.njit(inline="always")
def maximum(a, b):  # noqa: ANN001, ANN202
    """NumPy's ``maximum``: NaN if either is NaN."""
    if math.isnan(a) or math.isnan(b):
        return a + b
    return a if a > b else b


@numba.njit(**JIT)
def scatter(flat, addresses, sizes, offsets):  # noqa: ANN001, ANN201
    """Copy the flat array ``flat`` back into the tensors of an address table."""
    for k in numba.prange(addresses.size):
        dst = tensor(addresses, sizes, k, flat)
        start = offsets[k]
        for i in range(sizes[k]):
            dst[i] = flat[start + i]
