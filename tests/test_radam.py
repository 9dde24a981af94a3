"""RAdam: the kernel on every backend, and the class against torch.optim.RAdam.

Hand-derived steps use ``beta1 = 1/2`` and a constant gradient of powers of two: then
``m_t = (1 - 2^-t) g`` and ``m_hat = g`` exactly, so the plain branch moves each weight
by exactly ``lr * g`` per step, and the rectified branch by ``lr * sign(g) * r_t``.
"""

from __future__ import annotations

import importlib
import inspect
import math

import numpy as np
import pytest
from helpers import check_result, outcome

import portopt
from portopt.optim.radam import RAdam, RAdamState, radam, radam_init

DTYPES = ["float32", "float64"]


def _rect(beta2, t):
    """The rectification term r_t of the paper, or None where rho_t <= 5."""
    rho_inf = 2 / (1 - beta2) - 1
    rho = rho_inf - 2 * t * beta2**t / (1 - beta2**t)
    if rho <= 5:
        return None
    return math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))


def _constant_steps(lib, dtype, steps, **kw):
    p = lib.asarray([1.0, -0.5], dtype)
    g = lib.asarray([0.25, -0.5], dtype)
    state = radam_init(p)
    trail = []
    for _ in range(steps):
        p, state = radam(p, g, state, **kw)
        trail.append(lib.numpy(p).astype(np.float64))
    return trail, state


# -- the kernel -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_first_step_by_hand(lib, dtype):
    p, g = lib.asarray([1.0, -2.0], dtype), lib.asarray([0.5, -0.25], dtype)
    state = radam_init(p)
    new, st = radam(p, g, state, lr=0.5, beta1=0.5, beta2=0.75, eps=1e-8)
    for out in (new, st.exp_avg, st.exp_avg_sq):
        check_result(out, p)
    # rho_1 = 1: the plain branch, p -= lr * m / (1 - beta1) = lr * g
    np.testing.assert_array_equal(lib.numpy(new), [0.75, -1.875])
    np.testing.assert_array_equal(lib.numpy(st.exp_avg), [0.25, -0.125])
    np.testing.assert_array_equal(lib.numpy(st.exp_avg_sq), [0.0625, 0.015625])
    assert st.step == 1 and state.step == 0
    np.testing.assert_array_equal(lib.numpy(p), [1.0, -2.0])  # inputs untouched
    assert not lib.numpy(state.exp_avg).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_plain_steps_then_the_rectified_branch_from_step_6(lib, dtype):
    lr = 2.0**-4
    trail, st = _constant_steps(lib, dtype, 7, lr=lr, beta1=0.5, beta2=0.9, eps=0.0)
    g = np.array([0.25, -0.5])
    for t in range(1, 6):  # rho_t <= 5: exactly lr * g per step
        assert _rect(0.9, t) is None
        np.testing.assert_array_equal(trail[t - 1], [1.0, -0.5] - t * lr * g)
    # from step 6 the move is lr * sign(g) * r_t: m_hat = g and sqrt(v / (1 - beta2^t)) = |g|
    expected = trail[4] - lr * np.sign(g) * _rect(0.9, 6)
    tol = 1e-6 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(trail[5], expected, rtol=tol)
    expected = expected - lr * np.sign(g) * _rect(0.9, 7)
    np.testing.assert_allclose(trail[6], expected, rtol=tol)
    assert st.step == 7


def test_small_beta2_never_rectifies_and_0_7_starts_at_step_10(lib):
    lr, g = 2.0**-5, np.array([0.25, -0.5])
    trail, _ = _constant_steps(lib, "float64", 20, lr=lr, beta1=0.5, beta2=0.5, eps=1e-8)
    for t, p in enumerate(trail, 1):  # rho_inf = 3 <= 5: the plain branch forever
        np.testing.assert_array_equal(p, [1.0, -0.5] - t * lr * g)
    trail, _ = _constant_steps(lib, "float64", 10, lr=lr, beta1=0.5, beta2=0.7, eps=0.0)
    assert _rect(0.7, 9) is None and _rect(0.7, 10) is not None
    np.testing.assert_array_equal(trail[8], [1.0, -0.5] - 9 * lr * g)
    np.testing.assert_allclose(trail[9], trail[8] - lr * np.sign(g) * _rect(0.7, 10),
                               rtol=1e-14)


