"""Adamax: the kernel on every backend with hand-derived numbers, and the class against
torch.optim (constructor checks, step-time errors, state, state_dict, capturable)."""

from __future__ import annotations

import importlib
import inspect

import numpy as np
import pytest
from helpers import check_result, raises

import portopt
from portopt import optim
from portopt.optim import _checks
from portopt.optim.adamax import adamax, adamax_init

DTYPES = ["float32", "float64"]


# -- the kernel, on every backend -----------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_two_steps_by_hand(lib, dtype):
    # beta1 = beta2 = 1/2, eps = 0, lr = 1/4: every intermediate below is exact
    kw = dict(lr=0.25, beta1=0.5, beta2=0.5, eps=0.0)
    p, g1 = lib.asarray([1.0, -2.0], dtype), lib.asarray([2.0, 0.5], dtype)
    state = adamax_init(p)
    p1, s1 = adamax(p, g1, state, **kw)
    check_result(p1, p)
    # m = g/2 = [1, 0.25]; u = |g| = [2, 0.5]; clr = 0.25 / (1 - 0.5) = 0.5
    np.testing.assert_array_equal(lib.numpy(s1.exp_avg), [1.0, 0.25])
    np.testing.assert_array_equal(lib.numpy(s1.exp_inf), [2.0, 0.5])
    np.testing.assert_array_equal(lib.numpy(p1), [0.75, -2.25])
    assert s1.step == 1
    g2 = lib.asarray([-4.0, 0.125], dtype)
    p2, s2 = adamax(p1, g2, s1, **kw)
    # m = [1 + (-4 - 1)/2, 0.25 + (0.125 - 0.25)/2] = [-1.5, 0.1875]
    # u = [max(1, 4), max(0.25, 0.125)] = [4, 0.25]; clr = 0.25 / (1 - 0.25) = 1/3
    np.testing.assert_array_equal(lib.numpy(s2.exp_avg), [-1.5, 0.1875])
    np.testing.assert_array_equal(lib.numpy(s2.exp_inf), [4.0, 0.25])
    rtol = 1e-7 if dtype == "float32" else 1e-16
    np.testing.assert_allclose(lib.numpy(p2), [0.75 + 0.125, -2.25 - 0.25], rtol=rtol)
    assert s2.step == 2
    # nothing was mutated
    np.testing.assert_array_equal(lib.numpy(p), [1.0, -2.0])
    np.testing.assert_array_equal(lib.numpy(s1.exp_avg), [1.0, 0.25])
    np.testing.assert_array_equal(lib.numpy(state.exp_inf), [0.0, 0.0])


def test_eps_sits_inside_the_maximum(lib):
    # a zero gradient still makes exp_inf = |0| + eps, and the step is lr * m / u = 0
    p = lib.asarray([1.0, 2.0], "float64")
    new, st = adamax(p, lib.asarray([0.0, 0.0], "float64"), adamax_init(p), lr=0.1,
                     beta1=0.9, beta2=0.999, eps=0.5)
    np.testing.assert_array_equal(lib.numpy(st.exp_inf), [0.5, 0.5])
    np.testing.assert_array_equal(lib.numpy(new), [1.0, 2.0])
    # the decayed norm wins once it is larger: max(0.5 * 0.5, |1| + 0.5) then max(0.75, 0.5)
    _, st = adamax(p, lib.asarray([1.0, 0.0], "float64"), st, lr=0.1, beta1=0.9, beta2=0.5,
                   eps=0.5)
    np.testing.assert_array_equal(lib.numpy(st.exp_inf), [1.5, 0.5])
    _, st = adamax(p, lib.asarray([0.0, 0.0], "float64"), st, lr=0.1, beta1=0.9, beta2=0.5,
                   eps=0.5)
    np.testing.assert_array_equal(lib.numpy(st.exp_inf), [0.75, 0.5])


def test_weight_decay_and_maximize_by_hand(lib):
    p = lib.asarray([2.0], "float64")
    kw = dict(lr=0.25, beta1=0.5, beta2=0.5, eps=0.0)
    # maximize: g = -1; coupled decay: g = -1 + 0.5 * 2 = 0 -> m = 0, u = eps, no move
    new, st = adamax(p, lib.asarray([1.0], "float64"), adamax_init(p), weight_decay=0.5,
                     maximize=True, **{**kw, "eps": 0.5})
    np.testing.assert_array_equal(lib.numpy(new), [2.0])
    np.testing.assert_array_equal(lib.numpy(st.exp_avg), [0.0])
    np.testing.assert_array_equal(lib.numpy(st.exp_inf), [0.5])
    # maximize alone: g = -1 -> m = -0.5, u = 1, p = 2 + 0.5 * 0.5 / 1
    new, _ = adamax(p, lib.asarray([1.0], "float64"), adamax_init(p), maximize=True, **kw)
    np.testing.assert_array_equal(lib.numpy(new), [2.25])


