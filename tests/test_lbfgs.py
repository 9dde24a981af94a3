"""LBFGS: the kernel by hand on every backend, and the optimizer against torch.optim.LBFGS.

The comparisons run torch.optim (the oracle), portopt on torch tensors and portopt on NumPy
arrays over the same objective, written once in NumPy, and count closure evaluations. On
torch tensors portopt sums exactly as torch does, so its trajectory is bit-identical; NumPy
sums dot products in another order, so its trajectory is compared with a tolerance.
"""

from __future__ import annotations

import copy
from functools import partial

import array_api_compat
import numpy as np
import pytest
from array_api_compat import array_namespace

import portopt
import portopt.optim as popt
from portopt.checkpoint import to_torch
from portopt.optim.lbfgs import LBFGSState, lbfgs, lbfgs_init

# -- objectives, in NumPy on the real components (float64) ---------------------------------

C = np.array([0.5, -2.0, 1.0, 0.25, -0.75])
A = np.array([1.0, 2.0, 3.0, 4.0, 1.5])


def bumpy(x):
    """A quadratic with cosine bumps (the conformance suite's kind of objective)."""
    c = C[: x.size]
    return float(np.sum((x - c) ** 2 + 0.1 * np.cos(3 * x))), 2 * (x - c) - 0.3 * np.sin(3 * x)


def rosenbrock(x):
    a, b = x[:-1], x[1:]
    loss = float(np.sum((1 - a) ** 2 + 100 * (b - a * a) ** 2))
    g = np.zeros_like(x)
    g[:-1] += -2 * (1 - a) - 400 * a * (b - a * a)
    g[1:] += 200 * (b - a * a)
    return loss, g


def wiggly(x, freq=7.0, amp=2.0):
    return float(np.sum(amp * np.sin(freq * x) + 0.5 * x * x)), amp * freq * np.cos(freq * x) + x


def kink(x):
    return float(np.sum(np.abs(x) + 0.01 * x * x)), np.sign(x) + 0.02 * x


# -- three implementations of the same optimizer ------------------------------------------

KINDS = ["torch.optim", "portopt[torch]", "portopt[numpy]"]


class Side:
    """One optimizer over parameters holding ``values``, with a counting closure."""

    def __init__(self, kind, values, **kwargs):
        self.kind = kind
        if kind == "portopt[numpy]":
            self.params = [portopt.Parameter(np.array(v, copy=True)) for v in values]
        else:
            self.torch = pytest.importorskip("torch")
            self.params = [self.torch.tensor(np.array(v, copy=True)) for v in values]
        cls = self.torch.optim.LBFGS if kind == "torch.optim" else popt.LBFGS
        self.opt = cls(self.params, **kwargs)
        self.evals = 0

    def arrays(self):
        return [np.array(p.data if isinstance(p, portopt.Parameter) else p.detach().numpy(),
                         copy=True) for p in self.params]

    def closure(self, f, skip=()):
        def closure():
            self.evals += 1
            arrays = self.arrays()
            flat = np.concatenate([_real(a).ravel() for a in arrays])
            loss, g = f(flat)
            offset = 0
            for i, (p, a) in enumerate(zip(self.params, arrays)):
                n = _real(a).size
                grad = g[offset:offset + n].reshape(_real(a).shape)
                offset += n
                if np.iscomplexobj(a):
                    grad = grad[..., 0] + 1j * grad[..., 1]
                grad = np.asarray(grad, dtype=a.dtype)
                if i in skip:
                    p.grad = None
                elif isinstance(p, portopt.Parameter):
                    p.grad = grad
                else:
                    p.grad = self.torch.from_numpy(grad)
            return loss
        return closure

    def step(self, f, **kw):
        return self.opt.step(self.closure(f, **kw))

    @property
    def state(self):
        return self.opt.state[self.params[0]]


def _real(a):
    return np.stack([a.real, a.imag], axis=-1) if np.iscomplexobj(a) else a