def test_weight_decay_both_ways_and_maximize(lib):
    p, zero = lib.asarray([2.0], "float64"), lib.asarray([0.0], "float64")
    kw = dict(lr=0.5, beta1=0.5, beta2=0.999, eps=1e-8, weight_decay=0.5)
    # decoupled: with a zero gradient only the shrink p (1 - lr wd) acts
    new, _ = radam(p, zero, radam_init(p), decoupled_weight_decay=True, **kw)
    np.testing.assert_array_equal(lib.numpy(new), [1.5])
    # coupled: the gradient becomes wd * p = 1, and a plain first step moves lr * g
    new, _ = radam(p, zero, radam_init(p), **kw)
    np.testing.assert_array_equal(lib.numpy(new), [1.5])
    # maximize negates the gradient before anything else
    new, _ = radam(p, lib.asarray([-1.0], "float64"), radam_init(p), maximize=True,
                   **dict(kw, weight_decay=0.0))
    np.testing.assert_array_equal(lib.numpy(new), [1.5])


def test_complex_parameters_are_stepped_per_real_component(lib):
    rng = np.random.default_rng(3)
    pc = rng.standard_normal((3, 2)) + 1j * rng.standard_normal((3, 2))
    cplx, real = lib.asarray(pc), lib.asarray(np.stack([pc.real, pc.imag], axis=-1))
    sc, sr = radam_init(cplx), radam_init(real)
    kw = dict(lr=0.1, beta1=0.8, beta2=0.9, eps=1e-8, weight_decay=0.1, maximize=True)
    for _ in range(8):  # across rho_t > 5
        gc = rng.standard_normal((3, 2)) + 1j * rng.standard_normal((3, 2))
        cplx, sc = radam(cplx, lib.asarray(gc), sc, **kw)
        real, sr = radam(real, lib.asarray(np.stack([gc.real, gc.imag], -1)), sr, **kw)
    for c, r in ((cplx, real), (sc.exp_avg, sr.exp_avg), (sc.exp_avg_sq, sr.exp_avg_sq)):
        out = lib.numpy(c)
        assert out.dtype == np.complex128
        np.testing.assert_array_equal(np.stack([out.real, out.imag], -1), lib.numpy(r))


@pytest.mark.parametrize("shape", [(), (1, 0, 2)], ids=str)
def test_zero_dim_and_empty_parameters(lib, shape):
    p = lib.asarray(np.ones(shape), "float32")
    g = lib.asarray(np.ones(shape), "float32")
    st = radam_init(p)
    for _ in range(7):  # both branches
        p, st = radam(p, g, st, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
        for out in (p, st.exp_avg, st.exp_avg_sq):
            check_result(out, g)


def test_array_lr_equals_float_lr(lib):
    p, g = lib.asarray([1.0, 3.0]), lib.asarray([0.3, -0.7])
    a, b = (p, radam_init(p)), (p, radam_init(p))
    kw = dict(beta1=0.9, beta2=0.9, eps=1e-8, weight_decay=0.1)
    for _ in range(7):
        a = radam(a[0], g, a[1], lr=0.01, **kw)
        b = radam(b[0], g, b[1], lr=lib.asarray(0.01, "float64"), **kw)
    np.testing.assert_array_equal(lib.numpy(a[0]), lib.numpy(b[0]))


def test_scalar_over_array_rounds_as_torch(lib, torch):
    """``sqrt(1 - beta2^t) / (sqrt(v) + eps)``: torch divides a Python number by a tensor
    as ``reciprocal(t) * number`` and a 0-d tensor by a tensor as a true division in the
    tensor's dtype; one ULP apart in float32, where torch's own rounding is the oracle."""
    from portopt.optim.radam import _scalar_over

    den = np.random.default_rng(6).uniform(0.1, 10.0, 4096).astype(np.float32)
    for num, ref_num in ((0.7316, 0.7316),
                         (lib.asarray(0.7316, "float64"), torch.tensor(0.7316,
                                                                       dtype=torch.float64))):
        got = lib.numpy(_scalar_over(num, lib.asarray(den)))
        expected = (ref_num / torch.from_numpy(den)).numpy()
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)


