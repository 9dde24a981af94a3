"""What portopt's shell promises beyond torch: atomic steps, one backend per group,
clear errors for torch-only modes; and torch's autograd modes on torch tensors."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest

import portopt
from portopt import Parameter, SparseGrad
from portopt.optim import SGD, Adam, AdamW

# -- nothing lost: a failure on the last parameter of a group, for all 15 optimizers -----------

ALL = ["SGD", "Adam", "AdamW", "Adadelta", "Adagrad", "Adamax", "ASGD", "LBFGS", "NAdam",
       "RAdam", "RMSprop", "Rprop", "SparseAdam", "Adafactor", "Muon"]
# the optimizers with a `step` tensor, whose loading reads it (as torch's __setstate__ does)
STEP_TENSOR = {"Adam", "AdamW", "Adadelta", "Adagrad", "Adamax", "ASGD", "NAdam", "RAdam",
               "RMSprop", "Rprop", "Adafactor"}
NO_FOREACH = {"LBFGS", "SparseAdam", "Muon"}  # no `foreach` argument
SETTINGS = {"SGD": {"lr": 0.1, "momentum": 0.9}, "LBFGS": {"max_iter": 3}}
PATHS = [(name, foreach) for name in ALL for foreach in (None, False)
         if foreach is None or name not in NO_FOREACH]


def _path_id(value):
    return {None: "default", False: "foreach=False"}.get(value, value)


def _set_grads(opt, params, k):
    for i, p in enumerate(params):
        if type(opt).__name__ == "SparseAdam":
            p.grad = SparseGrad(np.array([[0, 1], [1, i % 2]]), np.array([0.1 * (i + 1), -k]),
                                (2, 2))
        else:
            p.grad = np.array([[0.1, -0.2], [0.3, 0.05]]) * (i + 1) + 0.01 * k


def _step(opt):
    return opt.step(lambda: 1.0) if type(opt).__name__ == "LBFGS" else opt.step()


def _trained(name, foreach, groups=1):
    """Three 2x2 parameters (the last in a group of its own when ``groups=2``), stepped
    twice so that each has state (and the default path has built its fast plans), with the
    next step's gradients set."""
    params = [Parameter(np.arange(4.0).reshape(2, 2) / 4 + i) for i in range(3)]
    spec = params if groups == 1 else [{"params": params[:2]}, {"params": params[2:]}]
    kwargs = dict(SETTINGS.get(name, {}), **({} if foreach is None else {"foreach": foreach}))
    opt = getattr(portopt.optim, name)(spec, **kwargs)
    for k in range(2):
        _set_grads(opt, params, k)
        _step(opt)
    _set_grads(opt, params, 2)
    return opt, params


