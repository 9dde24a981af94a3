"""SGD with sparse gradients, as torch's single-tensor path runs it.

The kernel and torch's sparse sums run on every backend against numbers derived by hand;
the class runs through the ``impl`` fixture, where torch.optim itself must meet the same
expectations as portopt on NumPy and on torch tensors.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from helpers import raises

import portopt
from portopt import SparseGrad
from portopt import functional as F
from portopt.optim.sgd import SPARSE_PLUS_DENSE, tensor_add

INDICES = [[2, 0, 2]]
VALUES = [[1.0, 2.0], [4.0, 4.0], [3.0, -2.0]]


def _grad(lib, indices, values, shape, dtype):
    """A sparse COO gradient in the backend's own form."""
    indices, values = lib.asarray(indices, "int64"), lib.asarray(values, dtype)
    if lib.name.startswith("torch"):
        return lib.mod.sparse_coo_tensor(indices, values, shape, check_invariants=True)
    return SparseGrad(indices, values, shape)


def _dense(lib, x):
    """A sparse value (SparseGrad or torch sparse tensor) or an array, as dense NumPy."""
    if isinstance(x, SparseGrad):
        out = np.zeros(x.shape, dtype=lib.numpy(x.values).dtype)
        np.add.at(out, tuple(lib.numpy(x.indices)), lib.numpy(x.values))
        return out
    if getattr(x, "is_sparse", False):
        return x.to_dense().cpu().numpy()
    return lib.numpy(x)


def _entries(lib, x):
    """(rows, values) of a sparse value with one sparse dimension, in stored order."""
    if isinstance(x, SparseGrad):
        return lib.numpy(x.indices)[0].tolist(), lib.numpy(x.values).tolist()
    return x._indices()[0].tolist(), x._values().tolist()


# -- the kernel and torch's sparse sums -----------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_only_stored_rows_move_and_repeats_accumulate(lib, dtype):
    p = lib.asarray(np.ones((3, 2)), dtype)
    new, state = F.sgd(p, _grad(lib, INDICES, VALUES, (3, 2), dtype), F.sgd_init(p), lr=0.5)
    # row 0: 1 - 0.5 * 4; row 2: 1 - 0.5 * (1 + 3) and 1 - 0.5 * (2 - 2)
    np.testing.assert_array_equal(lib.numpy(new), [[-1, -1], [1, 1], [-1, 1]])
    assert type(new) is type(p) and new.dtype == p.dtype
    assert state.momentum_buffer is None
    np.testing.assert_array_equal(lib.numpy(p), np.ones((3, 2)))  # input untouched


def test_entries_are_added_one_at_a_time(lib):
    # float32: 1 - 1e8 rounds to -1e8 (spacing 8) before + 1e8 arrives, so the row ends
    # at 0; summing the two entries first would leave it at 1
    p = lib.asarray([1.0, 0.0], "float32")
    grad = _grad(lib, [[0, 0]], [1e8, -1e8], (2,), "float32")
    new, _ = F.sgd(p, grad, F.sgd_init(p), lr=1.0)
    np.testing.assert_array_equal(lib.numpy(new), [0.0, 0.0])


def test_sparse_sum_walks_both_entry_lists_as_a_merge(lib):
    t = _grad(lib, [[3, 1, 3]], [1.0, 2.0, 4.0], (5,), "float64")
    s = _grad(lib, [[1, 3, 0]], [8.0, 16.0, 32.0], (5,), "float64")
    out = tensor_add(t, s, 0.5)
    # 3 > 1: take s (1, 4); 3 == 3: one entry 1 + 8; 1 > 0: take s (0, 16); then t's rest
    rows, values = _entries(lib, out)
    assert rows == [1, 3, 0, 1, 3]
    assert values == [4.0, 9.0, 16.0, 2.0, 4.0]
    np.testing.assert_array_equal(_dense(lib, out), [16, 6, 0, 13, 0])
    assert _entries(lib, t)[1] == [1.0, 2.0, 4.0]  # inputs untouched


def test_sparse_sum_with_an_empty_side(lib):
    t = _grad(lib, [[2]], [[1.0, -1.0]], (3, 2), "float64")
    empty = _grad(lib, np.zeros((1, 0)), np.zeros((0, 2)), (3, 2), "float64")
    assert _entries(lib, tensor_add(t, empty, 0.5)) == ([2], [[1.0, -1.0]])
    assert _entries(lib, tensor_add(empty, t, 0.5)) == ([2], [[0.5, -0.5]])


def test_momentum_buffer_stays_sparse_by_hand(lib):
    p = lib.asarray([0.0, 0.0, 0.0], "float64")
    kw = {"lr": 1.0, "momentum": 0.5}
    p1, s1 = F.sgd(p, _grad(lib, [[2, 0]], [2.0, 4.0], (3,), "float64"), F.sgd_init(p), **kw)
    np.testing.assert_array_equal(lib.numpy(p1), [-4, 0, -2])
    assert _entries(lib, s1.momentum_buffer) == ([2, 0], [2.0, 4.0])
    p2, s2 = F.sgd(p1, _grad(lib, [[0]], [8.0], (3,), "float64"), s1, **kw)
    # buf = 0.5 * buf + g: the merge takes g's row 0 first (2 > 0), then buf's entries
    assert _entries(lib, s2.momentum_buffer) == ([0, 2, 0], [8.0, 1.0, 2.0])
    np.testing.assert_array_equal(lib.numpy(p2), [-14, 0, -3])
    assert _entries(lib, s1.momentum_buffer) == ([2, 0], [2.0, 4.0])  # state untouched


