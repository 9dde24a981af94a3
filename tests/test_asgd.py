"""ASGD: the kernel on every backend with hand-derived numbers, and the class against
torch.optim (constructor checks, step-time errors, the 0-d device state, state_dict,
capturable)."""

from __future__ import annotations

import copy
import importlib
import inspect

import numpy as np
import pytest
from helpers import check_result, raises

import portopt
from portopt import optim
from portopt.optim import _checks
from portopt.optim.asgd import asgd, asgd_init

f32 = np.float32


def _scalar(lib, x):
    return float(lib.numpy(x))


# -- the kernel, on every backend -----------------------------------------------------------

def test_three_steps_by_hand(lib):
    # lr = lambd = 1/2, alpha = 1, t0 = 0; eta is kept in float32 between steps
    kw = dict(lr=0.5, lambd=0.5, alpha=1.0, t0=0.0)
    p = lib.asarray([1.0], "float64")
    state = asgd_init(p, lr=0.5)
    assert (_scalar(lib, state.eta), _scalar(lib, state.mu), state.step) == (0.5, 1.0, 0)
    # step 1: eta = 0.5, mu = 1 -> p = 1 * (1 - 0.25) - 0.5 * 1 = 0.25 and ax = p
    p1, s1 = asgd(p, lib.asarray([1.0], "float64"), state, **kw)
    check_result(p1, p)
    np.testing.assert_array_equal(lib.numpy(p1), [0.25])
    np.testing.assert_array_equal(lib.numpy(s1.ax), [0.25])
    # then eta = 0.5 / (1 + 0.25 * 1) = 0.4 (in float32), mu = 1 / max(1, 1 - 0) = 1
    e1 = float(f32(0.4))
    assert (_scalar(lib, s1.eta), _scalar(lib, s1.mu), s1.step) == (e1, 1.0, 1)
    # step 2 uses that eta; mu is still 1, so ax copies p
    p2, s2 = asgd(p1, lib.asarray([1.0], "float64"), s1, **kw)
    p2_hand = 0.25 * (1 - 0.5 * e1) - e1
    np.testing.assert_allclose(lib.numpy(p2), [p2_hand], rtol=1e-15)
    np.testing.assert_array_equal(lib.numpy(s2.ax), lib.numpy(p2))
    e2 = float(f32(0.5 / 1.5))
    assert (_scalar(lib, s2.eta), _scalar(lib, s2.mu)) == (e2, 0.5)  # mu = 1 / max(1, 2)
    # step 3 (zero gradient): only the decay acts, and ax averages with mu = 1/2
    p3, s3 = asgd(p2, lib.asarray([0.0], "float64"), s2, **kw)
    p3_hand = p2_hand * (1 - 0.5 * e2)
    np.testing.assert_allclose(lib.numpy(p3), [p3_hand], rtol=1e-15)
    np.testing.assert_allclose(lib.numpy(s3.ax), [p2_hand + (p3_hand - p2_hand) * 0.5],
                               rtol=1e-15)
    assert (_scalar(lib, s3.eta), _scalar(lib, s3.mu)) == (float(f32(0.5 / 1.75)),
                                                           float(f32(1 / 3)))
    # nothing was mutated
    np.testing.assert_array_equal(lib.numpy(p1), [0.25])
    assert _scalar(lib, s1.eta) == e1 and _scalar(lib, state.eta) == 0.5


def test_ax_is_the_average_of_the_iterates(lib):
    # lambd = 0 keeps eta = lr; with t0 = 0, mu = 1/(t - 1) from step 3 on, so ax is the
    # plain mean of the iterates from step 2 on
    kw = dict(lr=0.25, lambd=0.0, alpha=0.75, t0=0.0)
    p = lib.asarray([1.0, -1.0], "float64")
    st = asgd_init(p, lr=0.25)
    iterates = []
    for g in ([1.0, 2.0], [0.5, -1.0], [-2.0, 0.25], [1.0, 1.0], [0.0, -0.5]):
        p, st = asgd(p, lib.asarray(g, "float64"), st, **kw)
        iterates.append(lib.numpy(p))
    # (to float32 precision: torch stores mu = 1/3, 1/4 in float32)
    np.testing.assert_allclose(lib.numpy(st.ax), np.mean(iterates[1:], axis=0), rtol=1e-7)


