"""NAdam: the kernel on every backend, and the class against torch.optim.NAdam.

Hand-derived steps use ``momentum_decay = 0`` (so mu_t = beta1 / 2 at every step) and
powers of two, so that moments, bias corrections and square roots are exact.
"""

from __future__ import annotations

import importlib
import inspect

import numpy as np
import pytest
from helpers import check_result, outcome

import portopt
from portopt.optim.nadam import NAdam, NAdamState, nadam, nadam_init

DTYPES = ["float32", "float64"]
# beta1 = 0.5 and momentum_decay = 0: mu_t = 0.25 at every step
EXACT = dict(beta1=0.5, beta2=0.75, eps=0.0, momentum_decay=0.0)


def _mu(beta1, psi, t):
    return beta1 * (1.0 - 0.5 * 0.96 ** (t * psi))


# -- the kernel -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_first_step_by_hand(lib, dtype):
    p = lib.asarray([1.0, -2.0, 0.5], dtype)
    g = lib.asarray([4.0, -0.25, 2.0**-10], dtype)
    state = nadam_init(p)
    new, st = nadam(p, g, state, lr=0.25, **EXACT)
    for out in (new, st.exp_avg, st.exp_avg_sq):
        check_result(out, p)
    # m = g / 2, v = g^2 / 4, v / (1 - beta2) = g^2: denom = |g|. Pi = mu_1 = 1/4,
    # first term -lr (1 - mu_1) / (1 - Pi) = -lr; second -lr mu_2 / (1 - Pi mu_2) * 1/2
    # = -lr (1/4) / (15/16) / 2 = -lr * 2/15; lr = 1/4: a move of 17/60 against sign(g)
    np.testing.assert_array_equal(lib.numpy(st.exp_avg), [2.0, -0.125, 2.0**-11])
    np.testing.assert_array_equal(lib.numpy(st.exp_avg_sq), [4.0, 2.0**-6, 2.0**-22])
    tol = 1e-7 if dtype == "float32" else 1e-15
    np.testing.assert_allclose(lib.numpy(new), [1 - 17 / 60, -2 + 17 / 60, 0.5 - 17 / 60],
                               rtol=tol)
    assert float(lib.numpy(st.mu_product)) == 0.25 and st.step == 1 and state.step == 0
    np.testing.assert_array_equal(lib.numpy(p), [1.0, -2.0, 0.5])  # inputs untouched
    assert not lib.numpy(state.exp_avg).any() and float(lib.numpy(state.mu_product)) == 1.0


def test_two_steps_by_hand(lib):
    b1, b2, psi, lr, eps = 0.8, 0.9, 0.5, 0.1, 1e-8
    p0, g1, g2 = 1.5, 0.75, -0.5
    st = nadam_init(lib.asarray([p0], "float64"))
    p = lib.asarray([p0], "float64")
    for g in (g1, g2):
        p, st = nadam(p, lib.asarray([g], "float64"), st, lr=lr, beta1=b1, beta2=b2, eps=eps,
                      momentum_decay=psi)
    # the update of the paper, with the product of the mu_t kept in float32 as torch does
    m1, v1 = (1 - b1) * g1, (1 - b2) * g1**2
    m2, v2 = b1 * m1 + (1 - b1) * g2, b2 * v1 + (1 - b2) * g2**2
    # (as Python floats: the coefficients themselves are computed in double precision)
    pi1 = float(np.float32(np.float32(1.0) * np.float32(_mu(b1, psi, 1))))
    pi2 = float(np.float32(np.float32(pi1) * np.float32(_mu(b1, psi, 2))))
    d1, d2 = np.sqrt(v1 / (1 - b2)) + eps, np.sqrt(v2 / (1 - b2**2)) + eps
    p1 = (p0 - lr * (1 - _mu(b1, psi, 1)) / (1 - pi1) * g1 / d1
          - lr * _mu(b1, psi, 2) / (1 - pi1 * _mu(b1, psi, 2)) * m1 / d1)
    p2 = (p1 - lr * (1 - _mu(b1, psi, 2)) / (1 - pi2) * g2 / d2
          - lr * _mu(b1, psi, 3) / (1 - pi2 * _mu(b1, psi, 3)) * m2 / d2)
    np.testing.assert_allclose(lib.numpy(p), [p2], rtol=1e-14)
    np.testing.assert_allclose(lib.numpy(st.exp_avg), [m2], rtol=1e-15)
    np.testing.assert_allclose(lib.numpy(st.exp_avg_sq), [v2], rtol=1e-15)
    assert float(lib.numpy(st.mu_product)) == pi2 and st.step == 2


