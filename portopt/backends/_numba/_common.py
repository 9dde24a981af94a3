"""What the fused kernels share: numba's settings, torch's fused multiply-add and
``lerp`` as the generic kernel rounds them, a vectorizable ``sqrt``, and the chunk table
through which a kernel reaches the parameters and gradients where they are.

A chunk table is an int64 array with one row per chunk of at most :data:`CHUNK`
elements of one parameter: the address of the chunk's first parameter element, that of
its first gradient element, its offset in the group's flat state buffers, and its
length. A kernel steps the chunks in parallel (``numba.prange``), each one in a loop
that the compiler vectorizes, so parameters stay the user's arrays and are never
gathered or scattered.

Gradients assigned as new arrays each step are found where they are through
:func:`gradient_rows`, which reads each array's data pointer, type, dtype, shape and
strides from NumPy's array struct (``PyArrayObject_fields``, the layout NumPy's C API
exposes to extensions). :func:`array_layout` finds the fields' offsets once per process
by probing arrays of known content, and gives ``None`` when they cannot be found, in
which case gradients are gathered into one array instead.
"""

from __future__ import annotations

import ctypes
import functools
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


#: elements per chunk-table row: rows small enough to share out between threads, large
#: enough that a row's bookkeeping is nothing beside its loop
CHUNK = 1 << 15

PARAM, GRAD, OFFSET, LENGTH = range(4)  # the columns of a chunk table
#: the entries of ``array_layout()``
TYPE_AT, DATA_AT, NDIM_AT, DIMS_AT, STRIDES_AT, DESCR_AT, FLAGS_AT = range(7)
#: NPY_ARRAY_WRITEABLE, a bit of an ndarray's flags (NumPy's C API; the probe checks it)
_WRITEABLE = 0x0400


@numba.njit(inline="always")
def chunk(table, c, like):  # noqa: ANN001, ANN202
    """Row ``c`` of a chunk table: the parameter's and the gradient's elements as flat
    arrays of ``like``'s dtype, and where they start in the flat state buffers."""
    n = table[c, LENGTH]
    return (numba.carray(pointer(table[c, PARAM], like), (n,)),
            numba.carray(pointer(table[c, GRAD], like), (n,)), table[c, OFFSET], n)


@intrinsic
def _peek(typingctx, address, kind):  # noqa: ANN001, ANN202
    """The integer of ``kind``'s type stored at ``address``."""
    target = kind.instance_type if isinstance(kind, types.NumberClass) else kind

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        ptr = builder.inttoptr(args[0], context.get_value_type(target).as_pointer())
        return builder.sext(builder.load(ptr), context.get_value_type(types.int64)) \
            if target.bitwidth < 64 else builder.load(ptr)

    return types.int64(address, kind), codegen


@functools.cache
def array_layout() -> np.ndarray | None:
    """Byte offsets of an ndarray object's type, data pointer, ndim, dimensions, strides,
    descr and flags fields, found by probing arrays whose values are known; ``None`` when
    the probe does not find all of them consistently."""
    word = ctypes.sizeof(ctypes.c_void_p)
    if word != 8:
        return None
    read_only = np.zeros((5,), np.float64)
    read_only.flags.writeable = False
    probes = [np.zeros((2, 3), np.float32), read_only, np.zeros((), np.int8)]
    found = []
    for a in probes:
        words = list((ctypes.c_int64 * 8).from_address(id(a)))
        try:
            type_at = words.index(id(np.ndarray)) * word
            data_at = words.index(a.ctypes.data) * word
            descr_at = words.index(id(a.dtype)) * word
        except ValueError:
            return None
        ndim_at = data_at + word  # NumPy's struct: data, nd, dimensions, strides
        dims_at, strides_at = ndim_at + word, ndim_at + 2 * word
        if ctypes.c_int.from_address(id(a) + ndim_at).value != a.ndim:
            return None
        for at, values in ((dims_at, a.shape), (strides_at, a.strides)):
            pointer_value = ctypes.c_int64.from_address(id(a) + at).value
            if values and list((ctypes.c_int64 * a.ndim).from_address(pointer_value)) != list(
                    values):
                return None
        flags_at = descr_at + word  # NumPy's struct: descr, then the flags (an int)
        flags = ctypes.c_int.from_address(id(a) + flags_at).value
        if flags != a.flags.num or bool(flags & _WRITEABLE) != a.flags.writeable:
            return None
        found.append((type_at, data_at, ndim_at, dims_at, strides_at, descr_at, flags_at))
    if len(set(found)) != 1:
        return None
    return np.array(found[0], np.int64)


