"""Adagrad: the kernel on every backend, and the class against torch.optim.Adagrad.

Hand-derived steps use gradients whose squares have exact square roots (2 and 4), so the
first step is exact; later steps are checked against the formula in float64.
"""

from __future__ import annotations

import copy
import inspect
import multiprocessing
import pickle
import sys

import numpy as np
import pytest
from helpers import check_result, raises

import portopt
from portopt import SparseGrad
from portopt.optim.adagrad import Adagrad, AdagradState, adagrad, adagrad_init

DTYPES = ["float32", "float64"]
SPARSE_WD = "weight_decay option is not compatible with sparse gradients"


def _grad(lib, indices, values, shape, dtype):
    """A sparse COO gradient in the backend's own form."""
    indices, values = lib.asarray(indices, "int64"), lib.asarray(values, dtype)
    if lib.name.startswith("torch"):
        return lib.mod.sparse_coo_tensor(indices, values, shape, check_invariants=True)
    return SparseGrad(indices, values, shape)


# -- the kernel -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_first_step_by_hand(lib, dtype):
    p, g = lib.asarray([1.0, 1.0], dtype), lib.asarray([2.0, -4.0], dtype)
    state = adagrad_init(p)
    new, st = adagrad(p, g, state, lr=0.25, eps=0.0)
    # sum = [4, 16], sqrt = [2, 4], g / sqrt = [1, -1]
    check_result(new, p)
    check_result(st.sum, p)
    np.testing.assert_array_equal(lib.numpy(new), [0.75, 1.25])
    np.testing.assert_array_equal(lib.numpy(st.sum), [4.0, 16.0])
    assert st.step == 1
    np.testing.assert_array_equal(lib.numpy(p), [1.0, 1.0])  # inputs untouched
    np.testing.assert_array_equal(lib.numpy(state.sum), [0.0, 0.0])
    assert state.step == 0


def test_second_step_decays_the_rate(lib):
    p, g = lib.asarray([1.0, -3.0], "float64"), lib.asarray([3.0, 1.0], "float64")
    kw = {"lr": 0.5, "lr_decay": 0.25, "eps": 1e-3, "weight_decay": 0.1}
    p1, s1 = adagrad(p, g, adagrad_init(p, initial_accumulator_value=0.5), **kw)
    p2, s2 = adagrad(p1, g, s1, **kw)
    x, s = np.array([1.0, -3.0]), np.full(2, 0.5)
    for t in (1, 2):
        d = np.array([3.0, 1.0]) + 0.1 * x
        s = s + d * d
        x = x - 0.5 / (1 + (t - 1) * 0.25) * d / (np.sqrt(s) + 1e-3)
    np.testing.assert_allclose(lib.numpy(p2), x, rtol=1e-15)
    np.testing.assert_allclose(lib.numpy(s2.sum), s, rtol=1e-15)
    assert s2.step == 2


def test_maximize_and_array_lr(lib):
    p, g = lib.asarray([1.0, 1.0], "float32"), lib.asarray([2.0, -4.0], "float32")
    lr = lib.asarray(0.25, "float32")
    new, _ = adagrad(p, g, adagrad_init(p), lr=lr, eps=0.0, maximize=True)
    np.testing.assert_array_equal(lib.numpy(new), [1.25, 0.75])


@pytest.mark.parametrize("shape", [(), (1, 0, 2)])
def test_0d_and_empty_parameters(lib, shape):
    p = lib.asarray(np.full(shape, 1.0), "float32")
    g = lib.asarray(np.full(shape, 2.0), "float32")
    new, st = adagrad(p, g, adagrad_init(p), lr=0.25, eps=0.0)
    check_result(new, p)
    check_result(st.sum, p)
    if shape == ():
        assert float(lib.numpy(new)) == 0.75 and float(lib.numpy(st.sum)) == 4.0


def test_complex_parameters_step_as_real_pairs(lib):
    p = lib.asarray([1.0 + 1.0j], "complex128")
    state = adagrad_init(p, initial_accumulator_value=0.0)
    new, st = adagrad(p, lib.asarray([2.0 - 4.0j], "complex128"), state, lr=0.25, eps=0.0)
    # sum holds re^2 and im^2 apart: (4, 16); each part divided by its own root
    np.testing.assert_array_equal(lib.numpy(st.sum), [4.0 + 16.0j])
    np.testing.assert_array_equal(lib.numpy(new), [0.75 + 1.25j])
    check_result(new, p)


