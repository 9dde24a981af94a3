"""Sparse gradients as the kernels see them: rows of a dense parameter.

A sparse gradient (``portopt.SparseGrad`` or a torch sparse COO tensor) is turned into
``(rows, values)``: the flat index of each stored row over the sparse dimensions, and
its values over the dense ones. A parameter of shape ``(*sparse, *dense)`` is viewed as
``(prod(sparse), *dense)`` so that a row index addresses it directly. A gradient with
no sparse dimension (all a 0-d parameter can have) is one row holding the whole value.

The sums follow torch's CPU kernels entry by entry, so that they round as torch does:
``dense + sparse`` adds the stored entries one at a time in stored order, and
``sparse + sparse`` merges the two entry lists (:func:`tensor_add`). Everything here
returns new arrays.
"""

from __future__ import annotations

import math
import sys
from typing import Any, NamedTuple

import array_api_compat
import numpy as np

from ..backends import get_backend
from ..backends._base import row_passes
from ..parameter import SparseGrad
from ._math import add_scaled

#: torch's error for ``sparse.add(dense)`` (SGD meets it with sparse gradients).
SPARSE_PLUS_DENSE = "add(sparse, dense) is not supported. Use add(dense, sparse) instead."


class SparseRows(NamedTuple):
    """A sparse gradient as rows of its parameter."""

    rows: Any  # (nnz,) integer flat row indices, possibly repeated unless coalesced
    values: Any  # (nnz, *dense_shape)
    shape: tuple[int, ...]  # the parameter's full shape
    sparse_dim: int

    @property
    def n_rows(self) -> int:
        return math.prod(self.shape[: self.sparse_dim])


