"""Adadelta: the kernel on every backend with hand-derived numbers, and the class against
torch.optim (constructor checks, step-time errors, state, state_dict, capturable)."""

from __future__ import annotations

import importlib
import inspect
import math

import numpy as np
import pytest
from helpers import check_result, raises

import portopt
from portopt import optim
from portopt.optim import _checks
from portopt.optim.adadelta import adadelta, adadelta_init

DTYPES = ["float32", "float64"]


def _rtol(dtype):
    return 1e-6 if dtype == "float32" else 1e-15


# -- the kernel, on every backend -----------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_first_step_by_hand(lib, dtype):
    # rho = 0: square_avg = g^2, delta = sqrt(eps) / sqrt(g^2 + eps) * g
    # eps = 3, g = 3: sqrt(3) / sqrt(12) = 1/2, so delta = 1.5; g = -1: delta = -sqrt(3)/2
    p, g = lib.asarray([1.0, 2.0], dtype), lib.asarray([3.0, -1.0], dtype)
    state = adadelta_init(p)
    new, st = adadelta(p, g, state, lr=0.5, rho=0.0, eps=3.0)
    check_result(new, p)
    delta = np.array([1.5, -math.sqrt(3) / 2])
    np.testing.assert_allclose(lib.numpy(new), [1.0, 2.0] - 0.5 * delta, rtol=_rtol(dtype))
    np.testing.assert_array_equal(lib.numpy(st.square_avg), [9.0, 1.0])
    np.testing.assert_allclose(lib.numpy(st.acc_delta), delta**2, rtol=_rtol(dtype))
    assert st.step == 1 and state.step == 0
    np.testing.assert_array_equal(lib.numpy(p), [1.0, 2.0])  # inputs untouched
    np.testing.assert_array_equal(lib.numpy(state.square_avg), [0.0, 0.0])


def test_two_steps_by_hand(lib):
    rho, eps, lr = 0.5, 0.25, 2.0
    p = lib.asarray([1.0], "float64")
    g1, g2 = 1.0, -2.0
    p1, s1 = adadelta(p, lib.asarray([g1], "float64"), adadelta_init(p), lr=lr, rho=rho, eps=eps)
    p2, s2 = adadelta(p1, lib.asarray([g2], "float64"), s1, lr=lr, rho=rho, eps=eps)
    v1 = (1 - rho) * g1**2
    d1 = math.sqrt(eps) / math.sqrt(v1 + eps) * g1
    u1 = (1 - rho) * d1**2
    v2 = rho * v1 + (1 - rho) * g2**2
    d2 = math.sqrt(u1 + eps) / math.sqrt(v2 + eps) * g2
    u2 = rho * u1 + (1 - rho) * d2**2
    np.testing.assert_allclose(lib.numpy(p2), [1.0 - lr * d1 - lr * d2], rtol=1e-15)
    np.testing.assert_allclose(lib.numpy(s2.square_avg), [v2], rtol=1e-15)
    np.testing.assert_allclose(lib.numpy(s2.acc_delta), [u2], rtol=1e-15)
    assert s2.step == 2


def test_weight_decay_and_maximize_by_hand(lib):
    p = lib.asarray([2.0], "float64")
    # maximize: g = -1; coupled decay: g = -1 + 0.5 * 2 = 0 -> no move, zero averages
    new, st = adadelta(p, lib.asarray([1.0], "float64"), adadelta_init(p), lr=1.0, rho=0.0,
                       eps=3.0, weight_decay=0.5, maximize=True)
    np.testing.assert_array_equal(lib.numpy(new), [2.0])
    np.testing.assert_array_equal(lib.numpy(st.square_avg), [0.0])
    # maximize alone: g = -3, delta = -1.5, p = 2 - 0.5 * (-1.5)
    new, _ = adadelta(p, lib.asarray([3.0], "float64"), adadelta_init(p), lr=0.5, rho=0.0,
                      eps=3.0, maximize=True)
    np.testing.assert_allclose(lib.numpy(new), [2.75], rtol=1e-15)


def test_complex_parameters_keep_averages_per_component(lib):
    p = lib.asarray([1 + 2j], "complex128")
    g = lib.asarray([3 - 1j], "complex128")
    new, st = adadelta(p, g, adadelta_init(p), lr=0.5, rho=0.0, eps=3.0)
    check_result(new, p)
    # re: g = 3 -> delta 1.5; im: g = -1 -> delta -sqrt(3)/2; square_avg = 9 + 1j
    delta = 1.5 - 1j * math.sqrt(3) / 2
    np.testing.assert_allclose(lib.numpy(new), [1 + 2j - 0.5 * delta], rtol=1e-15)
    np.testing.assert_array_equal(lib.numpy(st.square_avg), [9 + 1j])
    np.testing.assert_allclose(lib.numpy(st.acc_delta), [2.25 + 0.75j], rtol=1e-15)


