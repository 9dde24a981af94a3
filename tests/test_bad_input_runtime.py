"""Bad input met after construction, one row per case: torch.optim and portopt side by side.

Each row builds an optimizer (and a scheduler or an averaged model) from valid arguments,
maybe steps it, then does one thing that must fail: ``add_param_group``,
``load_state_dict`` (optimizer or scheduler), ``step``, a gradient assignment,
``update_parameters`` or ``update_bn``. A row names the exception class and message by
hand, as read from torch 2.13 (or, for what only portopt meets, as portopt words it after
torch's model).

* ``test_torch_and_portopt_agree``: rows with a torch counterpart run on torch tensors
  with torch.optim and with portopt on its own arrays; both must give the hand-written
  outcome (so each other's). Skipped without torch.
* ``test_portopt_fails_and_loses_nothing``: every row on portopt alone, so the suite
  checks something without torch; the parameters (bitwise, and the very arrays), the
  optimizer state (every entry, bitwise), the param groups (every key) and the
  scheduler's attributes must be exactly as they were before the failing call. torch
  gives no such guarantee.

Constructor errors live in ``test_bad_input_constructors.py``.
"""

from __future__ import annotations

import copy
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import array_api_compat
import numpy as np
import pytest
from helpers import outcome

import portopt
import portopt.optim
from portopt import Parameter, SparseGrad
from portopt.backends import get_backend
from portopt.optim import lr_scheduler, swa_utils

# -- the two sides ----------------------------------------------------------------------


class Side:
    """One implementation and the arrays it is fed: ``torch`` (torch.optim on tensors) or
    ``portopt`` on ``numpy``, ``strict`` (array-api-strict) or ``torch`` arrays."""

    def __init__(self, name: str, backend: str) -> None:
        self.name, self.backend = name, backend
        if backend == "torch":
            self.torch = pytest.importorskip("torch")
        if backend == "strict":
            self.xs = pytest.importorskip("array_api_strict")
        if name == "torch":
            self.optim = self.torch.optim
            self.lr_scheduler = self.torch.optim.lr_scheduler
            self.swa_utils = self.torch.optim.swa_utils
        else:
            self.optim, self.lr_scheduler, self.swa_utils = portopt.optim, lr_scheduler, swa_utils

    def array(self, values: Any, dtype: str = "float64") -> Any:
        a = np.array(values, dtype=dtype)
        if self.backend == "torch":
            return self.torch.from_numpy(a)
        if self.backend == "strict":
            return self.xs.asarray(a)
        return a

    def param(self, values: Any, dtype: str = "float64") -> Any:
        a = self.array(values, dtype)
        return a if self.backend == "torch" else Parameter(a)

    def sparse(self, indices: Any, values: Any, shape: tuple[int, ...]) -> Any:
        if self.backend == "torch":
            t = self.torch
            return t.sparse_coo_tensor(t.tensor(indices), t.tensor(values, dtype=t.float64),
                                       shape, check_invariants=True)
        return SparseGrad(self.array(indices, "int64"), self.array(values), shape)

    def grad(self, p: Any, values: Any) -> None:
        p.grad = self.array(values, _dtype_name(p))

    def linear(self, rows: int, cols: int, seed: int = 0) -> Any:
        """A torch ``nn.Linear`` or portopt's NumPy mirror of it, with the same weights."""
        rng = np.random.default_rng(seed)
        w, b = rng.standard_normal((rows, cols)), rng.standard_normal(rows)
        if self.backend == "torch":
            layer = self.torch.nn.Linear(cols, rows, dtype=self.torch.float64)
            with self.torch.no_grad():
                layer.weight.copy_(self.torch.from_numpy(w))
                layer.bias.copy_(self.torch.from_numpy(b))
            return layer
        from portopt.testing._models import Linear
        return Linear(self.array(w), self.array(b))

    def with_batch_norm(self, features: int = 2) -> Any:
        """``Sequential(Linear(features, features), BatchNorm1d(features))``."""
        if self.backend == "torch":
            nn = self.torch.nn
            return nn.Sequential(self.linear(features, features),
                                 nn.BatchNorm1d(features, dtype=self.torch.float64))
        from portopt.testing._models import BatchNorm1d, Sequential
        return Sequential(self.linear(features, features),
                          BatchNorm1d(self.array(np.ones(features)),
                                      self.array(np.zeros(features))))


def _dtype_name(p: Any) -> str:
    data = p.data if isinstance(p, Parameter) else p
    return str(data.dtype).removeprefix("torch.")


@dataclass
class Case:
    """What a row's setup built, handed to its action and to the snapshot."""

    side: Side
    opt: Any = None
    params: list[Any] = field(default_factory=list)
    sched: Any = None
    model: Any = None
    closure: Any = None


@dataclass(frozen=True)
class Row:
    id: str
    setup: Callable[[Side], Case]
    act: Callable[[Case], Any]
    exc: type[BaseException]
    message: str | re.Pattern[str]
    torch: bool = True  # torch.optim meets the same situation (False: portopt only)
    backend: str = "numpy"  # the arrays of portopt's half

    def expect(self, got: tuple[type, str] | None) -> None:
        assert got is not None, f"{self.id}: no exception (expected {self.exc.__name__})"
        exc, message = got
        assert exc is self.exc, f"{self.id}: {exc.__name__}: {message}"
        if isinstance(self.message, re.Pattern):
            assert self.message.fullmatch(message), message
        else:
            assert message == self.message, message


ROWS: list[Row] = []


def row(id: str, setup: Callable[[Side], Case], act: Callable[[Case], Any],
        exc: type[BaseException], message: str | re.Pattern[str], **kw: Any) -> None:
    ROWS.append(Row(id, setup, act, exc, message, **kw))


# -- building blocks ----------------------------------------------------------------------

NAMES = ["SGD", "Adam", "AdamW", "Adadelta", "Adagrad", "Adamax", "ASGD", "LBFGS", "NAdam",
         "RAdam", "RMSprop", "Rprop", "SparseAdam", "Adafactor", "Muon"]
# the optimizers that keep a `step` tensor, and whose torch __setstate__ reads it
STEP_TENSOR = ["Adam", "AdamW", "Adadelta", "Adagrad", "Adamax", "ASGD", "NAdam", "RAdam",
               "RMSprop", "Rprop", "Adafactor"]
