"""What portopt's shell promises beyond torch: atomic steps, one backend per group,
clear errors for torch-only modes; and torch's autograd modes on torch tensors."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import portopt
from portopt import Parameter, backends
from portopt.optim import SGD, Adam, AdamW


def _snapshot(opt, params):
    """Copies of the values, the state (by parameter position) and the group settings."""
    return ([np.array(p.data, copy=True) for p in params],
            [copy.deepcopy(opt.state[p]) if p in opt.state else None for p in params],
            [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups])


def _assert_unchanged(opt, params, snap):
    values, states, groups = snap
    for p, v, st in zip(params, values, states):
        np.testing.assert_array_equal(p.data, v)
        assert (p in opt.state) == (st is not None)
        for key in st or {}:
            np.testing.assert_array_equal(opt.state[p][key], st[key])
    assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == groups


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_a_failure_on_the_last_parameter_changes_nothing(cls):
    params = [Parameter(np.ones(3)), Parameter(np.ones(2)), Parameter(np.ones(4))]
    opt = cls(params, lr=0.1, **({"momentum": 0.9} if cls is SGD else {}))
    for p in params:
        p.grad = np.full(p.shape, 0.5)
    opt.step()  # state exists now
    snap = _snapshot(opt, params)
    params[-1].data.flags.writeable = False
    for p in params:
        p.grad = np.full(p.shape, -0.25)
    with pytest.raises(ValueError, match="read-only numpy array; portopt updates parameters in "
                                         "place"):
        opt.step()
    _assert_unchanged(opt, params, snap)
    params[-1].data = np.ones(5)  # shape no longer matches the grad set before
    with pytest.raises(RuntimeError, match="attempting to assign a gradient of size '\\[4\\]' to "
                                           "a tensor of size '\\[5\\]'"):
        opt.step()


def test_a_failure_in_a_later_group_commits_nothing():
    p1, p2 = Parameter(np.ones(3)), Parameter(np.ones(2))
    opt = Adam([{"params": [p1]}, {"params": [p2], "lr": "not a number"}], lr=0.1)
    p1.grad, p2.grad = np.ones(3), np.ones(2)
    with pytest.raises(TypeError):
        opt.step()
    np.testing.assert_array_equal(p1.data, np.ones(3))
    assert len(opt.state) == 0


def test_a_failing_load_state_dict_changes_nothing():
    p = Parameter(np.ones(2))
    opt = Adam([p], lr=0.1)
    p.grad = np.ones(2)
    opt.step()
    snap = _snapshot(opt, [p])
    sd = copy.deepcopy(opt.state_dict())
    sd["state"][0]["exp_avg"] = "cannot be cast"  # kept as is: not an array
    sd["state"][0]["exp_avg_sq"] = [object()]
    bad = copy.deepcopy(sd)
    bad["param_groups"].append(bad["param_groups"][0])
    with pytest.raises(ValueError):
        opt.load_state_dict(bad)
    _assert_unchanged(opt, [p], snap)


def test_parameters_are_updated_in_place():
    a = np.ones(3)
    p = Parameter(a)
    opt = SGD([p], lr=0.5)
    p.grad = np.ones(3)
    opt.step()
    assert p.data is a
    np.testing.assert_array_equal(a, [0.5, 0.5, 0.5])


class _Frozen(np.ndarray):
    """An array type whose backend declares it immutable."""


@pytest.fixture
def immutable_backend():
    saved = list(backends._REGISTRY)

    @backends.register_backend
    class FrozenBackend(backends.NumpyBackend):
        name = "frozen"
        mutable = False

        @classmethod
        def owns(cls, x):
            return isinstance(x, _Frozen)

    yield
    backends._REGISTRY[:] = saved
    backends._by_type.clear()


def test_immutable_arrays_are_rebound(immutable_backend):
    a = np.ones(2).view(_Frozen)
    p = Parameter(a)
    opt = SGD([p], lr=0.5)
    p.grad = np.ones(2).view(_Frozen)
    opt.step()
    assert p.data is not a
    np.testing.assert_array_equal(np.asarray(a), [1.0, 1.0])
    np.testing.assert_array_equal(np.asarray(p.data), [0.5, 0.5])


def test_a_group_must_not_mix_backends(torch):
    with pytest.raises(TypeError, match="a param group must hold arrays of one backend, but this "
                                        "one mixes numpy and torch arrays"):
        SGD([Parameter(np.ones(2)), torch.ones(2)])
    opt = SGD([{"params": [Parameter(np.ones(2))]}, {"params": [torch.ones(2)]}], lr=0.5)
    opt.param_groups[0]["params"][0].grad = np.ones(2)
    opt.param_groups[1]["params"][0].grad = torch.ones(2)
    opt.step()
    np.testing.assert_array_equal(opt.param_groups[0]["params"][0].data, [0.5, 0.5])
    assert opt.param_groups[1]["params"][0].tolist() == [0.5, 0.5]


def test_a_group_must_not_mix_devices():
    xs = pytest.importorskip("array_api_strict")
    a, b = Parameter(xs.ones(2)), Parameter(xs.ones(2, device=xs.Device("device1")))
    with pytest.raises(ValueError, match="a param group must hold arrays on one device, but this "
                                         "one mixes"):
        SGD([a, b])
    opt = SGD([{"params": [a]}, {"params": [b]}])
    with pytest.raises(ValueError, match="mixes"):
        opt.add_param_group({"params": [Parameter(xs.ones(1)),
                                        Parameter(xs.ones(1, device=xs.Device("device2")))]})
    assert len(opt.param_groups) == 2


@pytest.mark.parametrize("flag, why", [("capturable", "CUDA graph capture"),
                                       ("differentiable", "torch autograd")])
def test_torch_only_modes_are_refused_elsewhere(flag, why):
    with pytest.raises(RuntimeError, match=f"`{flag}=True` needs {why}, which only torch tensors "
                                           "have; it cannot be used with numpy arrays"):
        Adam([Parameter(np.ones(2))], **{flag: True})
    p = Parameter(np.ones(2))
    opt = Adam([p])
    opt.param_groups[0][flag] = True  # edited by hand after construction
    p.grad = np.ones(2)
    with pytest.raises(RuntimeError, match=f"`{flag}=True` needs"):
        opt.step()
    np.testing.assert_array_equal(p.data, [1.0, 1.0])


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_fused_without_a_fused_kernel_fails_at_step_and_changes_nothing(cls):
    p = Parameter(np.ones(2))
    opt = cls([p], fused=True)
    p.grad = np.ones(2)
    kernel = "Adam" if cls is AdamW else cls.__name__  # AdamW runs Adam's kernel, as in torch
    with pytest.raises(RuntimeError, match=f"`fused=True` requires a fused {kernel} kernel for "
                                           "numpy arrays"):
        opt.step()
    np.testing.assert_array_equal(p.data, [1.0, 1.0])
    assert len(opt.state) == 0


def test_fused_with_differentiable_is_torchs_error(torch):
    for mod in (torch.optim, portopt.optim):
        with pytest.raises(RuntimeError, match="^`fused` does not support `differentiable`$"):
            mod.Adam([torch.ones(1)], fused=True, differentiable=True)


# -- torch tensors: non-leaf, differentiable, capturable --------------------------------------

def test_non_leaf_tensors_are_refused_unless_differentiable(torch):
    leaf = torch.ones(2, requires_grad=True)
    for mod in (torch.optim, portopt.optim):
        with pytest.raises(ValueError, match="^can't optimize a non-leaf Tensor$"):
            mod.SGD([leaf * 2])
        mod.SGD([leaf * 2], differentiable=True)


# torch's differentiable Adam mutates its state in place, so autograd cannot go back
# through more than one of its steps; its own tests check one step. SGD manages two.
@pytest.mark.parametrize("name, kwargs, steps", [
    ("SGD", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}, 2),
    ("SGD", {"momentum": 0.5, "dampening": 0.5, "maximize": True}, 1),
    ("Adam", {"amsgrad": True, "weight_decay": 0.1}, 1),
    ("AdamW", {"betas": (0.8, 0.9)}, 1),
])
def test_differentiable_steps_give_torchs_gradients(torch, name, kwargs, steps):
    """Gradients of a loss after the steps, with respect to the initial weights and a tensor
    learning rate, match torch's differentiable optimizer."""
    results = []
    for mod in (torch.optim, portopt.optim):
        torch.manual_seed(0)
        w0 = torch.randn(3, dtype=torch.float64, requires_grad=True)
        lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
        w = w0.clone()
        opt = getattr(mod, name)([w], lr=lr, differentiable=True, **kwargs)
        for k in range(steps):
            w.grad = torch.sin(w * (k + 1))  # a gradient that depends on the weights
            opt.step()
        loss = (w ** 2).sum()
        g_w0, g_lr = torch.autograd.grad(loss, (w0, lr))
        results.append((w.detach(), g_w0, g_lr))
    (wt, gt, lt), (wp, gp, lp) = results
    torch.testing.assert_close(wp, wt, rtol=1e-13, atol=0)
    torch.testing.assert_close(gp, gt, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(lp, lt, rtol=1e-12, atol=1e-15)


# (SGD with momentum is left out: torch detaches the first momentum buffer, so its
# gradient is not the true derivative, and portopt reproduces torch.)
@pytest.mark.parametrize("name, kwargs", [
    ("SGD", {"weight_decay": 0.2, "maximize": True}),
    ("Adam", {"amsgrad": True}),
    ("AdamW", {"weight_decay": 0.3}),
])
def test_portopt_can_differentiate_through_several_steps(torch, name, kwargs):
    """Where torch stops (in-place state), the pure kernels let autograd through; the
    gradient agrees with finite differences."""
    def run(w0, lr):
        w = w0.clone()
        opt = getattr(portopt.optim, name)([w], lr=lr, differentiable=True, **kwargs)
        for k in range(3):
            w.grad = torch.sin(w * (k + 1))
            opt.step()
        return (w ** 2).sum()

    w0 = torch.tensor([0.3, -1.2], dtype=torch.float64, requires_grad=True)
    lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(run, (w0, lr))


def test_capturable_on_cpu_is_torchs_assertion(torch):
    for mod in (torch.optim, portopt.optim):
        p = torch.ones(2)
        opt = mod.Adam([p], capturable=True)
        p.grad = torch.ones(2)
        with pytest.raises(AssertionError, match="If capturable=True, params and state_steps must "
                                                 "be on supported devices"):
            opt.step()
        assert p.tolist() == [1.0, 1.0]


def test_capturable_form_matches_torch(torch, monkeypatch):
    """The graph-safe algebra, run on the CPU by letting both sides accept it there."""
    import torch.optim.adam as torch_adam

    from portopt.optim import _checks

    monkeypatch.setattr(torch_adam, "_get_capturable_supported_devices",
                        lambda supports_xla=True: ["cpu"])
    monkeypatch.setattr(_checks, "CAPTURABLE_DEVICES", ["cpu"])
    ps = []
    for mod in (torch.optim, portopt.optim):
        torch.manual_seed(0)
        p = torch.randn(5, dtype=torch.float32)
        opt = mod.Adam([p], lr=0.01, amsgrad=True, capturable=True)
        for k in range(4):
            p.grad = torch.cos(p * (k + 1))
            opt.step()
        assert opt.state[p]["step"].device == p.device
        ps.append((p, opt.state[p]))
    (pt, st), (pp, sp) = ps
    assert torch.equal(pt, pp)
    for key in ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        assert torch.equal(st[key], sp[key])


def test_a_torch_state_dict_loads_into_a_numpy_optimizer(torch):
    t = torch.tensor([1.0, -2.0], dtype=torch.float32)
    topt = torch.optim.Adam([t], lr=0.1, amsgrad=True)
    for _ in range(3):
        t.grad = torch.tensor([0.5, 0.25])
        topt.step()
    p = Parameter(t.numpy().copy())
    opt = Adam([p])
    opt.load_state_dict(topt.state_dict())
    state = opt.state[p]
    assert isinstance(state["exp_avg"], np.ndarray) and state["exp_avg"].dtype == np.float32
    assert isinstance(state["step"], np.float32) and state["step"] == 3.0
    assert opt.param_groups[0]["amsgrad"] is True and opt.param_groups[0]["lr"] == 0.1
    for _ in range(2):
        t.grad = torch.tensor([-0.5, 0.125])
        p.grad = np.array([-0.5, 0.125], dtype=np.float32)
        topt.step()
        opt.step()
    np.testing.assert_allclose(p.data, t.numpy(), rtol=1e-6)