def test_complex_parameters_are_stepped_as_real_pairs(lib):
    kw = dict(lr=0.25, beta1=0.5, beta2=0.5, eps=0.0)
    p = lib.asarray([1 + 2j, -1j], "complex128")
    g = lib.asarray([2 - 0.5j, 1 + 1j], "complex128")
    new, st = adamax(p, g, adamax_init(p), **kw)
    check_result(new, p)
    # per component: m = g/2, u = |g_k|, p -= 0.5 * m / u = 0.25 * sign(g_k)
    np.testing.assert_array_equal(lib.numpy(new), [0.75 + 2.25j, -0.25 - 1.25j])
    np.testing.assert_array_equal(lib.numpy(st.exp_inf), [2 + 0.5j, 1 + 1j])
    np.testing.assert_array_equal(lib.numpy(p), [1 + 2j, -1j])


@pytest.mark.parametrize("shape", [(), (1, 0, 2)])
def test_zero_d_and_empty_parameters(lib, shape):
    p = lib.asarray(np.ones(shape), "float32")
    g = lib.asarray(np.full(shape, 0.5), "float32")
    new, st = adamax(p, g, adamax_init(p), lr=0.5, beta1=0.5, beta2=0.5, eps=0.0)
    check_result(new, p)
    check_result(st.exp_avg, p)
    check_result(st.exp_inf, p)
    np.testing.assert_array_equal(lib.numpy(new), np.full(shape, 0.5, dtype="float32"))


def test_array_lr_and_betas_match_numbers(lib):
    # with values exact in float32, array hyper-parameters give the same step as numbers
    p, g = lib.asarray([1.0, 3.0]), lib.asarray([0.5, -0.75])
    a, sa = adamax(p, g, adamax_init(p), lr=0.25, beta1=0.5, beta2=0.75, eps=0.0)
    b, sb = adamax(p, g, adamax_init(p), lr=lib.asarray(0.25, "float32"),
                   beta1=lib.asarray(0.5, "float32"), beta2=lib.asarray(0.75, "float64"), eps=0.0)
    np.testing.assert_array_equal(lib.numpy(a), lib.numpy(b))
    np.testing.assert_array_equal(lib.numpy(sa.exp_inf), lib.numpy(sb.exp_inf))


def test_differentiable_form_gives_the_same_values(lib):
    p = lib.asarray([1.0, -2.0, 0.5], "float64")
    st = adamax_init(p)
    for g in ([0.5, 1.0, -2.0], [1.0, -0.25, 3.0]):
        a, sa = adamax(p, lib.asarray(g, "float64"), st, lr=0.1, beta1=0.9, beta2=0.5, eps=0.1)
        b, sb = adamax(p, lib.asarray(g, "float64"), st, lr=0.1, beta1=0.9, beta2=0.5, eps=0.1,
                       differentiable=True)
        np.testing.assert_array_equal(lib.numpy(a), lib.numpy(b))
        np.testing.assert_array_equal(lib.numpy(sa.exp_inf), lib.numpy(sb.exp_inf))
        p, st = a, sa


# -- the class against torch.optim ----------------------------------------------------------

def test_signature_and_defaults_are_torchs(torch):
    ours = inspect.signature(optim.Adamax).parameters
    theirs = inspect.signature(torch.optim.Adamax).parameters
    assert [(n, p.kind, p.default) for n, p in ours.items()] == \
        [(n, p.kind, p.default) for n, p in theirs.items()]
    t = torch.zeros(1, requires_grad=True)
    assert optim.Adamax([portopt.Parameter(np.zeros(1))]).defaults == \
        torch.optim.Adamax([t]).defaults


def test_array_lr_must_have_one_element(torch):
    for cls, p, lr in ((optim.Adamax, portopt.Parameter(np.ones(2)), np.array([0.1, 0.2])),
                       (torch.optim.Adamax, torch.ones(2, requires_grad=True),
                        torch.tensor([0.1, 0.2]))):
        raises(ValueError, "Tensor lr must be 1-element", cls, [p], lr=lr)