def _kind(v):
    """How a state value is represented: an int, a float, an array or a list of kinds."""
    if isinstance(v, list):
        return [_kind(x) for x in v]
    if v is None or type(v) in (bool, int, float):
        return type(v).__name__
    assert array_api_compat.is_array_api_obj(v), type(v)  # NumPy scalars count as arrays
    return "array"


def _assert_same(a, b):
    if isinstance(b, list):
        assert isinstance(a, list) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif array_api_compat.is_array_api_obj(b):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert a.dtype == b.dtype
    else:
        assert a == b and type(a) is type(b)


def _run_all(values, problem, steps, **kwargs):
    sides = [Side(kind, values, **kwargs) for kind in KINDS]
    for _ in range(steps):
        losses = [side.step(problem) for side in sides]
        assert losses[1] == losses[0]
        np.testing.assert_allclose(losses[2], losses[0], rtol=1e-9)
    return sides


def _check_against_torch(sides, rtol=1e-9):
    ref, on_torch, on_numpy = sides
    for side in (on_torch, on_numpy):
        assert side.evals == ref.evals
        assert side.state["func_evals"] == ref.state["func_evals"] == ref.evals
        assert side.state["n_iter"] == ref.state["n_iter"]
        assert set(side.state) == set(ref.state)
        assert {k: _kind(v) for k, v in side.state.items()} == \
            {k: _kind(v) for k, v in ref.state.items()}
    # on torch tensors portopt reduces with torch's own ops: bit-identical, state included
    for a, b in zip(on_torch.arrays(), ref.arrays()):
        np.testing.assert_array_equal(a, b)
    for key, value in ref.state.items():
        _assert_same(on_torch.state[key], value)
    for a, b in zip(on_numpy.arrays(), ref.arrays()):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


# -- the kernel, by hand, on every backend --------------------------------------------------

def _half_square(lib):
    """f(x) = x.x / 2, whose gradient is x (a new array each call)."""
    def objective(x):
        return 0.5 * float(lib.xp.sum(x * x)), x * 1.0
    return objective


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernel_two_iterations_by_hand(lib, dtype):
    x0 = lib.asarray([2.0, -2.0], dtype)
    x, loss, st = lbfgs(x0, _half_square(lib), lbfgs_init(), max_iter=2, max_eval=5,
                        history_size=3)
    # iteration 1: d = -g = -x0, t = min(1, 1/|g|_1) = 1/4, x1 = x0 - x0/4 = (1.5, -1.5)
    # iteration 2: y = g1 - g0 = (-0.5, 0.5) = s = t d, ys = 0.5, rho = 2, H_diag = 1;
    #   q = -g1, al = rho s.q = 3, q - al y = 0, so d = al s = -g1 and x2 = x1 + d = 0
    assert type(x) is type(x0) and x.dtype == x0.dtype and tuple(x.shape) == (2,)
    np.testing.assert_array_equal(lib.numpy(x), [0.0, 0.0])
    np.testing.assert_array_equal(lib.numpy(x0), [2.0, -2.0])  # input untouched
    assert loss == 4.0  # the loss at the start
    assert (st.func_evals, st.n_iter, st.t, st.prev_loss) == (2, 2, 1, 2.25)
    np.testing.assert_array_equal(lib.numpy(st.d), [-1.5, 1.5])
    np.testing.assert_array_equal(lib.numpy(st.prev_flat_grad), [1.5, -1.5])
    np.testing.assert_array_equal(lib.numpy(st.old_dirs[0]), [-0.5, 0.5])
    np.testing.assert_array_equal(lib.numpy(st.old_stps[0]), [-0.5, 0.5])
    assert float(st.ro[0]) == 2.0 and float(st.H_diag) == 1.0 and float(st.al[0]) == 3.0
    assert st.al[1:] == [None, None]
    for v in (st.d, st.prev_flat_grad, st.old_dirs[0], st.ro[0], st.H_diag, st.al[0]):
        assert lib.xp is array_namespace(v) and v.dtype == x0.dtype