@pytest.mark.parametrize("shape", [(), (1, 0, 2)])
def test_zero_d_and_empty_parameters(lib, shape):
    p = lib.asarray(np.ones(shape), "float32")
    g = lib.asarray(np.full(shape, 3.0), "float32")
    new, st = adadelta(p, g, adadelta_init(p), lr=0.5, rho=0.0, eps=3.0)
    for out in (new, st.square_avg, st.acc_delta):
        check_result(out, p)
    np.testing.assert_allclose(lib.numpy(new), np.full(shape, 0.25), rtol=1e-6)


def test_array_lr_matches_a_number(lib):
    p, g = lib.asarray([1.0, 3.0]), lib.asarray([0.5, -0.75])
    a, _ = adadelta(p, g, adadelta_init(p), lr=0.25, rho=0.9, eps=1e-6)
    b, _ = adadelta(p, g, adadelta_init(p), lr=lib.asarray(0.25, "float64"), rho=0.9, eps=1e-6)
    np.testing.assert_array_equal(lib.numpy(a), lib.numpy(b))


# -- the class against torch.optim ----------------------------------------------------------

def test_signature_and_defaults_are_torchs(torch):
    ours = inspect.signature(optim.Adadelta).parameters
    theirs = inspect.signature(torch.optim.Adadelta).parameters
    assert [(n, p.kind, p.default) for n, p in ours.items()] == \
        [(n, p.kind, p.default) for n, p in theirs.items()]
    t = torch.zeros(1, requires_grad=True)
    assert optim.Adadelta([portopt.Parameter(np.zeros(1))]).defaults == \
        torch.optim.Adadelta([t]).defaults


def test_rho_bounds_are_inclusive():
    for rho in (0.0, 1.0):
        optim.Adadelta([portopt.Parameter(np.ones(2))], rho=rho)
    raises(ValueError, "Tensor lr must be 1-element", optim.Adadelta,
            [portopt.Parameter(np.ones(2))], lr=np.array([0.1, 0.2]))


def test_array_lr_must_have_one_element(torch):
    raises(ValueError, "Tensor lr must be 1-element", torch.optim.Adadelta,
            [torch.ones(2, requires_grad=True)], lr=torch.tensor([0.1, 0.2]))


def test_sparse_gradients_are_rejected(torch):
    p = portopt.Parameter(np.ones(2))
    p.grad = portopt.SparseGrad(np.array([[0]]), np.array([1.0]), (2,))
    raises(RuntimeError, "Adadelta does not support sparse gradients", optim.Adadelta([p]).step)
    for cls in (optim.Adadelta, torch.optim.Adadelta):
        t = torch.ones(2, requires_grad=True)
        t.grad = torch.tensor([1.0, 0.0]).to_sparse()
        raises(RuntimeError, "Adadelta does not support sparse gradients", cls([t]).step)


def test_capturable_on_the_cpu_raises_torchs_assertion(torch):
    devices = [d for d in _checks.CAPTURABLE_DEVICES if d != "xla"]  # Adadelta leaves XLA out
    message = f"If capturable=True, params and state_steps must be on supported devices: {devices}."
    for cls in (optim.Adadelta, torch.optim.Adadelta):
        t = torch.ones(2, requires_grad=True)
        t.grad = torch.ones(2)
        raises(AssertionError, message, cls([t], capturable=True).step)
        assert t.tolist() == [1.0, 1.0]


def test_torch_only_flags_raise_on_numpy():
    for flag in ("capturable", "differentiable"):
        with pytest.raises(RuntimeError, match=f"`{flag}=True` needs"):
            optim.Adadelta([portopt.Parameter(np.ones(2))], **{flag: True})


def test_an_lr_that_requires_grad_raises_torchs_error(torch):
    # torch passes -lr to add_ as alpha, a Python number: with autograd on
    # (differentiable) a tensor that requires grad cannot become one
    for cls in (optim.Adadelta, torch.optim.Adadelta):
        t = torch.ones(2, requires_grad=True)
        t.grad = torch.ones(2)
        opt = cls([t], lr=torch.tensor(0.1, requires_grad=True), differentiable=True)
        raises(TypeError, "add_(): argument 'alpha' must be Number, not Tensor", opt.step)