def test_constructor_checks_without_torch():
    raises(ValueError, "Tensor lr must be 1-element", optim.Adamax,
            [portopt.Parameter(np.ones(2))], lr=np.array([0.1, 0.2]))
    optim.Adamax([portopt.Parameter(np.ones(2))], lr=np.array([0.1]))  # 1-element is fine


def test_sparse_gradients_are_rejected(torch):
    p = portopt.Parameter(np.ones(2))
    p.grad = portopt.SparseGrad(np.array([[0]]), np.array([1.0]), (2,))
    raises(RuntimeError, "Adamax does not support sparse gradients", optim.Adamax([p]).step)
    for cls in (optim.Adamax, torch.optim.Adamax):
        t = torch.ones(2, requires_grad=True)
        t.grad = torch.tensor([1.0, 0.0]).to_sparse()
        raises(RuntimeError, "Adamax does not support sparse gradients", cls([t]).step)


def test_capturable_on_the_cpu_raises_torchs_assertion(torch):
    message = ("If capturable=True, params and state_steps must be on supported devices: "
               f"{_checks.CAPTURABLE_DEVICES}.")
    for cls in (optim.Adamax, torch.optim.Adamax):
        t = torch.ones(2, requires_grad=True)
        t.grad = torch.ones(2)
        raises(AssertionError, message, cls([t], capturable=True).step)
        assert t.tolist() == [1.0, 1.0]


def test_torch_only_flags_raise_on_numpy():
    for flag in ("capturable", "differentiable"):
        p = portopt.Parameter(np.ones(2))
        with pytest.raises(RuntimeError, match=f"`{flag}=True` needs"):
            optim.Adamax([p], **{flag: True})


def test_an_lr_that_requires_grad_raises_torchs_error(torch):
    # torch hands -lr / (1 - beta1^t) to addcdiv_ as a Python number: with autograd on
    # (differentiable) a tensor that requires grad cannot become one
    for cls in (optim.Adamax, torch.optim.Adamax):
        t = torch.ones(2, requires_grad=True)
        t.grad = torch.ones(2)
        opt = cls([t], lr=torch.tensor(0.1, requires_grad=True), differentiable=True)
        raises(TypeError, "addcdiv_(): argument 'value' must be Number, not Tensor", opt.step)


def test_state_is_lazy_and_keyed_as_torch(torch):
    sides = []
    for cls in (optim.Adamax, torch.optim.Adamax):
        a, b = torch.ones(2, requires_grad=True), torch.ones(3, requires_grad=True)
        opt = cls([a, b])
        opt.step()
        assert len(opt.state) == 0
        a.grad = torch.full((2,), 0.5)
        opt.step()
        assert b not in opt.state
        st = opt.state[a]
        sides.append((list(st), st["step"].dtype, st["step"].shape, st["step"].device))
    assert sides[0] == sides[1] == (["step", "exp_avg", "exp_inf"], torch.float32, (),
                                    torch.device("cpu"))


def test_numpy_state_is_a_float32_step_and_arrays():
    p = portopt.Parameter(np.ones(3, dtype=np.float32))
    opt = optim.Adamax([p])
    p.grad = np.full(3, 0.5, dtype=np.float32)
    opt.step()
    opt.step()
    st = opt.state[p]
    assert list(st) == ["step", "exp_avg", "exp_inf"]
    assert st["step"] == 2 and st["step"].dtype == np.float32
    assert st["exp_inf"].dtype == np.float32 and st["exp_inf"].shape == (3,)


def _run(opt, params, grads):
    for g in grads:
        for p, gi in zip(params, g):
            p.grad = gi
        opt.step()


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    grads = [[rng.standard_normal(3), rng.standard_normal(())] for _ in range(6)]

    def make():
        params = [portopt.Parameter(np.linspace(-1, 1, 3)), portopt.Parameter(np.array(0.5))]
        return params, optim.Adamax(params, lr=0.05, weight_decay=0.1)

    params, opt = make()
    _run(opt, params, grads[:3])
    params2, opt2 = make()
    for p, q in zip(params, params2):
        q.data[...] = p.data
    opt2.load_state_dict(opt.state_dict())
    _run(opt, params, grads[3:])
    _run(opt2, params2, grads[3:])
    for p, q in zip(params, params2):
        np.testing.assert_array_equal(p.data, q.data)
    for key in ("exp_avg", "exp_inf", "step"):
        np.testing.assert_array_equal(opt.state[params[0]][key], opt2.state[params2[0]][key])