def test_kernel_does_not_change_the_callers_state(lib):
    x0 = lib.asarray([2.0, -2.0, 1.0], "float64")
    kw = {"max_iter": 3, "max_eval": 9, "history_size": 1}
    x1, _, st = lbfgs(x0, _half_square(lib), lbfgs_init(), **kw)
    saved = {k: (list(v) if isinstance(v, list) else v) for k, v in st._asdict().items()}
    shifted = lib.asarray([0.5, 0.5, 0.5], "float64")

    def objective(x):  # another function, so that the history moves on
        return 0.5 * float(lib.xp.sum((x - shifted) ** 2)), x - shifted

    _, _, new = lbfgs(x1, objective, st, **kw)
    assert new.n_iter > st.n_iter and new.old_dirs[0] is not st.old_dirs[0]  # FIFO moved
    for key, value in saved.items():
        now = getattr(st, key)
        if isinstance(value, list):
            assert len(now) == len(value) and all(a is b for a, b in zip(now, value))
        else:
            assert now is value


def test_kernel_stops_at_once_when_the_gradient_is_small(lib):
    x0 = lib.asarray([1e-9, -1e-9], "float64")
    x, loss, st = lbfgs(x0, _half_square(lib), lbfgs_init())
    assert x is x0 and st == LBFGSState(func_evals=1, n_iter=0)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lands_on_the_minimum_of_a_quadratic(lib, line_search_fn):
    xp = lib.xp
    params = [lib.param([3.0, -1.0], "float64"), lib.param(2.0, "float64"),
              lib.param([[0.5, 4.0]], "float64")]
    opt = popt.LBFGS(params, max_iter=50, tolerance_grad=1e-12, tolerance_change=1e-30,
                     line_search_fn=line_search_fn)
    a = [lib.asarray(A[0:2]), lib.asarray(A[2]), lib.asarray(A[3:5].reshape(1, 2))]
    c = [lib.asarray(C[0:2]), lib.asarray(C[2]), lib.asarray(C[3:5].reshape(1, 2))]

    def closure():
        loss = 0.0
        for p, ai, ci in zip(params, a, c):
            x = p.data if isinstance(p, portopt.Parameter) else p
            loss += 0.5 * float(xp.sum(ai * (x - ci) ** 2))
            p.grad = ai * (x - ci)
        return loss

    opt.step(closure)
    got = np.concatenate([lib.numpy(p).ravel() for p in params])
    np.testing.assert_allclose(got, C, rtol=0, atol=1e-9)
    assert [tuple(p.shape) for p in params] == [(2,), (), (1, 2)]


def test_returns_the_first_loss(lib):
    p = lib.param([3.0, -1.0], "float64")
    returned = []

    def closure():
        x = p.data if isinstance(p, portopt.Parameter) else p
        p.grad = x - 1.0
        returned.append(lib.xp.sum((x - 1.0) ** 2) / 2)  # a new 0-d array each time
        return returned[-1]

    loss = popt.LBFGS([p]).step(closure)
    assert len(returned) > 1 and loss is returned[0]


def test_empty_and_zero_dim_parameters(lib):
    params = [lib.param(3.0, "float64"), lib.param(np.zeros((1, 0, 2)), "float64"),
              lib.param([1.0, -1.0], "float64")]
    opt = popt.LBFGS(params)

    def closure():
        for p in params:
            p.grad = (p.data if isinstance(p, portopt.Parameter) else p) * 1.0
        return sum(float(np.sum(lib.numpy(p) ** 2)) for p in params) / 2

    opt.step(closure)
    assert [tuple(p.shape) for p in params] == [(), (1, 0, 2), (2,)]
    np.testing.assert_allclose(np.concatenate([lib.numpy(p).ravel() for p in params]), 0.0,
                               atol=1e-9)


# -- against torch.optim.LBFGS -------------------------------------------------------------

VALUES = [np.array([1.5, -0.5, 2.0]), np.array(0.75)]

