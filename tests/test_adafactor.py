"""Adafactor: the kernel on every backend, and the class against torch.optim.Adafactor.

Hand-derived steps use gradients whose row and column sums of squares are perfect
squares, so norms, means, square roots and steps are exact in float32 and float64.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from helpers import check_result, outcome

import portopt
from portopt import SparseGrad
from portopt.optim._adafactor import Adafactor, AdafactorState, adafactor, adafactor_init

DTYPES = ["float32", "float64"]
# rows of magnitude 1, 2, 2, 4 (sum of squares 25), signs mixed
MAGS = np.array([[1.0], [2.0], [2.0], [4.0]])
SIGNS = np.array([[1, -1, 1, 1], [-1, -1, 1, -1], [1, 1, -1, 1], [-1, 1, 1, -1]], dtype=float)


# -- the kernel -----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 4), (3, 4), (5,), ()], ids=str)
def test_init_factors_matrices_over_the_last_two_axes(lib, shape):
    p = lib.asarray(np.ones(shape), "float32")
    st = adafactor_init(p)
    assert st.step == 0
    if len(shape) > 1:
        assert st.variance is None
        expected = {"row_var": (*shape[:-1], 1), "col_var": (*shape[:-2], 1, shape[-1])}
    else:
        assert st.row_var is None and st.col_var is None
        expected = {"variance": shape}
    for key, want in expected.items():
        value = getattr(st, key)
        assert tuple(value.shape) == want and value.dtype == p.dtype
        assert not lib.numpy(value).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_factored_first_step_by_hand(lib, dtype):
    p = lib.asarray(np.full((4, 4), 2.0), dtype)
    g = lib.asarray(MAGS * SIGNS, dtype)
    state = adafactor_init(p)
    new, st = adafactor(p, g, state, lr=0.25)
    for out, like in ((new, p), (st.row_var, state.row_var), (st.col_var, state.col_var)):
        check_result(out, like)
    # t = 1: 1 - beta2 = 1, so R = mean_j g^2 = m_i^2 and C = mean_i g^2 = 25 / 4;
    # V = R C / mean(R) = m_i^2, U = g / m_i = sign(g), RMS(U) = 1: no clipping.
    # RMS(p) = 2, rho = min(0.25, 1) so alpha = 0.5
    np.testing.assert_array_equal(lib.numpy(st.row_var), MAGS**2)
    np.testing.assert_array_equal(lib.numpy(st.col_var), np.full((1, 4), 6.25))
    np.testing.assert_array_equal(lib.numpy(new), 2.0 - 0.5 * SIGNS)
    assert st.step == 1
    np.testing.assert_array_equal(lib.numpy(p), np.full((4, 4), 2.0))  # inputs untouched
    assert not lib.numpy(state.row_var).any() and not lib.numpy(state.col_var).any()


def test_a_stack_of_matrices_is_factored_per_matrix(lib):
    p = lib.asarray(np.full((2, 4, 4), 2.0), "float64")
    g = lib.asarray(np.stack([MAGS * SIGNS, 0.5 * MAGS.T * SIGNS]), "float64")
    new, st = adafactor(p, g, adafactor_init(p), lr=0.25)
    # matrix 0 as above; matrix 1 is the transposed pattern at half scale: its columns
    # carry the magnitudes, so R = 25 / 16 everywhere and C = (m_j / 2)^2
    np.testing.assert_array_equal(lib.numpy(st.row_var)[0], MAGS**2)
    np.testing.assert_array_equal(lib.numpy(st.row_var)[1], np.full((4, 1), 25 / 16))
    np.testing.assert_array_equal(lib.numpy(st.col_var)[1], (MAGS.T / 2) ** 2)
    np.testing.assert_array_equal(lib.numpy(new), 2.0 - 0.5 * np.stack([SIGNS, SIGNS]))


@pytest.mark.parametrize("d", [1.0, 2.0])
def test_update_clipping_by_hand(lib, d):
    p = lib.asarray(np.ones((2, 2)), "float64")
    g = lib.asarray([[3.0, 0.0], [0.0, 4.0]], "float64")
    new, _ = adafactor(p, g, adafactor_init(p), lr=0.25, d=d)
    # R = C = [4.5, 8], mean(R) = 6.25, V = [[3.24, 5.76], [5.76, 10.24]]:
    # U = [[3 / 1.8, 0], [0, 4 / 3.2]], RMS(U) ~ 1.04, clipped for d = 1 only
    u = np.array([[5 / 3, 0.0], [0.0, 1.25]])
    denom = max(1.0, math.sqrt((u**2).mean()) / d)
    np.testing.assert_allclose(lib.numpy(new), 1.0 - 0.25 / denom * u, rtol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_vector_step_with_an_eps1_floor_by_hand(lib, dtype):
    p = lib.asarray([1.0, -1.0, 1.0, -1.0], dtype)
    g = lib.asarray([0.25, -0.5, 2.0, 0.0], dtype)
    new, st = adafactor(p, g, adafactor_init(p), lr=0.25, eps1=0.5)
    check_result(new, p)
    check_result(st.variance, p)
    # V = g^2 floored at 0.25: U = g * [2, 2, 0.5, 2]; RMS(U) = 0.75; alpha = 1 * 0.25
    np.testing.assert_array_equal(lib.numpy(st.variance), [0.0625, 0.25, 4.0, 0.0])
    np.testing.assert_array_equal(lib.numpy(new), [0.875, -0.75, 0.75, -1.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_default_eps1_is_the_dtype_epsilon(lib, dtype):
    eps = float(np.finfo(dtype).eps)
    p = lib.asarray(np.full(4, 2.0), dtype)
    g = lib.asarray(np.full(4, eps / 4), dtype)
    new, _ = adafactor(p, g, adafactor_init(p), lr=0.25)
    # V = eps^2 / 16 is floored at eps^2: U = g / eps = 1/4, alpha = 2 * 0.25
    np.testing.assert_array_equal(lib.numpy(new), np.full(4, 2.0 - 0.125))


def test_second_step_decays_the_variance_by_hand(lib):
    p = lib.asarray([2.0, 2.0, 2.0, 2.0], "float64")
    p1, s1 = adafactor(p, lib.asarray([2.0, -2.0, 2.0, -2.0], "float64"), adafactor_init(p),
                       lr=0.25, beta2_decay=-1.0)
    np.testing.assert_array_equal(lib.numpy(p1), [1.5, 2.5, 1.5, 2.5])
    p2, s2 = adafactor(p1, lib.asarray([4.0, 4.0, 4.0, 4.0], "float64"), s1,
                       lr=0.25, beta2_decay=-1.0)
    # t = 2: 1 - beta2 = 2^-1, V = (4 + 16) / 2 = 10, U = 4 / sqrt(10) each, RMS(U) > 1
    # so U / RMS(U) = 1; rho = min(0.25, 1/sqrt(2)), alpha = RMS(p1) * 0.25
    np.testing.assert_array_equal(lib.numpy(s2.variance), np.full(4, 10.0))
    rms = math.sqrt((1.5**2 + 2.5**2) / 2)
    np.testing.assert_allclose(lib.numpy(p2), np.array([1.5, 2.5, 1.5, 2.5]) - 0.25 * rms,
                               rtol=1e-15)
    assert s2.step == 2 and s1.step == 1
    np.testing.assert_array_equal(lib.numpy(s1.variance), np.full(4, 4.0))


@pytest.mark.parametrize("maximize", [False, True])
def test_weight_decay_follows_the_rms_and_maximize_flips(lib, maximize):
    p = lib.asarray([2.0, 2.0, 2.0, 2.0], "float64")
    g = lib.asarray([1.0, -1.0, 1.0, -1.0], "float64")
    new, _ = adafactor(p, g, adafactor_init(p), lr=0.25, weight_decay=0.5, maximize=maximize)
    # alpha = RMS(p) * lr = 0.5 from the undecayed p; p *= 1 - 0.125; U = sign(+-g)
    sign = -1.0 if maximize else 1.0
    np.testing.assert_array_equal(lib.numpy(new), 1.75 - 0.5 * sign * np.array([1, -1, 1, -1]))


def test_eps2_floors_the_step_size_of_a_zero_parameter(lib):
    p = lib.asarray(np.zeros(4), "float64")
    new, _ = adafactor(p, lib.asarray(np.ones(4), "float64"), adafactor_init(p), lr=0.25,
                       eps2=0.5)
    np.testing.assert_array_equal(lib.numpy(new), np.full(4, -0.125))


def test_a_0d_parameter_takes_the_unfactored_path(lib):
    p = lib.asarray(2.0, "float64")
    new, st = adafactor(p, lib.asarray(-3.0, "float64"), adafactor_init(p), lr=0.25)
    check_result(new, p)
    check_result(st.variance, p)
    assert float(lib.numpy(new)) == 2.5 and float(lib.numpy(st.variance)) == 9.0


@pytest.mark.parametrize("shape", [(1, 0, 2), (0,), (3, 0)], ids=str)
def test_an_empty_parameter_divides_by_zero_as_in_torch(lib, shape):
    p = lib.asarray(np.zeros(shape), "float32")
    with pytest.raises(ZeroDivisionError, match="float division by zero"):
        adafactor(p, lib.asarray(np.zeros(shape), "float32"), adafactor_init(p))


def test_array_lr_equals_float_lr(lib):
    p = lib.asarray(np.linspace(-1, 1, 12).reshape(4, 3), "float64")
    g = lib.asarray(np.linspace(2, -1, 12).reshape(4, 3), "float64")
    a, _ = adafactor(p, g, adafactor_init(p), lr=0.125, weight_decay=0.5)
    b, _ = adafactor(p, g, adafactor_init(p), lr=lib.asarray(0.125, "float64"), weight_decay=0.5)
    np.testing.assert_array_equal(lib.numpy(a), lib.numpy(b))


def test_mismatched_state_raises_torchs_assertions(lib):
    p2, p1 = lib.asarray(np.ones((2, 2))), lib.asarray(np.ones(2))
    with pytest.raises(AssertionError, match="^row_var and col_var should be defined when "
                                             "grad is multidimensional$"):
        adafactor(p2, p2, AdafactorState(0, variance=p2))
    with pytest.raises(AssertionError, match="^variance should be defined when grad is a "
                                             "vector$"):
        adafactor(p1, p1, adafactor_init(p2))


# -- against torch.optim.Adafactor ----------------------------------------------------------

CONFIGS = {
    "default": {},
    "mixed": {"lr": 0.3, "beta2_decay": -0.6, "eps": (1e-3, 0.05), "d": 1.5,
              "weight_decay": 0.2, "maximize": True},
    "eps1-floor": {"eps": (0.4, 1e-3), "foreach": True},
}
SHAPES = [(2, 3, 4), (5, 3), (4,), ()]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_trajectories_match_torch(lib, torch, dtype, config):
    kw = CONFIGS[config]
    rng = np.random.default_rng(len(config))
    starts = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    refs = [torch.from_numpy(s.copy()).requires_grad_() for s in starts]
    ref_opt = torch.optim.Adafactor(refs, **{**kw, "foreach": False})
    ours = [lib.param(s) for s in starts]
    opt = Adafactor(ours, **kw)
    for _ in range(14):  # past t = 11, where 1/sqrt(t) < lr = 0.3
        for r, p in zip(refs, ours):
            g = rng.standard_normal(r.shape).astype(dtype)
            r.grad, p.grad = torch.from_numpy(g), lib.asarray(g)
        ref_opt.step()
        opt.step()
    rtol = 2e-5 if dtype == "float32" else 1e-13
    for r, p in zip(refs, ours):
        np.testing.assert_allclose(lib.numpy(p), r.detach().numpy(), rtol=rtol, atol=rtol)
        assert set(opt.state[p]) == set(ref_opt.state[r])
        for key, value in ref_opt.state[r].items():
            np.testing.assert_allclose(lib.numpy(opt.state[p][key]), value.numpy(), rtol=rtol)
            assert lib.numpy(opt.state[p][key]).dtype == value.numpy().dtype


def test_eps1_comes_from_the_first_parameter_of_the_group_as_in_torch(torch):
    # torch fills in eps1 from the first parameter it steps and keeps it for the group:
    # the float64 parameter behind a float32 one is floored at float32's epsilon
    first = np.ones(3, dtype="float32")
    second = np.full(3, 1e-9)
    refs = [torch.from_numpy(first.copy()).requires_grad_(),
            torch.from_numpy(second.copy()).requires_grad_()]
    ours = [portopt.Parameter(first.copy()), portopt.Parameter(second.copy())]
    alone = portopt.Parameter(second.copy())
    ref_opt, opt = torch.optim.Adafactor(refs), Adafactor(ours)
    alone_opt = Adafactor([alone])
    for r, p in zip(refs + [None], ours + [alone]):
        if r is not None:
            r.grad = torch.full(r.shape, 1e-9, dtype=r.dtype)
        p.grad = np.full(p.shape, 1e-9, dtype=p.dtype)
    ref_opt.step()
    opt.step()
    alone_opt.step()
    np.testing.assert_allclose(ours[1].data, refs[1].detach().numpy(), rtol=1e-15)
    assert not np.allclose(alone.data, ours[1].data, rtol=1e-6)  # float64's eps differs


def test_signature_and_defaults_are_torchs(torch):
    def shape(cls):  # names, kinds and defaults; the annotations are each library's own
        return [(a.name, a.kind, a.default) for a in inspect.signature(cls).parameters.values()]

    assert shape(Adafactor) == shape(torch.optim.Adafactor)
    ours = Adafactor([portopt.Parameter(np.zeros(2))]).defaults
    theirs = torch.optim.Adafactor([torch.zeros(2, requires_grad=True)]).defaults
    assert ours == theirs and list(ours) == list(theirs)


def _bad_step_cases(torch):
    real = lambda: torch.ones(2, 2, requires_grad=True)  # noqa: E731
    cplx = lambda: torch.ones(2, dtype=torch.complex64, requires_grad=True)  # noqa: E731
    sparse = lambda: torch.ones(2, 2).to_sparse()  # noqa: E731
    return {"complex": [(real(), torch.ones(2, 2)), (cplx(), torch.ones(2, dtype=torch.complex64))],
            "sparse": [(real(), torch.ones(2, 2)), (real(), sparse())]}


@pytest.mark.parametrize("case", ["complex", "sparse"])
def test_step_errors_match_torch_and_change_nothing(torch, case):
    outcomes = []
    for cls in (torch.optim.Adafactor, Adafactor):
        pairs = _bad_step_cases(torch)[case]
        for p, g in pairs:
            p.grad = g
        opt = cls([p for p, _ in pairs])
        outcomes.append(outcome(opt.step))
        if cls is Adafactor:  # torch has already stepped the first parameter
            assert not opt.state
            assert bool((pairs[0][0] == 1).all())
    assert outcomes[0] == outcomes[1] and outcomes[0][0] is RuntimeError
    # the same messages for NumPy parameters and portopt's sparse gradients
    p = portopt.Parameter(np.ones((2, 2), dtype=complex if case == "complex" else float))
    p.grad = (np.ones((2, 2), complex) if case == "complex"
              else SparseGrad(np.array([[0]]), np.ones((1, 2)), (2, 2)))
    assert outcome(Adafactor([p]).step) == outcomes[0]


def test_a_complex_parameter_with_a_sparse_grad_reports_complex_as_torch(torch):
    messages = []
    for cls in (torch.optim.Adafactor, Adafactor):
        p = torch.ones(2, 2, dtype=torch.complex64, requires_grad=True)
        p.grad = torch.ones(2, 2, dtype=torch.complex64).to_sparse()
        messages.append(outcome(cls([p]).step))
    assert messages[0] == messages[1]


def test_an_empty_parameter_raises_as_torch_and_leaves_no_state(torch):
    outcomes = []
    for cls in (torch.optim.Adafactor, Adafactor):
        p = torch.zeros(0, 3, requires_grad=True)
        p.grad = torch.zeros(0, 3)
        opt = cls([p])
        outcomes.append(outcome(opt.step))
    assert outcomes[0] == outcomes[1] == (ZeroDivisionError, "float division by zero")
    assert not opt.state  # torch keeps the state it created before the division


def test_state_is_lazy_with_torchs_keys_and_step(lib):
    mat, vec, scalar, idle = (lib.param(np.ones(s)) for s in [(3, 2), (4,), (), (2,)])
    opt = Adafactor([mat, vec, scalar, idle])
    assert not opt.state
    for p in (mat, vec, scalar):
        p.grad = lib.asarray(np.full(tuple(p.shape), 0.5))
    opt.step()
    assert list(opt.state[mat]) == ["step", "row_var", "col_var"]
    assert list(opt.state[vec]) == list(opt.state[scalar]) == ["step", "variance"]
    assert idle not in opt.state
    step = lib.numpy(opt.state[mat]["step"])
    assert step.shape == () and step.dtype == np.float32 and step == 1
    assert tuple(opt.state[mat]["row_var"].shape) == (3, 1)
    assert tuple(opt.state[mat]["col_var"].shape) == (1, 2)


def test_state_dict_round_trips_with_torch(torch):
    from portopt.checkpoint import to_torch

    rng = np.random.default_rng(3)
    grads = [[rng.standard_normal(s) for s in [(4, 3), (3,)]] for _ in range(6)]
    start = [rng.standard_normal(s) for s in [(4, 3), (3,)]]
    kw = {"lr": 0.05, "weight_decay": 0.1, "d": 1.2}

    def run(opt, params, part, wrap):
        for gs in part:
            for p, g in zip(params, gs):
                p.grad = wrap(g)
            opt.step()

    whole = [portopt.Parameter(s.copy()) for s in start]
    whole_opt = Adafactor(whole, **kw)
    run(whole_opt, whole, grads, np.copy)
    half = [portopt.Parameter(s.copy()) for s in start]
    half_opt = Adafactor(half, **kw)
    run(half_opt, half, grads[:2], np.copy)
    ref = [torch.from_numpy(p.data.copy()).requires_grad_() for p in half]
    ref_opt = torch.optim.Adafactor(ref, lr=1.0)
    ref_opt.load_state_dict(to_torch(half_opt.state_dict()))
    assert ref_opt.param_groups[0]["d"] == 1.2 and ref_opt.state[ref[0]]["step"] == 2
    run(ref_opt, ref, grads[2:4], torch.from_numpy)
    back = [portopt.Parameter(r.detach().numpy().copy()) for r in ref]
    back_opt = Adafactor(back)
    back_opt.load_state_dict(ref_opt.state_dict())
    run(back_opt, back, grads[4:], np.copy)
    for p, w in zip(back, whole):
        np.testing.assert_allclose(p.data, w.data, rtol=1e-13)
        for key, value in whole_opt.state[w].items():
            np.testing.assert_allclose(back_opt.state[p][key], value, rtol=1e-13)


def test_loading_an_old_state_dict_fills_foreach_and_a_tensor_step(torch):
    saved = {"state": {0: {"step": 3, "variance": np.ones(2)}},
             "param_groups": [{"lr": 0.01, "beta2_decay": -0.8, "eps": (None, 1e-3), "d": 1.0,
                               "weight_decay": 0.0, "maximize": False, "params": [0]}]}
    ref_opt = torch.optim.Adafactor([torch.zeros(2, requires_grad=True)])
    ref_opt.load_state_dict({**saved, "state": {0: {"step": 3,
                                                    "variance": torch.ones(2)}}})
    opt = Adafactor([portopt.Parameter(np.zeros(2))])
    opt.load_state_dict(saved)
    for o in (ref_opt, opt):
        assert o.param_groups[0]["foreach"] is None
    ref_step = ref_opt.state_dict()["state"][0]["step"]
    step = np.asarray(opt.state_dict()["state"][0]["step"])
    assert step.dtype == np.float32 and float(step) == float(ref_step) == 3.0


def test_state_type_fields_are_torchs_keys():
    assert AdafactorState._fields == ("step", "row_var", "col_var", "variance")
