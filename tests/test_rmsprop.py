"""RMSprop: the kernel on every backend, and the class against torch.optim.RMSprop.

Hand-derived steps pick gradients and ``alpha`` so that the averages are perfect
squares: every intermediate, square roots included, is exact in float32 and float64.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
from helpers import check_result, outcome

import portopt
from portopt.optim.rmsprop import RMSprop, RMSpropState, rmsprop, rmsprop_init

DTYPES = ["float32", "float64"]


# -- the kernel -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_first_step_by_hand(lib, dtype):
    p, g = lib.asarray([1.0, -2.0], dtype), lib.asarray([2.0, -4.0], dtype)
    state = rmsprop_init(p)
    new, st = rmsprop(p, g, state, lr=0.5, alpha=0.75, eps=0.0)
    for out in (new, st.square_avg):
        check_result(out, p)
    # v = 0.25 g^2 = [1, 4], sqrt(v) = [1, 2]; p -= 0.5 * g / sqrt(v) = [1, 1]
    np.testing.assert_array_equal(lib.numpy(st.square_avg), [1.0, 4.0])
    np.testing.assert_array_equal(lib.numpy(new), [0.0, -1.0])
    assert st.step == 1 and state.step == 0
    assert st.momentum_buffer is None and st.grad_avg is None
    np.testing.assert_array_equal(lib.numpy(p), [1.0, -2.0])  # inputs untouched
    assert not lib.numpy(state.square_avg).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_centered_with_momentum_two_steps_by_hand(lib, dtype):
    p = lib.asarray([1.0], dtype)
    kw = dict(lr=0.25, alpha=0.5, eps=0.0, momentum=0.5, centered=True)
    state = rmsprop_init(p, momentum=0.5, centered=True)
    p1, s1 = rmsprop(p, lib.asarray([2.0], dtype), state, **kw)
    # v = 0.5 * 4 = 2, gbar = 0.5 * 2 = 1, sqrt(v - gbar^2) = 1; b = 2 / 1; p -= 0.25 * 2
    np.testing.assert_array_equal(lib.numpy(s1.square_avg), [2.0])
    np.testing.assert_array_equal(lib.numpy(s1.grad_avg), [1.0])
    np.testing.assert_array_equal(lib.numpy(s1.momentum_buffer), [2.0])
    np.testing.assert_array_equal(lib.numpy(p1), [0.5])
    p2, s2 = rmsprop(p1, lib.asarray([1.5], dtype), s1, **kw)
    # v = 1 + 1.125, gbar = 1 + 0.5 * 0.5 = 1.25, v - gbar^2 = 9/16; b = 0.5 * 2 + 1.5 / 0.75
    np.testing.assert_array_equal(lib.numpy(s2.square_avg), [2.125])
    np.testing.assert_array_equal(lib.numpy(s2.grad_avg), [1.25])
    np.testing.assert_array_equal(lib.numpy(s2.momentum_buffer), [3.0])
    np.testing.assert_array_equal(lib.numpy(p2), [0.5 - 0.75])
    assert s2.step == 2
    np.testing.assert_array_equal(lib.numpy(s1.momentum_buffer), [2.0])  # old state untouched


def test_eps_is_added_after_the_square_root(lib):
    p, g = lib.asarray([0.0]), lib.asarray([2.0])
    # v = 0.25 * 4 = 1: sqrt(v) + eps = 2 (eps inside the root would give sqrt(2))
    new, _ = rmsprop(p, g, rmsprop_init(p), lr=0.5, alpha=0.75, eps=1.0)
    np.testing.assert_array_equal(lib.numpy(new), [-0.5])


def test_weight_decay_is_coupled_and_maximize_negates_first(lib):
    p, g = lib.asarray([2.0]), lib.asarray([1.0])
    # maximize: g = -1, then + 0.5 * 2 = 0: nothing moves (eps keeps 0 / eps finite)
    new, st = rmsprop(p, g, rmsprop_init(p), lr=0.5, alpha=0.75, eps=1.0, weight_decay=0.5,
                      maximize=True)
    np.testing.assert_array_equal(lib.numpy(new), [2.0])
    np.testing.assert_array_equal(lib.numpy(st.square_avg), [0.0])
    # g = 1 + 0.5 * 2 = 2, v = 1: p -= 0.5 * 2 / 1
    new, _ = rmsprop(p, g, rmsprop_init(p), lr=0.5, alpha=0.75, eps=0.0, weight_decay=0.5)
    np.testing.assert_array_equal(lib.numpy(new), [1.0])


def test_complex_parameters_are_stepped_per_real_component(lib):
    p, g = lib.asarray([0j], "complex128"), lib.asarray([2 + 4j], "complex128")
    new, st = rmsprop(p, g, rmsprop_init(p), lr=0.5, alpha=0.75, eps=0.0)
    check_result(new, p)
    # v = 0.25 (re^2, im^2) = (1, 4); each part moves by 0.5 * g / sqrt(v) = 1
    np.testing.assert_array_equal(lib.numpy(st.square_avg), [1 + 4j])
    np.testing.assert_array_equal(lib.numpy(new), [-1 - 1j])


@pytest.mark.parametrize("shape", [(), (1, 0, 2)], ids=str)
def test_zero_dim_and_empty_parameters(lib, shape):
    p = lib.asarray(np.ones(shape), "float32")
    st = rmsprop_init(p, momentum=0.9, centered=True)
    new, st = rmsprop(p, lib.asarray(np.ones(shape), "float32"), st, lr=0.1, alpha=0.9,
                      eps=1e-8, momentum=0.9, centered=True)
    for out in (new, st.square_avg, st.momentum_buffer, st.grad_avg):
        check_result(out, p)


def test_array_lr_equals_float_lr(lib):
    p, g = lib.asarray([1.0, 3.0]), lib.asarray([0.3, -0.7])
    kw = dict(alpha=0.9, eps=1e-8, momentum=0.5)
    a, _ = rmsprop(p, g, rmsprop_init(p, momentum=0.5), lr=0.125, **kw)
    b, _ = rmsprop(p, g, rmsprop_init(p, momentum=0.5), lr=lib.asarray(0.125), **kw)
    np.testing.assert_array_equal(lib.numpy(a), lib.numpy(b))


def test_alpha_above_one_makes_nan_as_in_torch(lib):
    # v = 1.5 * 0 - 0.5 g^2 < 0: the square root is NaN
    p, g = lib.asarray([1.0]), lib.asarray([1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy reports the invalid sqrt
        new, _ = rmsprop(p, g, rmsprop_init(p), lr=0.01, alpha=1.5, eps=1e-8)
    assert np.isnan(lib.numpy(new)).all()


def test_state_type_fields_are_torchs_keys():
    assert RMSpropState._fields == ("step", "square_avg", "momentum_buffer", "grad_avg")


# -- the class, against torch.optim.RMSprop -------------------------------------------------

def _run(cls, params, grads, **kw):
    opt = cls(params, **kw)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g
        opt.step()
    return opt


CONFIGS = {
    "default": {},
    "centered-momentum": {"lr": 0.02, "centered": True, "momentum": 0.7, "weight_decay": 0.1},
    "maximize": {"maximize": True, "alpha": 0.9},
}


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex128"])
def test_steps_match_torch(lib, torch, config, dtype):
    # on torch tensors the same torch ops run in the same order: bit for bit; elsewhere
    # only torch's CPU sqrt (not correctly rounded: ~20% of float32 results 1 ULP off on
    # an AMD EPYC) and, in float64, torch's FMA in `add(alpha=)` differ
    rng = np.random.default_rng(1)
    start = rng.standard_normal((3, 4)).astype(dtype)
    grads = [rng.standard_normal((3, 4)).astype(dtype) for _ in range(5)]
    if dtype == "complex128":
        start = start + 1j * rng.standard_normal((3, 4))
        grads = [g + 1j * rng.standard_normal((3, 4)) for g in grads]
    kw = CONFIGS[config]
    ref = torch.from_numpy(start.copy())
    ref_opt = _run(torch.optim.RMSprop, [ref], [[torch.from_numpy(g)] for g in grads],
                   foreach=False, **kw)
    ours = lib.param(start)
    opt = _run(RMSprop, [ours], [[lib.asarray(g)] for g in grads], **kw)
    exact = lib.name == "torch"
    tol = {"rtol": 4e-6, "atol": 1e-6} if dtype == "float32" else {"rtol": 1e-14}
    assert list(opt.state[ours]) == list(ref_opt.state[ref])
    pairs = [(ours, ref)] + [(opt.state[ours][k], v) for k, v in ref_opt.state[ref].items()]
    for mine, theirs in pairs:
        if exact:
            np.testing.assert_array_equal(lib.numpy(mine), theirs.numpy())
        else:
            np.testing.assert_allclose(lib.numpy(mine), theirs.numpy(), **tol)


def test_signature_and_defaults_are_torchs(torch):
    def shape(cls):
        return [(p.name, p.kind, p.default)
                for p in inspect.signature(cls.__init__).parameters.values()]

    assert shape(RMSprop) == shape(torch.optim.RMSprop)
    expected = {"lr": 1e-2, "momentum": 0, "alpha": 0.99, "eps": 1e-8, "centered": False,
                "weight_decay": 0, "capturable": False, "foreach": None, "maximize": False,
                "differentiable": False}
    assert torch.optim.RMSprop([torch.zeros(1, requires_grad=True)]).defaults == expected
    assert RMSprop([portopt.Parameter(np.zeros(1))]).defaults == expected


def test_array_lr_must_have_one_element(torch):
    for lr in (torch.tensor([0.1, 0.2]), torch.tensor([0.1])):
        expected = outcome(torch.optim.RMSprop, [torch.zeros(2)], lr=lr)
        assert outcome(RMSprop, [torch.zeros(2)], lr=lr) == expected
    assert outcome(RMSprop, [portopt.Parameter(np.zeros(2))], lr=np.array([0.1, 0.2])) == (
        ValueError, "Tensor lr must be 1-element")


def test_alpha_above_one_makes_the_parameters_nan_as_in_torch(torch):
    values = []
    for cls in (torch.optim.RMSprop, RMSprop):
        p = torch.ones(3, requires_grad=True)
        opt = cls([p], alpha=1.5)
        p.grad = torch.ones(3)
        opt.step()
        values.append(p.detach().clone())
    assert torch.isnan(values[0]).all() and torch.isnan(values[1]).all()


def _bad_step_cases(torch):
    def p():
        return torch.ones(2, requires_grad=True)

    def lr():
        return torch.tensor(0.01, requires_grad=True)

    sparse = torch.ones(2).to_sparse()
    return {
        "sparse": ([p()], sparse, {}),
        "capturable-on-cpu": ([p()], torch.ones(2), {"capturable": True}),
        "foreach-differentiable": ([p()], torch.ones(2), {"foreach": True, "differentiable": True}),
        "differentiable-lr": ([p().clone()], torch.ones(2), {"lr": lr(), "differentiable": True}),
        "differentiable-lr-momentum": ([p().clone()], torch.ones(2),
                                       {"lr": lr(), "momentum": 0.5, "differentiable": True}),
        "differentiable-alpha": ([p().clone()], torch.ones(2),
                                 {"alpha": torch.tensor(0.9, requires_grad=True),
                                  "differentiable": True}),
        "differentiable-weight-decay": ([p().clone()], torch.ones(2),
                                        {"weight_decay": torch.tensor(0.1, requires_grad=True),
                                         "differentiable": True}),
    }


@pytest.mark.parametrize("case", ["sparse", "capturable-on-cpu", "foreach-differentiable",
                                  "differentiable-lr", "differentiable-lr-momentum",
                                  "differentiable-alpha", "differentiable-weight-decay"])
def test_step_errors_match_torch_and_change_nothing(torch, case):
    outcomes = []
    for cls in (torch.optim.RMSprop, RMSprop):
        params, grad, kw = _bad_step_cases(torch)[case]
        opt = cls(params, **kw)
        params[0].grad = grad
        before = params[0].detach().clone()
        outcomes.append(outcome(opt.step))
        if cls is RMSprop:
            assert torch.equal(params[0].detach(), before) and not opt.state
    assert outcomes[0] is not None and outcomes[0] == outcomes[1]


def test_switching_momentum_on_after_the_first_step_is_torchs_key_error(torch):
    outcomes = []
    for cls in (torch.optim.RMSprop, RMSprop):
        p = torch.ones(2, requires_grad=True)
        opt = cls([p])
        p.grad = torch.ones(2)
        opt.step()
        opt.param_groups[0]["momentum"] = 0.9
        outcomes.append(outcome(opt.step))
        opt.param_groups[0].update(momentum=0, centered=True)
        outcomes.append(outcome(opt.step))
    assert outcomes[:2] == outcomes[2:] == [(KeyError, "'momentum_buffer'"), (KeyError, "'grad_avg'")]


def test_torch_only_flags_are_refused_on_numpy():
    for flag in ("capturable", "differentiable"):
        with pytest.raises(RuntimeError, match=f"`{flag}=True` needs"):
            RMSprop([portopt.Parameter(np.zeros(2))], **{flag: True})


@pytest.mark.parametrize("kwargs, keys", [
    ({}, ["step", "square_avg"]),
    ({"momentum": 0.9}, ["step", "square_avg", "momentum_buffer"]),
    ({"centered": True}, ["step", "square_avg", "grad_avg"]),
    ({"momentum": 0.9, "centered": True}, ["step", "square_avg", "momentum_buffer", "grad_avg"]),
])
def test_state_is_lazy_with_torchs_keys(lib, kwargs, keys):
    p, q = lib.param([1.0, 2.0]), lib.param([3.0])
    opt = RMSprop([p, q], **kwargs)
    assert not opt.state
    p.grad = lib.asarray([0.5, -0.5])
    opt.step()
    assert list(opt.state[p]) == keys and q not in opt.state  # q had no grad
    step = opt.state[p]["step"]
    assert float(lib.numpy(step)) == 1.0 and lib.numpy(step).dtype == np.float32


def test_state_dict_round_trips_with_torch(torch):
    rng = np.random.default_rng(4)
    start = rng.standard_normal((3, 2))
    grads = [torch.from_numpy(rng.standard_normal((3, 2))) for _ in range(6)]
    kw = {"lr": 0.05, "momentum": 0.5, "centered": True}
    ref = torch.from_numpy(start.copy())
    ref_opt = torch.optim.RMSprop([ref], **kw)
    ours = portopt.Parameter(start.copy())
    opt = RMSprop([ours], **kw)
    for g in grads[:3]:
        ref.grad, ours.grad = g, g.numpy()
        ref_opt.step()
        opt.step()
    # portopt -> torch, and torch -> portopt, then both continue
    from portopt.checkpoint import to_torch

    ref2 = torch.from_numpy(ours.data.copy())
    ref_opt2 = torch.optim.RMSprop([ref2], **kw)
    ref_opt2.load_state_dict(to_torch(opt.state_dict()))
    ours2 = portopt.Parameter(ref.numpy().copy())
    opt2 = RMSprop([ours2], **kw)
    opt2.load_state_dict(ref_opt.state_dict())
    assert list(opt2.state[ours2]) == list(ref_opt.state[ref])
    for g in grads[3:]:
        ref.grad, ref2.grad, ours2.grad = g, g, g.numpy()
        for o in (ref_opt, ref_opt2, opt2):
            o.step()
    np.testing.assert_allclose(ours2.data, ref.numpy(), rtol=1e-13)
    np.testing.assert_allclose(ref2.numpy(), ref.numpy(), rtol=1e-13)


def test_loading_an_old_state_dict_fills_torchs_defaults():
    p = portopt.Parameter(np.zeros(2))
    opt = RMSprop([p])
    p.grad = np.ones(2)
    opt.step()
    sd = opt.state_dict()
    for key in ("momentum", "centered", "foreach", "maximize", "differentiable", "capturable"):
        del sd["param_groups"][0][key]
    sd["state"][0]["step"] = 1  # older torch saved a number
    fresh = RMSprop([portopt.Parameter(np.zeros(2))])
    fresh.load_state_dict(sd)
    group = fresh.param_groups[0]
    assert (group["momentum"], group["centered"], group["foreach"], group["maximize"],
            group["differentiable"], group["capturable"]) == (0, False, None, False, False, False)
    step = fresh.state[group["params"][0]]["step"]
    assert step.shape == () and step.dtype == np.float32 and float(step) == 1.0


def test_nan_and_inf_gradients_propagate_as_in_torch(torch):
    # torch never skips a bad gradient: the element becomes NaN, the accumulators NaN/inf
    for bad in (float("nan"), float("inf")):
        results = []
        for cls in (torch.optim.RMSprop, RMSprop):
            p = torch.ones(2, 2, requires_grad=True)
            opt = cls([p], momentum=0.5, centered=True)
            p.grad = torch.tensor([[bad, 1.0], [1.0, 1.0]])
            opt.step()
            p.grad = torch.ones(2, 2)
            opt.step()
            results.append((p.detach().clone(), dict(opt.state[p])))
        (p_ref, s_ref), (p_ours, s_ours) = results
        assert torch.equal(p_ours.isnan(), p_ref.isnan()) and p_ref.isnan().sum() == 1
        for key in s_ref:
            assert torch.allclose(s_ours[key], s_ref[key], equal_nan=True), key


@pytest.mark.parametrize("shape, dtype", [((3,), "float64"), ((), "float32")], ids=str)
def test_differentiable_step_gives_torchs_gradients(torch, shape, dtype):
    # autograd through two steps, to eps and momentum given as float64 tensors that
    # require grad; a 0-d float32 parameter keeps its dtype (torch updates in place)
    dtype = getattr(torch, dtype)
    results = {}
    for cls in (torch.optim.RMSprop, RMSprop):
        eps = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
        momentum = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
        w = torch.linspace(1.0, -2.0, 3, dtype=dtype)[: shape[0] if shape else 1]
        w = w.reshape(shape).requires_grad_()
        p = w.clone()
        opt = cls([p], eps=eps, momentum=momentum, centered=True, differentiable=True)
        for g in (0.5, -0.3):
            p.grad = torch.full(shape, g, dtype=dtype)
            opt.step()
        (p * p).sum().backward()
        results[cls] = (p.detach(), w.grad, eps.grad, momentum.grad,
                        *(v.detach() for v in opt.state[p].values()))
    # float32 parameters: the backward passes round differently (float32 level)
    rtol = 1e-13 if dtype == torch.float64 else 1e-6
    for ref, ours in zip(results[torch.optim.RMSprop], results[RMSprop]):
        assert ours.dtype == ref.dtype
        torch.testing.assert_close(ours, ref, rtol=rtol, atol=0)