KINK_START = [np.array([-0.2642097265826038, 1.2808453008865641])]

# name: (objective, LBFGS arguments, starting values); the line-search cases were picked
# so that every branch of the bracketing and zoom phases runs
STOPPING = {
    "defaults": (bumpy, {}, VALUES),
    "tolerance_grad-at-once": (bumpy, {"tolerance_grad": 1e3}, VALUES),
    "tolerance_grad": (bumpy, {"tolerance_grad": 1e-2}, VALUES),
    "max_iter": (bumpy, {"max_iter": 3}, VALUES),
    "max_iter-1": (bumpy, {"max_iter": 1}, VALUES),
    "max_eval": (bumpy, {"max_eval": 4}, VALUES),
    "tolerance_change-loss": (bumpy, {"lr": 0.1, "tolerance_change": 1e-3}, VALUES),
    "tolerance_change-step": (bumpy, {"lr": 1e-3, "tolerance_change": 1e-2}, VALUES),
    "tolerance_change-gtd": (bumpy, {"tolerance_change": 1e3}, VALUES),
    "history_size": (rosenbrock, {"history_size": 2, "max_iter": 12}, VALUES),
    "lr": (rosenbrock, {"lr": 0.05}, VALUES),
    "strong_wolfe": (rosenbrock, {"line_search_fn": "strong_wolfe"}, VALUES),
    "strong_wolfe-max_eval": (rosenbrock, {"line_search_fn": "strong_wolfe", "max_eval": 3},
                              VALUES),
    "strong_wolfe-extrapolate": (bumpy, {"line_search_fn": "strong_wolfe", "lr": 0.01},
                                 VALUES),
    "strong_wolfe-out-of-evals": (bumpy, {"line_search_fn": "strong_wolfe", "lr": 1e-3,
                                          "max_eval": 3}, VALUES),
    "strong_wolfe-zoom": (wiggly, {"line_search_fn": "strong_wolfe", "lr": 10, "max_iter": 5},
                          VALUES),
    "strong_wolfe-insufficient-progress": (
        partial(wiggly, amp=0.1), {"line_search_fn": "strong_wolfe", "lr": 10, "max_iter": 5},
        [np.array([3.60326973973225, 2.63020752946874])]),
    "strong_wolfe-insufficient-progress-high": (
        wiggly, {"line_search_fn": "strong_wolfe", "lr": 10, "max_iter": 5},
        [np.array([2.0159940068461704, -0.7004766996461876])]),
    "strong_wolfe-narrow-bracket": (kink, {"line_search_fn": "strong_wolfe", "lr": 10,
                                           "max_iter": 10, "max_eval": 500}, KINK_START),
}


@pytest.mark.parametrize("name", STOPPING)
def test_stopping_rules_count_evaluations_as_torch(name):
    problem, kwargs, values = STOPPING[name]
    sides = _run_all(values, problem, 3, **kwargs)
    _check_against_torch(sides)


def test_early_exit_keeps_only_the_counters():
    sides = _run_all(VALUES, bumpy, 1, tolerance_grad=1e3)
    for side in sides:
        assert side.state == {"func_evals": 1, "n_iter": 0} and side.evals == 1


def test_state_is_created_when_torch_creates_it(torch):
    orders = {}
    for kind in KINDS:
        side = Side(kind, VALUES, max_iter=1)
        orders[kind] = [list(side.opt.state)]
        for _ in range(3):
            side.step(bumpy)
            orders[kind].append(list(side.state))  # keys in the order they were created
    assert orders["portopt[torch]"] == orders["portopt[numpy]"] == orders["torch.optim"]
    assert orders["torch.optim"][0] == [] and "al" not in orders["torch.optim"][1]
    assert orders["torch.optim"][2][-1] == "al"  # the two-loop coefficients come later


def test_complex_parameters_step_as_real_pairs():
    values = [np.array([1.0 + 2.0j, -0.5 + 0.25j]), np.array(0.5)]
    sides = _run_all(values, bumpy, 3, history_size=4)
    _check_against_torch(sides)
    assert sides[2].state["d"].dtype == np.float64 and sides[2].state["d"].shape == (5,)


