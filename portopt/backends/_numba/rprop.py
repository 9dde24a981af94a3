"""The fused Rprop kernel."""

from __future__ import annotations

import math

import numba

from ._common import JIT, chunk, fma, maximum


@numba.njit(inline="always")
def _minimum(a, b):  # noqa: ANN001, ANN202
    """NumPy's ``minimum``: NaN if either is NaN, else the smaller, ``b`` on a tie (as
    NumPy returns ``-0.0`` for ``minimum(0.0, -0.0)``)."""
    if math.isnan(a) or math.isnan(b):
        return a + b
    return a if a < b else b


@numba.njit(inline="always")
def _sign(x, one, zero):  # noqa: ANN001, ANN202
    """torch's CPU ``sign`` in ``x``'s dtype: ``(x > 0) - (x < 0)``, so 0 for NaN."""
    return (one if x > 0 else zero) - (one if x < 0 else zero)


@numba.njit(inline="always")
def _rprop_element(param, grad, prev, step_size, i, maximize, etaminus, etaplus,
                   step_size_min, step_size_max, single):  # noqa: ANN001, ANN202
    one = param.dtype.type(1)
    zero = param.dtype.type(0)
    g = -grad[i] if maximize else grad[i]
    # the generic kernel's chain of replacements, each reading the previous result
    factor = _sign(g * prev[i], one, zero)
    factor = etaplus if factor > 0 else factor
    factor = etaminus if factor < 0 else factor
    factor = one if factor == 0 else factor
    s = _minimum(maximum(step_size[i] * factor, step_size_min), step_size_max)
    step_size[i] = s
    g = zero if factor == etaminus else g
    prev[i] = g
    param[i] = fma(-_sign(g, one, zero), s, param[i], single)


@numba.njit(inline="always")
def _rprop_loops(param, grad, prev, step_size, maximize, etaminus, etaplus, step_size_min,
                 step_size_max):  # noqa: ANN001, ANN201
    """One Rprop step (see ``portopt.optim.rprop.rprop``) over flat arrays, in place.

    ``maximize`` negates the gradient (a select on a loop-invariant flag, and a true
    negation, so that a NaN gradient's sign flips in ``prev`` as NumPy's ``-grad`` flips
    it); the etas and the step-size bounds arrive rounded to the dtype, as the generic
    kernel meets them, a missing bound as an infinity of its side (which clamps
    nothing). The factor comes from the same chain of comparisons as in the generic
    kernel, so that etas that round to edge cases (``etaminus`` to 0, both etas to 1)
    act alike. One loop: the comparisons are selects, which leave it vectorizable.
    """
    single = param.itemsize == 4
    for i in range(param.size):
        _rprop_element(param, grad, prev, step_size, i, maximize, etaminus, etaplus,
                       step_size_min, step_size_max, single)


@numba.njit(**JIT)
def rprop_step(table, prev, step_size, maximize, etaminus, etaplus, step_size_min,
               step_size_max):  # noqa: ANN001, ANN201
    """One step over a chunk table (see ``_common``), in place, chunks in parallel; the
    other arguments are :func:`_rprop_loops`'s, with the state buffers whole."""
    for c in numba.prange(table.shape[0]):
        param, grad, start, n = chunk(table, c, prev)
        _rprop_loops(param, grad, prev[start:start + n], step_size[start:start + n], maximize,
                     etaminus, etaplus, step_size_min, step_size_max)