def test_complex_accumulator_starts_at_v_plus_vj(lib):
    p = lib.asarray([0.0j, 0.0j], "complex128")
    np.testing.assert_array_equal(lib.numpy(adagrad_init(p, initial_accumulator_value=0.5).sum),
                                  [0.5 + 0.5j, 0.5 + 0.5j])


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_gradient_touches_only_its_rows(lib, dtype):
    p = lib.asarray(np.ones((3, 2)), dtype)
    # row 2 twice: coalesced to [2, -4]; row 0: [2, 4]; row 1 not stored
    grad = _grad(lib, [[2, 0, 2]], [[0.5, -3.0], [2.0, 4.0], [1.5, -1.0]], (3, 2), dtype)
    state = adagrad_init(p, initial_accumulator_value=0.0)
    new, st = adagrad(p, grad, state, lr=0.25, eps=0.0)
    check_result(new, p)
    check_result(st.sum, p)
    np.testing.assert_array_equal(lib.numpy(st.sum), [[4, 16], [0, 0], [4, 16]])
    np.testing.assert_array_equal(lib.numpy(new), [[0.75, 0.75], [1, 1], [0.75, 1.25]])
    np.testing.assert_array_equal(lib.numpy(state.sum), np.zeros((3, 2)))
    np.testing.assert_array_equal(lib.numpy(p), np.ones((3, 2)))


def test_sparse_maximize_with_an_initial_accumulator(lib):
    p = lib.asarray([1.0, 1.0, 1.0], "float64")
    grad = _grad(lib, [[1]], [3.0], (3,), "float64")
    new, st = adagrad(p, grad, adagrad_init(p, initial_accumulator_value=16.0), lr=0.5,
                      eps=0.0, maximize=True)
    # sum = 16 + 9 = 25, root 5: 1 + 0.5 * 3 / 5
    np.testing.assert_array_equal(lib.numpy(st.sum), [16, 25, 16])
    np.testing.assert_allclose(lib.numpy(new), [1.0, 1.3, 1.0], rtol=1e-15)


def test_a_0d_parameter_takes_a_gradient_without_sparse_dimensions(lib):
    p = lib.asarray(1.0, "float64")
    grad = _grad(lib, np.zeros((0, 2)), [2.0, -0.5], (), "float64")
    new, st = adagrad(p, grad, adagrad_init(p), lr=0.5, eps=0.0)
    # the values sum to 1.5: sum = 2.25, root 1.5, so 1 - 0.5 * 1.5 / 1.5
    check_result(new, p)
    assert float(lib.numpy(new)) == 0.5 and float(lib.numpy(st.sum)) == 2.25


def test_the_kernel_refuses_weight_decay_with_a_sparse_gradient(lib):
    p = lib.asarray([1.0, 1.0], "float64")
    with pytest.raises(RuntimeError, match=SPARSE_WD):
        adagrad(p, _grad(lib, [[1]], [3.0], (2,), "float64"), adagrad_init(p), lr=0.1,
                weight_decay=0.1)


# -- the class, next to torch.optim ---------------------------------------------------------