def test_a_missing_gradient_counts_as_zero(torch):
    sides = [Side(kind, VALUES) for kind in KINDS]
    for side in sides:
        for _ in range(2):
            side.opt.step(side.closure(bumpy, skip=(1,)))
    _check_against_torch(sides)
    for side in sides:
        assert side.arrays()[1] == 0.75  # never moved


def test_sparse_gradients_are_densified(torch):
    values = [np.array([[1.0, -1.0], [0.5, 2.0], [0.0, 3.0]])]
    results = []
    for kind in ("torch.optim", "portopt[torch]", "portopt[numpy]"):
        side = Side(kind, values)
        p = side.params[0]
        rows, vals = np.array([[0, 2, 0]]), np.array([[1.0, 2.0], [3.0, 4.0], [0.5, 0.5]])

        def closure(side=side, p=p, rows=rows, vals=vals):
            side.evals += 1
            if isinstance(p, portopt.Parameter):
                p.grad = portopt.SparseGrad(rows, vals, (3, 2))
            else:
                p.grad = torch.sparse_coo_tensor(torch.from_numpy(rows), torch.from_numpy(vals),
                                                 (3, 2), check_invariants=True)
            return 1.0

        side.opt.step(closure)
        results.append((side.arrays()[0], side.state["prev_flat_grad"]))
    dense = np.array([1.5, 2.5, 0.0, 0.0, 3.0, 4.0])
    for arrays, flat in results:
        np.testing.assert_array_equal(np.asarray(flat), dense)
        np.testing.assert_array_equal(arrays, results[0][0])


def test_array_lr_is_kept_as_torch_keeps_it(torch):
    sides = [Side(kind, VALUES, lr=(np.asarray(0.5) if kind == "portopt[numpy]" else
                                    torch.tensor(0.5, dtype=torch.float64)))
             for kind in KINDS]
    for side in sides:
        side.step(bumpy)
    _check_against_torch(sides)
    assert sides[2].state["t"] is sides[2].opt.param_groups[0]["lr"]  # torch's alias too
    assert sides[0].state["t"] is sides[0].opt.param_groups[0]["lr"]


def test_closure_runs_with_autograd_on(torch):
    for kind in KINDS:
        side = Side(kind, VALUES)
        modes = []
        inner = side.closure(bumpy)

        def closure(inner=inner, modes=modes):
            modes.append(torch.is_grad_enabled())
            return inner()

        with torch.no_grad():
            side.opt.step(closure)
        assert modes and all(modes), kind


# -- state_dict ----------------------------------------------------------------------------

def test_state_dict_round_trip_continues_identically():
    a = Side("portopt[numpy]", VALUES, history_size=3, max_iter=4)
    for _ in range(3):
        a.step(bumpy)
    b = Side("portopt[numpy]", a.arrays(), history_size=3, max_iter=4)
    b.opt.load_state_dict(copy.deepcopy(a.opt.state_dict()))
    assert {k: _kind(v) for k, v in b.state.items()} == {k: _kind(v) for k, v in a.state.items()}
    for _ in range(2):
        a.step(bumpy)
        b.step(bumpy)
    for x, y in zip(a.arrays(), b.arrays()):
        np.testing.assert_array_equal(x, y)
    for key, value in a.state.items():
        other = b.state[key]
        if isinstance(value, list):
            assert [None if v is None else float(np.sum(v)) for v in value] == \
                [None if v is None else float(np.sum(v)) for v in other]
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, other)
        else:
            assert value == other


