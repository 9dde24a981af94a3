"""Sparse gradients as rows of their parameter: coalescing, gathering and adding rows."""

from __future__ import annotations

import numpy as np
import pytest

from portopt import SparseGrad
from portopt.optim import _sparse

INDICES = np.array([[2, 0, 2, 2, 1], [1, 0, 1, 0, 1]])
VALUES = np.array([1e8, 1.0, 1.0, -1e8, 0.5], dtype=np.float32)
SHAPE = (3, 2)


def _grad(lib):
    return SparseGrad(lib.asarray(INDICES), lib.asarray(VALUES), SHAPE)


def test_rows_are_flat_row_major_indices(lib):
    sp = _sparse.sparse_rows(_grad(lib), coalesce=False)
    np.testing.assert_array_equal(lib.numpy(sp.rows), [5, 0, 5, 4, 3])
    assert sp.n_rows == 6 and sp.sparse_dim == 2


def test_coalesce_sums_repeats_in_stored_order(lib):
    # row 5 holds 1e8 + 1 - ... in float32: 1e8 + 1 rounds to 1e8, so the order shows
    sp = _sparse.sparse_rows(_grad(lib), coalesce=True)
    np.testing.assert_array_equal(lib.numpy(sp.rows), [0, 3, 4, 5])
    np.testing.assert_array_equal(lib.numpy(sp.values),
                                  np.array([1.0, 0.5, -1e8, np.float32(1e8) + np.float32(1.0)],
                                           dtype=np.float32))


def test_take_and_add_rows(lib):
    x = lib.asarray(np.arange(6.0).reshape(SHAPE), "float32")
    sp = _sparse.sparse_rows(_grad(lib), coalesce=True)
    np.testing.assert_array_equal(lib.numpy(_sparse.take_rows(x, sp)), [0.0, 3.0, 4.0, 5.0])
    out = _sparse.add_rows(x, sp, sp.values)
    expected = np.arange(6.0, dtype=np.float32).reshape(SHAPE)
    expected.reshape(-1)[[0, 3, 4, 5]] += lib.numpy(sp.values)
    np.testing.assert_array_equal(lib.numpy(out), expected)
    np.testing.assert_array_equal(lib.numpy(x), np.arange(6.0).reshape(SHAPE))  # untouched


def test_dense_dimensions(lib):
    g = SparseGrad(lib.asarray([[1, 1, 0]]), lib.asarray(np.ones((3, 2)) * [[1], [2], [4]]), (3, 2))
    sp = _sparse.sparse_rows(g, coalesce=True)
    np.testing.assert_array_equal(lib.numpy(sp.values), [[4.0, 4.0], [3.0, 3.0]])
    x = lib.asarray(np.zeros((3, 2)))
    np.testing.assert_array_equal(lib.numpy(_sparse.add_rows(x, sp, sp.values)),
                                  [[4, 4], [3, 3], [0, 0]])


def test_the_same_as_torch(torch):
    t = torch.sparse_coo_tensor(torch.from_numpy(INDICES), torch.from_numpy(VALUES), SHAPE,
                                check_invariants=True)
    ours = _sparse.sparse_rows(SparseGrad(INDICES, VALUES, SHAPE), coalesce=True)
    theirs = _sparse.sparse_rows(t, coalesce=True)
    np.testing.assert_array_equal(ours.rows, theirs.rows.numpy())
    np.testing.assert_array_equal(ours.values, theirs.values.numpy())
    dense = torch.zeros(SHAPE)
    dense.add_(t)
    np.testing.assert_array_equal(
        _sparse.add_rows(np.zeros(SHAPE, np.float32), ours, ours.values), dense.numpy())


def test_dense_gradients_are_refused():
    with pytest.raises(TypeError, match="expected a sparse gradient"):
        _sparse.sparse_rows(np.zeros(3), coalesce=True)