def test_nesterov_and_maximize_by_hand(lib):
    p = lib.asarray([1.0, 1.0], "float64")
    grad = _grad(lib, [[1]], [2.0], (2,), "float64")
    new, state = F.sgd(p, grad, F.sgd_init(p), lr=0.25, momentum=0.5, nesterov=True,
                       maximize=True)
    # g = -2; buf = g; g + 0.5 * buf merges into one entry -3 on row 1; p + 0.25 * 3
    np.testing.assert_array_equal(lib.numpy(new), [1.0, 1.75])
    np.testing.assert_array_equal(_dense(lib, state.momentum_buffer), [0.0, -2.0])


def test_a_0d_parameter_takes_a_gradient_without_sparse_dimensions(lib):
    p = lib.asarray(1.0, "float64")
    grad = _grad(lib, np.zeros((0, 2)), [2.0, -0.5], (), "float64")
    new, state = F.sgd(p, grad, F.sgd_init(p), lr=0.5, momentum=0.9)
    # 1 - 0.5 * 2, then + 0.5 * 0.5
    assert tuple(new.shape) == () and float(lib.numpy(new)) == 0.25
    buf = state.momentum_buffer  # a copy of the gradient, entries kept apart
    values = lib.numpy(buf.values) if isinstance(buf, SparseGrad) else buf._values().numpy()
    assert values.tolist() == [2.0, -0.5]


def test_the_kernel_raises_torchs_errors(lib):
    p = lib.asarray([1.0, 1.0], "float64")
    grad = _grad(lib, [[1]], [2.0], (2,), "float64")
    with pytest.raises(RuntimeError, match=r"add\(sparse, dense\) is not supported"):
        F.sgd(p, grad, F.sgd_init(p), lr=0.1, weight_decay=0.1)
    dense_buf = F.SGDState(lib.asarray([1.0, 1.0], "float64"))
    with pytest.raises(RuntimeError, match=r"add\(sparse, dense\) is not supported"):
        F.sgd(p, grad, dense_buf, lr=0.1, momentum=0.5, nesterov=True)
    sparse_buf = F.SGDState(grad)
    with pytest.raises(RuntimeError, match=r"add\(sparse, dense\) is not supported"):
        F.sgd(p, lib.asarray([1.0, 1.0], "float64"), sparse_buf, lr=0.1, momentum=0.5)


# -- the class, next to torch.optim ---------------------------------------------------------