@pytest.mark.parametrize("direction", ["from-torch", "to-torch"])
def test_state_dict_moves_between_torch_and_portopt(torch, direction):
    kwargs = {"history_size": 3, "max_iter": 4}
    ref = Side("torch.optim", VALUES, **kwargs)
    mine = Side("portopt[numpy]", VALUES, **kwargs)
    for _ in range(2):
        ref.step(bumpy)
        mine.step(bumpy)
    if direction == "from-torch":
        fresh = Side("portopt[numpy]", ref.arrays(), **kwargs)
        fresh.opt.load_state_dict(ref.opt.state_dict())
    else:
        fresh = Side("torch.optim", mine.arrays(), **kwargs)
        fresh.opt.load_state_dict(to_torch(mine.opt.state_dict()))
        ref = mine
    assert {k: _kind(v) for k, v in fresh.state.items()} == \
        {k: _kind(v) for k, v in ref.state.items()}
    for _ in range(2):
        ref.step(bumpy)
        fresh.step(bumpy)
    assert fresh.evals - 0 > 0 and fresh.state["n_iter"] == ref.state["n_iter"]
    for x, y in zip(fresh.arrays(), ref.arrays()):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)


# -- errors, as torch raises them ----------------------------------------------------------

def _error(kind, action):
    """The (type, message) that ``action(make, cls)`` raises for ``kind``, where ``make``
    builds a parameter and ``cls`` is the LBFGS class of that implementation."""
    if kind == "portopt[numpy]":
        def make(values):
            return portopt.Parameter(np.array(values, dtype=np.float64))
        cls = popt.LBFGS
    else:
        torch = pytest.importorskip("torch")

        def make(values):
            return torch.tensor(np.array(values, dtype=np.float64))
        cls = torch.optim.LBFGS if kind == "torch.optim" else popt.LBFGS
    with pytest.raises(Exception) as info:
        action(make, cls)
    return type(info.value), str(info.value)


def _data(p):
    return p.data if isinstance(p, portopt.Parameter) else p


def _grad_closure(p, scale=1.0):
    def closure():
        x = _data(p)
        p.grad = x * scale
        return 0.5 * scale * float((x * x).sum())
    return closure


def _step(make, cls, **kwargs):
    p = make([1.0, -2.0])
    cls([p], **kwargs).step(_grad_closure(p))


def _added_group(make, cls):
    p = make([1.0])
    opt = cls([p])
    opt.add_param_group({"params": [make([2.0])]})
    opt.step(_grad_closure(p))


def _two_element_lr(make, cls):
    p = make([1.0])
    cls([p], lr=_data(make([0.1, 0.2])))  # an array (tensor) of p's library