KWARGS = {"SGD": {"lr": 0.1, "momentum": 0.9}, "LBFGS": {"max_iter": 2}}
SHAPE = (2, 2)


def _value(i: int) -> np.ndarray:
    return np.arange(4.0).reshape(SHAPE) / 4 + i


def _grad(i: int, k: int = 0) -> np.ndarray:
    return np.array([[0.1, -0.2], [0.3, 0.05]]) * (i + 1) + 0.01 * k


def _sparse(side: Side, i: int = 0) -> Any:
    return side.sparse([[0, 1], [1, 0]], [0.1 * (i + 1), -0.2], SHAPE)


def _set_grads(c: Case, k: int = 9) -> None:
    sparse = type(c.opt).__name__ == "SparseAdam"
    for i, p in enumerate(c.params):
        p.grad = _sparse(c.side, i) if sparse else c.side.array(_grad(i, k))


def _step(c: Case) -> Any:
    return c.opt.step(c.closure) if c.closure is not None else c.opt.step()


def then(setup: Callable[[Side], Case], *preps: Callable[[Case], Any]) -> Callable[[Side], Case]:
    """``setup``, followed by ``preps`` (each may change the case: what a row's failing
    call must leave unchanged is the case as the preps leave it)."""
    def run(side: Side) -> Case:
        c = setup(side)
        for prep in preps:
            prep(c)
        return c
    return run


def trained(name: str, *, n: int = 3, steps: int = 2, groups: int = 1,
            **kwargs: Any) -> Callable[[Side], Case]:
    """``name`` over ``n`` 2x2 parameters (in two groups when asked), stepped ``steps``
    times so that every parameter has state, with fresh gradients set for the next step."""
    def setup(side: Side) -> Case:
        params = [side.param(_value(i)) for i in range(n)]
        spec: Any = params
        if groups == 2:
            spec = [{"params": params[:-1]}, {"params": params[-1:], "lr": 0.01}]
        opt = getattr(side.optim, name)(spec, **{**KWARGS.get(name, {}), **kwargs})
        closure = (lambda: 1.0) if name == "LBFGS" else None
        c = Case(side, opt, params, closure=closure)
        for k in range(steps):
            _set_grads(c, k)
            _step(c)
        _set_grads(c)
        return c
    return setup


def last_grad(make: Callable[[Case], Any]) -> Callable[[Case], Any]:
    """Give the last parameter the gradient ``make(c)``."""
    return lambda c: setattr(c.params[-1], "grad", make(c))


def by_hand(key: str, value: Any) -> Callable[[Case], Any]:
    """Set ``key`` of the last param group by hand."""
    return lambda c: c.opt.param_groups[-1].__setitem__(key, value)


def _load(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Case], Any]:
    """Load a deep copy of the optimizer's own state_dict after ``edit`` changed it."""
    def act(c: Case) -> Any:
        sd = copy.deepcopy(c.opt.state_dict())
        edit(sd)
        return c.opt.load_state_dict(sd)
    return act


def _last_entry(sd: dict[str, Any]) -> dict[str, Any]:
    return sd["state"][max(sd["state"])]


def _edit_group(sd: dict[str, Any], index: int, **changes: Any) -> None:
    sd["param_groups"][index].update(changes)


def _fresh(name: str, values: Any, dtype: str, grad: Any) -> Callable[[Side], Case]:
    """``name`` over one parameter with a gradient set and no state yet."""
    def setup(side: Side) -> Case:
        p = side.param(values, dtype)
        opt = getattr(side.optim, name)([p])
        p.grad = side.array(grad, dtype)
        return Case(side, opt, [p])
    return setup


# -- snapshots: nothing lost ----------------------------------------------------------------