def _bits(x):
    """``x`` as comparable data: arrays by type, dtype, shape and bytes, recursively."""
    if isinstance(x, dict):
        return {k: _bits(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_bits(v) for v in x)
    if isinstance(x, SparseGrad):
        return ("sparse", _bits(x.indices), _bits(x.values), x.shape)
    if isinstance(x, (np.ndarray, np.generic)):
        return (type(x).__name__, x.dtype.str, x.shape, x.tobytes())
    if isinstance(x, float):
        return x.hex()
    return x


def _snapshot(opt, params):
    """The parameters (their very arrays, bit for bit), the state of each (every entry,
    bit for bit) and the param groups (every key; parameters by identity)."""
    return ([(id(p.data), _bits(p.data)) for p in params],
            [_bits(opt.state[p]) if p in opt.state else None for p in params],
            len(opt.state),
            [{k: [id(p) for p in v] if k == "params" else _bits(v) for k, v in g.items()}
             for g in opt.param_groups])


def _values(opt, params):
    """The parameters' values and their state, for comparing two optimizers."""
    return [_bits(p.data) for p in params], [_bits(opt.state.get(p)) for p in params]


def _read_only(name, params):
    params[-1].data.flags.writeable = False
    return ValueError, (f"a parameter of {name} is a read-only numpy array; portopt updates "
                        "parameters in place, so they must be writable")


def _resized(name, params):
    params[-1].data = np.ones(3)
    return RuntimeError, ("attempting to assign a gradient of size '[2, 2]' to a tensor of "
                          "size '[3]'. Please ensure that the gradient and the tensor are the "
                          "same size")


def _recast(name, params):
    params[-1].data = params[-1].data.astype(np.float32)
    return RuntimeError, ("attempting to assign a gradient with dtype 'float64' to a parameter "
                          "with dtype 'float32'. The gradient must match the parameter's dtype")


def _moved(name, params):
    xs = pytest.importorskip("array_api_strict")
    params[-1].data = xs.asarray(params[-1].data)
    if name == "LBFGS":  # it checks the group before reading the gradients
        return TypeError, ("a param group must hold arrays of one backend, but this one mixes "
                           "numpy and array_api_strict arrays; put them in separate param "
                           "groups")
    return TypeError, ("assigned grad is a numpy array but the parameter is a array_api_strict "
                       "array; the gradient must come from the parameter's backend")


def _sparse_last(name, params):
    params[-1].grad = SparseGrad(np.array([[0], [1]]), np.array([1.0]), (2, 2))
    kernel = "Adam" if name == "AdamW" else name
    if kernel == "Adam":
        return RuntimeError, ("Adam does not support sparse gradients, please consider "
                              "SparseAdam instead")
    return RuntimeError, f"{kernel} does not support sparse gradients"


def _dense_last(name, params):
    params[-1].grad = np.ones((2, 2))
    return RuntimeError, ("SparseAdam does not support dense gradients, please consider Adam "
                          "instead")


def _complex_last(name, params):
    params[-1].grad = None
    params[-1].data = params[-1].data.astype(np.complex128)
    params[-1].grad = np.full((2, 2), 0.5j)
    return RuntimeError, f"{name} does not support complex parameters"


def _flat_last(name, params):
    params[-1].grad = None
    params[-1].data = params[-1].data.reshape(-1)
    params[-1].grad = np.ones(4)
    return ValueError, "Param gradient must be a 2D matrix"


PLANTS = {"read-only": _read_only, "resized": _resized, "recast": _recast, "moved": _moved}
SPECIAL = [(name, "sparse-grad", _sparse_last) for name in
           ("Adam", "AdamW", "Adadelta", "Adamax", "ASGD", "NAdam", "RAdam", "RMSprop",
            "Rprop", "Adafactor", "Muon")]
SPECIAL += [("SparseAdam", "dense-grad", _dense_last), ("Adafactor", "complex", _complex_last),
            ("Muon", "complex", _complex_last), ("Muon", "1-D", _flat_last)]
STEP_CASES = [(name, foreach, plant, fn) for name, foreach in PATHS
              for plant, fn in PLANTS.items()]
STEP_CASES += [(name, foreach, plant, fn) for name, plant, fn in SPECIAL
               for path_name, foreach in PATHS if path_name == name]


@pytest.mark.parametrize("name, foreach, plant, fn", STEP_CASES,
                         ids=[f"{n}-{_path_id(f)}-{p}" for n, f, p, _ in STEP_CASES])
def test_a_failure_on_the_last_parameter_changes_nothing(name, foreach, plant, fn):
    """Three parameters with state from earlier steps; the last one cannot be stepped. The
    step raises torch's error (or portopt's, where torch cannot meet the case) and leaves
    every parameter, every state entry and the groups bit for bit as they were; after the
    cause is undone, the optimizer steps on as a twin that never failed does."""
    opt, params = _trained(name, foreach)
    data, grad = params[-1].data, params[-1].grad
    exc, message = fn(name, params)
    before = _snapshot(opt, params)
    with pytest.raises(exc) as info:
        _step(opt)
    assert str(info.value) == message
    assert _snapshot(opt, params) == before

    params[-1].grad = None
    data.flags.writeable = True
    params[-1].data, params[-1].grad = data, grad
    twin, twin_params = _trained(name, foreach)
    _step(opt)
    _step(twin)
    assert _values(opt, params) == _values(twin, twin_params)


def _last_entry_broken(name, sd):
    """Break the last state entry: without ``step`` where the optimizer reads it at load
    (as torch does), else with an entry NumPy cannot turn into numbers."""
    last = sd["state"][max(sd["state"])]
    if name in STEP_TENSOR:
        del last["step"]
        return KeyError, "'step'"
    key = "old_dirs" if name == "LBFGS" else next(k for k in last if k != "step")
    words = np.array([["not", "a"], ["number", "!"]])
    last[key] = [words] if name == "LBFGS" else words
    return ValueError, re.compile("^could not convert string to float: ")  # NumPy's words


def _last_group_short(name, sd):
    sd["param_groups"][-1]["params"].pop()
    return ValueError, ("loaded state dict contains a parameter group that doesn't match the "
                        "size of optimizer's group")


@pytest.mark.parametrize("breakage", [_last_entry_broken, _last_group_short],
                         ids=["last-state-entry", "last-group"])
@pytest.mark.parametrize("name", ALL)
def test_a_failing_load_state_dict_changes_nothing(name, breakage):
    """A state_dict whose error is in its last group or its last state entry: loading it
    raises torch's error and changes nothing (torch has by then replaced the groups and
    state); the optimizer then steps on as a twin that never loaded anything."""
    groups = 1 if name == "LBFGS" else 2  # LBFGS keeps one group
    opt, params = _trained(name, None, groups)
    sd = copy.deepcopy(opt.state_dict())
    exc, message = breakage(name, sd)
    before = _snapshot(opt, params)
    with pytest.raises(exc) as info:
        opt.load_state_dict(sd)
    if isinstance(message, re.Pattern):
        assert message.match(str(info.value)), str(info.value)
    else:
        assert str(info.value) == message
    assert _snapshot(opt, params) == before
    twin, twin_params = _trained(name, None, groups)
    _step(opt)
    _step(twin)
    assert _values(opt, params) == _values(twin, twin_params)


def test_a_failure_in_a_later_group_commits_nothing():
    p1, p2 = Parameter(np.ones(3)), Parameter(np.ones(2))
    opt = Adam([{"params": [p1]}, {"params": [p2], "lr": "not a number"}], lr=0.1)
    p1.grad, p2.grad = np.ones(3), np.ones(2)
    with pytest.raises(TypeError):
        opt.step()
    np.testing.assert_array_equal(p1.data, np.ones(3))
    assert len(opt.state) == 0


def test_parameters_are_updated_in_place():
    a = np.ones(3)
    p = Parameter(a)
    opt = SGD([p], lr=0.5)
    p.grad = np.ones(3)
    opt.step()
    assert p.data is a
    np.testing.assert_array_equal(a, [0.5, 0.5, 0.5])


def test_immutable_arrays_are_rebound(frozen):
    a = np.ones(2).view(frozen)
    p = Parameter(a)
    opt = SGD([p], lr=0.5)
    p.grad = np.ones(2).view(frozen)
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