def test_mu_product_is_accumulated_in_float32(lib):
    p = lib.asarray([0.5, -1.0], "float64")
    st = nadam_init(p)
    oracle, wide = np.float32(1.0), 1.0
    for t in range(1, 31):
        p, st = nadam(p, lib.asarray([0.1, 0.2], "float64"), st, lr=1e-3, beta1=0.9,
                      beta2=0.999, eps=1e-8)
        mu = _mu(0.9, 4e-3, t)
        oracle, wide = np.float32(oracle * np.float32(mu)), wide * mu
        got = lib.numpy(st.mu_product)
        assert got.dtype == np.float32 and got.shape == () and float(got) == oracle, t
    assert oracle != np.float32(wide)  # a float64 product would have been caught


def test_weight_decay_both_ways_and_maximize(lib):
    p, zero = lib.asarray([2.0], "float64"), lib.asarray([0.0], "float64")
    # decoupled: with a zero gradient only the shrink p (1 - lr wd) acts
    new, _ = nadam(p, zero, nadam_init(p), lr=0.5, beta1=0.9, beta2=0.999, eps=1e-8,
                   weight_decay=0.5, decoupled_weight_decay=True)
    np.testing.assert_array_equal(lib.numpy(new), [1.5])
    # coupled: the gradient becomes wd * p = 1, a first step of 17/60 (see above)
    new, _ = nadam(p, zero, nadam_init(p), lr=0.25, weight_decay=0.5, **EXACT)
    np.testing.assert_allclose(lib.numpy(new), [2 - 17 / 60], rtol=1e-15)
    # maximize negates the gradient before anything else
    new, _ = nadam(p, lib.asarray([-1.0], "float64"), nadam_init(p), lr=0.25, maximize=True,
                   **EXACT)
    np.testing.assert_allclose(lib.numpy(new), [2 - 17 / 60], rtol=1e-15)


def test_complex_parameters_are_stepped_per_real_component(lib):
    rng = np.random.default_rng(3)
    pc = rng.standard_normal((3, 2)) + 1j * rng.standard_normal((3, 2))
    cplx, real = lib.asarray(pc), lib.asarray(np.stack([pc.real, pc.imag], axis=-1))
    sc, sr = nadam_init(cplx), nadam_init(real)
    kw = dict(lr=0.1, beta1=0.8, beta2=0.9, eps=1e-8, weight_decay=0.1, maximize=True)
    for _ in range(3):
        gc = rng.standard_normal((3, 2)) + 1j * rng.standard_normal((3, 2))
        cplx, sc = nadam(cplx, lib.asarray(gc), sc, **kw)
        real, sr = nadam(real, lib.asarray(np.stack([gc.real, gc.imag], -1)), sr, **kw)
    for c, r in ((cplx, real), (sc.exp_avg, sr.exp_avg), (sc.exp_avg_sq, sr.exp_avg_sq)):
        out = lib.numpy(c)
        assert out.dtype == np.complex128
        np.testing.assert_array_equal(np.stack([out.real, out.imag], -1), lib.numpy(r))


@pytest.mark.parametrize("shape", [(), (1, 0, 2)], ids=str)
def test_zero_dim_and_empty_parameters(lib, shape):
    p = lib.asarray(np.ones(shape), "float32")
    new, st = nadam(p, lib.asarray(np.ones(shape), "float32"), nadam_init(p), lr=0.1,
                    beta1=0.9, beta2=0.999, eps=1e-8)
    for out in (new, st.exp_avg, st.exp_avg_sq):
        check_result(out, p)