def is_torch_sparse(grad: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(grad, torch.Tensor) and grad.is_sparse


def sparse_rows(grad: Any, *, coalesce: bool) -> SparseRows:
    """``grad`` as :class:`SparseRows`; with ``coalesce``, rows are unique and sorted and
    repeated entries are summed in the order they are stored (as torch's ``coalesce``)."""
    if is_torch_sparse(grad):
        g = grad.coalesce() if coalesce else grad
        indices, values = g._indices(), g._values()
        shape, sparse_dim = tuple(g.shape), g.sparse_dim()
    elif isinstance(grad, SparseGrad):
        indices, values, shape, sparse_dim = grad.indices, grad.values, grad.shape, grad.sparse_dim
    else:
        raise TypeError(f"expected a sparse gradient, got {type(grad).__name__}")
    xp = array_api_compat.array_namespace(indices)
    rows = _flat_rows(xp, indices, shape[:sparse_dim], values.shape[0])
    out = SparseRows(rows, values, shape, sparse_dim)
    if coalesce and not is_torch_sparse(grad):
        out = _coalesce(out)
    return out


def _flat_rows(xp: Any, indices: Any, sizes: tuple[int, ...], nnz: int) -> Any:
    """Row-major flat index of each column of ``indices`` (``ravel_multi_index``)."""
    if not sizes:  # no sparse dimension: every entry is the one row
        return xp.zeros((nnz,), dtype=xp.int64, device=array_api_compat.device(indices))
    indices = xp.astype(indices, xp.int64)
    rows = indices[0, :]
    for d in range(1, len(sizes)):
        rows = rows * sizes[d] + indices[d, :]
    return rows


def _coalesce(sp: SparseRows) -> SparseRows:
    xp = array_api_compat.array_namespace(sp.values)
    unique, inverse = xp.unique_inverse(sp.rows)
    zeros = xp.zeros((unique.shape[0], *sp.values.shape[1:]), dtype=sp.values.dtype,
                     device=array_api_compat.device(sp.values))
    summed = get_backend(zeros).index_add(zeros, xp.reshape(inverse, (-1,)), sp.values)
    return SparseRows(unique, summed, sp.shape, sp.sparse_dim)


def as_rows(x: Any, sp: SparseRows) -> Any:
    """A dense array of the parameter's shape, viewed as ``(n_rows, *dense)``."""
    xp = array_api_compat.array_namespace(x)
    return xp.reshape(x, (sp.n_rows, *sp.shape[sp.sparse_dim:]))


def take_rows(x: Any, sp: SparseRows) -> Any:
    """The rows of dense ``x`` that ``sp`` stores (torch's ``x.sparse_mask(grad)``)."""
    xp = array_api_compat.array_namespace(x)
    return xp.take(as_rows(x, sp), sp.rows, axis=0)


def add_rows(x: Any, sp: SparseRows, values: Any, alpha: Any = 1) -> Any:
    """``x + alpha * values`` at the rows of ``sp``, as torch's ``x.add(sparse, alpha)``.

    Each stored entry is added on its own, in stored order, with one rounding (a fused
    multiply-add), so repeated rows accumulate entry by entry. Returns a new array.
    """
    be = get_backend(x)
    xp = be.xp
    rows = as_rows(x, sp)
    if be.name == "torch":
        torch = be.torch
        coo = torch.sparse_coo_tensor(sp.rows[None, :], values, tuple(rows.shape),
                                      check_invariants=False)
        return torch.reshape(torch.add(rows, coo, alpha=alpha), sp.shape)
    if not array_api_compat.is_array_api_obj(alpha) and alpha == 1:
        out = be.index_add(rows, sp.rows, values)  # x + 1 * v rounds once anyway
    else:
        out = rows
        for pick in row_passes(xp, sp.rows):
            at = xp.take(sp.rows, pick)
            new = add_scaled(xp.take(out, at, axis=0), xp.take(values, pick, axis=0), alpha)
            out = be.put_rows(out, at, new)
    return xp.reshape(out, sp.shape)


# -- torch's sums with sparse operands ------------------------------------------------------


def tensor_add(a: Any, b: Any, alpha: Any) -> Any:
    """``a.add(b, alpha=alpha)`` as torch computes it on the CPU, dense or sparse.

    * dense + dense: one fused multiply-add per element (:func:`add_scaled`);
    * dense + sparse: :func:`add_rows`;
    * sparse + sparse: torch walks both entry lists at once, as a merge of sorted
      lists, even when they are not sorted: at each step the entry with the smaller
      row is taken, and entries whose rows are equal at that moment are summed into
      one (``t + alpha * s``, fused). Nothing else is coalesced;
    * sparse + dense: torch's ``RuntimeError``.

    torch tensors (dense or sparse) use torch's own operator.
    """
    a_sparse, b_sparse = isinstance(a, SparseGrad), isinstance(b, SparseGrad)
    if a_sparse and not b_sparse:
        raise RuntimeError(SPARSE_PLUS_DENSE)
    if not b_sparse:
        return add_scaled(a, b, alpha)
    if not a_sparse:
        sp = sparse_rows(b, coalesce=False)
        return add_rows(a, sp, sp.values, alpha)
    return _merge(a, b, alpha)


def _merge(t: SparseGrad, s: SparseGrad, alpha: Any) -> SparseGrad:
    """torch's sum of two sparse tensors, ``t + alpha * s`` (see :func:`tensor_add`)."""
    be = get_backend(t.values)
    xp = be.xp
    if s.nnz == 0:
        return copy_sparse(t)
    if t.nnz == 0:
        return SparseGrad(_clone(s.indices), s.values * alpha, s.shape, check_invariants=False)
    # The walk is sequential, so it runs on the host over the row numbers; the values
    # are then gathered and summed on the arrays' own device.
    t_pick, s_pick = _merge_plan(be.to_numpy(sparse_rows(t, coalesce=False).rows),
                                 be.to_numpy(sparse_rows(s, coalesce=False).rows))
    device = be.device(t.values)
    has_t, has_s = (be.from_numpy(pick >= 0, device=device) for pick in (t_pick, s_pick))
    t_at, s_at = (be.from_numpy(np.maximum(pick, 0), device=device) for pick in (t_pick, s_pick))
    values_shape = (t_pick.shape[0],) + (1,) * (len(t.values.shape) - 1)
    take_t = xp.reshape(has_t, values_shape)
    # r = 0; r += 1 * t (where stored); r += alpha * s (fused, where stored)
    out = xp.where(take_t, xp.take(t.values, t_at, axis=0), xp.zeros_like(t.values[:1, ...])) + 0.0
    summed = add_scaled(out, xp.take(s.values, s_at, axis=0), alpha)
    out = xp.where(xp.reshape(has_s, values_shape), summed, out)
    indices = xp.where(xp.reshape(has_t, (1, -1)), xp.take(t.indices, t_at, axis=1),
                       xp.take(s.indices, s_at, axis=1))
    return SparseGrad(indices, out, t.shape, check_invariants=False)


def _merge_plan(t_rows: np.ndarray, s_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each entry of the merged sum, the entry of ``t`` and of ``s`` it holds (-1: none)."""
    tl, sl = t_rows.tolist(), s_rows.tolist()
    i = j = 0
    t_pick: list[int] = []
    s_pick: list[int] = []
    while i < len(tl) or j < len(sl):
        if j >= len(sl) or (i < len(tl) and tl[i] < sl[j]):
            t_pick.append(i)
            s_pick.append(-1)
            i += 1
        elif i >= len(tl) or tl[i] > sl[j]:
            t_pick.append(-1)
            s_pick.append(j)
            j += 1
        else:
            t_pick.append(i)
            s_pick.append(j)
            i += 1
            j += 1
    return np.asarray(t_pick, dtype=np.int64), np.asarray(s_pick, dtype=np.int64)


def negative(g: Any) -> Any:
    """``-g`` for a dense or sparse ``g`` (a sparse one keeps its indices)."""
    if not isinstance(g, SparseGrad):
        return -g
    return SparseGrad(g.indices, -g.values, g.shape, check_invariants=False)


def scale(sp: Any, factor: Any) -> Any:
    """``sp * factor`` (torch's sparse ``mul_`` by a number: the stored values scale)."""
    if not isinstance(sp, SparseGrad):
        return sp * factor
    return SparseGrad(sp.indices, sp.values * factor, sp.shape, check_invariants=False)


def copy_sparse(sp: SparseGrad) -> SparseGrad:
    """A copy of ``sp`` that shares no array with it."""
    return SparseGrad(_clone(sp.indices), _clone(sp.values), sp.shape, check_invariants=False)


def _clone(x: Any) -> Any:
    return array_api_compat.array_namespace(x).asarray(x, copy=True)