def test_rectified_step_is_bit_exact_with_torch_when_square_roots_are_exact(lib, torch):
    """float32, beta2 = 7/8 and v = g^2 with short g: v stays g^2, sqrt(v) = |g| exactly
    on both sides, so every rounding left (the rectified branch's products and its
    scalar-over-array division included) must be torch's."""
    rng = np.random.default_rng(7)
    g = (rng.integers(1, 64, 50) * rng.choice([-1, 1], 50) / 8).astype(np.float32)
    p0 = np.zeros(50, np.float32)  # the new value is the update itself, to the last bit
    m0 = rng.standard_normal(50).astype(np.float32)
    kw = dict(lr=0.01, betas=(0.9, 0.875), eps=0.3, weight_decay=0.0)
    ref = torch.from_numpy(p0.copy())
    opt = torch.optim.RAdam([ref], **kw)
    opt.state[ref] = {"step": torch.tensor(5.0), "exp_avg": torch.from_numpy(m0.copy()),
                      "exp_avg_sq": torch.from_numpy(g * g)}
    ref.grad = torch.from_numpy(g)
    opt.step()  # step 6: rho_6 = 5.23 > 5
    state = RAdamState(np.float32(5.0), lib.asarray(m0), lib.asarray(g * g))
    new, st = radam(lib.asarray(p0), lib.asarray(g), state, lr=0.01, beta1=0.9, beta2=0.875,
                    eps=0.3)
    np.testing.assert_array_equal(lib.numpy(st.exp_avg_sq), g * g)
    np.testing.assert_array_equal(lib.numpy(new), ref.numpy())


def test_state_type_fields_are_torchs_keys():
    assert RAdamState._fields == ("step", "exp_avg", "exp_avg_sq")


# -- the class against torch.optim.RAdam ----------------------------------------------------

def _run(cls, params, grads, **kw):
    opt = cls(params, **kw)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g
        opt.step()
    return opt


CONFIGS = {
    "default": {},
    "coupled": {"lr": 0.02, "betas": (0.8, 0.9), "weight_decay": 0.1},
    "late-decoupled-maximize": {"betas": (0.9, 0.7), "weight_decay": 0.2,
                                "decoupled_weight_decay": True, "maximize": True, "eps": 1e-4},
    "never": {"lr": 0.01, "betas": (0.5, 0.6)},
}


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex128"])
def test_steps_match_torch_on_torch_tensors(torch, config, dtype):
    rng = np.random.default_rng(1)
    start = rng.standard_normal((3, 4)).astype(dtype)
    grads = [rng.standard_normal((3, 4)).astype(dtype) for _ in range(12)]
    if dtype == "complex128":
        start = start + 1j * rng.standard_normal((3, 4))
        grads = [g + 1j * rng.standard_normal((3, 4)) for g in grads]
    ref, ours = (torch.from_numpy(start.copy()) for _ in range(2))
    kw = CONFIGS[config]
    ref_opt = _run(torch.optim.RAdam, [ref], [[torch.from_numpy(g)] for g in grads],
                   foreach=False, **kw)
    opt = _run(RAdam, [ours], [[torch.from_numpy(g)] for g in grads], **kw)
    # same torch ops in the same order: bit for bit
    assert torch.equal(ours, ref)
    assert list(opt.state[ours]) == list(ref_opt.state[ref])
    for key, value in ref_opt.state[ref].items():
        assert torch.equal(opt.state[ours][key], value), key


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_steps_match_torch(torch, dtype):
    rng = np.random.default_rng(2)
    start = rng.standard_normal((4, 5)).astype(dtype)
    grads = [rng.standard_normal((4, 5)).astype(dtype) for _ in range(12)]
    kw = CONFIGS["coupled"]
    ref = torch.from_numpy(start.copy())
    _run(torch.optim.RAdam, [ref], [[torch.from_numpy(g)] for g in grads], **kw)
    ours = portopt.Parameter(start.copy())
    _run(RAdam, [ours], [[g] for g in grads], **kw)
    # float32: torch's CPU sqrt is not correctly rounded, an ULP here and there
    np.testing.assert_allclose(ours.data, ref.numpy(), rtol=1e-6 if dtype == "float32" else 1e-14)


def test_signature_and_defaults_are_torchs(torch):
    def shape(cls):
        return [(p.name, p.kind, p.default)
                for p in inspect.signature(cls.__init__).parameters.values()]

    assert shape(RAdam) == shape(torch.optim.RAdam)
    expected = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                "maximize": False, "foreach": None, "capturable": False,
                "decoupled_weight_decay": False, "differentiable": False}
    assert torch.optim.RAdam([torch.zeros(1)]).defaults == expected
    assert RAdam([portopt.Parameter(np.zeros(1))]).defaults == expected
    assert list(RAdam([portopt.Parameter(np.zeros(1))]).defaults) == list(expected)