ERRORS = {
    "negative lr": lambda make, cls: cls([make([1.0])], lr=-1),
    "two-element lr": _two_element_lr,
    "two groups": lambda make, cls: cls([{"params": [make([1.0])]},
                                         {"params": [make([2.0])]}]),
    "group added later": _added_group,
    "unknown line search": lambda make, cls: _step(make, cls, line_search_fn="foo"),
    "no closure": lambda make, cls: cls([make([1.0])]).step(),
    "None closure": lambda make, cls: cls([make([1.0])]).step(None),
    "history_size=0": lambda make, cls: _step(make, cls, history_size=0),
    "max_eval=0 with strong_wolfe": lambda make, cls: _step(make, cls, max_eval=0,
                                                            line_search_fn="strong_wolfe"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_errors_are_torchs(torch, case):
    expected = _error("torch.optim", ERRORS[case])
    assert _error("portopt[torch]", ERRORS[case]) == expected
    assert _error("portopt[numpy]", ERRORS[case]) == expected


def test_messages():
    p = portopt.Parameter(np.array([1.0]))
    with pytest.raises(ValueError, match="^Invalid learning rate: -0.5$"):
        popt.LBFGS([p], lr=-0.5)
    with pytest.raises(ValueError, match=r"^LBFGS doesn't support per-parameter options "
                                         r"\(parameter groups\)$"):
        popt.LBFGS([{"params": [p]}, {"params": [portopt.Parameter(np.array([1.0]))]}])
    opt = popt.LBFGS([p], line_search_fn="foo")  # accepted until a line search starts
    with pytest.raises(RuntimeError, match="^only 'strong_wolfe' is supported$"):
        opt.step(_grad_closure(p))
    assert opt.step(_grad_closure(p, scale=0.0)) == 0.0  # zero gradient: no line search


def test_a_failed_step_changes_nothing():
    p = portopt.Parameter(np.array([1.0, -2.0, 0.5]))

    def good():
        loss, p.grad = bumpy(p.data)
        return loss

    opt = popt.LBFGS([p], max_iter=1)
    opt.step(good)
    opt.param_groups[0].update(max_iter=5, max_eval=10)
    before = copy.deepcopy(opt.state[p]), p.data.copy()
    calls = []

    def failing():
        calls.append(1)
        if len(calls) == 3:  # after two iterations moved the parameters
            raise KeyError("boom")
        return good()

    with pytest.raises(KeyError):
        opt.step(failing)
    assert len(calls) == 3
    np.testing.assert_array_equal(p.data, before[1])
    assert opt.state[p]["n_iter"] == before[0]["n_iter"] == 1
    assert opt.state[p]["func_evals"] == before[0]["func_evals"] == 1
    opt.param_groups[0]["line_search_fn"] = "foo"
    with pytest.raises(RuntimeError):
        opt.step(good)
    np.testing.assert_array_equal(p.data, before[1])
    assert opt.state[p]["func_evals"] == before[0]["func_evals"]


def test_read_only_parameters_are_refused_before_the_closure_runs():
    a = np.array([1.0, 2.0])
    a.flags.writeable = False
    p = portopt.Parameter(a)
    calls = []
    with pytest.raises(ValueError, match="read-only numpy array"):
        popt.LBFGS([p]).step(lambda: calls.append(1))
    assert calls == []


def test_defaults_are_torchs(torch):
    p, q = torch.zeros(1), portopt.Parameter(np.zeros(1))
    for kwargs in ({}, {"max_iter": 7}, {"max_iter": 8, "max_eval": 3}):
        assert popt.LBFGS([q], **kwargs).defaults == torch.optim.LBFGS([p], **kwargs).defaults


def test_parameters_of_two_dtypes(torch):
    values = [np.array([1.5, -0.5, 2.0], dtype=np.float32), np.array(0.75)]
    sides = [Side(kind, values, max_iter=5) for kind in KINDS]
    for side in sides:
        side.step(bumpy)
    for side in sides[1:]:
        assert [a.dtype for a in side.arrays()] == [np.float32, np.float64]
        assert str(side.state["d"].dtype).endswith("float64")  # promoted, as torch.cat does
        for a, b in zip(side.arrays(), sides[0].arrays()):
            # torch rounds the float32 parameter after every iteration, portopt when it
            # writes the parameter (see the class docstring): float32 precision
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_step_hooks_run_once_per_step():
    p = portopt.Parameter(np.array([1.0, -2.0, 0.5]))
    opt = popt.LBFGS([p])
    seen = []
    opt.register_step_pre_hook(lambda o, args, kwargs: seen.append(("pre", len(args))))
    opt.register_step_post_hook(lambda o, args, kwargs: seen.append(("post", len(args))))
    evals = []

    def closure():
        evals.append(1)
        loss, p.grad = bumpy(p.data)
        return loss

    opt.step(closure)
    assert len(evals) > 1 and seen == [("pre", 2), ("post", 2)]  # args: (optimizer, closure)


def test_a_deep_copy_steps_like_the_original():
    # torch's copy loses the `_params` cache of the original and cannot step
    a = Side("portopt[numpy]", VALUES, max_iter=4)
    a.step(bumpy)
    b = copy.copy(a)
    b.opt = copy.deepcopy(a.opt)
    b.params = b.opt.param_groups[0]["params"]
    for _ in range(2):
        a.step(bumpy)
        b.step(bumpy)
    for x, y in zip(a.arrays(), b.arrays()):
        np.testing.assert_array_equal(x, y)
    assert b.state["n_iter"] == a.state["n_iter"]