def _freeze(x: Any, seen: set[int] | None = None) -> Any:
    """A comparable copy of ``x``: arrays by backend, dtype, shape and bytes; parameters by
    identity (of the parameter and of its array) and value; containers recursively;
    schedulers by their attributes; other objects by identity."""
    seen = set() if seen is None else seen
    if isinstance(x, Parameter):
        return ("param", id(x), id(x.data), _freeze(x.data))
    if isinstance(x, SparseGrad):
        return ("sparse", _freeze(x.indices), _freeze(x.values), x.shape)
    if isinstance(x, np.generic):
        return ("scalar", str(x.dtype), x.tobytes())
    if array_api_compat.is_array_api_obj(x):
        if array_api_compat.is_torch_array(x) and x.is_sparse:
            return ("torch-sparse", id(x))
        a = np.asarray(get_backend(x).to_numpy(x))
        return (type(x).__name__, str(a.dtype), a.shape, a.tobytes())
    if isinstance(x, dict):
        return (type(x).__name__, tuple((_key(k), _freeze(v, seen)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, tuple(_freeze(v, seen) for v in x))
    if isinstance(x, float):
        return ("float", x.hex())
    if x is None or isinstance(x, (bool, int, str, complex)):
        return x
    if isinstance(x, lr_scheduler.LRScheduler) and id(x) not in seen:
        seen.add(id(x))
        return ("scheduler", id(x), _freeze(_attributes(x), seen))
    return ("object", type(x).__name__, id(x))


def _key(k: Any) -> Any:
    return ("id", id(k)) if not isinstance(k, (int, str, float, tuple)) else k


def _attributes(sched: Any) -> dict[str, Any]:
    return {k: v for k, v in sched.__dict__.items() if k != "optimizer"}


def snapshot(c: Case) -> Any:
    """Everything a failing call must leave as it was."""
    parts: dict[str, Any] = {"params": [_freeze(p) for p in c.params]}
    if c.opt is not None:
        parts["state"] = _freeze(dict(c.opt.state))
        parts["param_groups"] = [_freeze(g) for g in c.opt.param_groups]
        parts["groups"] = [id(g) for g in c.opt.param_groups]
    if c.sched is not None:
        parts["scheduler"] = _freeze(c.sched)
    if c.model is not None:
        parts["model"] = [_freeze(x) for x in (*c.model.parameters(), *c.model.buffers())]
    return parts


# == the rows ==================================================================================

# -- add_param_group ----------------------------------------------------------------------------


def _sgd(named: bool = False) -> Callable[[Side], Case]:
    def setup(side: Side) -> Case:
        params = [side.param([1.0, 2.0]), side.param([3.0])]
        spec = [("w", params[0]), ("b", params[1])] if named else params
        return Case(side, side.optim.SGD(spec, lr=0.1), params)
    return setup


def _add(group: Callable[[Case], Any]) -> Callable[[Case], Any]:
    return lambda c: c.opt.add_param_group(group(c))


row("add_param_group-not-a-dict", _sgd(), _add(lambda c: [c.side.param([5.0])]),
    TypeError, "param_group must be a dict, but got <class 'list'>")
row("add_param_group-params-in-a-set", _sgd(), _add(lambda c: {"params": {c.side.param([5.0])}}),
    TypeError, "optimizer parameters need to be organized in ordered collections, but the "
    "ordering of tensors in sets will change between runs. Please use a list instead.")
row("add_param_group-param-already-in-a-group", _sgd(),
    _add(lambda c: {"params": [c.side.param([5.0]), c.params[1]]}),
    ValueError, "some parameters appear in more than one parameter group")
row("add_param_group-named-into-unnamed", _sgd(),
    _add(lambda c: {"params": [("q", c.side.param([5.0]))]}),
    ValueError, "all optimizer param groups should be with/without names. cannot add param "
    "group with names to the optimizer")
row("add_param_group-unnamed-into-named", _sgd(named=True),
    _add(lambda c: {"params": [c.side.param([5.0])]}),
    ValueError, "all optimizer param groups should be with/without names. cannot add param "
    "group without names to the optimizer")
row("add_param_group-some-names-missing", _sgd(),
    _add(lambda c: {"params": [("q", c.side.param([5.0])), c.side.param([6.0])]}),
    ValueError, "all optimizer params should be with/without names. Some param names are missing")
row("add_param_group-a-float", _sgd(), _add(lambda c: {"params": [1.0]}),
    TypeError, "optimizer can only optimize Tensors, but one of the params is float")
row("add_param_group-params-none", _sgd(), _add(lambda c: {"params": None}),
    TypeError, "'NoneType' object is not iterable")
row("add_param_group-no-params-key", _sgd(), _add(lambda c: {"lr": 0.5}), KeyError, "'params'")


def _required(side: Side) -> Any:
    return importlib.import_module(side.optim.__name__ + ".optimizer").required


def _custom_required(side: Side) -> Case:
    class Custom(side.optim.Optimizer):
        def __init__(self, params: Any) -> None:
            super().__init__(params, {"lr": _required(side), "beta": 0.5})

    p = side.param([1.0])
    return Case(side, Custom([{"params": [p], "lr": 0.1}]), [p])


row("add_param_group-required-hyper-parameter-missing", _custom_required,
    _add(lambda c: {"params": [c.side.param([2.0])]}),
    ValueError, "parameter group didn't specify a value of required optimization parameter lr")
row("add_param_group-non-leaf-tensor", _sgd(),
    _add(lambda c: {"params": [c.side.torch.ones(2, requires_grad=True) * 2]}),
    ValueError, "can't optimize a non-leaf Tensor", backend="torch")
# portopt only: arrays of several libraries, devices or torch-only modes
row("add_param_group-a-bare-numpy-array", _sgd(), _add(lambda c: {"params": [np.ones(2)]}),
    TypeError, "optimizer can only optimize Tensors, but one of the params is numpy.ndarray "
    "(wrap arrays in portopt.Parameter, which holds their .grad)", torch=False)


def _strict_array(values: Any, device: str | None = None) -> Any:
    xs = pytest.importorskip("array_api_strict")
    return xs.asarray(np.array(values), device=xs.Device(device) if device else None)


def _strict_param(values: Any, device: str | None = None) -> Parameter:
    return Parameter(_strict_array(values, device))


row("add_param_group-mixes-numpy-and-array-api-strict", _sgd(),
    _add(lambda c: {"params": [Parameter(np.ones(2)), _strict_param([1.0])]}),
    TypeError, "a param group must hold arrays of one backend, but this one mixes numpy and "
    "array_api_strict arrays; put them in separate param groups", torch=False)
row("add_param_group-mixes-numpy-and-torch", _sgd(),
    _add(lambda c: {"params": [Parameter(np.ones(2)), pytest.importorskip("torch").ones(2)]}),
    TypeError, "a param group must hold arrays of one backend, but this one mixes numpy and "
    "torch arrays; put them in separate param groups", torch=False)
row("add_param_group-mixes-devices", _sgd(),
    _add(lambda c: {"params": [_strict_param([1.0]), _strict_param([2.0], "device1")]}),
    ValueError, "a param group must hold arrays on one device, but this one mixes "
    "array_api_strict.Device('CPU_DEVICE') and array_api_strict.Device('device1'); put them "
    "in separate param groups", torch=False)
for _flag, _why in (("capturable", "CUDA graph capture"), ("differentiable", "torch autograd")):
    row(f"add_param_group-{_flag}-on-numpy", _sgd(),
        _add(lambda c, f=_flag: {"params": [c.side.param([5.0])], f: True}),
        RuntimeError, f"`{_flag}=True` needs {_why}, which only torch tensors have; it cannot "
        "be used with numpy arrays", torch=False)


# -- Optimizer.load_state_dict: the structure checks every optimizer shares --------------------

_two_groups = trained("Adam", groups=2)
_GROUP_SIZE = ("loaded state dict contains a parameter group that doesn't match the size of "
               "optimizer's group")
for _id, _edit, _exc, _message in [
    ("fewer-groups", lambda sd: sd["param_groups"].pop(), ValueError,
     "loaded state dict has a different number of parameter groups"),
    ("more-groups", lambda sd: sd["param_groups"].append(copy.deepcopy(sd["param_groups"][-1])),
     ValueError, "loaded state dict has a different number of parameter groups"),
    ("last-group-longer", lambda sd: sd["param_groups"][-1]["params"].append(7), ValueError,
     _GROUP_SIZE),
    ("last-group-empty", lambda sd: _edit_group(sd, -1, params=[]), ValueError, _GROUP_SIZE),
    ("no-param_groups", lambda sd: sd.pop("param_groups"), KeyError, "'param_groups'"),
    ("no-state", lambda sd: sd.pop("state"), KeyError, "'state'"),
    ("last-group-without-params", lambda sd: sd["param_groups"][-1].pop("params"), KeyError,
     "'params'"),
    ("last-group-not-a-dict", lambda sd: sd["param_groups"].__setitem__(-1, 5), TypeError,
     "'int' object is not subscriptable"),
    ("param_groups-not-a-list", lambda sd: sd.__setitem__("param_groups", 5), TypeError,
     "object of type 'int' has no len()"),
    ("state-not-a-dict", lambda sd: sd.__setitem__("state", [1]), AttributeError,
     "'list' object has no attribute 'items'"),
    ("unhashable-param-id-in-last-group", lambda sd: _edit_group(sd, -1, params=[[2]]),
     TypeError, "unhashable type: 'list'"),
]:
    row(f"load_state_dict-{_id}", _two_groups, _load(_edit), _exc, _message)
row("load_state_dict-not-a-dict", _two_groups, lambda c: c.opt.load_state_dict([("state", {})]),
    TypeError, "list indices must be integers or slices, not str")

# (torch checks neither the loaded param_names, which replace the current ones, nor the
# shapes of state arrays, which fail at the next step: no rows)

# the size check on the last group, for every optimizer (LBFGS keeps its state apart)
for _name in NAMES:
    row(f"load_state_dict-{_name}-last-group-one-param-short", trained(_name),
        _load(lambda sd: sd["param_groups"][-1]["params"].pop()), ValueError, _GROUP_SIZE)

# what each optimizer's __setstate__ reads from the loaded state (torch's per-class part),
# wrong in the last state entry only
for _name in STEP_TENSOR:
    row(f"load_state_dict-{_name}-last-entry-without-step", trained(_name),
        _load(lambda sd: _last_entry(sd).pop("step")), KeyError, "'step'")
    row(f"load_state_dict-{_name}-last-entry-step-none", trained(_name),
        _load(lambda sd: _last_entry(sd).__setitem__("step", None)), TypeError,
        "float() argument must be a string or a real number, not 'NoneType'")
    row(f"load_state_dict-{_name}-last-entry-not-a-dict", trained(_name),
        _load(lambda sd: sd["state"].__setitem__(max(sd["state"]), 3)), TypeError,
        "object of type 'int' has no len()")
for _name, _key_ in (("ASGD", "eta"), ("ASGD", "mu"), ("NAdam", "mu_product")):
    row(f"load_state_dict-{_name}-last-entry-without-{_key_}", trained(_name),
        _load(lambda sd, k=_key_: _last_entry(sd).pop(k)), KeyError, f"'{_key_}'")

# -- step(): what torch checks at step time ------------------------------------------------------

for _name in ["Adam", "AdamW", "Adadelta", "Adamax", "ASGD", "NAdam", "RAdam", "RMSprop",
              "Rprop", "Adafactor", "Muon"]:
    _kernel = "Adam" if _name == "AdamW" else _name  # AdamW runs Adam's step, as in torch
    row(f"step-{_name}-sparse-grad-on-last-param",
        then(trained(_name), last_grad(lambda c: _sparse(c.side))), _step, RuntimeError,
        "Adam does not support sparse gradients, please consider SparseAdam instead"
        if _kernel == "Adam" else f"{_kernel} does not support sparse gradients")
row("step-Adagrad-sparse-grad-with-weight_decay",
    then(trained("Adagrad", weight_decay=0.1), last_grad(lambda c: _sparse(c.side))), _step,
    RuntimeError, "weight_decay option is not compatible with sparse gradients")
_SPARSE_PLUS_DENSE = "add(sparse, dense) is not supported. Use add(dense, sparse) instead."
row("step-SGD-sparse-grad-with-weight_decay",
    then(trained("SGD", weight_decay=0.1), last_grad(lambda c: _sparse(c.side))), _step,
    RuntimeError, _SPARSE_PLUS_DENSE)


def _sparse_momentum(c: Case) -> None:
    for i, p in enumerate(c.params):
        p.grad = _sparse(c.side, i)
    _step(c)  # the momentum buffers are sparse now
    _set_grads(c)


row("step-SGD-dense-grad-onto-a-sparse-momentum-buffer",
    then(trained("SGD", steps=0), _sparse_momentum), _step, RuntimeError, _SPARSE_PLUS_DENSE)
row("step-SparseAdam-dense-grad-on-last-param",
    then(trained("SparseAdam"), last_grad(lambda c: c.side.array(_grad(2)))), _step,
    RuntimeError, "SparseAdam does not support dense gradients, please consider Adam instead")
row("step-LBFGS-without-closure", trained("LBFGS"), lambda c: c.opt.step(), TypeError,
    "LBFGS.step() missing 1 required positional argument: 'closure'")
row("step-LBFGS-unknown-line_search_fn", trained("LBFGS", steps=0, line_search_fn="wolfe"),
    _step, RuntimeError, "only 'strong_wolfe' is supported")
row("step-LBFGS-a-second-param-group",
    then(trained("LBFGS"), lambda c: c.opt.add_param_group({"params": [c.side.param([1.0])]})),
    _step, AssertionError, "Expected exactly one param_group, but got 2")


def _added_param(values: Any, dtype: str, grad: Any) -> Callable[[Case], Any]:
    """A param group added after the steps (Muon checks shapes in __init__ only), its
    parameter last in the case, with a gradient."""
    def prep(c: Case) -> None:
        extra = c.side.param(values, dtype)
        c.opt.add_param_group({"params": [extra]})
        extra.grad = c.side.array(grad, dtype)
        c.params.append(extra)
    return prep


row("step-Muon-1-D-param-added-later",
    then(trained("Muon"), _added_param([1.0, 2.0], "float64", [0.5, 0.5])), _step, ValueError,
    "Param gradient must be a 2D matrix")
row("step-Muon-complex-param-added-later",
    then(trained("Muon"), _added_param([[1 + 1j, 2.0]], "complex128", [[0.5, 0.5j]])), _step,
    RuntimeError, "Muon does not support complex parameters")
row("step-Muon-ns_steps-100", then(trained("Muon"), by_hand("ns_steps", 100)), _step,
    ValueError, "Number of steps must be less than 100 for computational efficiency")
row("step-Muon-two-ns_coefficients",
    then(trained("Muon"), by_hand("ns_coefficients", (3.0, -4.0))), _step, ValueError,
    "Coefficients must be a tuple of exactly 3 values")
row("step-Adafactor-complex-param",
    _fresh("Adafactor", [[1 + 1j, 2.0]], "complex128", [[0.5, 0.5j]]), _step, RuntimeError,
    "Adafactor does not support complex parameters")
for _name in ["Adam", "AdamW", "Adamax", "NAdam", "RAdam"]:
    row(f"step-{_name}-three-betas", then(trained(_name), by_hand("betas", (0.9, 0.99, 0.9))),
        _step, ValueError, "too many values to unpack (expected 2)")
row("step-Adam-amsgrad-switched-on-after-steps",
    then(trained("Adam"), by_hand("amsgrad", True)), _step, KeyError, "'max_exp_avg_sq'")
row("step-RMSprop-momentum-switched-on-after-steps",
    then(trained("RMSprop"), by_hand("momentum", 0.5)), _step, KeyError, "'momentum_buffer'")
row("step-RMSprop-centered-switched-on-after-steps",
    then(trained("RMSprop"), by_hand("centered", True)), _step, KeyError, "'grad_avg'")
row("step-Rprop-no-step-size-bounds",
    then(trained("Rprop"), by_hand("step_sizes", (None, None))), _step, RuntimeError,
    "torch.clamp: At least one of 'min' or 'max' must not be None")
row("step-Adam-lr-a-string", then(trained("Adam"), by_hand("lr", "0.1")), _step, TypeError,
    "unsupported operand type(s) for /: 'str' and 'float'")
row("step-SGD-lr-a-string", then(trained("SGD"), by_hand("lr", "0.1")), _step, TypeError,
    "bad operand type for unary -: 'str'")


def _failing_closure() -> float:
    raise ValueError("the model failed")


row("step-closure-raises", trained("Adam"), lambda c: c.opt.step(_failing_closure), ValueError,
    "the model failed")
# torch names the class that defines step (Adam.step); portopt's Adam steps through the
# shell's (Optimizer.step)
row("step-pre-hook-returns-a-number",
    then(trained("Adam"), lambda c: c.opt.register_step_pre_hook(lambda *args: 5)), _step,
    RuntimeError,
    re.compile(r"<function (Adam|Optimizer)\.step at 0x[0-9a-f]+> must return None or a tuple "
               r"of \(new_args, new_kwargs\), but got 5\."))

# torch-only modes, on CPU torch tensors for both (portopt on torch tensors)
_CAPTURABLE = ["Adam", "AdamW", "Adadelta", "Adamax", "ASGD", "NAdam", "RAdam", "RMSprop",
               "Rprop"]
_CAPTURE_NAMES = {"ASGD": "params, mus, etas, and state_steps",
                  "NAdam": "params, mu_products and state_steps"}


def _capturable_message(name: str, foreach: bool = False) -> str:
    # Adadelta's device list leaves out XLA, and so do the foreach paths but RMSprop's and
    # Rprop's
    no_xla = name == "Adadelta" or (foreach and name not in ("RMSprop", "Rprop"))
    xla = "" if no_xla else ", 'xla'"
    names = _CAPTURE_NAMES.get(name, "params and state_steps")
    if foreach and name == "NAdam":
        names = "params, mu_products, and state_steps"
    return (f"If capturable=True, {names} must be on supported devices: "
            f"['cuda', 'xpu', 'hpu', 'privateuseone'{xla}].")


for _name in _CAPTURABLE:
    row(f"step-{_name}-capturable-on-cpu", trained(_name, steps=0, capturable=True), _step,
        AssertionError, _capturable_message(_name), backend="torch")
    row(f"step-{_name}-foreach-capturable-on-cpu",
        trained(_name, steps=0, capturable=True, foreach=True), _step, AssertionError,
        _capturable_message(_name, foreach=True), backend="torch")
for _name in [*_CAPTURABLE, "Adagrad"]:
    row(f"step-{_name}-foreach-and-differentiable",
        trained(_name, steps=0, foreach=True, differentiable=True), _step, AssertionError,
        "_foreach ops don't support autograd", backend="torch")


def _lr_requiring_grad(c: Case) -> None:
    torch = c.side.torch
    c.opt.param_groups[0]["lr"] = torch.tensor(0.01, dtype=torch.float64, requires_grad=True)


for _name, _op in (("Adadelta", "add_(): argument 'alpha'"),
                   ("Adamax", "addcdiv_(): argument 'value'"),
                   ("RMSprop", "addcdiv_(): argument 'value'"),
                   ("Rprop", "full_like(): argument 'fill_value' (position 2)")):
    row(f"step-{_name}-differentiable-lr-requiring-grad",
        then(trained(_name, steps=0, differentiable=True), _lr_requiring_grad), _step, TypeError,
        f"{_op} must be Number, not Tensor", backend="torch")


def _steps_requiring_grad(c: Case) -> None:
    for p in c.params:
        c.opt.state[p]["step"].requires_grad_(True)


row("step-Adam-differentiable-step-requiring-grad",
    then(trained("Adam", differentiable=True), _steps_requiring_grad), _step, RuntimeError,
    "`requires_grad` is not supported for `step` in differentiable mode", backend="torch")
row("step-SGD-fused-sparse-grad",
    then(trained("SGD", steps=0, fused=True), last_grad(lambda c: _sparse(c.side))), _step,
    RuntimeError, "`_fused_sgd` does not support sparse gradients", backend="torch")
row("step-Adagrad-fused-sparse-grad",
    then(trained("Adagrad", steps=0, fused=True), last_grad(lambda c: _sparse(c.side))), _step,
    RuntimeError, "`fused` does not support sparse grad or complex param", backend="torch")

# -- gradients that cannot belong to their parameter -------------------------------------------


def _assign(make: Callable[[Case], Any]) -> Callable[[Case], Any]:
    return lambda c: setattr(c.params[-1], "grad", make(c))


_OF_ITS_SHAPE = "Please ensure that the gradient and the tensor are the same size"
row("grad-of-another-shape", trained("Adam"), _assign(lambda c: c.side.array([1.0, 2.0, 3.0])),
    RuntimeError, f"attempting to assign a gradient of size '[3]' to a tensor of size '[2, 2]'. "
    f"{_OF_ITS_SHAPE}")
# portopt only: torch's autograd words these its own way (a Tensor, grad_dtype)
row("grad-of-another-dtype", trained("Adam"),
    _assign(lambda c: c.side.array(_grad(0), "float32")), RuntimeError,
    "attempting to assign a gradient with dtype 'float32' to a parameter with dtype 'float64'. "
    "The gradient must match the parameter's dtype", torch=False)
for _id, _value_ in (("a-list", [[1.0, 2.0], [3.0, 4.0]]), ("a-float", 1.5), ("a-string", "1"),
                     ("a-parameter", Parameter(np.ones(SHAPE)))):
    row(f"grad-{_id}", trained("Adam"), _assign(lambda c, v=_value_: v), TypeError,
        "assigned grad expected to be an array or None but got grad of type "
        f"{type(_value_).__name__}", torch=False)
_OWN_BACKEND = "the gradient must come from the parameter's backend"
row("grad-of-array-api-strict-on-a-numpy-param", trained("Adam"),
    _assign(lambda c: _strict_array(_grad(0))), TypeError,
    f"assigned grad is a array_api_strict array but the parameter is a numpy array; {_OWN_BACKEND}",
    torch=False)
row("grad-of-torch-on-a-numpy-param", trained("Adam"),
    _assign(lambda c: pytest.importorskip("torch").ones(SHAPE).double()), TypeError,
    f"assigned grad is a torch array but the parameter is a numpy array; {_OWN_BACKEND}",
    torch=False)
row("grad-of-numpy-on-a-strict-param", trained("Adam", n=2), _assign(lambda c: np.ones(SHAPE)),
    TypeError,
    f"assigned grad is a numpy array but the parameter is a array_api_strict array; "
    f"{_OWN_BACKEND}", torch=False, backend="strict")
row("grad-on-another-device", trained("Adam", n=2),
    _assign(lambda c: _strict_array(_grad(0), "device1")), RuntimeError,
    "attempting to assign a gradient on device 'array_api_strict.Device('device1')' to a "
    "parameter on device 'array_api_strict.Device('CPU_DEVICE')'. Please ensure that the "
    "gradient and the tensor are on the same device", torch=False, backend="strict")
row("grad-sparse-of-another-shape", trained("SparseAdam"),
    _assign(lambda c: SparseGrad(np.array([[0]]), np.array([1.0]), (3,))), RuntimeError,
    f"attempting to assign a gradient of size '[3]' to a tensor of size '[2, 2]'. "
    f"{_OF_ITS_SHAPE}", torch=False)

# -- step(): what only portopt meets (a parameter changed behind the optimizer's back) ---------


def rebind_last(make: Callable[[Case], Any]) -> Callable[[Case], Any]:
    """Swap the last parameter's array for ``make(c)`` after its gradient was set."""
    return lambda c: setattr(c.params[-1], "data", make(c))


def read_only_last(c: Case) -> None:
    c.params[-1].data.flags.writeable = False


def _read_only_message(name: str) -> str:
    return (f"a parameter of {name} is a read-only numpy array; portopt updates parameters in "
            "place, so they must be writable")


for _name in NAMES:
    row(f"step-{_name}-read-only-last-param", then(trained(_name), read_only_last), _step,
        ValueError, _read_only_message(_name), torch=False)
row("step-Adam-read-only-last-param-generic-path",
    then(trained("Adam", foreach=False), read_only_last), _step, ValueError,
    _read_only_message("Adam"), torch=False)
row("step-Adam-last-param-resized-after-its-grad",
    then(trained("Adam"), rebind_last(lambda c: np.ones(3))), _step, RuntimeError,
    f"attempting to assign a gradient of size '[2, 2]' to a tensor of size '[3]'. "
    f"{_OF_ITS_SHAPE}", torch=False)
row("step-Adagrad-last-param-recast-after-its-grad",
    then(trained("Adagrad"), rebind_last(lambda c: np.ones(SHAPE, np.float32))), _step,
    RuntimeError, "attempting to assign a gradient with dtype 'float64' to a parameter with "
    "dtype 'float32'. The gradient must match the parameter's dtype", torch=False)
row("step-RMSprop-last-param-moved-to-array-api-strict",
    then(trained("RMSprop"), rebind_last(lambda c: _strict_array(_value(2)))), _step, TypeError,
    f"assigned grad is a numpy array but the parameter is a array_api_strict array; "
    f"{_OWN_BACKEND}", torch=False)


def _swap_last(device: str | None) -> Callable[[Case], Any]:
    """Swap the last parameter and its gradient for array-api-strict ones: another backend
    than NumPy's, or another device than the group's other strict arrays."""
    def prep(c: Case) -> None:
        last = c.params[-1]
        last.grad = None
        last.data = _strict_array(_value(2), device)
        last.grad = _strict_array(_grad(2), device)
    return prep


row("step-Adam-group-now-mixes-numpy-and-array-api-strict",
    then(trained("Adam"), _swap_last(None)), _step, TypeError,
    "a param group must hold arrays of one backend, but this one mixes numpy and "
    "array_api_strict arrays; put them in separate param groups", torch=False)
row("step-SGD-group-now-mixes-devices", then(trained("SGD"), _swap_last("device1")), _step,
    ValueError, "a param group must hold arrays on one device, but this one mixes "
    "array_api_strict.Device('CPU_DEVICE') and array_api_strict.Device('device1'); put them "
    "in separate param groups", torch=False, backend="strict")
for _flag, _why in (("capturable", "CUDA graph capture"), ("differentiable", "torch autograd")):
    row(f"step-Adam-{_flag}-set-by-hand-on-numpy", then(trained("Adam"), by_hand(_flag, True)),
        _step, RuntimeError, f"`{_flag}=True` needs {_why}, which only torch tensors have; it "
        "cannot be used with numpy arrays", torch=False)
for _name in ["Adam", "Adagrad"]:
    row(f"step-{_name}-fused-without-a-numpy-kernel",
        then(trained(_name), by_hand("fused", True)), _step, RuntimeError,
        f"`fused=True` requires a fused {_name} kernel for numpy arrays and portopt has none; "
        "leave `fused` unset (or False) to use the reference kernel", torch=False)

# -- schedulers -----------------------------------------------------------------------------------


def sched(make: Callable[[Side, Any], Any], steps: int = 0) -> Callable[[Side], Case]:
    """SGD with momentum over one parameter and a scheduler ``make(side, opt)`` on it, both
    stepped ``steps`` times, then the optimizer once more (so that a scheduler step comes
    after an optimizer step, as torch wants)."""
    def setup(side: Side) -> Case:
        p = side.param([1.0, 2.0])
        opt = side.optim.SGD([p], lr=0.1, momentum=0.9)
        s = make(side, opt)
        for k in range(steps):
            side.grad(p, [0.1 * k, 0.2])
            opt.step()
            s.step()
        side.grad(p, [0.3, 0.1])
        opt.step()
        return Case(side, opt, [p], sched=s)
    return setup


def _ls(name: str, *args: Any, **kwargs: Any) -> Callable[[Side, Any], Any]:
    return lambda side, opt: getattr(side.lr_scheduler, name)(opt, *args, **kwargs)


def _sched_load(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Case], Any]:
    """Load the scheduler's own state_dict (a shallow copy) after ``edit`` changed it."""
    def act(c: Case) -> Any:
        sd = dict(c.sched.state_dict())
        edit(sd)
        return c.sched.load_state_dict(sd)
    return act


def _sequential(side: Side, opt: Any) -> Any:
    first = side.lr_scheduler.LambdaLR(opt, lambda epoch: 0.5)
    return side.lr_scheduler.SequentialLR(opt, [first, side.lr_scheduler.ExponentialLR(opt, 0.9)],
                                          milestones=[3])


def _chained(side: Side, opt: Any) -> Any:
    return side.lr_scheduler.ChainedScheduler([side.lr_scheduler.StepLR(opt, 2),
                                               side.lr_scheduler.ExponentialLR(opt, 0.9)])


class _Factor:
    """A callable-object lr lambda, whose ``__dict__`` a state_dict keeps."""

    def __init__(self) -> None:
        self.factor = 0.5

    def __call__(self, epoch: int) -> float:
        return self.factor ** epoch


def _fails_at(epoch: float) -> Callable[[float], float]:
    """A schedule function that divides by zero at ``epoch``."""
    def fn(e: float) -> float:
        return 1.0 / (e - epoch)
    return fn


def _sched_step(c: Case) -> Any:
    return c.sched.step()


row("OneCycleLR-stepped-past-total_steps", sched(_ls("OneCycleLR", 1.0, total_steps=3), steps=3),
    _sched_step, ValueError, "Tried to step 4 times. The specified number of total steps is 3")
row("OneCycleLR-unknown-anneal-function-after-load",
    then(sched(_ls("OneCycleLR", 1.0, total_steps=10), steps=1),
         _sched_load(lambda sd: sd.update(_anneal_func_type="exp"))),
    _sched_step, ValueError, "Unknown _anneal_func_type: exp")
row("ReduceLROnPlateau-step-without-a-metric", sched(_ls("ReduceLROnPlateau")), _sched_step,
    TypeError, "ReduceLROnPlateau.step() missing 1 required positional argument: 'metrics'")
row("ReduceLROnPlateau-step-a-string-metric", sched(_ls("ReduceLROnPlateau")),
    lambda c: c.sched.step("low"), ValueError, "could not convert string to float: 'low'")
row("ReduceLROnPlateau-min_lr-list-then-a-group-added",
    then(sched(_ls("ReduceLROnPlateau", patience=0, min_lr=[0.0])),
         lambda c: c.sched.step(1.0),
         lambda c: c.opt.add_param_group({"params": [c.side.param([3.0])]})),
    lambda c: c.sched.step(2.0), RuntimeError,
    "The number of param groups in the `optimizer` (2) differs from when `ReduceLROnPlateau` "
    "was initialized (1), usually due to a new param group being added to the optimizer. "
    "Please modify the `min_lrs` field to match the length of the `optimizer` param groups.")
row("SequentialLR-step-with-an-epoch", sched(_sequential), lambda c: c.sched.step(2), TypeError,
    "SequentialLR.step() takes 1 positional argument but 2 were given")
row("ChainedScheduler-step-with-an-epoch", sched(_chained), lambda c: c.sched.step(2), TypeError,
    "ChainedScheduler.step() takes 1 positional argument but 2 were given")
row("SequentialLR-member-lambda-fails", sched(
    lambda side, opt: side.lr_scheduler.SequentialLR(
        opt, [side.lr_scheduler.LambdaLR(opt, _fails_at(2)),
              side.lr_scheduler.ExponentialLR(opt, 0.9)], milestones=[5]), steps=1),
    _sched_step, ZeroDivisionError, "float division by zero")
row("ChainedScheduler-second-member-fails", sched(
    lambda side, opt: side.lr_scheduler.ChainedScheduler(
        [side.lr_scheduler.ExponentialLR(opt, 0.9),
         side.lr_scheduler.LambdaLR(opt, _fails_at(2))]), steps=1),
    _sched_step, ZeroDivisionError, "float division by zero")
row("StepLR-step_size-0", sched(_ls("StepLR", 0)), _sched_step, ZeroDivisionError,
    "integer modulo by zero")
row("CosineAnnealingLR-T_max-0", sched(_ls("CosineAnnealingLR", 0)), _sched_step,
    ZeroDivisionError, "integer modulo by zero")
row("PolynomialLR-negative-power-at-the-end",
    sched(_ls("PolynomialLR", total_iters=2, power=-1.0), steps=1), _sched_step,
    ZeroDivisionError, "0.0 cannot be raised to a negative power")
row("LambdaLR-a-group-added-after-construction",
    then(sched(_ls("LambdaLR", lambda e: 0.5)),
         lambda c: c.opt.add_param_group({"params": [c.side.param([3.0])]})),
    _sched_step, ValueError, "zip() argument 2 is shorter than argument 1")
row("MultiplicativeLR-lambda-fails", sched(_ls("MultiplicativeLR", _fails_at(3)), steps=2),
    _sched_step, ZeroDivisionError, "float division by zero")
row("CosineAnnealingWarmRestarts-negative-epoch", sched(_ls("CosineAnnealingWarmRestarts", 2)),
    lambda c: c.sched.step(-1), ValueError, "Expected non-negative epoch, but got -1")
row("SWALR-group-without-swa_lr",
    then(sched(lambda side, opt: side.swa_utils.SWALR(opt, 0.05)),
         lambda c: c.opt.param_groups[0].pop("swa_lr")),
    _sched_step, KeyError, "'swa_lr'")
row("CyclicLR-scale_fn-fails",
    sched(_ls("CyclicLR", 0.01, 0.1, step_size_up=2, scale_fn=_fails_at(1.0),
              scale_mode="iterations")),
    _sched_step, ZeroDivisionError, "float division by zero")

# scheduler load_state_dict
row("ReduceLROnPlateau-load-unknown-mode", sched(_ls("ReduceLROnPlateau")),
    _sched_load(lambda sd: sd.update(mode="avg")), ValueError, "mode avg is unknown!")
row("ReduceLROnPlateau-load-unknown-threshold_mode", sched(_ls("ReduceLROnPlateau")),
    _sched_load(lambda sd: sd.update(threshold_mode="log")), ValueError,
    "threshold mode log is unknown!")
row("CyclicLR-load-without-_scale_fn_custom", sched(_ls("CyclicLR", 0.01, 0.1), steps=1),
    _sched_load(lambda sd: sd.pop("_scale_fn_custom")), KeyError, "'_scale_fn_custom'")
row("CyclicLR-load-scale_fn-attributes-without-a-scale_fn",
    sched(_ls("CyclicLR", 0.01, 0.1), steps=1),
    _sched_load(lambda sd: sd.update(_scale_fn_custom={"factor": 2.0}, last_epoch=99)),
    AttributeError, "'NoneType' object has no attribute '__dict__'")
row("LambdaLR-load-without-lr_lambdas", sched(_ls("LambdaLR", _Factor()), steps=1),
    _sched_load(lambda sd: sd.pop("lr_lambdas")), KeyError, "'lr_lambdas'")
row("LambdaLR-load-lambda-attributes-not-a-dict", sched(_ls("LambdaLR", _Factor()), steps=1),
    _sched_load(lambda sd: sd.update(lr_lambdas=[5], last_epoch=99)), TypeError,
    "'int' object is not iterable")
row("SequentialLR-load-without-_schedulers", sched(_sequential, steps=1),
    _sched_load(lambda sd: sd.pop("_schedulers")), KeyError, "'_schedulers'")
row("SequentialLR-load-member-without-lr_lambdas", sched(_sequential, steps=1),
    _sched_load(lambda sd: sd.update(last_epoch=99, _schedulers=[
        {k: v for k, v in sd["_schedulers"][0].items() if k != "lr_lambdas"},
        sd["_schedulers"][1]])),
    KeyError, "'lr_lambdas'")
row("ChainedScheduler-load-without-_schedulers", sched(_chained, steps=1),
    _sched_load(lambda sd: sd.pop("_schedulers")), KeyError, "'_schedulers'")
row("SWALR-load-a-list", sched(lambda side, opt: side.swa_utils.SWALR(opt, 0.05), steps=1),
    lambda c: c.sched.load_state_dict([5]), TypeError,
    "cannot convert dictionary update sequence element #0 to a sequence")
row("StepLR-load-a-list", sched(_ls("StepLR", 2), steps=1), lambda c: c.sched.load_state_dict([5]),
    TypeError, "cannot convert dictionary update sequence element #0 to a sequence")

# -- swa_utils --------------------------------------------------------------------------------------


def _averaged(layer: Callable[[Side], Any], *, swa_multi: bool = False,
              **kwargs: Any) -> Callable[[Side], Case]:
    """An AveragedModel of ``layer(side)``, updated once; ``swa_multi`` averages with the
    side's own ``get_swa_multi_avg_fn()``."""
    def setup(side: Side) -> Case:
        model = layer(side)
        if swa_multi:
            kwargs["multi_avg_fn"] = side.swa_utils.get_swa_multi_avg_fn()
        averaged = side.swa_utils.AveragedModel(model, **kwargs)
        averaged.update_parameters(model)
        return Case(side, model=averaged)
    return setup


row("AveragedModel-update-from-a-model-of-other-shapes",
    _averaged(lambda side: side.linear(3, 2)),
    lambda c: c.model.update_parameters(c.side.linear(2, 3)), RuntimeError,
    "The size of tensor a (3) must match the size of tensor b (2) at non-singleton dimension 1",
    backend="torch")
row("AveragedModel-swa-multi-avg-of-an-integer-buffer",
    _averaged(lambda side: side.with_batch_norm(), use_buffers=True, swa_multi=True),
    lambda c: c.model.update_parameters(c.model.module), RuntimeError,
    "Integer division with addcdiv is no longer supported, and in a future  release addcdiv "
    "will perform a true division of tensor1 and tensor2. The historic addcdiv behavior can "
    "be implemented as (input + value * torch.trunc(tensor1 / tensor2)).to(input.dtype) for "
    "integer inputs and as (input + value * tensor1 / tensor2) for float inputs. The future "
    "addcdiv behavior is just the latter implementation: (input + value * tensor1 / tensor2), "
    "for all dtypes.")


def _failing_avg(avg: Any, current: Any, n: Any) -> Any:
    raise ValueError("cannot average")


row("AveragedModel-avg_fn-fails", _averaged(lambda side: side.linear(3, 2), avg_fn=_failing_avg),
    lambda c: c.model.update_parameters(c.model.module), ValueError, "cannot average")
row("update_bn-a-batch-the-model-refuses", lambda side: Case(side, model=side.with_batch_norm()),
    lambda c: c.side.swa_utils.update_bn([c.side.array(np.ones((4, 3)))], c.model),
    RuntimeError, "mat1 and mat2 shapes cannot be multiplied (4x3 and 2x2)", backend="torch")
row("update_bn-a-loader-that-is-not-iterable",
    lambda side: Case(side, model=side.with_batch_norm()),
    lambda c: c.side.swa_utils.update_bn(5, c.model), TypeError, "'int' object is not iterable")


# == the tests =================================================================================

TORCH_ROWS = [r for r in ROWS if r.torch]


@pytest.mark.parametrize("row", TORCH_ROWS, ids=lambda r: r.id)
def test_torch_and_portopt_agree(row: Row) -> None:
    pytest.importorskip("torch", reason="torch.optim is the oracle of these rows")
    got_torch = outcome(row.act, row.setup(Side("torch", "torch")))
    row.expect(got_torch)
    got_portopt = outcome(row.act, row.setup(Side("portopt", row.backend)))
    row.expect(got_portopt)
    if not isinstance(row.message, re.Pattern):
        assert got_portopt == got_torch


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_portopt_fails_and_loses_nothing(row: Row) -> None:
    case = row.setup(Side("portopt", row.backend))
    before = snapshot(case)
    row.expect(outcome(row.act, case))
    assert snapshot(case) == before


def test_the_table_has_unique_ids_and_its_size() -> None:
    ids = [r.id for r in ROWS]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 120