def test_array_lr_must_have_one_element(torch):
    for lr in (torch.tensor([0.1, 0.2]), torch.tensor([0.1])):
        expected = outcome(torch.optim.RAdam, [torch.zeros(2)], lr=lr)
        assert outcome(RAdam, [torch.zeros(2)], lr=lr) == expected
    assert outcome(RAdam, [portopt.Parameter(np.zeros(2))], lr=np.array([0.1, 0.2])) == (
        ValueError, "Tensor lr must be 1-element")


def _bad_step_cases(torch):
    def p():
        return torch.ones(2, requires_grad=True)

    def req(v):
        return torch.tensor(v, requires_grad=True)

    ones = torch.ones(2)
    return {
        "sparse": ([p()], ones.to_sparse(), {}),
        "capturable-on-cpu": ([p()], ones, {"capturable": True}),
        "capturable-foreach": ([p()], ones, {"capturable": True, "foreach": True}),
        "foreach-differentiable": ([p()], ones, {"foreach": True, "differentiable": True}),
        "differentiable-beta2": ([p().clone()], ones,
                                 {"betas": (0.9, req(0.99)), "differentiable": True}),
        "differentiable-weight-decay": ([p().clone()], ones,
                                        {"weight_decay": req(0.1), "differentiable": True}),
    }


@pytest.mark.parametrize("case", ["sparse", "capturable-on-cpu", "capturable-foreach",
                                  "foreach-differentiable", "differentiable-beta2",
                                  "differentiable-weight-decay"])
def test_step_errors_match_torch_and_change_nothing(torch, case):
    outcomes = []
    for cls in (torch.optim.RAdam, RAdam):
        params, grad, kw = _bad_step_cases(torch)[case]
        opt = cls(params, **kw)
        params[0].grad = grad
        before = params[0].detach().clone()
        outcomes.append(outcome(opt.step))
        if cls is RAdam:
            assert torch.equal(params[0].detach(), before) and not opt.state
    assert outcomes[0] is not None and outcomes[0] == outcomes[1]


def test_sparse_gradients_are_refused_on_numpy():
    p = portopt.Parameter(np.ones(3))
    p.grad = portopt.SparseGrad(np.array([[0]]), np.array([1.0]), (3,))
    with pytest.raises(RuntimeError, match="^RAdam does not support sparse gradients$"):
        RAdam([p]).step()


def test_torch_only_flags_are_refused_on_numpy():
    for flag in ("capturable", "differentiable"):
        with pytest.raises(RuntimeError, match=f"`{flag}=True` needs"):
            RAdam([portopt.Parameter(np.zeros(2))], **{flag: True})


def test_state_is_lazy_with_torchs_keys(lib):
    p, q = lib.param([1.0, 2.0]), lib.param([3.0])
    opt = RAdam([p, q])
    assert not opt.state
    p.grad = lib.asarray([0.5, -0.5])
    opt.step()
    assert list(opt.state[p]) == ["step", "exp_avg", "exp_avg_sq"] and q not in opt.state
    step = lib.numpy(opt.state[p]["step"])
    assert float(step) == 1.0 and step.dtype == np.float32 and step.shape == ()


def test_state_dict_round_trips_with_torch(torch):
    from portopt.checkpoint import to_torch

    rng = np.random.default_rng(4)
    start = rng.standard_normal((3, 2))
    grads = [torch.from_numpy(rng.standard_normal((3, 2))) for _ in range(10)]
    kw = {"lr": 0.05, "betas": (0.8, 0.9), "weight_decay": 0.1}
    ref = torch.from_numpy(start.copy())
    ref_opt = torch.optim.RAdam([ref], **kw)
    ours = portopt.Parameter(start.copy())
    opt = RAdam([ours], **kw)
    for g in grads[:4]:  # stop before the rectified branch starts
        ref.grad, ours.grad = g, g.numpy()
        ref_opt.step()
        opt.step()
    ref2 = torch.from_numpy(ours.data.copy())
    ref_opt2 = torch.optim.RAdam([ref2], **kw)
    ref_opt2.load_state_dict(to_torch(opt.state_dict()))
    ours2 = portopt.Parameter(ref.numpy().copy())
    opt2 = RAdam([ours2], **kw)
    opt2.load_state_dict(ref_opt.state_dict())
    assert list(opt2.state[ours2]) == list(ref_opt.state[ref])
    assert isinstance(opt2.state[ours2]["step"], np.float32)
    for g in grads[4:]:
        ref.grad, ref2.grad, ours2.grad = g, g, g.numpy()
        for o in (ref_opt, ref_opt2, opt2):
            o.step()
    np.testing.assert_allclose(ours2.data, ref.numpy(), rtol=1e-14)
    np.testing.assert_allclose(ref2.numpy(), ref.numpy(), rtol=1e-14)


