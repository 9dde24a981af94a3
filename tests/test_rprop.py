"""Rprop: the kernel on every backend, and the class against torch.optim.Rprop.

Hand-derived steps use powers of two, so every step size and parameter is exact.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
from helpers import check_result, outcome

import portopt
from portopt.optim.rprop import Rprop, RpropState, rprop, rprop_init

DTYPES = ["float32", "float64"]


# -- the kernel -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_three_steps_by_hand(lib, dtype):
    kw = dict(etaminus=0.5, etaplus=2.0, step_size_min=0.3, step_size_max=1.5)
    p = lib.asarray([1.0, 1.0, 1.0], dtype)
    state = rprop_init(p, lr=0.5)
    np.testing.assert_array_equal(lib.numpy(state.step_size), [0.5, 0.5, 0.5])
    # step 1: prev = 0, so every factor is 1; p -= sign(g) * 0.5
    p1, s1 = rprop(p, lib.asarray([2.0, -4.0, 0.0], dtype), state, **kw)
    for out in (p1, s1.prev, s1.step_size):
        check_result(out, p)
    np.testing.assert_array_equal(lib.numpy(p1), [0.5, 1.5, 1.0])
    np.testing.assert_array_equal(lib.numpy(s1.prev), [2.0, -4.0, 0.0])
    np.testing.assert_array_equal(lib.numpy(s1.step_size), [0.5, 0.5, 0.5])
    # step 2: g * prev = [2, -12, 0] -> factors [2, 0.5, 1]; the flipped gradient is zeroed
    # (no move, prev = 0), and 0.5 * 0.5 is clamped up to the minimum 0.3
    p2, s2 = rprop(p1, lib.asarray([1.0, 3.0, 5.0], dtype), s1, **kw)
    f = np.float32 if dtype == "float32" else np.float64
    np.testing.assert_array_equal(lib.numpy(s2.step_size), np.array([1.0, 0.3, 0.5], f))
    np.testing.assert_array_equal(lib.numpy(s2.prev), [1.0, 0.0, 5.0])
    np.testing.assert_array_equal(lib.numpy(p2), [-0.5, 1.5, 0.5])
    # step 3: g * prev = [1, 0, 5] -> factors [2, 1, 2]; 2 is clamped down to 1.5
    p3, s3 = rprop(p2, lib.asarray([1.0, 1.0, 1.0], dtype), s2, **kw)
    np.testing.assert_array_equal(lib.numpy(s3.step_size), np.array([1.5, 0.3, 1.0], f))
    np.testing.assert_array_equal(lib.numpy(p3), np.array([-2.0, 1.5 - f(0.3), -0.5], f))
    assert s3.step == 3 and s1.step == 1 and state.step == 0
    np.testing.assert_array_equal(lib.numpy(s1.step_size), [0.5, 0.5, 0.5])  # untouched
    np.testing.assert_array_equal(lib.numpy(p), [1.0, 1.0, 1.0])


def test_maximize_steps_uphill(lib):
    p = lib.asarray([0.0, 0.0])
    new, st = rprop(p, lib.asarray([1.0, -2.0]), rprop_init(p, lr=0.25), maximize=True)
    np.testing.assert_array_equal(lib.numpy(new), [0.25, -0.25])
    np.testing.assert_array_equal(lib.numpy(st.prev), [-1.0, 2.0])


def test_crossed_bounds_give_the_maximum_as_torchs_clamp(lib):
    p = lib.asarray([0.0, 0.0])
    state = rprop_init(p, lr=0.25)._replace(prev=lib.asarray([1.0, -1.0]))
    _, st = rprop(p, lib.asarray([1.0, 1.0]), state, step_size_min=1.0, step_size_max=0.125)
    np.testing.assert_array_equal(lib.numpy(st.step_size), [0.125, 0.125])


def test_a_missing_bound_is_no_bound(lib):
    p = lib.asarray([0.0])
    state = rprop_init(p, lr=0.25)._replace(prev=lib.asarray([1.0]))
    _, st = rprop(p, lib.asarray([1.0]), state, etaplus=4.0, step_size_min=None,
                  step_size_max=None)
    np.testing.assert_array_equal(lib.numpy(st.step_size), [1.0])


def test_factors_are_compared_in_the_parameters_dtype(lib):
    # 0.3 is not a float32 number: torch writes float32(0.3) into its sign tensor and
    # compares it with etaminus in float32, so the flipped gradient is still zeroed
    p = lib.asarray([1.0], "float32")
    state = rprop_init(p, lr=0.25)._replace(prev=lib.asarray([1.0], "float32"))
    new, st = rprop(p, lib.asarray([-1.0], "float32"), state, etaminus=0.3)
    np.testing.assert_array_equal(lib.numpy(new), [1.0])
    np.testing.assert_array_equal(lib.numpy(st.prev), [0.0])
    np.testing.assert_array_equal(lib.numpy(st.step_size), np.float32(0.25) * np.float32(0.3))


def test_nan_gradient_has_sign_zero_as_in_torch(lib):
    p = lib.asarray([1.0, 1.0])
    state = rprop_init(p, lr=0.25)
    # sign(NaN) = 0 (torch's CPU sign): no move; the step size stays; prev keeps the NaN
    p1, s1 = rprop(p, lib.asarray([float("nan"), 1.0]), state)
    np.testing.assert_array_equal(lib.numpy(p1), [1.0, 0.75])
    assert np.isnan(lib.numpy(s1.prev)[0])
    # next step: g * NaN is NaN, factor 1: a plain step of 0.25
    p2, s2 = rprop(p1, lib.asarray([1.0, 1.0]), s1, etaplus=2.0)
    np.testing.assert_array_equal(lib.numpy(p2), [0.75, 0.25])
    np.testing.assert_array_equal(lib.numpy(s2.step_size), [0.25, 0.5])


def test_complex_parameters_step_each_part_from_complex_lr(lib):
    p = lib.asarray([0j, 1 + 1j], "complex128")
    state = rprop_init(p, lr=0.5)
    np.testing.assert_array_equal(lib.numpy(state.step_size), [0.5 + 0.5j, 0.5 + 0.5j])
    new, st = rprop(p, lib.asarray([2 - 4j, 0 + 1j], "complex128"), state)
    check_result(new, p)
    np.testing.assert_array_equal(lib.numpy(new), [-0.5 + 0.5j, 1 + 0.5j])
    # second step: the real part of the first element flips, its imaginary part does not
    _, st2 = rprop(new, lib.asarray([-1 - 1j, 0 + 1j], "complex128"), st, etaplus=2.0)
    np.testing.assert_array_equal(lib.numpy(st2.step_size), [0.25 + 1j, 0.5 + 1j])


@pytest.mark.parametrize("shape", [(), (1, 0, 2)], ids=str)
def test_zero_dim_and_empty_parameters(lib, shape):
    p = lib.asarray(np.ones(shape), "float32")
    state = rprop_init(p, lr=0.1)
    new, st = rprop(p, lib.asarray(np.ones(shape), "float32"), state)
    for out in (new, st.prev, st.step_size, state.step_size):
        check_result(out, p)


def test_prev_is_not_the_callers_gradient(lib):
    p, g = lib.asarray([1.0]), lib.asarray([0.5])
    _, st = rprop(p, g, rprop_init(p))
    assert st.prev is not g


def test_state_type_fields_are_torchs_keys():
    assert RpropState._fields == ("step", "prev", "step_size")


# -- the class, against torch.optim.Rprop ---------------------------------------------------

def _run(cls, params, grads, **kw):
    opt = cls(params, **kw)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g
        opt.step()
    return opt


CONFIGS = {
    "default": {},
    "bounds": {"lr": 0.05, "etas": (0.3, 1.7), "step_sizes": (0.02, 0.08)},
    "maximize": {"maximize": True, "step_sizes": (1.0, 0.1)},
}


def _problem(dtype, steps=8, seed=1):
    rng = np.random.default_rng(seed)
    start = rng.standard_normal((3, 4)).astype(dtype)
    grads = [rng.standard_normal((3, 4)).astype(dtype) for _ in range(steps)]
    if dtype == "complex128":
        start = start + 1j * rng.standard_normal((3, 4))
        grads = [g + 1j * rng.standard_normal((3, 4)) for g in grads]
    for g in grads[2:4]:  # some exact zeros: factor 1 and no move
        g[0, :2] = 0
    return start, grads


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex128"])
def test_steps_match_torch_bit_for_bit(lib, torch, config, dtype):
    start, grads = _problem(dtype)
    kw = CONFIGS[config]
    ref = torch.from_numpy(start.copy())
    ref_opt = _run(torch.optim.Rprop, [ref], [[torch.from_numpy(g)] for g in grads],
                   foreach=False, **kw)
    ours = lib.param(start)
    opt = _run(Rprop, [ours], [[lib.asarray(g)] for g in grads], **kw)
    # only signs enter the update: no rounding beyond torch's, on any backend
    np.testing.assert_array_equal(lib.numpy(ours), ref.numpy())
    assert list(opt.state[ours]) == list(ref_opt.state[ref])
    for key, value in ref_opt.state[ref].items():
        np.testing.assert_array_equal(lib.numpy(opt.state[ours][key]), value.numpy())


def test_signature_and_defaults_are_torchs(torch):
    def shape(cls):
        return [(p.name, p.kind, p.default)
                for p in inspect.signature(cls.__init__).parameters.values()]

    assert shape(Rprop) == shape(torch.optim.Rprop)
    expected = {"lr": 1e-2, "etas": (0.5, 1.2), "step_sizes": (1e-6, 50), "foreach": None,
                "maximize": False, "differentiable": False, "capturable": False}
    assert torch.optim.Rprop([torch.zeros(1, requires_grad=True)]).defaults == expected
    assert Rprop([portopt.Parameter(np.zeros(1))]).defaults == expected


def test_array_lr_must_have_one_element(torch):
    for lr in (torch.tensor([0.1, 0.2]), torch.tensor([0.1])):
        expected = outcome(torch.optim.Rprop, [torch.zeros(2)], lr=lr)
        assert outcome(Rprop, [torch.zeros(2)], lr=lr) == expected
    assert outcome(Rprop, [portopt.Parameter(np.zeros(2))], lr=np.array([0.1, 0.2])) == (
        ValueError, "Tensor lr must be 1-element")


def _bad_step_cases(torch):
    def p():
        return torch.ones(2, requires_grad=True)

    def lr():
        return torch.tensor(0.01, requires_grad=True)

    return {
        "sparse": ([p()], torch.ones(2).to_sparse(), {}),
        "capturable-on-cpu": ([p()], torch.ones(2), {"capturable": True}),
        "foreach-differentiable": ([p()], torch.ones(2), {"foreach": True, "differentiable": True}),
        "lr-requires-grad": ([p()], torch.ones(2), {"lr": lr()}),
        "lr-requires-grad-differentiable": ([p().clone()], torch.ones(2),
                                            {"lr": lr(), "differentiable": True}),
        "no-bounds": ([p()], torch.ones(2), {"step_sizes": (None, None)}),
    }


@pytest.mark.parametrize("case", ["sparse", "capturable-on-cpu", "foreach-differentiable",
                                  "lr-requires-grad", "lr-requires-grad-differentiable",
                                  "no-bounds"])
def test_step_errors_match_torch_and_change_nothing(torch, case):
    outcomes = []
    for cls in (torch.optim.Rprop, Rprop):
        params, grad, kw = _bad_step_cases(torch)[case]
        opt = cls(params, **kw)
        params[0].grad = grad
        before = params[0].detach().clone()
        outcomes.append(outcome(opt.step))
        if cls is Rprop:
            assert torch.equal(params[0].detach(), before) and not opt.state
    assert outcomes[0] is not None and outcomes[0] == outcomes[1]


def test_a_complex_parameter_accepts_an_lr_that_requires_grad_as_in_torch(torch):
    values = []
    for cls in (torch.optim.Rprop, Rprop):
        p = torch.zeros(2, dtype=torch.complex128, requires_grad=True)
        opt = cls([p], lr=torch.tensor(0.5, dtype=torch.float64, requires_grad=True))
        p.grad = torch.tensor([1 - 1j, -1 + 0j], dtype=torch.complex128)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch: "Converting a tensor ..."
            opt.step()
        values.append(p.detach().clone())
    assert torch.equal(values[0], values[1])
    assert torch.equal(values[1], torch.tensor([-0.5 + 0.5j, 0.5 + 0j], dtype=torch.complex128))


@pytest.mark.parametrize("dtypes", [("float32", "float64"), ("float64", "float32")])
@pytest.mark.parametrize("shape", [(), (2,)], ids=str)
def test_array_etas_of_another_dtype_as_in_torch(torch, dtypes, shape):
    # torch writes each eta by masked index assignment: for a 0-d parameter that refuses
    # another dtype, at every step; other shapes cast it
    param_dtype, eta_dtype = (getattr(torch, d) for d in dtypes)
    outcomes = []
    for cls in (torch.optim.Rprop, Rprop):
        p = torch.ones(shape, dtype=param_dtype, requires_grad=True)
        etas = (torch.tensor(0.5, dtype=param_dtype), torch.tensor(1.2, dtype=eta_dtype))
        opt = cls([p], etas=etas)
        for g in (1.0, -1.0, -1.0):
            p.grad = torch.full(shape, g, dtype=param_dtype)
            outcomes.append(outcome(opt.step))
        outcomes.append(p.detach().clone())
    assert outcomes[:3] == outcomes[4:7]
    assert torch.equal(outcomes[3], outcomes[7])
    assert (outcomes[0] is not None) == (shape == ())


def test_torch_only_flags_are_refused_on_numpy():
    for flag in ("capturable", "differentiable"):
        with pytest.raises(RuntimeError, match=f"`{flag}=True` needs"):
            Rprop([portopt.Parameter(np.zeros(2))], **{flag: True})


def test_state_is_lazy_and_step_size_starts_at_the_groups_lr(lib):
    p, q, r = lib.param([1.0, 2.0]), lib.param([3.0]), lib.param([4.0])
    opt = Rprop([{"params": [p, q]}, {"params": [r], "lr": 0.25}], lr=0.5)
    assert not opt.state
    p.grad, r.grad = lib.asarray([0.5, -0.5]), lib.asarray([1.0])
    opt.step()
    assert list(opt.state[p]) == ["step", "prev", "step_size"] and q not in opt.state
    np.testing.assert_array_equal(lib.numpy(opt.state[p]["step_size"]), [0.5, 0.5])
    np.testing.assert_array_equal(lib.numpy(opt.state[r]["step_size"]), [0.25])
    step = opt.state[p]["step"]
    assert float(lib.numpy(step)) == 1.0 and lib.numpy(step).dtype == np.float32
    # lr only initialises the step sizes: changing it later moves nothing
    opt.param_groups[0]["lr"] = 100.0
    opt.step()
    np.testing.assert_array_equal(lib.numpy(opt.state[p]["step_size"]), [0.6, 0.6])


def test_state_dict_round_trips_with_torch(torch):
    start, grads = _problem("float32", steps=8, seed=5)
    kw = CONFIGS["bounds"]
    ref = torch.from_numpy(start.copy())
    ref_opt = torch.optim.Rprop([ref], **kw)
    ours = portopt.Parameter(start.copy())
    opt = Rprop([ours], **kw)
    for g in grads[:4]:
        ref.grad, ours.grad = torch.from_numpy(g), g
        ref_opt.step()
        opt.step()
    from portopt.checkpoint import to_torch

    ref2 = torch.from_numpy(ours.data.copy())
    ref_opt2 = torch.optim.Rprop([ref2], **kw)
    ref_opt2.load_state_dict(to_torch(opt.state_dict()))
    ours2 = portopt.Parameter(ref.numpy().copy())
    opt2 = Rprop([ours2], **kw)
    opt2.load_state_dict(ref_opt.state_dict())
    for g in grads[4:]:
        ref.grad = ref2.grad = torch.from_numpy(g)
        ours2.grad = g
        for o in (ref_opt, ref_opt2, opt2):
            o.step()
    np.testing.assert_array_equal(ours2.data, ref.numpy())
    np.testing.assert_array_equal(ref2.numpy(), ref.numpy())
    np.testing.assert_array_equal(opt2.state[ours2]["step_size"],
                                  ref_opt.state[ref]["step_size"].numpy())


def test_loading_an_old_state_dict_fills_torchs_defaults():
    p = portopt.Parameter(np.zeros(2))
    opt = Rprop([p])
    p.grad = np.ones(2)
    opt.step()
    sd = opt.state_dict()
    for key in ("foreach", "maximize", "differentiable", "capturable"):
        del sd["param_groups"][0][key]
    sd["state"][0]["step"] = 1.0
    fresh = Rprop([portopt.Parameter(np.zeros(2))])
    fresh.load_state_dict(sd)
    group = fresh.param_groups[0]
    assert (group["foreach"], group["maximize"], group["differentiable"],
            group["capturable"]) == (None, False, False, False)
    step = fresh.state[group["params"][0]]["step"]
    assert step.shape == () and step.dtype == np.float32 and float(step) == 1.0


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf * 0
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_and_inf_gradients_as_in_torch(lib, torch, bad):
    # torch reference §4.1: a NaN gradient leaves Rprop's parameters finite
    grads = [[[bad, 1.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]], [[-1.0, 1.0], [1.0, 1.0]]]
    ref = torch.ones(2, 2, dtype=torch.float64)
    ref_opt = _run(torch.optim.Rprop, [ref], [[torch.tensor(g, dtype=torch.float64)]
                                              for g in grads])
    ours = lib.param(np.ones((2, 2)))
    opt = _run(Rprop, [ours], [[lib.asarray(g)] for g in grads])
    assert np.isfinite(ref.numpy()).all()
    np.testing.assert_array_equal(lib.numpy(ours), ref.numpy())
    for key, value in ref_opt.state[ref].items():
        np.testing.assert_array_equal(lib.numpy(opt.state[ours][key]), value.numpy())


def test_differentiable_step_gives_torchs_gradients(torch):
    # autograd through three steps, to the parameter and to tensor etas and bounds; the
    # upper bound is reached, so clamp's gradient reaches it
    grads = {}
    for cls in (torch.optim.Rprop, Rprop):
        hyper = [torch.tensor(v, dtype=torch.float64, requires_grad=True)
                 for v in (0.4, 1.5, 1e-3, 0.02)]
        w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
        p = w.clone()
        opt = cls([p], lr=0.01, etas=tuple(hyper[:2]), step_sizes=tuple(hyper[2:]),
                  differentiable=True)
        for g in ([0.5, -0.3, 1.0], [0.2, 0.4, -1.0], [0.1, 0.4, 0.0]):
            p.grad = torch.tensor(g, dtype=torch.float64)
            opt.step()
        (p * p).sum().backward()
        grads[cls] = (w.grad, *(h.grad for h in hyper))
    for ref, ours in zip(grads[torch.optim.Rprop], grads[Rprop]):
        torch.testing.assert_close(ours, ref, rtol=1e-14, atol=0)