class Impl:
    """torch.optim, portopt on NumPy, or portopt on torch tensors."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.torch = None if name == "portopt[numpy]" else pytest.importorskip("torch")
        self.optim = self.torch.optim if name == "torch.optim" else portopt.optim

    def param(self, values, dtype="float64"):
        a = np.array(values, dtype=dtype)
        return portopt.Parameter(a) if self.torch is None else self.torch.from_numpy(a)

    def array(self, values, dtype="float64"):
        a = np.array(values, dtype=dtype)
        return a if self.torch is None else self.torch.from_numpy(a)

    def sparse(self, indices, values, shape):
        indices, values = np.array(indices), np.array(values, dtype="float64")
        if self.torch is None:
            return SparseGrad(indices, values, shape)
        return self.torch.sparse_coo_tensor(self.torch.from_numpy(indices),
                                            self.torch.from_numpy(values), shape,
                                            check_invariants=True)

    def value(self, x):
        x = x.data if isinstance(x, portopt.Parameter) else x
        return x.detach().numpy().copy() if hasattr(x, "detach") else np.array(x)


@pytest.fixture(params=["torch.optim", "portopt[numpy]", "portopt[torch]"])
def impl(request) -> Impl:
    return Impl(request.param)


def test_signature_is_torchs(torch):
    ours = inspect.signature(Adagrad.__init__).parameters
    theirs = inspect.signature(torch.optim.Adagrad.__init__).parameters
    assert [(n, p.kind, p.default) for n, p in ours.items()] == \
        [(n, p.kind, p.default) for n, p in theirs.items()]


def test_array_lr_must_have_one_element(impl):
    raises(ValueError, "Tensor lr must be 1-element", impl.optim.Adagrad,
            [impl.param([1.0])], lr=impl.array([0.1, 0.2]))


def test_fused_fails_at_step_where_no_kernel_exists():
    p = portopt.Parameter(np.ones(2))
    opt = portopt.optim.Adagrad([p], fused=True)
    p.grad = np.ones(2)
    with pytest.raises(RuntimeError, match="requires a fused Adagrad kernel"):
        opt.step()
    np.testing.assert_array_equal(p.data, [1.0, 1.0])


def test_fused_with_a_sparse_gradient(impl):
    p = impl.param([1.0, 1.0])
    opt = impl.optim.Adagrad([p], fused=True)
    p.grad = impl.sparse([[1]], [2.0], (2,))
    raises(RuntimeError, "`fused` does not support sparse grad or complex param", opt.step)


def test_weight_decay_with_a_sparse_gradient(impl):
    p, q = impl.param([1.0, 1.0]), impl.param([1.0, 1.0])
    opt = impl.optim.Adagrad([q, p], weight_decay=0.1)
    q.grad = impl.array([1.0, 1.0])
    p.grad = impl.sparse([[1]], [2.0], (2,))
    raises(RuntimeError, SPARSE_WD, opt.step)
    np.testing.assert_array_equal(impl.value(p), [1.0, 1.0])
    if impl.name != "torch.optim":  # portopt checks first: nothing moved
        np.testing.assert_array_equal(impl.value(q), [1.0, 1.0])
        assert float(opt.state[q]["step"]) == 0


def test_state_is_created_in_the_constructor(impl):
    p, q = impl.param([1.0, 2.0]), impl.param([3.0])
    # a group's own initial_accumulator_value is ignored: the argument fills every sum
    opt = impl.optim.Adagrad([{"params": [p]}, {"params": [q], "initial_accumulator_value": 5.0}],
                             initial_accumulator_value=0.25)
    for x in (p, q):  # no step yet, no grad: state exists anyway
        assert set(opt.state[x]) == {"step", "sum"}
        np.testing.assert_array_equal(impl.value(opt.state[x]["sum"]),
                                      np.full(impl.value(x).shape, 0.25))
        assert float(opt.state[x]["step"]) == 0
        assert str(opt.state[x]["step"].dtype).endswith("float32")
        assert tuple(opt.state[x]["step"].shape) == ()
    assert sorted(opt.state_dict()["state"]) == [0, 1]


def test_complex_state_in_the_constructor(impl):
    p = impl.param([1.0 + 2.0j], "complex128")
    opt = impl.optim.Adagrad([p], initial_accumulator_value=0.5)
    np.testing.assert_array_equal(impl.value(opt.state[p]["sum"]), [0.5 + 0.5j])


def test_groups_added_later_start_from_the_default_accumulator(impl):
    p, r = impl.param([1.0]), impl.param([1.0, 1.0])
    opt = impl.optim.Adagrad([p], lr=0.5, initial_accumulator_value=0.75)
    opt.add_param_group({"params": [r], "initial_accumulator_value": 7.0})
    assert r not in opt.state  # lazily created, at its first step
    r.grad = impl.array([0.5, 0.5])
    opt.step()
    # the group's own 7.0 is ignored: 0.75 + 0.25 = 1, so r moves by 0.5 * 0.5 / 1
    np.testing.assert_array_equal(impl.value(opt.state[r]["sum"]), [1.0, 1.0])
    np.testing.assert_allclose(impl.value(r), [0.75, 0.75], rtol=1e-9)
    assert opt.param_groups[1]["initial_accumulator_value"] == 7.0


@pytest.mark.filterwarnings("ignore:Sparse invariant checks")  # torch.optim builds its own
def test_sparse_steps_match_torch(torch):
    rng = np.random.default_rng(5)
    start = rng.standard_normal((6, 3)).astype("float32")
    tp, pp = torch.from_numpy(start.copy()), portopt.Parameter(start.copy())
    kw = {"lr": 0.1, "lr_decay": 0.05, "initial_accumulator_value": 0.2, "maximize": True}
    topt, popt = torch.optim.Adagrad([tp], **kw), portopt.optim.Adagrad([pp], **kw)
    for _ in range(4):
        rows = rng.integers(0, 6, size=5)
        values = rng.standard_normal((5, 3)).astype("float32")
        tp.grad = torch.sparse_coo_tensor(torch.from_numpy(rows[None]),
                                          torch.from_numpy(values), (6, 3),
                                          check_invariants=True)
        pp.grad = SparseGrad(rows[None], values, (6, 3))
        topt.step()
        popt.step()
    # torch's float32 CPU sqrt is off by an ULP on some elements: a few ULP, not bits
    np.testing.assert_allclose(pp.data, tp.numpy(), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(popt.state[pp]["sum"], topt.state[tp]["sum"].numpy(),
                               rtol=2e-6)


def test_state_dict_round_trips_through_torch(torch):
    from portopt.checkpoint import to_torch

    kw = {"lr": 0.1, "lr_decay": 0.1}
    p = portopt.Parameter(np.array([1.0, -2.0]))
    t = torch.tensor([1.0, -2.0], dtype=torch.float64)
    opt, topt = portopt.optim.Adagrad([p], **kw), torch.optim.Adagrad([t], **kw)
    p.grad, t.grad = np.array([0.5, 1.5]), torch.tensor([0.5, 1.5], dtype=torch.float64)
    opt.step()
    topt.step()
    q = portopt.Parameter(p.data.copy())
    fresh = portopt.optim.Adagrad([q], **kw)
    fresh.load_state_dict(topt.state_dict())  # torch -> portopt
    assert fresh.state[q]["step"].dtype == np.float32 and float(fresh.state[q]["step"]) == 1
    u = t.detach().clone()
    back = torch.optim.Adagrad([u], **kw)
    back.load_state_dict(to_torch(opt.state_dict()))  # portopt -> torch
    for x in (p, q):
        x.grad = np.array([1.0, -1.0])
    for x in (t, u):
        x.grad = torch.tensor([1.0, -1.0], dtype=torch.float64)
    for o in (opt, fresh, topt, back):
        o.step()
    for x in (p.data, q.data, u.numpy()):
        np.testing.assert_allclose(x, t.numpy(), rtol=1e-15)


def test_pickling_and_copying_keep_the_state():
    p = portopt.Parameter(np.array([1.0, 2.0]))
    opt = portopt.optim.Adagrad([p], initial_accumulator_value=0.5)
    opt.share_memory()  # a shared accumulator pickles as its values
    for clone in (pickle.loads(pickle.dumps(opt)), copy.deepcopy(opt)):
        (q,) = clone.param_groups[0]["params"]
        np.testing.assert_array_equal(clone.state[q]["sum"], [0.5, 0.5])
        q.grad = np.ones(2)
        clone.step()


# -- share_memory ----------------------------------------------------------------------------

def test_share_memory_moves_torch_sums(impl):
    if impl.torch is None:
        pytest.skip("torch tensors only")
    p = impl.param([1.0, 2.0])
    opt = impl.optim.Adagrad([p], lr=0.5)
    opt.share_memory()
    total = opt.state[p]["sum"]
    assert total.is_shared()
    p.grad = impl.array([1.0, 1.0])
    opt.step()
    assert opt.state[p]["sum"] is total and total.is_shared()  # updated in place
    np.testing.assert_array_equal(impl.value(total), [1.0, 1.0])


def test_share_memory_raises_for_a_group_not_stepped_yet(impl):
    p, r = impl.param([1.0]), impl.param([2.0])
    opt = impl.optim.Adagrad([p])
    opt.add_param_group({"params": [r]})
    with pytest.raises(KeyError, match="sum"):
        opt.share_memory()


def _child_step(opt):
    (p,) = opt.param_groups[0]["params"]
    p.grad = np.array([3.0, 4.0])
    opt.step()


@pytest.mark.skipif(sys.platform != "linux", reason="forks a process")
def test_share_memory_numpy_sums_are_seen_by_a_forked_process():
    p = portopt.Parameter(np.array([1.0, 1.0]))
    opt = portopt.optim.Adagrad([p], initial_accumulator_value=1.0)
    opt.share_memory()
    total = opt.state[p]["sum"]
    child = multiprocessing.get_context("fork").Process(target=_child_step, args=(opt,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    # the child's step wrote 1 + g^2 into the shared accumulator; the parent's own
    # parameter did not move (it is not shared)
    np.testing.assert_array_equal(total, [10.0, 17.0])
    assert opt.state[p]["sum"] is total
    np.testing.assert_array_equal(p.data, [1.0, 1.0])


def test_share_memory_refuses_arrays_without_shared_host_memory():
    xp = pytest.importorskip("array_api_strict")
    p = portopt.Parameter(xp.asarray([1.0, 2.0]))
    opt = portopt.optim.Adagrad([p])
    with pytest.raises(RuntimeError, match="array_api_strict arrays cannot be moved there"):
        opt.share_memory()


def test_state_type_fields_are_torchs_keys():
    assert AdagradState._fields == ("step", "sum")