@numba.njit(cache=True, nogil=True)
def gradient_rows(objects, layout, ndarray_type, descr, itemsize, ndims, shapes, shape_starts,
                  tensor_of, start_of, table):  # noqa: ANN001, ANN201
    """Fill the gradient column of a chunk table from the gradients' object addresses
    (``id(g)``), after checking that every one is a plain ``np.ndarray`` (not a subclass)
    of the expected dtype object (``descr``), C-contiguous, with its parameter's shape
    (``ndims[k]`` dimensions listed from ``shapes[shape_starts[k]]``). ``False``, with
    the table untouched, when one is not."""
    type_at, data_at, ndim_at = layout[TYPE_AT], layout[DATA_AT], layout[NDIM_AT]
    dims_at, strides_at, descr_at = layout[DIMS_AT], layout[STRIDES_AT], layout[DESCR_AT]
    bases = np.empty(objects.size, np.int64)
    for k in range(objects.size):
        obj = objects[k]
        if _peek(obj + type_at, types.int64) != ndarray_type:
            return False
        if _peek(obj + descr_at, types.int64) != descr:
            return False
        nd = _peek(obj + ndim_at, types.int32)
        if nd != ndims[k]:
            return False
        dims = _peek(obj + dims_at, types.int64)
        strides = _peek(obj + strides_at, types.int64)
        stride = itemsize
        empty = False
        for j in range(nd - 1, -1, -1):
            d = _peek(dims + 8 * j, types.int64)
            if d != shapes[shape_starts[k] + j]:
                return False
            empty = empty or d == 0
            if d > 1 and _peek(strides + 8 * j, types.int64) != stride:
                if not empty:
                    return False
            stride *= d
        bases[k] = _peek(obj + data_at, types.int64)
    for c in range(tensor_of.size):
        table[c, GRAD] = bases[tensor_of[c]] + start_of[c] * itemsize
    return True


@numba.njit(cache=True, nogil=True)
def all_writeable(objects, layout):  # noqa: ANN001, ANN201
    """Whether every ndarray at the addresses ``objects`` (``id(a)``) is writeable, read
    from its flags field: one pass in compiled code instead of a flags object per
    array. The caller guarantees the objects are live ndarrays."""
    flags_at = layout[FLAGS_AT]
    for k in range(objects.size):
        if _peek(objects[k] + flags_at, types.int32) & _WRITEABLE == 0:
            return False
    return True


@numba.njit(cache=True)  # not nogil: it reads references the parameters hold
def parameter_rows(params, slots, datas, layout, ndarray_type, descr, itemsize, ndims,
                   shapes, shape_starts, tensor_of, start_of, table):  # noqa: ANN001, ANN201
    """Check a planned group's ``portopt.Parameter`` objects (addresses ``params``) in one
    pass: each still holds its planned array (address ``datas[k]``, read from the
    ``data`` slot at offset ``slots[0]``), writeable; then read each gradient from the
    ``_grad`` slot (``slots[1]``) and fill the table as :func:`gradient_rows` does.
    0: done; 1: an array was replaced or made read-only (the plan no longer holds);
    2: a gradient cannot be read in place (the caller gathers the gradients)."""
    flags_at = layout[FLAGS_AT]
    grads = np.empty(params.size, np.int64)
    for k in range(params.size):
        if _peek(params[k] + slots[0], types.int64) != datas[k]:
            return 1
        if _peek(datas[k] + flags_at, types.int32) & _WRITEABLE == 0:
            return 1
        grads[k] = _peek(params[k] + slots[1], types.int64)
        if grads[k] == 0:  # an emptied slot: Python raises for it, not this
            return 2
    if gradient_rows(grads, layout, ndarray_type, descr, itemsize, ndims, shapes,
                     shape_starts, tensor_of, start_of, table):
        return 0
    return 2


@functools.cache
def parameter_slots(parameter_type: type) -> np.ndarray | None:
    """Byte offsets of the ``data`` and ``_grad`` slots in ``parameter_type``'s objects,
    found by probing objects whose values are known; ``None`` when they are not found
    consistently."""
    word = ctypes.sizeof(ctypes.c_void_p)
    size = parameter_type.__basicsize__ // word  # the object itself, slots included
    found = set()
    for _ in range(2):
        data, grad = np.zeros(1), np.zeros(1)
        p = parameter_type(data)
        p._grad = grad
        words = list((ctypes.c_int64 * size).from_address(id(p)))
        if words.count(id(data)) != 1 or words.count(id(grad)) != 1:
            return None
        found.add((words.index(id(data)) * word, words.index(id(grad)) * word))
    if len(found) != 1:
        return None
    return np.array(found.pop(), np.int64)