def test_copied_average_does_not_alias_the_parameter(lib):
    p = lib.asarray([1.0, 2.0])
    new, st = asgd(p, lib.asarray([0.5, 0.5]), asgd_init(p, lr=0.1), lr=0.1, lambd=0.0,
                   alpha=0.75, t0=1e6)
    np.testing.assert_array_equal(lib.numpy(st.ax), lib.numpy(new))
    assert st.ax is not new


def test_weight_decay_and_maximize_by_hand(lib):
    p = lib.asarray([2.0], "float64")
    kw = dict(lr=0.5, lambd=0.0, alpha=0.75, t0=1e6)
    # maximize: g = -1; coupled decay: g = -1 + 0.5 * 2 = 0 -> no move
    new, _ = asgd(p, lib.asarray([1.0], "float64"), asgd_init(p, lr=0.5), weight_decay=0.5,
                  maximize=True, **kw)
    np.testing.assert_array_equal(lib.numpy(new), [2.0])
    new, _ = asgd(p, lib.asarray([1.0], "float64"), asgd_init(p, lr=0.5), maximize=True, **kw)
    np.testing.assert_array_equal(lib.numpy(new), [2.5])


def test_complex_parameters_are_stepped_as_real_pairs(lib):
    p = lib.asarray([1 + 2j, -1j], "complex128")
    g = lib.asarray([1 - 1j, 2 + 0.5j], "complex128")
    new, st = asgd(p, g, asgd_init(p, lr=0.5), lr=0.5, lambd=0.5, alpha=1.0, t0=1e6,
                   weight_decay=0.5)
    check_result(new, p)
    # g += 0.5 p; p = p * (1 - 0.25) - 0.5 g, per component
    hand = np.array([1 + 2j, -1j]) * 0.75 - 0.5 * (np.array([1 - 1j, 2 + 0.5j])
                                                   + 0.5 * np.array([1 + 2j, -1j]))
    np.testing.assert_array_equal(lib.numpy(new), hand)
    np.testing.assert_array_equal(lib.numpy(st.ax), hand)


@pytest.mark.parametrize("shape", [(), (1, 0, 2)])
def test_zero_d_and_empty_parameters(lib, shape):
    p = lib.asarray(np.ones(shape), "float32")
    g = lib.asarray(np.full(shape, 0.5), "float32")
    new, st = asgd(p, g, asgd_init(p, lr=0.5), lr=0.5, lambd=0.0, alpha=0.75, t0=1e6)
    check_result(new, p)
    check_result(st.ax, p)
    np.testing.assert_array_equal(lib.numpy(new), np.full(shape, 0.75, dtype="float32"))


def test_class_keeps_step_eta_mu_as_0d_float32_on_the_parameters_device(lib):
    p = lib.param(np.ones(3), "float32")
    opt = optim.ASGD([p], lr=0.5)
    p.grad = lib.asarray(np.full(3, 0.5), "float32")
    opt.step()
    st = opt.state[p]
    assert list(st) == ["step", "eta", "mu", "ax"]
    data = p.data if isinstance(p, portopt.Parameter) else p
    for key in ("step", "eta", "mu"):
        assert tuple(st[key].shape) == ()
        assert st[key].dtype == lib.xp.float32
        if lib.name != "numpy":  # NumPy's only device is the host
            assert st[key].device == data.device
    # after one step: eta = lr / (1 + lambd * lr * 1)^alpha, rounded to float32
    assert float(lib.numpy(st["step"])) == 1.0 and float(lib.numpy(st["mu"])) == 1.0
    assert float(lib.numpy(st["eta"])) == float(f32(0.5 / (1 + 1e-4 * 0.5) ** 0.75))
    if lib.name == "numpy":
        assert type(st["step"]) is np.float32