def test_state_is_lazy_and_keyed_as_torch(torch):
    sides = []
    for cls in (optim.Adadelta, torch.optim.Adadelta):
        a, b = torch.ones(2, requires_grad=True), torch.ones(3, requires_grad=True)
        opt = cls([a, b])
        opt.step()
        assert len(opt.state) == 0
        a.grad = torch.full((2,), 0.5)
        opt.step()
        assert b not in opt.state
        st = opt.state[a]
        sides.append((list(st), st["step"].dtype, st["step"].shape, st["step"].device))
    assert sides[0] == sides[1] == (["step", "square_avg", "acc_delta"], torch.float32, (),
                                    torch.device("cpu"))


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    grads = [[rng.standard_normal(3), rng.standard_normal(())] for _ in range(6)]

    def make():
        params = [portopt.Parameter(np.linspace(-1, 1, 3)), portopt.Parameter(np.array(0.5))]
        return params, optim.Adadelta(params, lr=0.5, rho=0.8, weight_decay=0.1)

    params, opt = make()
    params2, opt2 = make()
    for step, g in enumerate(grads):
        if step == 3:
            for p, q in zip(params, params2):
                q.data[...] = p.data
            opt2.load_state_dict(opt.state_dict())
        for p, q, gi in zip(params, params2, g):
            p.grad = q.grad = gi
        opt.step()
        if step >= 3:
            opt2.step()
    for p, q in zip(params, params2):
        np.testing.assert_array_equal(p.data, q.data)
    for key in ("square_avg", "acc_delta", "step"):
        np.testing.assert_array_equal(opt.state[params[0]][key], opt2.state[params2[0]][key])


def test_a_torch_state_dict_continues_as_torch(torch):
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(4) for _ in range(6)]
    ref_p = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    ref = torch.optim.Adadelta([ref_p], lr=0.5, rho=0.7, foreach=False)
    ours_p = None
    for step, g in enumerate(grads):
        if step == 3:
            ours_p = portopt.Parameter(ref_p.detach().numpy().copy())
            ours = optim.Adadelta([ours_p])
            ours.load_state_dict(ref.state_dict())
            assert ours.param_groups[0]["rho"] == 0.7
        ref_p.grad = torch.from_numpy(g)
        ref.step()
        if ours_p is not None:
            ours_p.grad = g
            ours.step()
    np.testing.assert_allclose(ours_p.data, ref_p.detach().numpy(), rtol=1e-14)
    assert ours.state[ours_p]["step"] == 6


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_capturable_keeps_step_on_the_device_and_the_same_values(torch, monkeypatch, dtype):
    # Let both run capturable on the CPU, where torch normally refuses it.
    monkeypatch.setattr(importlib.import_module("torch.optim.adadelta"),
                        "_get_capturable_supported_devices", lambda supports_xla=True: ["cpu"])
    monkeypatch.setattr(_checks, "CAPTURABLE_DEVICES", ["cpu"])
    rng = np.random.default_rng(2)
    tdtype = getattr(torch, dtype)
    start = rng.standard_normal((3, 2))
    ps = [torch.tensor(start, dtype=tdtype, requires_grad=True) for _ in range(2)]
    opts = [cls([p], lr=0.5, weight_decay=0.1, capturable=True, foreach=False)
            for cls, p in zip((optim.Adadelta, torch.optim.Adadelta), ps)]
    for _ in range(4):
        g = torch.tensor(rng.standard_normal((3, 2)), dtype=tdtype)
        for p, opt in zip(ps, opts):
            p.grad = g.clone()
            opt.step()
        assert torch.equal(ps[0], ps[1])
    steps = [opt.state[p]["step"] for opt, p in zip(opts, ps)]
    assert [(s.device, s.dtype, float(s)) for s in steps] == \
        [(torch.device("cpu"), torch.float32, 4.0)] * 2


def test_differentiable_step_gives_torchs_gradients(torch):
    results = []
    for cls in (optim.Adadelta, torch.optim.Adadelta):
        f64 = dict(dtype=torch.float64, requires_grad=True)
        w = torch.tensor([1.0, -1.0], **f64)
        g = torch.tensor([1.0, 0.25], **f64)
        sq, acc = torch.tensor([0.5, 2.0], **f64), torch.tensor([0.25, 1.0], **f64)
        p = w.clone()
        opt = cls([p], lr=0.5, rho=0.75, weight_decay=0.1, differentiable=True)
        opt.state[p] = {"step": torch.tensor(1.0), "square_avg": sq.clone(),
                        "acc_delta": acc.clone()}
        p.grad = g
        opt.step()
        grads = torch.autograd.grad(p.sum(), (w, g, sq, acc))
        results.append([x.detach() for x in (p, *grads)])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-15, atol=0)