def test_loading_an_old_state_dict_fills_torchs_defaults():
    p = portopt.Parameter(np.zeros(2))
    opt = RAdam([p])
    p.grad = np.ones(2)
    opt.step()
    sd = opt.state_dict()
    for key in ("foreach", "maximize", "differentiable", "decoupled_weight_decay", "capturable"):
        del sd["param_groups"][0][key]
    sd["state"][0]["step"] = 1  # older torch saved a number
    fresh = RAdam([portopt.Parameter(np.zeros(2))])
    fresh.load_state_dict(sd)
    group = fresh.param_groups[0]
    assert (group["foreach"], group["maximize"], group["differentiable"],
            group["decoupled_weight_decay"], group["capturable"]) == (None, False, False, False,
                                                                       False)
    step = fresh.state[group["params"][0]]["step"]
    assert isinstance(step, np.float32) and step == 1.0


@pytest.mark.parametrize("betas", [(0.9, 0.9), (0.9, 0.5)], ids=["crossing", "never"])
def test_capturable_form_matches_torch(torch, monkeypatch, betas):
    """The graph-safe algebra (both branches computed, one chosen elementwise), run on
    the CPU by letting both sides accept it there."""
    from portopt.optim import _checks

    monkeypatch.setattr(importlib.import_module("torch.optim.radam"),
                        "_get_capturable_supported_devices", lambda supports_xla=True: ["cpu"])
    monkeypatch.setattr(_checks, "CAPTURABLE_DEVICES", ["cpu"])
    runs = []
    for cls in (torch.optim.RAdam, RAdam):
        torch.manual_seed(0)
        p = torch.randn(5, dtype=torch.float32)
        opt = cls([p], lr=0.01, betas=betas, weight_decay=0.1, capturable=True)
        for k in range(8):
            p.grad = torch.cos(p * (k + 1))
            opt.step()
        runs.append((p, opt.state[p]))
    (pt, st), (pp, sp) = runs
    assert torch.equal(pt, pp)
    for key in ("step", "exp_avg", "exp_avg_sq"):
        assert torch.equal(st[key], sp[key]) and st[key].device == sp[key].device, key


def test_differentiable_steps_give_torchs_gradients(torch):
    """Gradients of a loss after seven steps (across rho_t > 5), with respect to the
    initial weights, lr and eps."""
    results = []
    for cls in (torch.optim.RAdam, RAdam):
        w0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
        lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
        eps = torch.tensor(1e-3, dtype=torch.float64, requires_grad=True)
        w = w0.clone()
        opt = cls([w], lr=lr, eps=eps, weight_decay=0.1, decoupled_weight_decay=True,
                  differentiable=True)
        for k in range(7):
            w.grad = torch.sin(w * (k + 1))
            opt.step()
        results.append(torch.autograd.grad((w ** 2).sum(), (w0, lr, eps)))
    for ref, ours in zip(*results):
        torch.testing.assert_close(ours, ref, rtol=1e-13, atol=1e-15)


def test_portopt_can_differentiate_where_torch_cannot(torch):
    """A beta1 that requires grad, over seven steps: torch's in-place moments break its
    backward pass there; the pure kernel's gradient agrees with finite differences."""
    def run(w0, beta1):
        w = w0.clone()
        opt = RAdam([w], lr=0.1, betas=(beta1, 0.9), differentiable=True)
        for k in range(7):
            w.grad = torch.sin(w * (k + 1))
            opt.step()
        return (w ** 2).sum()

    w0 = torch.tensor([0.3, -1.2], dtype=torch.float64, requires_grad=True)
    beta1 = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(run, (w0, beta1))


def test_nan_and_inf_gradients_propagate_as_in_torch(torch):
    for bad in (float("nan"), float("inf")):
        results = []
        for cls in (torch.optim.RAdam, RAdam):
            p = torch.ones(2, 2)
            opt = cls([p], betas=(0.9, 0.9))
            for k in range(7):
                p.grad = torch.tensor([[bad, 1.0], [1.0, 1.0]]) if k == 0 else torch.ones(2, 2)
                opt.step()
            results.append((p.clone(), dict(opt.state[p])))
        (p_ref, s_ref), (p_ours, s_ours) = results
        assert torch.equal(p_ours.isnan(), p_ref.isnan()) and p_ref.isnan().sum() == 1
        for key in s_ref:
            assert torch.allclose(s_ours[key], s_ref[key], equal_nan=True), key
