"""The Optimizer shell, checked against torch.optim's own behaviour.

Every test runs through the ``api`` fixture: torch.optim itself (the oracle: it must
meet the same hand-written expectations), portopt on NumPy parameters, and portopt on
torch tensors. Without torch only the NumPy variant runs.
"""

from __future__ import annotations

import copy
import importlib
import pickle

import numpy as np
import pytest
from helpers import raises

import portopt
import portopt.optim as popt
from portopt.optim import optimizer as popt_optimizer


class Api:
    """One implementation of the torch.optim surface, with its own kind of parameters."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "portopt[numpy]":
            self.optim, self.optimizer_module = popt, popt_optimizer
        else:
            torch = pytest.importorskip("torch")
            self.torch = torch
            if name == "torch.optim":
                self.optim = torch.optim
                self.optimizer_module = importlib.import_module("torch.optim.optimizer")
            else:
                self.optim, self.optimizer_module = popt, popt_optimizer

    @property
    def required(self):
        return self.optimizer_module.required

    def param(self, values, dtype="float64"):
        a = np.array(values, dtype=dtype)
        if self.name == "portopt[numpy]":
            return portopt.Parameter(a)
        return self.torch.from_numpy(a)

    def array(self, values, dtype="float64"):
        a = np.array(values, dtype=dtype)
        return a if self.name == "portopt[numpy]" else self.torch.from_numpy(a)

    def set_grad(self, p, values):
        p.grad = self.array(values, dtype=str(self.value(p).dtype))

    def value(self, x):
        if isinstance(x, portopt.Parameter):
            x = x.data
        if hasattr(x, "detach"):
            return x.detach().cpu().numpy().copy()
        return np.array(x, copy=True)


@pytest.fixture(params=["torch.optim", "portopt[numpy]", "portopt[torch]"])
def api(request) -> Api:
    return Api(request.param)


def _sgd(api, **kw):
    p1, p2 = api.param([1.0, 2.0]), api.param([[3.0]])
    return api.optim.SGD([p1, p2], **kw), p1, p2


# -- construction ---------------------------------------------------------------------------

def test_construction_forms(api):
    p1, p2, p3 = api.param([1.0]), api.param([2.0]), api.param([3.0])
    opt = api.optim.SGD(iter([p1, p2]), lr=0.1)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["params"] == [p1, p2] or \
        all(a is b for a, b in zip(opt.param_groups[0]["params"], [p1, p2]))
    opt = api.optim.SGD([{"params": [p1]}, {"params": p2, "lr": 0.5, "extra": "kept"}], lr=0.1)
    g0, g1 = opt.param_groups
    assert g0["lr"] == 0.1 and g1["lr"] == 0.5 and g1["extra"] == "kept"
    assert g1["params"][0] is p2  # a single parameter becomes a list
    opt = api.optim.Adam([("w", p1), ("b", p3)])
    assert opt.param_groups[0]["param_names"] == ["w", "b"]
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["w", "b"]


def test_defaults_are_torchs(api):
    p = api.param([1.0])
    assert api.optim.SGD([p]).defaults == {
        "lr": 1e-3, "momentum": 0, "dampening": 0, "weight_decay": 0, "nesterov": False,
        "maximize": False, "foreach": None, "differentiable": False, "fused": None}
    adam = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
            "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
            "differentiable": False, "fused": None, "decoupled_weight_decay": False}
    assert api.optim.Adam([p]).defaults == adam
    assert api.optim.AdamW([p]).defaults == {**adam, "weight_decay": 1e-2,
                                             "decoupled_weight_decay": True}
    assert issubclass(api.optim.AdamW, api.optim.Adam)


def test_params_argument_errors(api):
    p = api.param([1.0])
    raises(ValueError, "optimizer got an empty parameter list", api.optim.SGD, [])
    with pytest.raises(TypeError) as info:
        api.optim.SGD(p)
    assert str(info.value).startswith(
        "params argument given to the optimizer should be an iterable of Tensors or dicts, "
        "but got ")
    with pytest.raises(TypeError, match="^optimizer can only optimize Tensors, but one of the "
                                        "params is float$"):
        api.optim.SGD([1.0])
    with pytest.raises(KeyError, match="'params'"):
        api.optim.SGD([{"lr": 0.1}])
    raises(ValueError, "all optimizer params should be with/without names. Some param names "
            "are missing", api.optim.SGD, [("w", p), api.param([2.0])])
    raises(ValueError, "all optimizer param groups should be with/without names. cannot add "
            "param group with names to the optimizer", api.optim.SGD,
            [{"params": [p]}, {"params": [("w", api.param([2.0]))]}])


def test_add_param_group_checks(api):
    opt, p1, p2 = _sgd(api, lr=0.1)
    q = api.param([5.0])
    raises(TypeError, "param_group must be a dict, but got <class 'list'>",
            opt.add_param_group, [q])
    raises(TypeError, "optimizer parameters need to be organized in ordered collections, but "
            "the ordering of tensors in sets will change between runs. Please use a list "
            "instead.", opt.add_param_group, {"params": {q}})
    raises(ValueError, "some parameters appear in more than one parameter group",
            opt.add_param_group, {"params": [q, p1]})
    raises(ValueError, "all optimizer param groups should be with/without names. cannot add "
            "param group with names to the optimizer", opt.add_param_group,
            {"params": [("q", q)]})
    assert len(opt.param_groups) == 1  # nothing was added by the failures
    opt.add_param_group({"params": [q], "momentum": 0.5})
    assert opt.param_groups[1]["lr"] == 0.1 and opt.param_groups[1]["momentum"] == 0.5


def test_missing_required_hyper_parameter(api):
    class Custom(api.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": api.required, "beta": 0.5})

    p = api.param([1.0])
    raises(ValueError, "parameter group didn't specify a value of required optimization "
            "parameter lr", Custom, [p])
    opt = Custom([{"params": [p], "lr": 0.1}])
    assert opt.param_groups[0]["beta"] == 0.5
    assert repr(api.required) == "<required parameter>"


def test_duplicate_parameters_warn(api):
    p = api.param([1.0])
    with pytest.warns(UserWarning, match="optimizer contains a parameter group with duplicate "
                                         "parameters; in future, this will cause an error; see "
                                         "github.com/pytorch/pytorch/issues/40967"):
        api.optim.SGD([p, p])


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_a_duplicated_parameter_is_stepped_twice(api, name):
    p = api.param([1.0, 2.0])
    with pytest.warns(UserWarning, match="duplicate parameters"):
        opt = getattr(api.optim, name)([p, p], lr=0.25)
    api.set_grad(p, [1.0, -1.0])
    opt.step()
    if name == "SGD":
        np.testing.assert_array_equal(api.value(p), [0.5, 2.5])
    else:  # two Adam steps on the same gradient: the first moves by lr, the second too
        np.testing.assert_allclose(api.value(p), [0.5, 2.5], rtol=1e-7)
        assert float(opt.state[p]["step"]) == 2.0


def test_a_top_level_set_is_accepted(api):
    p = api.param([1.0])
    opt = api.optim.SGD({p}, lr=0.1)
    assert opt.param_groups[0]["params"][0] is p


def test_repr_is_torchs(api, torch):
    opt = api.optim.Adam([{"params": [api.param([1.0])]},
                          {"params": [api.param([2.0])], "lr": 0.5}], lr=0.1, amsgrad=True)
    t = torch.optim.Adam([{"params": [torch.zeros(1)]}, {"params": [torch.zeros(1)], "lr": 0.5}],
                         lr=0.1, amsgrad=True)
    assert repr(opt) == repr(t)
    assert repr(opt).startswith("Adam (\nParameter Group 0\n    amsgrad: True\n")


# -- stepping -------------------------------------------------------------------------------

def test_step_returns_the_closures_loss_and_calls_it_once(api):
    opt, p1, p2 = _sgd(api, lr=0.5)
    calls = []

    def closure():
        calls.append(1)
        api.set_grad(p1, [1.0, 1.0])
        return 7.5

    assert opt.step(closure) == 7.5 and calls == [1]
    np.testing.assert_array_equal(api.value(p1), [0.5, 1.5])
    assert opt.step() is None


def test_state_is_lazy_and_skips_parameters_without_grad(api):
    p1, p2 = api.param([1.0, 2.0]), api.param([3.0])
    opt = api.optim.Adam([p1, p2], lr=0.1)
    opt.step()
    assert len(opt.state) == 0
    api.set_grad(p1, [0.5, 0.5])
    opt.step()
    assert set(opt.state[p1]) == {"step", "exp_avg", "exp_avg_sq"}
    assert p2 not in opt.state
    np.testing.assert_array_equal(api.value(p2), [3.0])
    assert float(opt.state[p1]["step"]) == 1.0


def test_sgd_without_momentum_keeps_no_state(api):
    opt, p1, p2 = _sgd(api, lr=0.1)
    api.set_grad(p1, [1.0, 1.0])
    opt.step()
    assert len(opt.state) == 0 and opt.state_dict()["state"] == {}
    opt, p1, _ = _sgd(api, lr=0.1, momentum=0.9)
    api.set_grad(p1, [1.0, 1.0])
    opt.step()
    assert list(opt.state[p1]) == ["momentum_buffer"]


def test_step_state_is_float32_and_counts(api):
    p = api.param([1.0], "float64")
    opt = api.optim.Adam([p])
    for _ in range(3):
        api.set_grad(p, [1.0])
        opt.step()
    step = opt.state[p]["step"]
    assert api.value(step).dtype == np.float32 and float(step) == 3.0


def test_zero_grad(api):
    opt, p1, p2 = _sgd(api, lr=0.1)
    api.set_grad(p1, [1.0, 2.0])
    opt.zero_grad()
    assert p1.grad is None
    api.set_grad(p1, [1.0, 2.0])
    g = p1.grad
    opt.zero_grad(set_to_none=False)
    assert p1.grad is g
    np.testing.assert_array_equal(api.value(g), [0.0, 0.0])
    assert p2.grad is None


# -- state_dict ------------------------------------------------------------------------------

def _trained_adam(api):
    p1, p2, p3 = api.param([1.0, 2.0]), api.param([3.0]), api.param([[4.0, 5.0]])
    opt = api.optim.Adam([{"params": [p1, p2]}, {"params": [p3], "lr": 0.01}], lr=0.1)
    for _ in range(2):
        api.set_grad(p1, [0.1, -0.2])
        api.set_grad(p3, [[0.3, 0.4]])
        opt.step()
    return opt, (p1, p2, p3)


def test_state_dict_layout(api):
    opt, (p1, p2, p3) = _trained_adam(api)
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert set(sd["state"]) == {0, 2}  # p2 never had a grad
    assert set(sd["param_groups"][0]) == {
        "lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach", "capturable",
        "differentiable", "fused", "decoupled_weight_decay", "params"}
    # the values are the optimizer's own arrays, not copies
    assert sd["state"][0]["exp_avg"] is opt.state[p1]["exp_avg"]
    assert "params" in opt.param_groups[0]  # packing does not touch the live groups


def test_load_state_dict_structure_errors(api):
    opt, _ = _trained_adam(api)
    sd = opt.state_dict()
    other, _ = _trained_adam(api)
    raises(ValueError, "loaded state dict has a different number of parameter groups",
            other.load_state_dict, {**sd, "param_groups": sd["param_groups"][:1]})
    groups = copy.deepcopy(sd["param_groups"])
    groups[0]["params"] = [0]
    raises(ValueError, "loaded state dict contains a parameter group that doesn't match the "
            "size of optimizer's group", other.load_state_dict, {**sd, "param_groups": groups})
    with pytest.raises(KeyError, match="param_groups"):
        other.load_state_dict({"state": {}})


def test_load_state_dict_round_trip_continues_identically(api):
    opt, params = _trained_adam(api)
    twin_params = [api.param(api.value(p)) for p in params]
    twin = api.optim.Adam([{"params": twin_params[:2]}, {"params": twin_params[2:], "lr": 0.5}],
                          lr=0.3)
    sd = copy.deepcopy(opt.state_dict())
    before = copy.deepcopy(sd)
    twin.load_state_dict(sd)
    assert twin.param_groups[1]["lr"] == 0.01  # hyper-parameters come from the dict
    for a, b in ((opt, params), (twin, twin_params)):
        api.set_grad(b[0], [0.5, 0.5])
        api.set_grad(b[2], [[-1.0, 1.0]])
        a.step()
    for p, q in zip(params, twin_params):
        np.testing.assert_array_equal(api.value(p), api.value(q))
    # loading did not modify its input
    assert sd["param_groups"] == before["param_groups"]
    assert sd["state"].keys() == before["state"].keys()


def test_load_casts_floating_state_to_the_param_dtype_but_not_step(api):
    p64 = api.param([1.0, 2.0], "float64")
    opt = api.optim.Adam([p64])
    api.set_grad(p64, [0.5, 0.5])
    opt.step()
    p32 = api.param([1.0, 2.0], "float32")
    opt32 = api.optim.Adam([p32])
    opt32.load_state_dict(opt.state_dict())
    assert api.value(opt32.state[p32]["exp_avg"]).dtype == np.float32
    assert api.value(opt32.state[p32]["step"]).dtype == np.float32  # saved as float32
    api.set_grad(p32, [0.5, 0.5])
    opt32.step()  # and it keeps stepping
    assert float(opt32.state[p32]["step"]) == 2.0


def test_load_accepts_a_number_as_step(api):
    opt, (p1, p2, p3) = _trained_adam(api)
    sd = opt.state_dict()
    sd["state"][0]["step"] = 2
    opt.load_state_dict(sd)
    step = opt.state[p1]["step"]
    assert api.value(step).dtype == np.float32 and float(step) == 2.0


def test_load_keeps_unknown_state_entries_and_fills_old_flags(api):
    opt, _ = _trained_adam(api)
    sd = copy.deepcopy(opt.state_dict())
    sd["state"]["not-a-param"] = {"x": 1}
    for group in sd["param_groups"]:
        for key in ("maximize", "foreach", "capturable", "differentiable", "fused"):
            del group[key]  # an older torch wrote none of these
    opt.load_state_dict(sd)
    assert opt.state["not-a-param"] == {"x": 1}
    g = opt.param_groups[0]
    assert g["maximize"] is False and g["foreach"] is None and g["capturable"] is False


def test_adamw_forces_decoupled_decay_on_load(api):
    p = api.param([1.0])
    opt = api.optim.AdamW([p])
    sd = opt.state_dict()
    sd["param_groups"][0]["decoupled_weight_decay"] = False
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["decoupled_weight_decay"] is True


def test_param_names_follow_the_loaded_dict(api):
    p = api.param([1.0])
    named = api.optim.SGD([("w", p)])
    plain = api.optim.SGD([api.param([1.0])])
    plain.load_state_dict(named.state_dict())
    assert plain.param_groups[0]["param_names"] == ["w"]
    q = api.param([1.0])
    named2 = api.optim.SGD([("v", q)])
    named2.load_state_dict(api.optim.SGD([api.param([1.0])]).state_dict())
    assert named2.param_groups[0]["param_names"] == ["v"]  # kept when the dict has none


def test_loading_copies_instead_of_aliasing(api):
    if api.name == "torch.optim":
        pytest.skip("torch aliases the loaded tensors (pytorch/pytorch#196083); portopt copies")
    opt, params = _trained_adam(api)
    twin = api.optim.Adam([{"params": [api.param(api.value(p)) for p in params[:2]]},
                           {"params": [api.param(api.value(params[2]))]}])
    sd = opt.state_dict()
    twin.load_state_dict(sd)
    loaded = twin.state[twin.param_groups[0]["params"][0]]["exp_avg"]
    assert loaded is not sd["state"][0]["exp_avg"]


def test_deepcopy_and_pickle(api):
    opt, params = _trained_adam(api)
    clone = copy.deepcopy(opt)
    assert clone.param_groups[0]["params"][0] is not params[0]
    np.testing.assert_array_equal(api.value(clone.param_groups[0]["params"][0]),
                                  api.value(params[0]))
    # _fused_plans: the fast path's cache of address tables, rebuilt on demand
    transient = {"_warned_capturable_if_run_uncaptured", "_fused_plans"}
    assert set(vars(clone)) - transient == set(vars(opt)) - transient
    restored = pickle.loads(pickle.dumps(opt))
    assert restored.param_groups[1]["lr"] == 0.01


# -- hooks ----------------------------------------------------------------------------------

def test_step_hooks_run_in_torchs_order(api):
    opt, p1, _ = _sgd(api, lr=0.1)
    order = []
    handles = [
        api.optimizer_module.register_optimizer_step_pre_hook(lambda o, a, k: order.append(0)),
        opt.register_step_pre_hook(lambda o, a, k: order.append(1)),
        opt.register_step_post_hook(lambda o, a, k: order.append(2)),
        api.optimizer_module.register_optimizer_step_post_hook(lambda o, a, k: order.append(5)),
    ]
    try:
        opt.step()
        assert order == [0, 1, 2, 5]
        handles[1].remove()
        handles[2].remove()
        opt.step()
        assert order == [0, 1, 2, 5, 0, 5]
    finally:
        for h in handles:
            h.remove()
    opt.step()
    assert order == [0, 1, 2, 5, 0, 5]


def test_step_pre_hook_can_replace_arguments(api):
    opt, p1, _ = _sgd(api, lr=0.1)
    opt.register_step_pre_hook(lambda o, args, kwargs: (args, {"closure": lambda: 3.0}))
    assert opt.step() == 3.0
    opt2, _, _ = _sgd(api, lr=0.1)
    opt2.register_step_pre_hook(lambda o, a, k: "nonsense")
    with pytest.raises(RuntimeError, match="must return None or a tuple of \\(new_args, "
                                           "new_kwargs\\), but got nonsense."):
        opt2.step()


def test_state_dict_hooks(api):
    opt, p1, _ = _sgd(api, lr=0.1, momentum=0.9)
    calls = []
    opt.register_state_dict_pre_hook(lambda o: calls.append("pre-a"))
    opt.register_state_dict_pre_hook(lambda o: calls.append("pre-b"), prepend=True)

    def post(o, sd):
        calls.append("post")
        sd["extra"] = 1
        return None

    opt.register_state_dict_post_hook(post)
    opt.register_state_dict_post_hook(lambda o, sd: {**sd, "replaced": True})
    sd = opt.state_dict()
    assert calls == ["pre-b", "pre-a", "post"]
    assert sd["extra"] == 1 and sd["replaced"] is True


def test_load_state_dict_hooks(api):
    opt, p1, _ = _sgd(api, lr=0.1)
    sd = opt.state_dict()
    calls = []

    def pre(o, state_dict):
        calls.append("pre")
        new = copy.deepcopy(state_dict)
        new["param_groups"][0]["lr"] = 0.25
        return new

    opt.register_load_state_dict_pre_hook(pre)
    opt.register_load_state_dict_pre_hook(lambda o, s: calls.append("first"), prepend=True)
    opt.register_load_state_dict_post_hook(lambda o: calls.append("post"))
    handle = opt.register_load_state_dict_post_hook(lambda o: calls.append("gone"))
    handle.remove()
    opt.load_state_dict(sd)
    assert calls == ["first", "pre", "post"]
    assert opt.param_groups[0]["lr"] == 0.25
    assert sd["param_groups"][0]["lr"] == 0.1


def test_a_subclass_with_its_own_step_gets_hooks(api):
    class Doubler(api.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": 1.0})

        def step(self, closure=None):
            return "stepped"

    opt = Doubler([api.param([1.0])])
    seen = []
    opt.register_step_post_hook(lambda o, a, k: seen.append(True))
    assert opt.step() == "stepped" and seen == [True]


# -- array hyper-parameters (the constructor checks: test_bad_input_constructors.py) ----------

def test_array_hyper_parameter_validation(api):
    p = api.param([1.0])
    raises(ValueError, "Tensor lr must be 1-element", api.optim.SGD, [p],
            lr=api.array([0.1, 0.1]))
    raises(ValueError, "Tensor lr must be 1-element", api.optim.Adam, [p],
            lr=api.array([0.1, 0.1]))
    raises(ValueError, "lr as a Tensor is not supported for capturable=False and foreach=True",
            api.optim.Adam, [p], lr=api.array(0.1), foreach=True)
    raises(ValueError, "betas must be either both floats or both Tensors", api.optim.Adam, [p],
            betas=(api.array(0.9), 0.999))
    raises(ValueError, "betas[0] as a Tensor is not supported for capturable=False and "
            "foreach=True", api.optim.Adam, [p], betas=(api.array(0.9), api.array(0.99)),
            foreach=True)
    opt = api.optim.Adam([p], lr=api.array([0.01]))  # 1-element is fine
    api.set_grad(p, [1.0])
    opt.step()


def test_adam_rejects_sparse_gradients(api, torch):
    p = api.param([1.0, 2.0])
    if isinstance(p, portopt.Parameter):
        p.grad = portopt.SparseGrad(np.array([[0]]), np.array([1.0]), (2,))
    else:
        p.grad = torch.tensor([1.0, 0.0], dtype=torch.float64).to_sparse()
    opt = api.optim.AdamW([p])
    raises(RuntimeError, "Adam does not support sparse gradients, please consider SparseAdam "
            "instead", opt.step)