def test_array_lr_equals_float_lr(lib):
    p, g = lib.asarray([1.0, 3.0]), lib.asarray([0.3, -0.7])
    kw = dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)
    a, _ = nadam(p, g, nadam_init(p), lr=0.01, **kw)
    b, _ = nadam(p, g, nadam_init(p), lr=lib.asarray(0.01, "float64"), **kw)
    np.testing.assert_array_equal(lib.numpy(a), lib.numpy(b))


@pytest.mark.parametrize("differentiable", [False, True], ids=["plain", "differentiable"])
def test_float32_step_is_bit_exact_with_torch_when_square_roots_are_exact(lib, torch,
                                                                          differentiable):
    """A first step with beta2 = 3/4 and short gradients: v / (1 - beta2) = g^2 and
    sqrt gives |g| exactly on both sides, so every other rounding (the two addcdiv
    coefficients, or the differentiable form's float32 0-d ones) must be torch's."""
    rng = np.random.default_rng(7)
    g = (rng.integers(1, 64, 50) * rng.choice([-1, 1], 50) / 8).astype(np.float32)
    m0 = rng.standard_normal(50).astype(np.float32)
    kw = dict(lr=1.0, betas=(0.9, 0.75), eps=0.3, momentum_decay=0.05)
    for mu_product in (0.75, 0.3, 0.55, 0.9, 0.123):  # several coefficients to round
        ref = torch.zeros(50)  # the new value is the update itself, to the last bit
        opt = torch.optim.NAdam([ref], differentiable=differentiable, **kw)
        opt.state[ref] = {"step": torch.tensor(0.0), "mu_product": torch.tensor(mu_product),
                          "exp_avg": torch.from_numpy(m0.copy()),
                          "exp_avg_sq": torch.zeros(50)}
        ref.grad = torch.from_numpy(g)
        opt.step()
        state = NAdamState(np.float32(0.0), np.float32(mu_product), lib.asarray(m0),
                           lib.asarray(np.zeros(50, np.float32)))
        new, st = nadam(lib.asarray(np.zeros(50, np.float32)), lib.asarray(g), state, lr=1.0,
                        beta1=0.9, beta2=0.75, eps=0.3, momentum_decay=0.05,
                        differentiable=differentiable)
        np.testing.assert_array_equal(lib.numpy(new), ref.detach().numpy())
        assert float(st.mu_product) == opt.state[ref]["mu_product"].item()


def test_state_type_fields_are_torchs_keys():
    assert NAdamState._fields == ("step", "mu_product", "exp_avg", "exp_avg_sq")


def test_differentiable_algebra_on_every_backend_is_torchs(lib, torch):
    """torch's differentiable form scales by float32 0-d coefficients; the kernel's flag
    reproduces it on any backend."""
    rng = np.random.default_rng(5)
    start, grads = rng.standard_normal(4), [rng.standard_normal(4) for _ in range(3)]
    ref = torch.from_numpy(start.copy())
    opt = torch.optim.NAdam([ref], lr=0.05, weight_decay=0.1, differentiable=True)
    p = lib.asarray(start)
    st = nadam_init(p)
    for g in grads:
        ref.grad = torch.from_numpy(g)
        opt.step()
        p, st = nadam(p, lib.asarray(g), st, lr=0.05, beta1=0.9, beta2=0.999, eps=1e-8,
                      weight_decay=0.1, differentiable=True)
    np.testing.assert_allclose(lib.numpy(p), ref.detach().numpy(), rtol=1e-15)


# -- the class against torch.optim.NAdam ----------------------------------------------------

def _run(cls, params, grads, **kw):
    opt = cls(params, **kw)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g
        opt.step()
    return opt