# -- the class against torch.optim ----------------------------------------------------------

def test_signature_and_defaults_are_torchs(torch):
    ours = inspect.signature(optim.ASGD).parameters
    theirs = inspect.signature(torch.optim.ASGD).parameters
    assert [(n, p.kind, p.default) for n, p in ours.items()] == \
        [(n, p.kind, p.default) for n, p in theirs.items()]
    t = torch.zeros(1, requires_grad=True)
    assert optim.ASGD([portopt.Parameter(np.zeros(1))]).defaults == \
        torch.optim.ASGD([t]).defaults


def test_lambd_alpha_t0_are_not_validated():
    p = portopt.Parameter(np.ones(2))
    optim.ASGD([p], -0.0, -1.0, -1.0, -1.0)  # all positional, as in torch
    raises(ValueError, "Tensor lr must be 1-element", optim.ASGD, [p], lr=np.array([0.1, 0.2]))


def test_sparse_gradients_are_rejected(torch):
    p = portopt.Parameter(np.ones(2))
    p.grad = portopt.SparseGrad(np.array([[0]]), np.array([1.0]), (2,))
    raises(RuntimeError, "ASGD does not support sparse gradients", optim.ASGD([p]).step)
    for cls in (optim.ASGD, torch.optim.ASGD):
        t = torch.ones(2, requires_grad=True)
        t.grad = torch.tensor([1.0, 0.0]).to_sparse()
        raises(RuntimeError, "ASGD does not support sparse gradients", cls([t]).step)


def test_capturable_on_the_cpu_raises_torchs_assertion(torch):
    message = ("If capturable=True, params, mus, etas, and state_steps must be on supported "
               f"devices: {_checks.CAPTURABLE_DEVICES}.")
    for cls in (optim.ASGD, torch.optim.ASGD):
        t = torch.ones(2, requires_grad=True)
        t.grad = torch.ones(2)
        raises(AssertionError, message, cls([t], capturable=True).step)
        assert t.tolist() == [1.0, 1.0]


def test_torch_only_flags_raise_on_numpy():
    for flag in ("capturable", "differentiable"):
        with pytest.raises(RuntimeError, match=f"`{flag}=True` needs"):
            optim.ASGD([portopt.Parameter(np.ones(2))], **{flag: True})