class Impl:
    """torch.optim, portopt on NumPy, or portopt on torch tensors."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.torch = None if name == "portopt[numpy]" else pytest.importorskip("torch")
        self.optim = self.torch.optim if name == "torch.optim" else portopt.optim

    def param(self, values):
        a = np.array(values, dtype="float64")
        return portopt.Parameter(a) if self.torch is None else self.torch.from_numpy(a)

    def sparse(self, indices, values, shape):
        indices, values = np.array(indices), np.array(values, dtype="float64")
        if self.torch is None:
            return SparseGrad(indices, values, shape)
        return self.torch.sparse_coo_tensor(self.torch.from_numpy(indices),
                                            self.torch.from_numpy(values), shape,
                                            check_invariants=True)

    def dense(self, values):
        a = np.array(values, dtype="float64")
        return a if self.torch is None else self.torch.from_numpy(a)

    def value(self, x):
        x = x.data if isinstance(x, portopt.Parameter) else x
        if isinstance(x, SparseGrad):
            out = np.zeros(x.shape)
            np.add.at(out, tuple(x.indices), x.values)
            return out
        if getattr(x, "is_sparse", False):
            x = x.to_dense()
        return x.detach().numpy().copy() if hasattr(x, "detach") else np.array(x)


@pytest.fixture(params=["torch.optim", "portopt[numpy]", "portopt[torch]"])
def impl(request) -> Impl:
    return Impl(request.param)


def test_sgd_accepts_sparse_gradients(impl):
    p = impl.param([0.0, 0.0, 0.0])
    opt = impl.optim.SGD([p], lr=1.0, momentum=0.5)
    p.grad = impl.sparse([[2, 0]], [2.0, 4.0], (3,))
    opt.step()
    p.grad = impl.sparse([[0]], [8.0], (3,))
    opt.step()
    np.testing.assert_array_equal(impl.value(p), [-14, 0, -3])
    buf = opt.state[p]["momentum_buffer"]
    assert isinstance(buf, SparseGrad) or buf.is_sparse
    np.testing.assert_array_equal(impl.value(buf), [10, 0, 1])


def test_a_dense_buffer_stays_dense_under_sparse_gradients(impl):
    p = impl.param([0.0, 0.0])
    opt = impl.optim.SGD([p], lr=1.0, momentum=0.5)
    p.grad = impl.dense([2.0, 2.0])
    opt.step()
    p.grad = impl.sparse([[1]], [4.0], (2,))
    opt.step()
    buf = opt.state[p]["momentum_buffer"]
    assert not isinstance(buf, SparseGrad) and not getattr(buf, "is_sparse", False)
    np.testing.assert_array_equal(impl.value(buf), [1.0, 5.0])
    np.testing.assert_array_equal(impl.value(p), [-3.0, -7.0])


@pytest.mark.parametrize("kwargs", [{"weight_decay": 0.1},
                                    {"weight_decay": 0.1, "maximize": True}])
def test_weight_decay_with_a_sparse_gradient_raises(impl, kwargs):
    p = impl.param([1.0, 1.0])
    opt = impl.optim.SGD([p], lr=0.1, **kwargs)
    p.grad = impl.sparse([[1]], [2.0], (2,))
    raises(RuntimeError, SPARSE_PLUS_DENSE, opt.step)
    np.testing.assert_array_equal(impl.value(p), [1.0, 1.0])


def test_a_sparse_buffer_meeting_a_dense_gradient_raises(impl):
    p = impl.param([1.0, 1.0])
    opt = impl.optim.SGD([p], lr=0.5, momentum=0.5)
    p.grad = impl.sparse([[1]], [2.0], (2,))
    opt.step()
    p.grad = impl.dense([1.0, 1.0])
    raises(RuntimeError, SPARSE_PLUS_DENSE, opt.step)
    np.testing.assert_array_equal(impl.value(p), [1.0, 0.0])
    if impl.name != "torch.optim":  # portopt checks first: the buffer is as it was
        np.testing.assert_array_equal(impl.value(opt.state[p]["momentum_buffer"]), [0, 2])


def test_nesterov_with_a_dense_buffer_and_a_sparse_gradient_raises(impl):
    p = impl.param([1.0, 1.0])
    opt = impl.optim.SGD([p], lr=0.5, momentum=0.5, nesterov=True)
    p.grad = impl.dense([1.0, 1.0])
    opt.step()
    p.grad = impl.sparse([[1]], [2.0], (2,))
    raises(RuntimeError, SPARSE_PLUS_DENSE, opt.step)


def test_fused_with_a_sparse_gradient_raises(impl):
    p = impl.param([1.0, 1.0])
    opt = impl.optim.SGD([p], lr=0.5, fused=True)
    p.grad = impl.sparse([[1]], [2.0], (2,))
    raises(RuntimeError, "`_fused_sgd` does not support sparse gradients", opt.step)


def test_sparse_buffers_survive_state_dict_round_trips(impl):
    p = impl.param([0.0, 0.0, 0.0])
    opt = impl.optim.SGD([p], lr=1.0, momentum=0.5)
    p.grad = impl.sparse([[2, 0]], [2.0, 4.0], (3,))
    opt.step()
    q = impl.param(impl.value(p))
    fresh = impl.optim.SGD([q], lr=1.0, momentum=0.5)
    fresh.load_state_dict(copy.deepcopy(opt.state_dict()))
    for o, x in ((opt, p), (fresh, q)):
        x.grad = impl.sparse([[0]], [8.0], (3,))
        o.step()
    np.testing.assert_array_equal(impl.value(q), impl.value(p))
    np.testing.assert_array_equal(impl.value(fresh.state[q]["momentum_buffer"]), [10, 0, 1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_loads_torchs_sparse_buffer_and_keeps_its_trajectory(torch, dtype):
    rng = np.random.default_rng(3)
    start = rng.standard_normal((5, 2)).astype(dtype)
    tp = torch.from_numpy(start.copy())
    pp = portopt.Parameter(start.copy())
    topt = torch.optim.SGD([tp], lr=0.1, momentum=0.9, dampening=0.2)
    popt = None
    for step in range(5):
        rows = rng.integers(0, 5, size=4)
        values = rng.standard_normal((4, 2)).astype(dtype)
        tp.grad = torch.sparse_coo_tensor(torch.from_numpy(rows[None]), torch.from_numpy(values),
                                          (5, 2), check_invariants=True)
        topt.step()
        if step == 1:  # from here on portopt continues from torch's state
            pp.data[...] = tp.detach().numpy()
            popt = portopt.optim.SGD([pp], lr=0.1, momentum=0.9, dampening=0.2)
            popt.load_state_dict(topt.state_dict())
            assert isinstance(popt.state[pp]["momentum_buffer"], SparseGrad)
        elif popt is not None:
            pp.grad = SparseGrad(rows[None], values, (5, 2))
            popt.step()
            buf_t = topt.state[tp]["momentum_buffer"]
            buf_p = popt.state[pp]["momentum_buffer"]
            np.testing.assert_array_equal(buf_p.indices, buf_t._indices().numpy())
            # float32 bit for bit (fused rounding reproduced); float64 rounds twice
            check = (np.testing.assert_array_equal if dtype == "float32" else
                     lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-14, atol=0))
            check(pp.data, tp.detach().numpy())
            check(buf_p.values, buf_t._values().numpy())