CONFIGS = {
    "default": {},
    "coupled": {"lr": 0.02, "betas": (0.8, 0.95), "weight_decay": 0.1, "momentum_decay": 0.1},
    "decoupled-maximize": {"weight_decay": 0.2, "decoupled_weight_decay": True,
                           "maximize": True, "eps": 1e-4},
}


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex128"])
def test_steps_match_torch_on_torch_tensors(torch, config, dtype):
    rng = np.random.default_rng(1)
    start = rng.standard_normal((3, 4)).astype(dtype)
    grads = [rng.standard_normal((3, 4)).astype(dtype) for _ in range(6)]
    if dtype == "complex128":
        start = start + 1j * rng.standard_normal((3, 4))
        grads = [g + 1j * rng.standard_normal((3, 4)) for g in grads]
    ref, ours = (torch.from_numpy(start.copy()) for _ in range(2))
    kw = CONFIGS[config]
    ref_opt = _run(torch.optim.NAdam, [ref], [[torch.from_numpy(g)] for g in grads],
                   foreach=False, **kw)
    opt = _run(NAdam, [ours], [[torch.from_numpy(g)] for g in grads], **kw)
    # same torch ops in the same order: bit for bit
    assert torch.equal(ours, ref)
    assert list(opt.state[ours]) == list(ref_opt.state[ref])
    for key, value in ref_opt.state[ref].items():
        assert torch.equal(opt.state[ours][key], value), key
        assert opt.state[ours][key].dtype == value.dtype, key


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_steps_match_torch(torch, dtype):
    rng = np.random.default_rng(2)
    start = rng.standard_normal((4, 5)).astype(dtype)
    grads = [rng.standard_normal((4, 5)).astype(dtype) for _ in range(8)]
    kw = CONFIGS["coupled"]
    ref = torch.from_numpy(start.copy())
    ref_opt = _run(torch.optim.NAdam, [ref], [[torch.from_numpy(g)] for g in grads], **kw)
    ours = portopt.Parameter(start.copy())
    opt = _run(NAdam, [ours], [[g] for g in grads], **kw)
    # float32: torch's CPU sqrt is not correctly rounded, an ULP here and there
    np.testing.assert_allclose(ours.data, ref.numpy(), rtol=1e-6 if dtype == "float32" else 1e-14)
    mu_product = opt.state[ours]["mu_product"]
    assert isinstance(mu_product, np.float32)
    assert mu_product == ref_opt.state[ref]["mu_product"].item()


def test_signature_and_defaults_are_torchs(torch):
    def shape(cls):
        return [(p.name, p.kind, p.default)
                for p in inspect.signature(cls.__init__).parameters.values()]

    assert shape(NAdam) == shape(torch.optim.NAdam)
    expected = {"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                "momentum_decay": 4e-3, "decoupled_weight_decay": False, "maximize": False,
                "foreach": None, "capturable": False, "differentiable": False}
    assert torch.optim.NAdam([torch.zeros(1)]).defaults == expected
    assert NAdam([portopt.Parameter(np.zeros(1))]).defaults == expected
    assert list(NAdam([portopt.Parameter(np.zeros(1))]).defaults) == list(expected)