@pytest.fixture(params=["float32", "float64"])
def default_dtype(request, torch):
    """torch's default dtype, which decides torch's dtype of step, eta and mu."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, request.param))
    yield request.param
    torch.set_default_dtype(previous)


def _same_runs(torch, make, steps=5):
    """Step portopt's and torch's ASGD side by side on float32 params (most of them 0-d,
    where torch's type promotion differs) and check that parameters and every state entry
    agree exactly, dtype included."""
    rng = np.random.default_rng(4)
    starts = [rng.standard_normal(s) for s in ((3, 2), *[()] * 16)]
    sides = []
    for cls in (optim.ASGD, torch.optim.ASGD):
        ps = [torch.tensor(a, dtype=torch.float32, requires_grad=True) for a in starts]
        sides.append((ps, make(cls, ps)))
    for _ in range(steps):
        grads = [torch.tensor(rng.standard_normal(p.shape), dtype=torch.float32)
                 for p in sides[0][0]]
        for ps, opt in sides:
            for p, g in zip(ps, grads):
                p.grad = g.clone()
            opt.step()
        for (p, q) in zip(sides[0][0], sides[1][0]):
            assert torch.equal(p, q)
            st, ref = sides[0][1].state[p], sides[1][1].state[q]
            assert list(st) == list(ref)
            for key in ref:
                assert st[key].dtype == ref[key].dtype and st[key].device == ref[key].device
                assert torch.equal(st[key], ref[key]), key


def test_scalar_state_follows_torchs_default_dtype(torch, default_dtype):
    # with a float64 default, mu is float64 and a 0-d float32 param is averaged in float64
    _same_runs(torch, lambda cls, ps: cls(ps, lr=0.1, lambd=0.3, t0=1, foreach=False),
               steps=12)


def _steps(opt, params, grads):
    for g in grads:
        for p, gi in zip(params, g):
            p.grad = gi
        opt.step()


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex128"])
def test_loading_casts_eta_and_mu_as_torch_does(torch, dtype):
    kinds = []
    for side in ("torch", "portopt"):
        def param(side=side):
            a = np.ones(2, dtype=dtype)
            return torch.from_numpy(a).requires_grad_() if side == "torch" \
                else portopt.Parameter(a)
        cls = torch.optim.ASGD if side == "torch" else optim.ASGD
        p, q = param(), param()
        opt = cls([p])
        p.grad = torch.ones(2, dtype=getattr(torch, dtype)) if side == "torch" else \
            np.ones(2, dtype=dtype)
        opt.step()
        fresh = cls([q])
        fresh.load_state_dict(opt.state_dict())
        kinds.append([str(fresh.state[q][k].dtype).rsplit(".", 1)[-1] for k in ("eta", "mu")])
    # a real floating param takes its dtype; complex parameters keep float32
    expected = "float32" if dtype != "float64" else "float64"
    assert kinds == [[expected, expected]] * 2


def test_a_float64_lr_after_loading_continues_as_torch_does(torch):
    # torch keeps eta in float64 once loading has cast it to a float64 param's dtype, and
    # then computes eta from a float64 lr without rounding it to float32
    rng = np.random.default_rng(3)
    grads = [[rng.standard_normal(3)] for _ in range(6)]
    lr = torch.tensor(0.03, dtype=torch.float64)
    ref_p = torch.ones(3, dtype=torch.float64, requires_grad=True)
    ref = torch.optim.ASGD([ref_p], lr=lr, lambd=0.3, alpha=0.9, foreach=False)
    _steps(ref, [ref_p], [[torch.from_numpy(g[0])] for g in grads[:3]])
    state = copy.deepcopy(ref.state_dict())  # torch's load would alias ref's step tensor
    loaded_p = ref_p.detach().clone().requires_grad_()
    loaded = torch.optim.ASGD([loaded_p], lr=0.5, foreach=False)
    loaded.load_state_dict(state)
    ours_p = portopt.Parameter(ref_p.detach().numpy().copy())
    ours = optim.ASGD([ours_p])
    ours.load_state_dict(state)
    _steps(ref, [ref_p], [[torch.from_numpy(g[0])] for g in grads[3:]])
    _steps(loaded, [loaded_p], [[torch.from_numpy(g[0])] for g in grads[3:]])
    _steps(ours, [ours_p], grads[3:])
    eta_ref, eta_loaded = float(ref.state[ref_p]["eta"]), float(loaded.state[loaded_p]["eta"])
    assert eta_ref != eta_loaded  # the quirk: the loaded run's eta is no longer float32
    assert float(ours.state[ours_p]["eta"]) == eta_loaded
    assert ours.state[ours_p]["eta"].dtype == np.float64
    np.testing.assert_allclose(ours_p.data, loaded_p.detach().numpy(), rtol=1e-15)


def test_numbers_in_an_old_checkpoint_become_0d_arrays(torch):
    out = []
    for cls, p in ((torch.optim.ASGD, torch.ones(2, requires_grad=True)),
                   (optim.ASGD, portopt.Parameter(np.ones(2, dtype=np.float32)))):
        opt = cls([p])
        sd = opt.state_dict()
        sd["state"] = {0: {"step": 3.0, "eta": 0.25, "mu": 1.0,
                           "ax": torch.zeros(2) if cls is torch.optim.ASGD else np.zeros(2)}}
        opt.load_state_dict(sd)
        st = opt.state[p]
        out.append([(k, str(st[k].dtype).rsplit(".", 1)[-1], float(st[k]))
                    for k in ("step", "eta", "mu")])
    assert out[0] == out[1] == [("step", "float32", 3.0), ("eta", "float32", 0.25),
                                ("mu", "float32", 1.0)]


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    grads = [[rng.standard_normal(3), rng.standard_normal(())] for _ in range(8)]

    def make():
        params = [portopt.Parameter(np.linspace(-1, 1, 3)), portopt.Parameter(np.array(0.5))]
        return params, optim.ASGD(params, lr=0.05, lambd=0.1, t0=2, weight_decay=0.1)

    params, opt = make()
    _steps(opt, params, grads[:4])
    params2, opt2 = make()
    for p, q in zip(params, params2):
        q.data[...] = p.data
    opt2.load_state_dict(opt.state_dict())
    _steps(opt, params, grads[4:])
    _steps(opt2, params2, grads[4:])
    for p, q in zip(params, params2):
        np.testing.assert_array_equal(p.data, q.data)
        for key in ("step", "eta", "mu", "ax"):
            np.testing.assert_array_equal(opt.state[p][key], opt2.state[q][key])


@pytest.mark.parametrize("lr", [0.05, 0.25])
def test_capturable_algebra_matches_torchs(torch, monkeypatch, default_dtype, lr):
    # Let both run their capturable branch on the CPU, where torch normally refuses it.
    monkeypatch.setattr(importlib.import_module("torch.optim.asgd"),
                        "_get_capturable_supported_devices", lambda supports_xla=True: ["cpu"])
    monkeypatch.setattr(_checks, "CAPTURABLE_DEVICES", ["cpu"])
    for lr_arg in (lr, torch.tensor(lr, dtype=torch.float64)):
        def make(cls, ps, lr_arg=lr_arg):
            return cls(ps, lr=lr_arg, lambd=0.1, t0=2, weight_decay=0.1, capturable=True,
                       foreach=False)
        _same_runs(torch, make, steps=6)


def _differentiable_step(torch, cls, mu):
    f64 = dict(dtype=torch.float64, requires_grad=True)
    w, g = torch.tensor([1.0, -1.0], **f64), torch.tensor([1.0, 0.25], **f64)
    ax = torch.tensor([0.5, 2.0], **f64)
    p = w.clone()
    opt = cls([p], lr=0.5, lambd=0.1, weight_decay=0.1, differentiable=True)
    opt.state[p] = {"step": torch.tensor(2.0), "eta": torch.tensor(0.25),
                    "mu": torch.tensor(mu), "ax": ax.clone()}
    p.grad = g
    opt.step()
    new_ax = opt.state[p]["ax"]
    grads = torch.autograd.grad((p + 2 * new_ax).sum(), (w, g, ax), allow_unused=True)
    return [x.detach() if x is not None else None for x in (p, new_ax, *grads)]


def test_differentiable_step_gives_torchs_gradients(torch):
    # mu = 1: ax copies the parameter
    ours, theirs = (_differentiable_step(torch, cls, 1.0) for cls in (optim.ASGD, torch.optim.ASGD))
    # the old ax gets no gradient: torch's copy_ reports zeros, portopt's graph no path
    ours[-1] = torch.zeros(2, dtype=torch.float64) if ours[-1] is None else ours[-1]
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_differentiable_averaging_step_by_hand(torch):
    # mu = 1/2: torch's backward fails here (its mu.copy_ overwrites the mu that mul_
    # saved); portopt's pure kernel does not, and its gradients are the hand-derived ones:
    # p' = p (1 - lambd eta) - eta (g + wd p) -> dp'/dp = 1 - 0.025 - 0.025, dp'/dg = -eta
    # ax' = ax + mu (p' - ax) -> dax'/dax = 1/2, dax'/dp = 0.475, dax'/dg = -0.125
    _, _, dw, dg, dax = _differentiable_step(torch, optim.ASGD, 0.5)
    torch.testing.assert_close(dw, torch.full((2,), 0.95 + 2 * 0.475, dtype=torch.float64))
    torch.testing.assert_close(dg, torch.full((2,), -0.25 - 2 * 0.125, dtype=torch.float64))
    torch.testing.assert_close(dax, torch.full((2,), 1.0, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        _differentiable_step(torch, torch.optim.ASGD, 0.5)