def test_state_dict_moves_between_torch_and_portopt(torch):
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(4).astype(np.float32) for _ in range(6)]
    ref_p = torch.zeros(4, requires_grad=True)
    ref = torch.optim.Adamax([ref_p], lr=0.1, betas=(0.8, 0.9), foreach=False)
    for g in grads[:3]:
        ref_p.grad = torch.from_numpy(g)
        ref.step()
    ours_p = portopt.Parameter(ref_p.detach().numpy().copy())
    ours = optim.Adamax([ours_p], lr=0.5)
    ours.load_state_dict(ref.state_dict())
    assert ours.param_groups[0]["betas"] == (0.8, 0.9) and ours.param_groups[0]["lr"] == 0.1
    for g in grads[3:]:
        ref_p.grad = torch.from_numpy(g)
        ref.step()
        ours_p.grad = g
        ours.step()
    np.testing.assert_array_equal(ours_p.data, ref_p.detach().numpy())  # sqrt-free: bit-exact
    np.testing.assert_array_equal(ours.state[ours_p]["exp_inf"], ref.state[ref_p]["exp_inf"])
    assert ours.state[ours_p]["step"] == 6


@pytest.fixture(params=["float32", "float64"])
def default_dtype(request, torch):
    """torch's default dtype, which decides the dtype of a capturable step."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, request.param))
    yield request.param
    torch.set_default_dtype(previous)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_capturable_algebra_matches_torchs(torch, monkeypatch, default_dtype, dtype):
    # Let both run their capturable branch on the CPU, where torch normally refuses it.
    monkeypatch.setattr(importlib.import_module("torch.optim.adamax"),
                        "_get_capturable_supported_devices",
                        lambda supports_xla=True: ["cpu"])
    monkeypatch.setattr(_checks, "CAPTURABLE_DEVICES", ["cpu"])
    rng = np.random.default_rng(2)
    tdtype = getattr(torch, dtype)
    # 0-d parameters too: there a float64 step promotes the update, which torch's
    # in-place addcdiv_ rounds back to the parameter's dtype
    starts = [rng.standard_normal(s) for s in ((3, 2), *[()] * 8)]
    for lr in (0.05, torch.tensor(0.05, dtype=torch.float64)):
        sides = []
        for cls in (optim.Adamax, torch.optim.Adamax):
            ps = [torch.tensor(a, dtype=tdtype, requires_grad=True) for a in starts]
            sides.append((ps, cls(ps, lr=lr, weight_decay=0.1, capturable=True,
                                  foreach=False)))
        for _ in range(5):
            grads = [torch.tensor(rng.standard_normal(a.shape), dtype=tdtype) for a in starts]
            for ps, opt in sides:
                for p, g in zip(ps, grads):
                    p.grad = g.clone()
                opt.step()
            for p, q in zip(sides[0][0], sides[1][0]):
                assert torch.equal(p, q)
                st, ref = sides[0][1].state[p], sides[1][1].state[q]
                for key in ref:
                    assert torch.equal(st[key], ref[key]) and st[key].dtype == ref[key].dtype
                    assert st[key].device == ref[key].device


def test_differentiable_step_gives_torchs_gradients(torch):
    # One step from a state that requires grad (torch's in-place ops allow only one);
    # beta2 * exp_inf ties with |g| + eps in the second entry, where the max splits.
    results = []
    for cls in (optim.Adamax, torch.optim.Adamax):
        f64 = dict(dtype=torch.float64, requires_grad=True)
        w = torch.tensor([1.0, -1.0], **f64)
        g = torch.tensor([1.0, 0.25], **f64)
        exp_avg, exp_inf = torch.tensor([0.5, -0.5], **f64), torch.tensor([0.5, 1.0], **f64)
        p = w.clone()
        opt = cls([p], lr=0.25, betas=(0.5, 0.5), eps=0.25, differentiable=True)
        opt.state[p] = {"step": torch.tensor(1.0), "exp_avg": exp_avg.clone(),
                        "exp_inf": exp_inf.clone()}
        p.grad = g
        opt.step()
        grads = torch.autograd.grad(p.sum(), (w, g, exp_avg, exp_inf))
        results.append([x.detach() for x in (p, *grads)])
    for a, b in zip(*results):
        assert torch.equal(a, b)
    assert results[1][4][1] != 0  # the tied entry passes gradient to exp_inf (split)