def test_array_lr_must_have_one_element(torch):
    for lr in (torch.tensor([0.1, 0.2]), torch.tensor([0.1])):
        expected = outcome(torch.optim.NAdam, [torch.zeros(2)], lr=lr)
        assert outcome(NAdam, [torch.zeros(2)], lr=lr) == expected
    assert outcome(NAdam, [portopt.Parameter(np.zeros(2))], lr=np.array([0.1, 0.2])) == (
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
    for cls in (torch.optim.NAdam, NAdam):
        params, grad, kw = _bad_step_cases(torch)[case]
        opt = cls(params, **kw)
        params[0].grad = grad
        before = params[0].detach().clone()
        outcomes.append(outcome(opt.step))
        if cls is NAdam:
            assert torch.equal(params[0].detach(), before) and not opt.state
    assert outcomes[0] is not None and outcomes[0] == outcomes[1]


def test_sparse_gradients_are_refused_on_numpy():
    p = portopt.Parameter(np.ones(3))
    p.grad = portopt.SparseGrad(np.array([[0]]), np.array([1.0]), (3,))
    with pytest.raises(RuntimeError, match="^NAdam does not support sparse gradients$"):
        NAdam([p]).step()


def test_torch_only_flags_are_refused_on_numpy():
    for flag in ("capturable", "differentiable"):
        with pytest.raises(RuntimeError, match=f"`{flag}=True` needs"):
            NAdam([portopt.Parameter(np.zeros(2))], **{flag: True})


def test_state_is_lazy_with_torchs_keys(lib):
    p, q = lib.param([1.0, 2.0]), lib.param([3.0])
    opt = NAdam([p, q])
    assert not opt.state
    p.grad = lib.asarray([0.5, -0.5])
    opt.step()
    assert list(opt.state[p]) == ["step", "mu_product", "exp_avg", "exp_avg_sq"]
    assert q not in opt.state  # q had no grad
    step, mu_product = (lib.numpy(opt.state[p][k]) for k in ("step", "mu_product"))
    assert step.dtype == mu_product.dtype == np.float32 and step.shape == mu_product.shape == ()
    assert float(step) == 1.0
    assert float(mu_product) == np.float32(_mu(0.9, 4e-3, 1))


def test_scalar_state_follows_torchs_default_dtype(torch):
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        states = []
        for cls in (torch.optim.NAdam, NAdam):
            p = torch.ones(2, dtype=torch.float32)
            opt = cls([p])
            p.grad = torch.ones(2, dtype=torch.float32)
            opt.step()
            states.append(opt.state[p])
    finally:
        torch.set_default_dtype(old)
    for key in ("step", "mu_product"):
        assert states[0][key].dtype == states[1][key].dtype == torch.float64
        assert torch.equal(states[0][key], states[1][key])


@pytest.mark.parametrize("dtype", DTYPES)
def test_state_dict_round_trips_as_torchs_own(torch, dtype):
    """torch's load_state_dict casts ``mu_product`` to a floating parameter's dtype, so
    a run resumed from a state_dict leaves the uninterrupted one in float64; portopt's
    resumed runs follow torch's resumed run."""
    from portopt.checkpoint import to_torch

    rng = np.random.default_rng(4)
    start = rng.standard_normal((3, 2)).astype(dtype)
    grads = [torch.from_numpy(rng.standard_normal((3, 2)).astype(dtype)) for _ in range(8)]
    kw = {"lr": 0.05, "weight_decay": 0.1}
    ref = torch.from_numpy(start.copy())
    ref_opt = torch.optim.NAdam([ref], **kw)
    ours = portopt.Parameter(start.copy())
    opt = NAdam([ours], **kw)
    for g in grads[:4]:
        ref.grad, ours.grad = g, g.numpy()
        ref_opt.step()
        opt.step()
    resumed = []  # torch <- torch, torch <- portopt, portopt <- torch, portopt <- portopt
    for cls, source in ((torch.optim.NAdam, ref_opt.state_dict()),
                        (torch.optim.NAdam, to_torch(opt.state_dict())),
                        (NAdam, ref_opt.state_dict()), (NAdam, opt.state_dict())):
        p = torch.from_numpy(ref.numpy().copy())
        if cls is NAdam:
            p = portopt.Parameter(p.numpy())
        o = cls([p], **kw)
        o.load_state_dict(source)
        assert list(o.state[p]) == list(ref_opt.state[ref])
        mu_product = o.state[p]["mu_product"]
        assert str(mu_product.dtype).endswith(dtype)  # cast to the parameter's dtype
        resumed.append((p, o))
    for g in grads[4:]:
        for p, o in resumed:
            p.grad = g if isinstance(p, torch.Tensor) else g.numpy()
            o.step()
    expected = resumed[0][0].numpy()
    for p, _ in resumed[1:]:
        value = p.numpy() if isinstance(p, torch.Tensor) else p.data
        np.testing.assert_allclose(value, expected, rtol=1e-6 if dtype == "float32" else 1e-14)


def test_loading_an_old_state_dict_fills_torchs_defaults():
    p = portopt.Parameter(np.zeros(2))
    opt = NAdam([p])
    p.grad = np.ones(2)
    opt.step()
    sd = opt.state_dict()
    for key in ("maximize", "foreach", "capturable", "differentiable", "decoupled_weight_decay"):
        del sd["param_groups"][0][key]
    sd["state"][0]["step"], sd["state"][0]["mu_product"] = 1, 0.5  # saved as numbers
    fresh = NAdam([portopt.Parameter(np.zeros(2))])
    fresh.load_state_dict(sd)
    group = fresh.param_groups[0]
    assert (group["maximize"], group["foreach"], group["capturable"], group["differentiable"],
            group["decoupled_weight_decay"]) == (False, None, False, False, False)
    state = fresh.state[group["params"][0]]
    for key, value in (("step", 1.0), ("mu_product", 0.5)):
        assert isinstance(state[key], np.float32) and state[key] == value


def test_capturable_form_matches_torch(torch, monkeypatch):
    """The graph-safe algebra, run on the CPU by letting both sides accept it there."""
    from portopt.optim import _checks

    monkeypatch.setattr(importlib.import_module("torch.optim.nadam"),
                        "_get_capturable_supported_devices", lambda supports_xla=True: ["cpu"])
    monkeypatch.setattr(_checks, "CAPTURABLE_DEVICES", ["cpu"])
    runs = []
    for cls in (torch.optim.NAdam, NAdam):
        torch.manual_seed(0)
        p = torch.randn(5, dtype=torch.float32)
        opt = cls([p], lr=0.01, weight_decay=0.1, momentum_decay=0.05, capturable=True)
        for k in range(6):
            p.grad = torch.cos(p * (k + 1))
            opt.step()
        runs.append((p, opt.state[p]))
    (pt, st), (pp, sp) = runs
    assert torch.equal(pt, pp)
    for key in ("step", "mu_product", "exp_avg", "exp_avg_sq"):
        assert torch.equal(st[key], sp[key]) and st[key].device == sp[key].device, key


def test_differentiable_step_gives_torchs_gradients(torch):
    """Gradients of a loss after one step (torch's differentiable NAdam manages one),
    with respect to the initial weights, lr and beta1."""
    results = []
    for cls in (torch.optim.NAdam, NAdam):
        w0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
        lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
        beta1 = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
        w = w0.clone()
        opt = cls([w], lr=lr, betas=(beta1, 0.99), weight_decay=0.1, differentiable=True)
        w.grad = torch.sin(3 * w)
        opt.step()
        results.append(torch.autograd.grad((w ** 2).sum(), (w0, lr, beta1)))
    for ref, ours in zip(*results):
        torch.testing.assert_close(ours, ref, rtol=1e-13, atol=1e-15)


def test_portopt_can_differentiate_through_several_steps(torch):
    def run(w0, lr):
        w = w0.clone()
        opt = NAdam([w], lr=lr, weight_decay=0.1, differentiable=True)
        for k in range(3):
            w.grad = torch.sin(w * (k + 1))
            opt.step()
        return (w ** 2).sum()

    w0 = torch.tensor([0.3, -1.2], dtype=torch.float64, requires_grad=True)
    lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(run, (w0, lr))


def test_nan_and_inf_gradients_propagate_as_in_torch(torch):
    for bad in (float("nan"), float("inf")):
        results = []
        for cls in (torch.optim.NAdam, NAdam):
            p = torch.ones(2, 2)
            opt = cls([p])
            for g in (torch.tensor([[bad, 1.0], [1.0, 1.0]]), torch.ones(2, 2)):
                p.grad = g
                opt.step()
            results.append((p.clone(), dict(opt.state[p])))
        (p_ref, s_ref), (p_ours, s_ours) = results
        assert torch.equal(p_ours.isnan(), p_ref.isnan()) and p_ref.isnan().sum() == 1
        for key in s_ref:
            assert torch.allclose(s_ours[key], s_ref[key], equal_nan=True), key
