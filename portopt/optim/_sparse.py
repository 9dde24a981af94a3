"""Sparse gradients as the kernels see them: rows of a dense parameter.

A sparse gradient (``portopt.SparseGrad`` or a torch sparse COO tensor) is turned into
``(rows, values)``: the flat index of each stored row over the sparse dimensions, and
its values over the dense ones. A parameter of shape ``(*sparse, *dense)`` is viewed as
``(prod(sparse), *dense)`` so that a row index addresses it directly. Everything here
returns new arrays.
"""

from __future__ import annotations

import math
import sys
from typing import Any, NamedTuple

import array_api_compat

from ..backends import get_backend
from ..parameter import SparseGrad


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
    rows = _flat_rows(xp, indices, shape[:sparse_dim])
    out = SparseRows(rows, values, shape, sparse_dim)
    if coalesce and not is_torch_sparse(grad):
        out = _coalesce(out)
    return out


def _flat_rows(xp: Any, indices: Any, sizes: tuple[int, ...]) -> Any:
    """Row-major flat index of each column of ``indices`` (``ravel_multi_index``)."""
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


def add_rows(x: Any, sp: SparseRows, values: Any) -> Any:
    """``x`` plus ``values`` at the rows of ``sp`` (torch's ``x.add_(sparse)``), new array."""
    xp = array_api_compat.array_namespace(x)
    out = get_backend(x).index_add(as_rows(x, sp), sp.rows, values)
    return xp.reshape(out, sp.shape)
