"""Every construction-time check of torch.optim 2.13, one row per case, torch and portopt
side by side.

Each row builds one thing (an optimizer, a scheduler, an averaged model or an averaging
function) and states, by hand, what torch 2.13 does: the exception class and its exact
message, or that the input is accepted. The messages are torch's f-strings filled in by
hand from its source (``torch/optim/*.py``, ``lr_scheduler.py``, ``swa_utils.py``) and the
reference's sections 1.2, 1.3 and 2.4. Each row runs on four sides:

* ``torch.optim``: torch's classes on torch tensors, the oracle, held to the row;
* ``portopt[torch]``: portopt's classes on the very same kind of tensors;
* ``portopt[numpy]`` and ``portopt[array_api_strict]``: portopt's classes on
  :class:`portopt.Parameter` arrays.

Every portopt side must match the row (same class, same message) and, where torch is
installed, what torch actually raised for the same input; a row whose input portopt
deliberately treats otherwise states portopt's class, message and the reason
(:class:`Deviation`). Without torch the two torch sides skip and the others still meet
the hand-written expectation. Messages that quote an input (a type name, an array) are
written as functions of the side, since each side quotes its own array.

Step-time, param-group and state_dict inputs are ``tests/test_bad_input_runtime.py``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from helpers import outcome

import portopt

TORCH = "torch.optim"
P_TORCH = "portopt[torch]"
P_NUMPY = "portopt[numpy]"
P_STRICT = "portopt[array_api_strict]"
SIDES = (TORCH, P_TORCH, P_NUMPY, P_STRICT)
ON_TENSORS = (TORCH, P_TORCH)  # inputs that only torch tensors can express
OFF_TORCH = (P_NUMPY, P_STRICT)  # portopt on arrays that are not torch tensors
PORTOPT = (P_TORCH, P_NUMPY, P_STRICT)

NAN, INF = float("nan"), float("inf")

Message = str | Callable[["Side"], str] | None


# -- the sides ---------------------------------------------------------------------------


class Side:
    """One implementation of torch.optim's surface, with its own kind of arrays."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.torch = None
        if name in ON_TENSORS:
            try:
                import torch
            except ImportError:
                pytest.skip("torch is not installed: the torch side of the row cannot run")
            self.torch = torch
        if name == TORCH:
            self.optim = torch.optim
            self.lr_scheduler = importlib.import_module("torch.optim.lr_scheduler")
            self.swa_utils = importlib.import_module("torch.optim.swa_utils")
            self.required = importlib.import_module("torch.optim.optimizer").required
        else:
            from portopt import optim
            from portopt.optim import lr_scheduler, swa_utils
            from portopt.optim.optimizer import required

            self.optim, self.lr_scheduler, self.swa_utils = optim, lr_scheduler, swa_utils
            self.required = required
        self.strict = None
        if name == P_STRICT:
            self.strict = pytest.importorskip("array_api_strict")

    def array(self, values: Any, dtype: str = "float64") -> Any:
        """An array (a tensor on the torch sides) of this side's library."""
        a = np.array(values, dtype=dtype)
        if self.torch is not None:
            return self.torch.from_numpy(a)
        if self.strict is not None:
            return self.strict.asarray(a)
        return a

    def param(self, shape: tuple[int, ...] = (2,), dtype: str = "float64") -> Any:
        """A fresh parameter: a leaf tensor (that requires grad if it can), or a Parameter."""
        a = np.zeros(shape, dtype=dtype)
        if self.torch is not None:
            t = self.torch.from_numpy(a)
            return t.requires_grad_() if t.is_floating_point() or t.is_complex() else t
        return portopt.Parameter(self.array(a, dtype))

    def opt(self, name: str = "SGD", lrs: tuple[float, ...] = (0.05, 0.5), **kwargs: Any) -> Any:
        """An optimizer with one param group per lr (SGD with momentum by default)."""
        if name == "SGD":
            kwargs.setdefault("momentum", 0.9)
        groups = [{"params": [self.param()], "lr": lr} for lr in lrs]
        return getattr(self.optim, name)(groups, lr=lrs[0], **kwargs)

    def model(self) -> Any:
        """A small model: a torch module on the torch sides, a protocol model elsewhere."""
        if self.torch is not None:
            return self.torch.nn.Linear(2, 1).double()
        from portopt.testing._models import Linear

        return Linear(self.array(np.zeros((1, 2))), self.array(np.zeros(1)))

    # how each side's messages name its inputs
    @property
    def param_type(self) -> str:
        return "torch.DoubleTensor" if self.torch is not None else "portopt.parameter.Parameter"

    @property
    def param_class(self) -> str:
        return "<class 'torch.Tensor'>" if self.torch is not None else \
            "<class 'portopt.parameter.Parameter'>"

    @property
    def array_type(self) -> str:
        if self.torch is not None:
            return "torch.DoubleTensor"
        return "array_api_strict._array_object.Array" if self.strict else "numpy.ndarray"

    def size(self, shape: tuple[int, ...]) -> str:
        """A parameter's size as Muon prints it: ``torch.Size`` for tensors, the shape
        tuple for other arrays."""
        return f"torch.Size({list(shape)})" if self.torch is not None else str(shape)


_SIDES: dict[str, Side] = {}


def side_named(name: str) -> Side:
    if name not in _SIDES:
        _SIDES[name] = Side(name)
    return _SIDES[name]


# -- rows --------------------------------------------------------------------------------


@dataclass(frozen=True)
class A:
    """An array argument, built on each side from these values (a tensor lr, betas)."""

    values: Any

    def __repr__(self) -> str:
        return f"array({self.values!r})"


def _resolve(value: Any, s: Side) -> Any:
    if isinstance(value, A):
        return s.array(value.values)
    if isinstance(value, tuple):
        return tuple(_resolve(v, s) for v in value)
    if isinstance(value, list):
        return [_resolve(v, s) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, s) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Deviation:
    """What portopt raises where it deliberately differs from torch, and why."""

    exc: type[BaseException] | Callable[[Side], type[BaseException]] | None
    message: Message
    why: str
    sides: tuple[str, ...] = OFF_TORCH


@dataclass(frozen=True)
class Row:
    id: str
    make: Callable[[Side], Any]
    exc: type[BaseException] | None  # torch's class; None: torch accepts the input
    message: Message = None  # torch's exact message (a function of the side if it quotes one)
    deviation: Deviation | None = None
    sides: tuple[str, ...] = SIDES
    why_not: str = ""  # why the row leaves some sides out

    def expected(self, s: Side) -> tuple[type, str] | None:
        exc, message = self.exc, self.message
        if self.deviation is not None and s.name in self.deviation.sides:
            exc, message = self.deviation.exc, self.deviation.message
        if exc is not None and not isinstance(exc, type):
            exc = exc(s)  # a deviation whose class depends on the array library
        if exc is None:
            return None
        return exc, message(s) if callable(message) else message


ROWS: list[Row] = []

# default parameter shapes (Muon takes matrices only)
_SHAPE = {"Muon": (2, 2)}


def _kw_id(args: tuple, kwargs: dict) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return ", ".join(parts)


def opt_row(name: str, kwargs: dict | None = None, exc: type | None = None,
            message: Message = None, *, args: tuple = (), params: Callable | None = None,
            id: str | None = None, **extra: Any) -> None:
    """A row constructing optimizer ``name`` on one fresh parameter (or on ``params(s)``)."""
    kwargs = kwargs or {}

    def make(s: Side) -> Any:
        ps = params(s) if params is not None else [s.param(_SHAPE.get(name, (2,)))]
        return getattr(s.optim, name)(ps, *_resolve(args, s), **_resolve(kwargs, s))

    ROWS.append(Row(id or f"{name}({_kw_id(args, kwargs)})", make, exc, message, **extra))


def row(id: str, make: Callable[[Side], Any], exc: type | None = None,
        message: Message = None, **extra: Any) -> None:
    ROWS.append(Row(id, make, exc, message, **extra))


def key_error(text: str) -> str:
    """``str()`` of a KeyError is the repr of its message."""
    return repr(text)


# -- portopt's deliberate differences --------------------------------------------------------

TORCH_ONLY_FLAG = {
    "capturable": "`capturable=True` needs CUDA graph capture, which only torch tensors "
                  "have; it cannot be used with {lib} arrays",
    "differentiable": "`differentiable=True` needs torch autograd, which only torch "
                      "tensors have; it cannot be used with {lib} arrays",
}


def torch_only(flag: str) -> Deviation:
    """portopt refuses ``capturable``/``differentiable`` on non-torch arrays when the group
    is added (README, "Differences": they only work on torch tensors); torch accepts them
    at construction (on the CPU, capturable fails at the first step)."""
    def message(s: Side) -> str:
        lib = "array_api_strict" if s.strict is not None else "numpy"
        return TORCH_ONLY_FLAG[flag].format(lib=lib)
    return Deviation(RuntimeError, message,
                     f"`{flag}` only works on torch tensors (README, differences); "
                     "portopt says so when the group is added")


# -- generic param-list checks (Optimizer.__init__ and add_param_group) --------------------

NOT_ITERABLE = "params argument given to the optimizer should be an iterable of Tensors or dicts, but got "
ONLY_TENSORS = "optimizer can only optimize Tensors, but one of the params is "
SET_IN_GROUP = ("optimizer parameters need to be organized in ordered collections, but the "
                "ordering of tensors in sets will change between runs. Please use a list instead.")
NAMES_MISSING = "all optimizer params should be with/without names. Some param names are missing"
GROUP_NAMES = "all optimizer param groups should be with/without names. cannot add param group {} to the optimizer"
OVERLAP = "some parameters appear in more than one parameter group"
EMPTY = "optimizer got an empty parameter list"

for _name in ("SGD", "Adam"):
    row(f"{_name}(a bare parameter)", lambda s, n=_name: getattr(s.optim, n)(s.param()),
        TypeError, lambda s: NOT_ITERABLE + s.param_type)
row("SGD(a bare array)", lambda s: s.optim.SGD(s.array([1.0, 2.0])), TypeError,
    lambda s: NOT_ITERABLE + s.array_type)
row("SGD([])", lambda s: s.optim.SGD([]), ValueError, EMPTY)
row("SGD(())", lambda s: s.optim.SGD(()), ValueError, EMPTY)
row("SGD(iter([]))", lambda s: s.optim.SGD(iter([])), ValueError, EMPTY)
row("Adam([])", lambda s: s.optim.Adam([]), ValueError, EMPTY)
row("SGD(None)", lambda s: s.optim.SGD(None), TypeError, "'NoneType' object is not iterable")
row("SGD(0.1)", lambda s: s.optim.SGD(0.1), TypeError, "'float' object is not iterable")
row("SGD([1.0])", lambda s: s.optim.SGD([1.0]), TypeError, ONLY_TENSORS + "float")
row("SGD([None])", lambda s: s.optim.SGD([None]), TypeError, ONLY_TENSORS + "NoneType")
row("SGD('ab')", lambda s: s.optim.SGD("ab"), TypeError, ONLY_TENSORS + "str")
row("SGD([[p]])", lambda s: s.optim.SGD([[s.param()]]), TypeError, ONLY_TENSORS + "list")
row("SGD([p, {'params': [q]}])", lambda s: s.optim.SGD([s.param(), {"params": [s.param()]}]),
    TypeError, ONLY_TENSORS + "dict")
row("SGD({'params': [p]}) (a dict, not a list)",
    lambda s: s.optim.SGD({"params": [s.param()]}), TypeError, ONLY_TENSORS + "str")
row("SGD([{'params': [p]}, q])", lambda s: s.optim.SGD([{"params": [s.param()]}, s.param()]),
    TypeError, lambda s: f"param_group must be a dict, but got {s.param_class}")
row("SGD([p, numpy array])", lambda s: s.optim.SGD([s.param(), np.zeros(2)]), TypeError,
    ONLY_TENSORS + "numpy.ndarray",
    deviation=Deviation(TypeError, ONLY_TENSORS + "numpy.ndarray (wrap arrays in "
                        "portopt.Parameter, which holds their .grad)",
                        "portopt's message adds how to make an array optimizable", PORTOPT))
row("SGD([{'params': {p}}])", lambda s: s.optim.SGD([{"params": {s.param()}}]), TypeError,
    SET_IN_GROUP)
row("SGD({p}) (a top-level set)", lambda s: s.optim.SGD({s.param()}), None)
row("SGD([{'lr': 0.1}]) (no params key)", lambda s: s.optim.SGD([{"lr": 0.1}]), KeyError,
    "'params'")
row("SGD([{'params': []}]) (an empty group)", lambda s: s.optim.SGD([{"params": []}]), None)
row("SGD([{'params': p}]) (one parameter, not a list)",
    lambda s: s.optim.SGD([{"params": s.param()}]), None)
row("SGD(a generator)", lambda s: s.optim.SGD(s.param() for _ in range(2)), None)
row("SGD([{'params': [p], 'foo': 1}]) (an unknown group key)",
    lambda s: s.optim.SGD([{"params": [s.param()], "foo": 1}]), None)
row("SGD([('w', p), q])", lambda s: s.optim.SGD([("w", s.param()), s.param()]), ValueError,
    NAMES_MISSING)
row("SGD([p, ('w', q)])", lambda s: s.optim.SGD([s.param(), ("w", s.param())]), ValueError,
    NAMES_MISSING)
row("SGD([('w', p), ('b', q)])", lambda s: s.optim.SGD([("w", s.param()), ("b", s.param())]),
    None)
row("SGD(unnamed group, then named group)",
    lambda s: s.optim.SGD([{"params": [s.param()], "lr": 1e-2},
                           {"params": [("w", s.param())]}]),
    ValueError, GROUP_NAMES.format("with names"))
row("SGD(named group, then unnamed group)",
    lambda s: s.optim.SGD([{"params": [("w", s.param())]}, {"params": [s.param()]}]),
    ValueError, GROUP_NAMES.format("without names"))


def _overlap(s: Side, name: str = "SGD") -> Any:
    p = s.param()
    return getattr(s.optim, name)([{"params": [p]}, {"params": [s.param(), p]}])


def _duplicate(s: Side) -> Any:
    p = s.param()
    with pytest.warns(UserWarning, match="a parameter group with duplicate parameters"):
        return s.optim.SGD([p, p])


row("SGD(one parameter in two groups)", _overlap, ValueError, OVERLAP)
row("Adam(one parameter in two groups)", lambda s: _overlap(s, "Adam"), ValueError, OVERLAP)
row("SGD([p, p]) (a duplicate warns only)", _duplicate, None)
row("SGD(a group with lr=-1.0) (groups are not validated)",
    lambda s: s.optim.SGD([{"params": [s.param()], "lr": -1.0}]), None)
row("Adam(a group with betas=(1.5, 0.9)) (groups are not validated)",
    lambda s: s.optim.Adam([{"params": [s.param()], "betas": (1.5, 0.9)}]), None)
row("SGD([integer parameter])", lambda s: s.optim.SGD([s.param(dtype="int64")]), None)


def _custom(s: Side, params: Any) -> Any:
    class Custom(s.optim.Optimizer):
        def __init__(self, params: Any) -> None:
            super().__init__(params, {"lr": s.required, "beta": 0.5})

    return Custom(params)


row("Optimizer(a group missing a required lr)", lambda s: _custom(s, [s.param()]), ValueError,
    "parameter group didn't specify a value of required optimization parameter lr")
row("Optimizer(a group setting the required lr)",
    lambda s: _custom(s, [{"params": [s.param()], "lr": 0.1}]), None)
row("Optimizer(second group missing a required lr)",
    lambda s: _custom(s, [{"params": [s.param()], "lr": 0.1}, {"params": [s.param()]}]),
    ValueError, "parameter group didn't specify a value of required optimization parameter lr")
row("Optimizer([]) (empty before required)", lambda s: _custom(s, []), ValueError, EMPTY)
row("Optimizer(params, {})", lambda s: s.optim.Optimizer([s.param()], {}), None)
row("SGD(lr=required)", lambda s: s.optim.SGD([s.param()], lr=s.required), TypeError,
    "'<' not supported between instances of '_RequiredParameter' and 'float'")


def _non_leaf(s: Side, **kwargs: Any) -> Any:
    return s.optim.SGD([s.param() * 2], **kwargs)


def _retained(s: Side) -> Any:
    t = s.param() * 2
    t.retain_grad()
    return s.optim.SGD([t])


_TENSORS_ONLY = "autograd leaves exist only for torch tensors"
row("SGD([non-leaf tensor])", _non_leaf, ValueError, "can't optimize a non-leaf Tensor",
    sides=ON_TENSORS, why_not=_TENSORS_ONLY)
row("SGD([non-leaf tensor], differentiable=True)", lambda s: _non_leaf(s, differentiable=True),
    None, sides=ON_TENSORS, why_not=_TENSORS_ONLY)
row("SGD([non-leaf tensor that retains grad])", _retained, None, sides=ON_TENSORS,
    why_not=_TENSORS_ONLY)
row("SGD([leaf tensor without requires_grad])",
    lambda s: s.optim.SGD([s.torch.zeros(2)]), None, sides=ON_TENSORS, why_not=_TENSORS_ONLY)


def _mixed_backends(s: Side) -> Any:
    import array_api_strict

    return s.optim.SGD([s.param(), portopt.Parameter(array_api_strict.zeros(2))])


row("SGD(numpy and array_api_strict parameters in one group)", _mixed_backends, None,
    sides=(P_NUMPY,), why_not="torch has one tensor type; only portopt can mix libraries",
    deviation=Deviation(TypeError, "a param group must hold arrays of one backend, but this one "
                        "mixes numpy and array_api_strict arrays; put them in separate param "
                        "groups", "README, differences: one backend and one device per param "
                        "group, checked when the group is added", (P_NUMPY,)))


# -- signatures: positional and keyword-only arguments, flags an optimizer lacks ------------

for _name, _flag in [("SGD", "capturable"), ("Adagrad", "capturable"), ("Adadelta", "fused"),
                     ("Adamax", "fused"), ("ASGD", "fused"), ("NAdam", "fused"),
                     ("RAdam", "fused"), ("RMSprop", "fused"), ("Rprop", "fused"),
                     ("LBFGS", "foreach"), ("SparseAdam", "foreach"),
                     ("Adafactor", "capturable"), ("Muon", "foreach"), ("Muon", "maximize"),
                     ("Adam", "foo")]:
    opt_row(_name, {_flag: True}, TypeError,
            f"{_name}.__init__() got an unexpected keyword argument '{_flag}'")
opt_row("Adam", args=(1e-3, (0.9, 0.999), 1e-8, 0, False, None), exc=TypeError,
        message="Adam.__init__() takes from 2 to 7 positional arguments but 8 were given")
opt_row("SGD", args=(1e-3, 0, 0, 0, False, False), exc=TypeError,
        message="SGD.__init__() takes from 2 to 7 positional arguments but 8 were given")
opt_row("ASGD", args=(1e-2, 1e-4, 0.75, 1e6, 0, None, True), exc=None)  # all positional
opt_row("RMSprop", args=(1e-2, 0.99, 1e-8, 0, 0, False, False, None, True), exc=None)
row("SGD() (no params)", lambda s: s.optim.SGD(), TypeError,
    "SGD.__init__() missing 1 required positional argument: 'params'")


# -- a Tensor lr, on every optimizer -----------------------------------------------------

ALL15 = ["SGD", "Adam", "AdamW", "Adadelta", "Adagrad", "Adamax", "ASGD", "LBFGS", "NAdam",
         "RAdam", "RMSprop", "Rprop", "SparseAdam", "Adafactor", "Muon"]
for _name in ALL15:
    opt_row(_name, {"lr": A([0.1, 0.2])}, ValueError, "Tensor lr must be 1-element")
    opt_row(_name, {"lr": A([0.01])})
opt_row("SGD", {"lr": A([[0.1]])})
opt_row("Adam", {"lr": A([])}, ValueError, "Tensor lr must be 1-element")

# a negative 0-d or 1-element Tensor lr: the message formats the array as an f-string does
# on each side (a 0-d tensor formats as its number, a 1-d one as its repr)
for _name, _text in [("SGD", "Invalid learning rate: "), ("Adam", "Invalid learning rate: "),
                     ("RMSprop", "Invalid learning rate: "),
                     ("Adafactor", "Learning rate should be >= 0 but is: "),
                     ("Muon", "Learning rate should be >= 0 but is: ")]:
    opt_row(_name, {"lr": A(-0.1)}, ValueError, lambda s, t=_text: t + format(s.array(-0.1)))
opt_row("Adagrad", {"lr": A([-0.5])}, ValueError,
        lambda s: f"Invalid learning rate: {s.array([-0.5])}")
opt_row("SparseAdam", {"lr": A([0.0])}, ValueError,
        lambda s: f"Invalid learning rate: {s.array([0.0])}")
opt_row("Adam", {"lr": A(NAN)}, ValueError, lambda s: f"Invalid learning rate: {s.array(NAN)}")
opt_row("SGD", {"lr": A(NAN)})  # SGD compares lr < 0: NaN passes


# -- SGD -------------------------------------------------------------------------------

NESTEROV = "Nesterov momentum requires a momentum and zero dampening"
FUSED_DIFF = "`fused` does not support `differentiable`"
FUSED_FOREACH = "`fused` and `foreach` cannot be `True` together."

opt_row("SGD", {"lr": -1e-3}, ValueError, "Invalid learning rate: -0.001")
opt_row("SGD", {"lr": -0.1}, ValueError, "Invalid learning rate: -0.1")
opt_row("SGD", {"lr": -0.0})
opt_row("SGD", {"lr": NAN})
opt_row("SGD", {"lr": INF})
opt_row("SGD", {"lr": "0.1"}, TypeError, "'<' not supported between instances of 'str' and 'float'")
opt_row("SGD", {"lr": None}, TypeError, "'<' not supported between instances of 'NoneType' and 'float'")
opt_row("SGD", {"momentum": -0.5}, ValueError, "Invalid momentum value: -0.5")
opt_row("SGD", {"momentum": NAN})
opt_row("SGD", {"momentum": 1.5})
opt_row("SGD", {"weight_decay": -1e-3}, ValueError, "Invalid weight_decay value: -0.001")
opt_row("SGD", {"weight_decay": NAN})
opt_row("SGD", {"weight_decay": A(0.1)})
opt_row("SGD", {"weight_decay": A(-0.1)}, ValueError,
        lambda s: f"Invalid weight_decay value: {s.array(-0.1)}")
opt_row("SGD", {"dampening": -1.0})
opt_row("SGD", {"nesterov": True}, ValueError, NESTEROV)
opt_row("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, ValueError, NESTEROV)
opt_row("SGD", {"nesterov": True, "momentum": 0.9})
opt_row("SGD", {"lr": -1.0, "momentum": -1.0}, ValueError, "Invalid learning rate: -1.0")
opt_row("SGD", {"momentum": -1.0, "weight_decay": -1.0}, ValueError, "Invalid momentum value: -1.0")
opt_row("SGD", {"momentum": -1.0, "nesterov": True}, ValueError, "Invalid momentum value: -1.0")
opt_row("SGD", {"nesterov": True}, ValueError, NESTEROV, params=lambda s: [],
        id="SGD([], nesterov=True) (nesterov before the param list)")
opt_row("SGD", {"lr": -1.0}, ValueError, "Invalid learning rate: -1.0", params=lambda s: [],
        id="SGD([], lr=-1.0) (lr before the param list)")
opt_row("SGD", {"lr": A(0.1), "foreach": True})  # SGD takes a Tensor lr with foreach
opt_row("SGD", {"fused": True})
opt_row("SGD", {"foreach": True})
opt_row("SGD", {"fused": True, "foreach": True}, RuntimeError, FUSED_FOREACH)
opt_row("SGD", {"fused": True, "foreach": True}, ValueError, EMPTY, params=lambda s: [],
        id="SGD([], fused=True, foreach=True) (fused checks after the param list)")
opt_row("SGD", {"fused": True, "differentiable": True}, RuntimeError, FUSED_DIFF,
        deviation=torch_only("differentiable"))
opt_row("SGD", {"differentiable": True}, deviation=torch_only("differentiable"))

# -- Adam and AdamW --------------------------------------------------------------------

BOTH_FLOATS = "betas must be either both floats or both Tensors"
AMBIGUOUS = "Boolean value of Tensor with more than one value is ambiguous"
TRUTH_TEST = Deviation(
    lambda s: TypeError if s.strict else ValueError, lambda s: ("bool is only allowed on arrays with 0 dimensions" if s.strict else
                     "The truth value of an array with more than one element is ambiguous. "
                     "Use a.any() or a.all()"),
    "torch's error is its tensor's truth test, not a designed check: on other arrays the "
    "array library's own truth test speaks")
LR_FOREACH = "lr as a Tensor is not supported for capturable=False and foreach=True"
BETA_FOREACH = "betas[{}] as a Tensor is not supported for capturable=False and foreach=True"

for _name in ("Adam", "AdamW"):
    opt_row(_name, {"lr": -1e-3}, ValueError, "Invalid learning rate: -0.001")
    opt_row(_name, {"lr": NAN}, ValueError, "Invalid learning rate: nan")
    opt_row(_name, {"eps": -1e-8}, ValueError, "Invalid epsilon value: -1e-08")
    opt_row(_name, {"betas": (1.0, 0.999)}, ValueError, "Invalid beta parameter at index 0: 1.0")
    opt_row(_name, {"betas": (0.9, 1.0)}, ValueError, "Invalid beta parameter at index 1: 1.0")
    opt_row(_name, {"weight_decay": -1e-2}, ValueError, "Invalid weight_decay value: -0.01")
    opt_row(_name, {"betas": (0, 0.999)}, ValueError, BOTH_FLOATS)
    opt_row(_name, {"fused": True, "foreach": True}, RuntimeError, FUSED_FOREACH)
    opt_row(_name, {"lr": A(0.1), "foreach": True}, ValueError, LR_FOREACH)
    opt_row(_name, {"capturable": True}, deviation=torch_only("capturable"))
    opt_row(_name, {"differentiable": True}, deviation=torch_only("differentiable"))
    opt_row(_name, {"fused": True})
opt_row("Adam", {"lr": INF})
opt_row("Adam", {"lr": -1.0}, ValueError, "Invalid learning rate: -1.0")
opt_row("Adam", {"weight_decay": -1}, ValueError, "Invalid weight_decay value: -1")
opt_row("Adam", {"lr": "0.1"}, TypeError, "'<=' not supported between instances of 'float' and 'str'")
opt_row("Adam", {"eps": NAN}, ValueError, "Invalid epsilon value: nan")
opt_row("Adam", {"eps": 0.0})
opt_row("Adam", {"betas": (-0.1, 0.999)}, ValueError, "Invalid beta parameter at index 0: -0.1")
opt_row("Adam", {"betas": (NAN, 0.999)}, ValueError, "Invalid beta parameter at index 0: nan")
opt_row("Adam", {"betas": (0.9, -0.1)}, ValueError, "Invalid beta parameter at index 1: -0.1")
opt_row("Adam", {"betas": (0.9, NAN)}, ValueError, "Invalid beta parameter at index 1: nan")
opt_row("Adam", {"betas": (0.0, 0.0)})
opt_row("Adam", {"betas": (0.9, 0)}, ValueError, BOTH_FLOATS)
opt_row("Adam", {"betas": (0, 1.5)}, ValueError, "Invalid beta parameter at index 1: 1.5")
opt_row("Adam", {"betas": (0, 0.999), "weight_decay": -1.0}, ValueError,
        "Invalid weight_decay value: -1.0")
opt_row("Adam", {"betas": [0.9, 0.999]})
opt_row("Adam", {"betas": (0.9,)}, IndexError, "tuple index out of range")
opt_row("Adam", {"betas": (0.9, 0.99, 0.5)})  # torch only fails at the first step
opt_row("Adam", {"betas": 0.9}, TypeError, "'float' object is not subscriptable")
opt_row("Adam", {"weight_decay": NAN}, ValueError, "Invalid weight_decay value: nan")
opt_row("Adam", {"eps": -1.0, "betas": (2.0, 0.0)}, ValueError, "Invalid epsilon value: -1.0")
opt_row("Adam", {"lr": -1.0, "eps": -1.0}, ValueError, "Invalid learning rate: -1.0")
opt_row("Adam", {"betas": (2.0, 2.0), "weight_decay": -1.0}, ValueError,
        "Invalid beta parameter at index 0: 2.0")
opt_row("Adam", {"betas": (A(0.9), 0.999)}, ValueError, BOTH_FLOATS)
opt_row("Adam", {"betas": (0.9, A(0.999))}, ValueError, BOTH_FLOATS)
opt_row("Adam", {"betas": (A(0.9), A(0.999))})
opt_row("Adam", {"betas": (A([0.9]), A([0.999]))})
# torch tests the range of betas[i] before its size, so a Tensor beta of two elements meets
# the tensor's truth test first and "Tensor betas[i] must be 1-element" cannot be reached
opt_row("Adam", {"betas": (A([0.9, 0.9]), A(0.999))}, RuntimeError, AMBIGUOUS,
        deviation=TRUTH_TEST)
opt_row("Adam", {"betas": (A(0.9), A([0.99, 0.99]))}, RuntimeError, AMBIGUOUS,
        deviation=TRUTH_TEST)
opt_row("Adam", {"betas": (A(0.9), A(0.999)), "foreach": True}, ValueError, BETA_FOREACH.format(0))
opt_row("Adam", {"betas": (A(0.9), A(0.999)), "foreach": True, "capturable": True},
        deviation=torch_only("capturable"))
opt_row("Adam", {"betas": (A(1.5), A(0.999))}, ValueError,
        lambda s: f"Invalid beta parameter at index 0: {s.array(1.5)}")
opt_row("Adam", {"lr": A([0.1, 0.2]), "foreach": True}, ValueError, LR_FOREACH)
opt_row("Adam", {"lr": A(0.1), "foreach": True, "capturable": True},
        deviation=torch_only("capturable"))
opt_row("Adam", {"lr": A(0.1), "foreach": False})
opt_row("Adam", {"fused": True, "differentiable": True}, RuntimeError, FUSED_DIFF,
        deviation=torch_only("differentiable"))
opt_row("Adam", {"fused": True, "foreach": True}, ValueError, EMPTY, params=lambda s: [],
        id="Adam([], fused=True, foreach=True) (fused checks after the param list)")
opt_row("Adam", {"amsgrad": True, "decoupled_weight_decay": True, "maximize": True})
opt_row("AdamW", {"betas": (0.9, -0.1)}, ValueError, "Invalid beta parameter at index 1: -0.1")
opt_row("AdamW", {"eps": -1.0}, ValueError, "Invalid epsilon value: -1.0")
opt_row("AdamW", {"lr": INF})
opt_row("AdamW", {"decoupled_weight_decay": False}, TypeError,
        "AdamW.__init__() got an unexpected keyword argument 'decoupled_weight_decay'")

# -- Adadelta --------------------------------------------------------------------------

opt_row("Adadelta", {"lr": -1.0}, ValueError, "Invalid learning rate: -1.0")
opt_row("Adadelta", {"lr": NAN}, ValueError, "Invalid learning rate: nan")
opt_row("Adadelta", {"lr": INF})
opt_row("Adadelta", {"rho": 1.1}, ValueError, "Invalid rho value: 1.1")
opt_row("Adadelta", {"rho": -0.1}, ValueError, "Invalid rho value: -0.1")
opt_row("Adadelta", {"rho": NAN}, ValueError, "Invalid rho value: nan")
opt_row("Adadelta", {"rho": 0.0})
opt_row("Adadelta", {"rho": 1.0})
opt_row("Adadelta", {"eps": -1e-6}, ValueError, "Invalid epsilon value: -1e-06")
opt_row("Adadelta", {"weight_decay": -0.5}, ValueError, "Invalid weight_decay value: -0.5")
opt_row("Adadelta", {"rho": 2.0, "eps": -1.0}, ValueError, "Invalid rho value: 2.0")
opt_row("Adadelta", {"eps": -1.0, "weight_decay": -1.0}, ValueError, "Invalid epsilon value: -1.0")
opt_row("Adadelta", {"capturable": True}, deviation=torch_only("capturable"))
opt_row("Adadelta", {"differentiable": True}, deviation=torch_only("differentiable"))
opt_row("Adadelta", args=(1.0, 0.9, 1e-6, 0, True))  # foreach is positional here

# -- Adagrad ---------------------------------------------------------------------------

opt_row("Adagrad", {"lr": -0.1}, ValueError, "Invalid learning rate: -0.1")
opt_row("Adagrad", {"lr": NAN}, ValueError, "Invalid learning rate: nan")
opt_row("Adagrad", {"lr_decay": -0.5}, ValueError, "Invalid lr_decay value: -0.5")
opt_row("Adagrad", {"weight_decay": -1.0}, ValueError, "Invalid weight_decay value: -1.0")
opt_row("Adagrad", {"initial_accumulator_value": -1.0}, ValueError,
        "Invalid initial_accumulator_value value: -1.0")
opt_row("Adagrad", {"eps": -1e-3}, ValueError, "Invalid epsilon value: -0.001")
opt_row("Adagrad", {"eps": NAN}, ValueError, "Invalid epsilon value: nan")
opt_row("Adagrad", {"lr_decay": -1.0, "initial_accumulator_value": -1.0}, ValueError,
        "Invalid lr_decay value: -1.0")
opt_row("Adagrad", {"initial_accumulator_value": -1.0, "eps": -1.0}, ValueError,
        "Invalid initial_accumulator_value value: -1.0")
opt_row("Adagrad", {"fused": True})
opt_row("Adagrad", {"fused": True, "foreach": True}, RuntimeError, FUSED_FOREACH)
opt_row("Adagrad", {"fused": True, "differentiable": True}, RuntimeError, FUSED_DIFF,
        deviation=torch_only("differentiable"))
opt_row("Adagrad", {"differentiable": True}, deviation=torch_only("differentiable"))
opt_row("Adagrad", {"initial_accumulator_value": 0.5},
        params=lambda s: [s.param(dtype="complex128")], id="Adagrad([complex parameter])")

# -- Adamax ----------------------------------------------------------------------------

opt_row("Adamax", {"lr": -1.0}, ValueError, "Invalid learning rate: -1.0")
opt_row("Adamax", {"lr": INF})
opt_row("Adamax", {"eps": -1e-8}, ValueError, "Invalid epsilon value: -1e-08")
opt_row("Adamax", {"betas": (1.0, 0.999)}, ValueError, "Invalid beta parameter at index 0: 1.0")
opt_row("Adamax", {"betas": (-0.1, 0.999)}, ValueError, "Invalid beta parameter at index 0: -0.1")
opt_row("Adamax", {"betas": (0.0, 1.0)}, ValueError, "Invalid beta parameter at index 1: 1.0")
opt_row("Adamax", {"betas": (0.9, NAN)}, ValueError, "Invalid beta parameter at index 1: nan")
opt_row("Adamax", {"weight_decay": -0.5}, ValueError, "Invalid weight_decay value: -0.5")
opt_row("Adamax", {"lr": -1.0, "eps": -1.0}, ValueError, "Invalid learning rate: -1.0")
opt_row("Adamax", {"eps": -1.0, "betas": (2.0, 0.9)}, ValueError, "Invalid epsilon value: -1.0")
opt_row("Adamax", {"betas": (0, 0)})  # no float check outside the Adam family proper
opt_row("Adamax", {"betas": (0.9,)}, IndexError, "tuple index out of range")
opt_row("Adamax", {"betas": (A([0.9]), A(0.999))})  # Tensor betas compare as numbers
opt_row("NAdam", {"betas": (A([1.0]), A(0.999))}, ValueError,
        lambda s: f"Invalid beta parameter at index 0: {s.array([1.0])}")
opt_row("Adamax", {"capturable": True}, deviation=torch_only("capturable"))
opt_row("Adamax", {"differentiable": True}, deviation=torch_only("differentiable"))

# -- ASGD ------------------------------------------------------------------------------

opt_row("ASGD", {"lr": -1.0}, ValueError, "Invalid learning rate: -1.0")
opt_row("ASGD", {"lr": NAN}, ValueError, "Invalid learning rate: nan")
opt_row("ASGD", {"weight_decay": -0.5}, ValueError, "Invalid weight_decay value: -0.5")
opt_row("ASGD", {"lr": -1.0, "weight_decay": -1.0}, ValueError, "Invalid learning rate: -1.0")
opt_row("ASGD", {"lambd": -1.0, "alpha": -1.0, "t0": -1.0})  # not validated
opt_row("ASGD", {"lr": INF})
opt_row("ASGD", {"capturable": True}, deviation=torch_only("capturable"))
opt_row("ASGD", {"differentiable": True}, deviation=torch_only("differentiable"))

# -- LBFGS -----------------------------------------------------------------------------

LBFGS_GROUPS = "LBFGS doesn't support per-parameter options (parameter groups)"
opt_row("LBFGS", {"lr": -1}, ValueError, "Invalid learning rate: -1")
opt_row("LBFGS", {"lr": NAN}, ValueError, "Invalid learning rate: nan")
row("LBFGS(two param groups)",
    lambda s: s.optim.LBFGS([{"params": [s.param()]}, {"params": [s.param()]}]),
    ValueError, LBFGS_GROUPS)
row("LBFGS(a second, empty group)",
    lambda s: s.optim.LBFGS([{"params": [s.param()]}, {"params": []}]), ValueError, LBFGS_GROUPS)
row("LBFGS(two groups, lr=-1) (lr first)",
    lambda s: s.optim.LBFGS([{"params": [s.param()]}, {"params": [s.param()]}], lr=-1),
    ValueError, "Invalid learning rate: -1")
row("LBFGS(one group of two parameters)",
    lambda s: s.optim.LBFGS([{"params": [s.param(), s.param()]}]), None)
opt_row("LBFGS", {"line_search_fn": "foo"})  # only a line search finds it out
opt_row("LBFGS", {"max_iter": 0, "history_size": 0})
opt_row("LBFGS", {"max_iter": 1.5}, None)  # max_eval = max_iter * 5 // 4, a float

# -- NAdam and RAdam -------------------------------------------------------------------

for _name in ("NAdam", "RAdam"):
    opt_row(_name, {"lr": -0.1}, ValueError, "Invalid learning rate: -0.1")
    opt_row(_name, {"lr": NAN}, ValueError, "Invalid learning rate: nan")
    opt_row(_name, {"eps": -1e-8}, ValueError, "Invalid epsilon value: -1e-08")
    opt_row(_name, {"betas": (1.0, 0.0)}, ValueError, "Invalid beta parameter at index 0: 1.0")
    opt_row(_name, {"betas": (0.9, -0.1)}, ValueError, "Invalid beta parameter at index 1: -0.1")
    opt_row(_name, {"betas": (0.9, 1.0)}, ValueError, "Invalid beta parameter at index 1: 1.0")
    opt_row(_name, {"weight_decay": -1}, ValueError, "Invalid weight_decay value: -1")
    opt_row(_name, {"eps": -1.0, "weight_decay": -1}, ValueError, "Invalid epsilon value: -1.0")
    opt_row(_name, {"betas": (0, 0)})  # ints are fine, unlike Adam
    opt_row(_name, {"betas": (0.9,)}, IndexError, "tuple index out of range")
    opt_row(_name, {"capturable": True}, deviation=torch_only("capturable"))
    opt_row(_name, {"differentiable": True}, deviation=torch_only("differentiable"))
    opt_row(_name, {"decoupled_weight_decay": True, "weight_decay": 0.1})
opt_row("NAdam", {"momentum_decay": -0.2}, ValueError, "Invalid momentum_decay value: -0.2")
opt_row("NAdam", {"momentum_decay": NAN}, ValueError, "Invalid momentum_decay value: nan")
opt_row("NAdam", {"lr": -1.0, "momentum_decay": -1.0}, ValueError, "Invalid learning rate: -1.0")
opt_row("NAdam", {"weight_decay": -1, "momentum_decay": -1.0}, ValueError,
        "Invalid weight_decay value: -1")
opt_row("NAdam", {"betas": (0, 0), "momentum_decay": 0})

# -- RMSprop ---------------------------------------------------------------------------

opt_row("RMSprop", {"lr": -0.1}, ValueError, "Invalid learning rate: -0.1")
opt_row("RMSprop", {"lr": NAN}, ValueError, "Invalid learning rate: nan")
opt_row("RMSprop", {"eps": -1e-8}, ValueError, "Invalid epsilon value: -1e-08")
opt_row("RMSprop", {"momentum": -1.0}, ValueError, "Invalid momentum value: -1.0")
opt_row("RMSprop", {"momentum": NAN}, ValueError, "Invalid momentum value: nan")
opt_row("RMSprop", {"weight_decay": -0.5}, ValueError, "Invalid weight_decay value: -0.5")
opt_row("RMSprop", {"alpha": -0.1}, ValueError, "Invalid alpha value: -0.1")
opt_row("RMSprop", {"alpha": NAN}, ValueError, "Invalid alpha value: nan")
opt_row("RMSprop", {"alpha": 1.5, "momentum": 1.5})  # only alpha >= 0 is checked
opt_row("RMSprop", {"eps": -1.0, "momentum": -1.0}, ValueError, "Invalid epsilon value: -1.0")
opt_row("RMSprop", {"momentum": -1.0, "weight_decay": -1.0}, ValueError, "Invalid momentum value: -1.0")
opt_row("RMSprop", {"weight_decay": -1.0, "alpha": -1.0}, ValueError, "Invalid weight_decay value: -1.0")
opt_row("RMSprop", {"capturable": True}, deviation=torch_only("capturable"))
opt_row("RMSprop", {"differentiable": True}, deviation=torch_only("differentiable"))

# -- Rprop -----------------------------------------------------------------------------

opt_row("Rprop", {"lr": -0.1}, ValueError, "Invalid learning rate: -0.1")
opt_row("Rprop", {"lr": NAN}, ValueError, "Invalid learning rate: nan")
opt_row("Rprop", {"etas": (1.0, 0.5)}, ValueError, "Invalid eta values: 1.0, 0.5")
opt_row("Rprop", {"etas": (0.0, 1.2)}, ValueError, "Invalid eta values: 0.0, 1.2")
opt_row("Rprop", {"etas": (0.5, 1.0)}, ValueError, "Invalid eta values: 0.5, 1.0")
opt_row("Rprop", {"etas": (0.5, NAN)}, ValueError, "Invalid eta values: 0.5, nan")
opt_row("Rprop", {"etas": (NAN, 1.2)}, ValueError, "Invalid eta values: nan, 1.2")
opt_row("Rprop", {"etas": (0.5,)}, IndexError, "tuple index out of range")
opt_row("Rprop", {"lr": -1.0, "etas": (2.0, 0.5)}, ValueError, "Invalid learning rate: -1.0")
opt_row("Rprop", {"step_sizes": (1.0, 0.1)})  # not checked
opt_row("Rprop", {"step_sizes": (-1.0, -2.0)})
opt_row("Rprop", {"capturable": True}, deviation=torch_only("capturable"))
opt_row("Rprop", {"differentiable": True}, deviation=torch_only("differentiable"))

# -- SparseAdam ------------------------------------------------------------------------

opt_row("SparseAdam", {"lr": 0.0}, ValueError, "Invalid learning rate: 0.0")
opt_row("SparseAdam", {"lr": -1.0}, ValueError, "Invalid learning rate: -1.0")
opt_row("SparseAdam", {"lr": NAN}, ValueError, "Invalid learning rate: nan")
opt_row("SparseAdam", {"eps": 0.0}, ValueError, "Invalid epsilon value: 0.0")
opt_row("SparseAdam", {"eps": -1e-8}, ValueError, "Invalid epsilon value: -1e-08")
opt_row("SparseAdam", {"lr": 0.0, "eps": 0.0}, ValueError, "Invalid learning rate: 0.0")
opt_row("SparseAdam", {"betas": (1.0, 0.5)}, ValueError, "Invalid beta parameter at index 0: 1.0")
opt_row("SparseAdam", {"betas": (0.5, 1.0)}, ValueError, "Invalid beta parameter at index 1: 1.0")
opt_row("SparseAdam", {"betas": (-0.1, 0.5)}, ValueError, "Invalid beta parameter at index 0: -0.1")
opt_row("SparseAdam", {"betas": (0.9,)}, IndexError, "tuple index out of range")
opt_row("SparseAdam", {"lr": 1e-3})
opt_row("SparseAdam", {"lr": INF})
opt_row("SparseAdam", {"lr": A([0.5])})

COMPLEX_SA = "Complex params at indices {}: SparseAdam does not support complex parameters"
SPARSE_SA = "Sparse params at indices {}: SparseAdam requires dense parameter tensors"
row("SparseAdam([real, complex])",
    lambda s: s.optim.SparseAdam([s.param(), s.param(dtype="complex128")]), ValueError,
    COMPLEX_SA.format([[0, 1]]))
row("SparseAdam(complex params in two groups)",
    lambda s: s.optim.SparseAdam([{"params": [s.param(dtype="complex128")]},
                                  {"params": [s.param(), s.param(dtype="complex64")]}]),
    ValueError, COMPLEX_SA.format([[0, 0], [1, 1]]))
row("SparseAdam([complex], lr=0.0) (lr first)",
    lambda s: s.optim.SparseAdam([s.param(dtype="complex128")], lr=0.0), ValueError,
    "Invalid learning rate: 0.0")


def _sparse_param(s: Side) -> Any:
    return s.torch.sparse_coo_tensor(s.torch.tensor([[0]]), s.torch.tensor([1.0]), (3,))


row("SparseAdam([dense, sparse])", lambda s: s.optim.SparseAdam([s.param(), _sparse_param(s)]),
    ValueError, SPARSE_SA.format([[0, 1]]), sides=ON_TENSORS,
    why_not="only torch has sparse parameters")
row("SparseAdam([sparse, complex]) (sparse first)",
    lambda s: s.optim.SparseAdam([{"params": [s.param(dtype="complex64")]},
                                  {"params": [_sparse_param(s)]}]),
    ValueError, SPARSE_SA.format([[1, 0]]), sides=ON_TENSORS,
    why_not="only torch has sparse parameters")

# -- Adafactor -------------------------------------------------------------------------

opt_row("Adafactor", {"lr": -1e-3}, ValueError, "Learning rate should be >= 0 but is: -0.001")
opt_row("Adafactor", {"lr": NAN}, ValueError, "Learning rate should be >= 0 but is: nan")
opt_row("Adafactor", {"lr": INF})
opt_row("Adafactor", {"lr": A([-0.5])}, ValueError,
        lambda s: f"Learning rate should be >= 0 but is: {s.array([-0.5])}")
opt_row("Adafactor", {"beta2_decay": 0.5}, ValueError, "beta2_decay should be <= 0 but is: 0.5")
opt_row("Adafactor", {"beta2_decay": NAN}, ValueError, "beta2_decay should be <= 0 but is: nan")
opt_row("Adafactor", {"beta2_decay": 0.0})
opt_row("Adafactor", {"eps": (-1e-30, 1e-3)}, ValueError, "epsilon1 should be >= 0 but is: -1e-30")
opt_row("Adafactor", {"eps": (NAN, 1e-3)}, ValueError, "epsilon1 should be >= 0 but is: nan")
opt_row("Adafactor", {"eps": (None, -1.0)}, ValueError, "epsilon2 should be >= 0 but is: -1.0")
opt_row("Adafactor", {"eps": (None, NAN)}, ValueError, "epsilon2 should be >= 0 but is: nan")
opt_row("Adafactor", {"eps": (0.0, 0.0)})
opt_row("Adafactor", {"eps": (None,)}, IndexError, "tuple index out of range")
opt_row("Adafactor", {"d": 0.5}, ValueError, "Clipping threshold d should be >= 1 but is: 0.5")
opt_row("Adafactor", {"d": NAN}, ValueError, "Clipping threshold d should be >= 1 but is: nan")
opt_row("Adafactor", {"d": 1.0, "weight_decay": 0.0})
opt_row("Adafactor", {"weight_decay": -0.1}, ValueError, "weight_decay should be >= 0 but is: -0.1")
opt_row("Adafactor", {"lr": -1.0, "d": 0.0, "weight_decay": -1.0}, ValueError,
        "Learning rate should be >= 0 but is: -1.0")
opt_row("Adafactor", {"beta2_decay": 1.0, "eps": (-1.0, -1.0)}, ValueError,
        "beta2_decay should be <= 0 but is: 1.0")
opt_row("Adafactor", {"eps": (-1.0, -1.0)}, ValueError, "epsilon1 should be >= 0 but is: -1.0")
opt_row("Adafactor", {"d": 0.0, "weight_decay": -1.0}, ValueError,
        "Clipping threshold d should be >= 1 but is: 0.0")
opt_row("Adafactor", {}, params=lambda s: [s.param(dtype="complex128")],
        id="Adafactor([complex parameter]) (refused at the first step only)")

# -- Muon ------------------------------------------------------------------------------

MUON_2D = "Muon only supports 2D parameters whereas we found a parameter with size: "
opt_row("Muon", {"lr": -1.0}, ValueError, "Learning rate should be >= 0 but is: -1.0")
opt_row("Muon", {"lr": NAN}, ValueError, "Learning rate should be >= 0 but is: nan")
opt_row("Muon", {"momentum": -0.5}, ValueError, "momentum should be >= 0 but is: -0.5")
opt_row("Muon", {"weight_decay": -0.1}, ValueError, "weight decay should be >= 0 but is: -0.1")
opt_row("Muon", {"adjust_lr_fn": "arbitrary"}, ValueError,
        "Adjust learning rate function arbitrary is not supported")
opt_row("Muon", {"adjust_lr_fn": "match_rms_adamw"})
opt_row("Muon", {"adjust_lr_fn": "original"})
opt_row("Muon", {"eps": -1.0, "momentum": 1.5, "nesterov": True})  # not validated
opt_row("Muon", {"momentum": 0.0, "nesterov": True})
opt_row("Muon", {"lr": -1.0, "momentum": -1.0}, ValueError, "Learning rate should be >= 0 but is: -1.0")
opt_row("Muon", {"momentum": -1.0, "weight_decay": -1.0}, ValueError,
        "momentum should be >= 0 but is: -1.0")
opt_row("Muon", {"weight_decay": -1.0, "adjust_lr_fn": "x"}, ValueError,
        "weight decay should be >= 0 but is: -1.0")
for _shape in [(3,), (), (2, 2, 1)]:
    row(f"Muon([matrix, {len(_shape)}-d parameter])",
        lambda s, sh=_shape: s.optim.Muon([s.param((2, 2)), s.param(sh)]), ValueError,
        lambda s, sh=_shape: MUON_2D + s.size(sh))
row("Muon([vector], lr=-1.0) (lr before shapes)",
    lambda s: s.optim.Muon([s.param((3,))], lr=-1.0), ValueError,
    "Learning rate should be >= 0 but is: -1.0")
row("Muon([vector], adjust_lr_fn='x') (adjust_lr_fn before shapes)",
    lambda s: s.optim.Muon([s.param((3,))], adjust_lr_fn="x"), ValueError,
    "Adjust learning rate function x is not supported")
row("Muon([complex matrix]) (refused at the first step only)",
    lambda s: s.optim.Muon([s.param((2, 2), dtype="complex128")]), None)


# -- LR schedulers: the optimizer argument and resuming --------------------------------

def _resume_message(i: int) -> str:
    return key_error(
        f"param 'initial_lr' is not specified in param_groups[{i}] when resuming scheduler "
        "with last_epoch >= 0.\nThis typically happens when:\n1. You're trying to resume "
        "training from a checkpoint but haven't properly loaded the optimizer state\n2. "
        "You're using last_epoch >= 0 for a fresh training run (not recommended)")


class _NotAnOptimizer:
    pass


NOT_OPT = "_NotAnOptimizer is not an Optimizer"
NO_GROUPS = "'_NotAnOptimizer' object has no attribute 'param_groups'"

# (scheduler, its required arguments after the optimizer)
SCHEDULERS = {
    "LambdaLR": {"lr_lambda": lambda e: 1.0},
    "MultiplicativeLR": {"lr_lambda": lambda e: 0.9},
    "StepLR": {"step_size": 2},
    "MultiStepLR": {"milestones": [2, 4]},
    "ConstantLR": {},
    "LinearLR": {},
    "ExponentialLR": {"gamma": 0.9},
    "PolynomialLR": {},
    "CosineAnnealingLR": {"T_max": 4},
    "CyclicLR": {"base_lr": 0.01, "max_lr": 0.1},
    "OneCycleLR": {"max_lr": 0.1, "total_steps": 10},
    "CosineAnnealingWarmRestarts": {"T_0": 2},
}


def sched_row(name: str, kwargs: dict | None = None, exc: type | None = None,
              message: Message = None, *, opt: Callable | None = None, id: str | None = None,
              **extra: Any) -> None:
    """A row constructing scheduler ``name`` over a two-group SGD (or ``opt(s)``)."""
    kwargs = {**SCHEDULERS.get(name, {}), **(kwargs or {})}
    shown = {k: v for k, v in kwargs.items() if not callable(v)}

    def make(s: Side) -> Any:
        o = opt(s) if opt is not None else s.opt()
        module = s.swa_utils if name == "SWALR" else s.lr_scheduler
        return getattr(module, name)(o, **_resolve(kwargs, s))

    ROWS.append(Row(id or f"{name}({_kw_id((), shown)})", make, exc, message, **extra))


def _resumable(s: Side) -> Any:
    o = s.opt()
    for group in o.param_groups:
        group["initial_lr"] = group["lr"]
    return o


def _half_resumable(s: Side) -> Any:
    o = s.opt()
    o.param_groups[0]["initial_lr"] = 0.05
    return o


for _name in SCHEDULERS:
    if _name in ("LambdaLR", "MultiplicativeLR"):
        sched_row(_name, {}, AttributeError, NO_GROUPS, opt=lambda s: _NotAnOptimizer(),
                  id=f"{_name}(not an optimizer)")
    else:
        sched_row(_name, {}, TypeError, NOT_OPT, opt=lambda s: _NotAnOptimizer(),
                  id=f"{_name}(not an optimizer)")
    sched_row(_name, {"last_epoch": 0}, KeyError, _resume_message(0),
              id=f"{_name}(last_epoch=0, no initial_lr)")
for _name in ("StepLR", "ExponentialLR", "CosineAnnealingWarmRestarts"):
    sched_row(_name, {"last_epoch": 3}, KeyError, _resume_message(1), opt=_half_resumable,
              id=f"{_name}(last_epoch=3, initial_lr in group 0 only)")
for _name in ("StepLR", "LambdaLR", "CosineAnnealingLR", "PolynomialLR"):
    sched_row(_name, {"last_epoch": 3}, opt=_resumable,
              id=f"{_name}(last_epoch=3, initial_lr set)")
sched_row("StepLR", {"step_size": 1}, TypeError, "object is not an Optimizer",
          opt=lambda s: object(), id="StepLR(object(), 1)")
sched_row("StepLR", {"step_size": 1, "last_epoch": 3}, KeyError, _resume_message(0),
          id="StepLR(step_size=1, last_epoch=3, no initial_lr)")
sched_row("ReduceLROnPlateau", {}, TypeError, NOT_OPT, opt=lambda s: _NotAnOptimizer(),
          id="ReduceLROnPlateau(not an optimizer)")
sched_row("SWALR", {"swa_lr": 0.1}, AttributeError, NO_GROUPS,
          opt=lambda s: _NotAnOptimizer(), id="SWALR(not an optimizer)")
sched_row("SWALR", {"swa_lr": 0.1, "last_epoch": 0}, KeyError, _resume_message(0),
          id="SWALR(last_epoch=0, no initial_lr)")

for _name, _arg in [("StepLR", "step_size"), ("MultiStepLR", "milestones"),
                    ("ExponentialLR", "gamma"), ("CosineAnnealingLR", "T_max"),
                    ("LambdaLR", "lr_lambda"), ("CosineAnnealingWarmRestarts", "T_0"),
                    ("OneCycleLR", "max_lr")]:
    row(f"{_name}(opt) (missing {_arg})",
        lambda s, n=_name: getattr(s.lr_scheduler, n)(s.opt()), TypeError,
        f"{_name}.__init__() missing 1 required positional argument: '{_arg}'")
row("CyclicLR(opt) (missing base_lr and max_lr)", lambda s: s.lr_scheduler.CyclicLR(s.opt()),
    TypeError, "CyclicLR.__init__() missing 2 required positional arguments: 'base_lr' and "
               "'max_lr'")
row("SWALR(opt) (missing swa_lr)", lambda s: s.swa_utils.SWALR(s.opt()), TypeError,
    "SWALR.__init__() missing 1 required positional argument: 'swa_lr'")

# -- LambdaLR, MultiplicativeLR ----------------------------------------------------------

sched_row("LambdaLR", {"lr_lambda": [lambda e: 1.0]}, ValueError, "Expected 2 lr_lambdas, but got 1",
          id="LambdaLR(lr_lambda=[one function] for two groups)")
sched_row("LambdaLR", {"lr_lambda": (lambda e: 1.0,) * 3}, ValueError,
          "Expected 2 lr_lambdas, but got 3", id="LambdaLR(lr_lambda=(three functions))")
sched_row("LambdaLR", {"lr_lambda": [lambda e: 1.0, lambda e: 0.5]},
          id="LambdaLR(lr_lambda=[two functions])")
sched_row("LambdaLR", {"lr_lambda": 0.5}, TypeError, "'float' object is not callable")
sched_row("LambdaLR", {"lr_lambda": [0.5, 0.5]}, TypeError, "'float' object is not callable")
sched_row("LambdaLR", {"lr_lambda": lambda e: 1 / e}, ZeroDivisionError, "division by zero",
          id="LambdaLR(lr_lambda=1/e) (the initial step calls it)")
sched_row("MultiplicativeLR", {"lr_lambda": 0.5}, TypeError,
          "lr_lambda should be a function, but got float")
sched_row("MultiplicativeLR", {"lr_lambda": [lambda e: 0.9, "x"]}, TypeError,
          "lr_lambda should be a function, but got str",
          id="MultiplicativeLR(lr_lambda=[function, 'x'])")
sched_row("MultiplicativeLR", {"lr_lambda": [lambda e: 0.9]}, ValueError,
          "Expected 2 lr_lambdas, but got 1", id="MultiplicativeLR(lr_lambda=[one function])")
sched_row("MultiplicativeLR", {"lr_lambda": [0.5]}, ValueError, "Expected 2 lr_lambdas, but got 1",
          id="MultiplicativeLR(lr_lambda=[0.5]) (length before callables)")
sched_row("MultiplicativeLR", {"lr_lambda": lambda e: 1 / e},
          id="MultiplicativeLR(lr_lambda=1/e) (not called at construction)")

# -- StepLR, MultiStepLR, ExponentialLR, PolynomialLR, CosineAnnealingLR: accepted -----------

sched_row("StepLR", {"step_size": 0})  # ZeroDivisionError only at the first step
sched_row("StepLR", {"step_size": -1, "gamma": -1.0})
sched_row("MultiStepLR", {"milestones": [4, 2, -1]})
sched_row("MultiStepLR", {"milestones": None})  # Counter(None) is empty
sched_row("MultiStepLR", {"milestones": 5}, TypeError, "'int' object is not iterable")
sched_row("ExponentialLR", {"gamma": 0.0})
sched_row("ExponentialLR", {"gamma": NAN})
sched_row("PolynomialLR", {"total_iters": 0, "power": -1.0})
sched_row("CosineAnnealingLR", {"T_max": 0})
sched_row("CosineAnnealingLR", {"T_max": -1, "eta_min": -1.0})

# -- ConstantLR, LinearLR --------------------------------------------------------------

CONSTANT = "Constant multiplicative factor expected to be between 0 and 1."
START = "Starting multiplicative factor expected to be greater than 0 and less or equal to 1."
END = "Ending multiplicative factor expected to be between 0 and 1."
sched_row("ConstantLR", {"factor": 1.5}, ValueError, CONSTANT)
sched_row("ConstantLR", {"factor": -0.1}, ValueError, CONSTANT)
sched_row("ConstantLR", {"factor": 0.0})
sched_row("ConstantLR", {"factor": 1.0})
sched_row("ConstantLR", {"factor": NAN})
sched_row("ConstantLR", {"total_iters": -1})
sched_row("LinearLR", {"start_factor": 0}, ValueError, START)
sched_row("LinearLR", {"start_factor": 1.5}, ValueError, START)
sched_row("LinearLR", {"start_factor": -1.0}, ValueError, START)
sched_row("LinearLR", {"start_factor": 1.0})
sched_row("LinearLR", {"end_factor": 2}, ValueError, END)
sched_row("LinearLR", {"end_factor": -0.1}, ValueError, END)
sched_row("LinearLR", {"end_factor": 0.0})
sched_row("LinearLR", {"start_factor": 0, "end_factor": 2}, ValueError, START)
sched_row("LinearLR", {"total_iters": 0})
sched_row("ConstantLR", {"factor": 2.0}, ValueError, CONSTANT, opt=lambda s: _NotAnOptimizer(),
          id="ConstantLR(not an optimizer, factor=2.0) (factor first)")
sched_row("LinearLR", {"end_factor": 2.0}, ValueError, END, opt=lambda s: _NotAnOptimizer(),
          id="LinearLR(not an optimizer, end_factor=2.0) (factors first)")

# -- SequentialLR and ChainedScheduler ---------------------------------------------------

RLROP = ("{} does not support `ReduceLROnPlateau` scheduler as it requires additional kwargs "
         "to be specified when calling `step`, but got one at index {} in the given schedulers "
         "sequence.")
NO_OPT_ATTR = "{} at index {} should have `optimizer` as its attribute."
# the repr of an SGD(lr=0.5) after a scheduler wrote its initial_lr (params are not shown)
OTHER_REPR = ("SGD (\nParameter Group 0\n    dampening: 0\n    differentiable: False\n"
              "    foreach: None\n    fused: None\n    initial_lr: 0.5\n    lr: 0.5\n"
              "    maximize: False\n    momentum: 0\n    nesterov: False\n"
              "    weight_decay: 0\n)")
MILESTONES = ("Sequential Schedulers expects number of schedulers provided to be one more than "
              "the number of milestone points, but got number of schedulers {} and the number "
              "of milestones to be equal to {}")


def _step(s: Side, o: Any) -> Any:
    return s.lr_scheduler.StepLR(o, 2)


def _other(s: Side) -> Any:
    """A StepLR over a second optimizer, SGD(lr=0.5)."""
    return s.lr_scheduler.StepLR(s.optim.SGD([s.param()], lr=0.5), 2)


def _seq(s: Side, members: Callable, milestones: list, optimizer: Any = None) -> Any:
    o = s.opt()
    return s.lr_scheduler.SequentialLR(o if optimizer is None else optimizer(s),
                                       members(s, o), milestones)


def _chain(s: Side, members: Callable, optimizer: Any = None) -> Any:
    o = s.opt()
    kwargs = {} if optimizer is None else {"optimizer": optimizer(s, o)}
    return s.lr_scheduler.ChainedScheduler(members(s, o), **kwargs)


row("SequentialLR([], [])", lambda s: _seq(s, lambda s, o: [], []), ValueError,
    "SequentialLR expects at least one scheduler, but got no scheduler.")
row("SequentialLR([object()], [])", lambda s: _seq(s, lambda s, o: [object()], []), TypeError,
    NO_OPT_ATTR.format("SequentialLR", 0))
row("SequentialLR([StepLR, object()], [2])",
    lambda s: _seq(s, lambda s, o: [_step(s, o), object()], [2]), TypeError,
    NO_OPT_ATTR.format("SequentialLR", 1))
row("SequentialLR([ReduceLROnPlateau], [])",
    lambda s: _seq(s, lambda s, o: [s.lr_scheduler.ReduceLROnPlateau(o)], []), ValueError,
    RLROP.format("SequentialLR", 0))
row("SequentialLR([StepLR, ReduceLROnPlateau], [2])",
    lambda s: _seq(s, lambda s, o: [_step(s, o), s.lr_scheduler.ReduceLROnPlateau(o)], [2]),
    ValueError, RLROP.format("SequentialLR", 1))
row("SequentialLR([StepLR, StepLR of another optimizer], [2])",
    lambda s: _seq(s, lambda s, o: [_step(s, o), _other(s)], [2]), ValueError,
    "SequentialLR expects all schedulers to belong to the same optimizer, but got scheduler "
    f"StepLR at index 1 has {OTHER_REPR}, which is different from SGD.")
row("SequentialLR(not an optimizer, [StepLR of another optimizer], [])",
    lambda s: _seq(s, lambda s, o: [_other(s)], [], optimizer=lambda s: _NotAnOptimizer()),
    ValueError, "SequentialLR expects all schedulers to belong to the same optimizer, but got "
    f"scheduler StepLR at index 0 has {OTHER_REPR}, which is different from _NotAnOptimizer.")
row("SequentialLR([StepLR], [1])", lambda s: _seq(s, lambda s, o: [_step(s, o)], [1]),
    ValueError, MILESTONES.format(1, 1))
row("SequentialLR([StepLR, StepLR], [])",
    lambda s: _seq(s, lambda s, o: [_step(s, o), _step(s, o)], []), ValueError,
    MILESTONES.format(2, 0))
row("SequentialLR([object()], [1]) (members before milestones)",
    lambda s: _seq(s, lambda s, o: [object()], [1]), TypeError,
    NO_OPT_ATTR.format("SequentialLR", 0))
row("SequentialLR(three schedulers, unsorted milestones [3, 1])",
    lambda s: _seq(s, lambda s, o: [_step(s, o), _step(s, o), _step(s, o)], [3, 1]), None)
row("SequentialLR([ConstantLR, ExponentialLR], [2])",
    lambda s: _seq(s, lambda s, o: [s.lr_scheduler.ConstantLR(o),
                                    s.lr_scheduler.ExponentialLR(o, 0.9)], [2]), None)
row("ChainedScheduler([])", lambda s: _chain(s, lambda s, o: []), ValueError,
    "ChainedScheduler expects at least one scheduler to be chained, but got no scheduler.")
row("ChainedScheduler([object()])", lambda s: _chain(s, lambda s, o: [object()]),
    AttributeError, "'object' object has no attribute 'optimizer'")
row("ChainedScheduler([object()], optimizer=opt)",
    lambda s: _chain(s, lambda s, o: [object()], optimizer=lambda s, o: o), TypeError,
    NO_OPT_ATTR.format("ChainedScheduler", 0))
row("ChainedScheduler([StepLR, object()])",
    lambda s: _chain(s, lambda s, o: [_step(s, o), object()]), TypeError,
    NO_OPT_ATTR.format("ChainedScheduler", 1))
row("ChainedScheduler([ReduceLROnPlateau])",
    lambda s: _chain(s, lambda s, o: [s.lr_scheduler.ReduceLROnPlateau(o)]), ValueError,
    RLROP.format("ChainedScheduler", 0))
row("ChainedScheduler([StepLR, StepLR of another optimizer])",
    lambda s: _chain(s, lambda s, o: [_step(s, o), _other(s)]), ValueError,
    "ChainedScheduler expects all schedulers to belong to the same optimizer, but got "
    f"scheduler StepLR at index 1 has {OTHER_REPR}, which is different from SGD.")
row("ChainedScheduler([StepLR of another optimizer], optimizer=not an optimizer)",
    lambda s: _chain(s, lambda s, o: [_other(s)], optimizer=lambda s, o: _NotAnOptimizer()),
    ValueError, "ChainedScheduler expects all schedulers to belong to the same optimizer, but "
    f"got scheduler StepLR at index 0 has {OTHER_REPR}, which is different from "
    "_NotAnOptimizer.")
row("ChainedScheduler([StepLR, ExponentialLR])",
    lambda s: _chain(s, lambda s, o: [_step(s, o), s.lr_scheduler.ExponentialLR(o, 0.9)]), None)

# -- ReduceLROnPlateau -----------------------------------------------------------------

sched_row("ReduceLROnPlateau", {"factor": 1.0}, ValueError, "Factor should be < 1.0.")
sched_row("ReduceLROnPlateau", {"factor": 2.0}, ValueError, "Factor should be < 1.0.")
sched_row("ReduceLROnPlateau", {"factor": -1.0, "patience": -1, "cooldown": -1})
sched_row("ReduceLROnPlateau", {"factor": 1.0}, ValueError, "Factor should be < 1.0.",
          opt=lambda s: _NotAnOptimizer(),
          id="ReduceLROnPlateau(not an optimizer, factor=1.0) (factor first)")
sched_row("ReduceLROnPlateau", {"mode": "avg"}, ValueError, "mode avg is unknown!")
sched_row("ReduceLROnPlateau", {"mode": "MIN"}, ValueError, "mode MIN is unknown!")
sched_row("ReduceLROnPlateau", {"mode": None}, TypeError,
          'can only concatenate str (not "NoneType") to str')
sched_row("ReduceLROnPlateau", {"threshold_mode": "x"}, ValueError, "threshold mode x is unknown!")
sched_row("ReduceLROnPlateau", {"mode": "avg", "threshold_mode": "x"}, ValueError,
          "mode avg is unknown!")
sched_row("ReduceLROnPlateau", {"min_lr": [0.1]}, ValueError, "expected 2 min_lrs, got 1")
sched_row("ReduceLROnPlateau", {"min_lr": (0.1, 0.1, 0.1)}, ValueError, "expected 2 min_lrs, got 3")
sched_row("ReduceLROnPlateau", {"min_lr": [0.1, 0.0]})
sched_row("ReduceLROnPlateau", {"min_lr": [0.1], "mode": "avg"}, ValueError,
          "expected 2 min_lrs, got 1")
sched_row("ReduceLROnPlateau", {"mode": "max", "threshold_mode": "abs", "threshold": -1.0})

# -- CyclicLR --------------------------------------------------------------------------

NO_MOMENTUM = "optimizer must support momentum or beta1 with `cycle_momentum` option enabled"


def same_length(name: str, n: int, groups: int = 2) -> str:
    return (f"{name} must have the same length as optimizer.param_groups. {name} has {n} "
            f"values, param_groups has {groups}.")


sched_row("CyclicLR", {"base_lr": [0.01]}, ValueError, same_length("base_lr", 1))
sched_row("CyclicLR", {"max_lr": (0.1, 0.1, 0.1)}, ValueError, same_length("max_lr", 3))
sched_row("CyclicLR", {"base_lr": [0.01, 0.02], "max_lr": [0.1, 0.2]})
sched_row("CyclicLR", {"mode": "x"}, ValueError, "mode is invalid and scale_fn is None")
sched_row("CyclicLR", {"mode": "x", "scale_fn": lambda x: 1.0},
          id="CyclicLR(mode='x', scale_fn=function)")
sched_row("CyclicLR", {"base_lr": [0.01], "mode": "x"}, ValueError, same_length("base_lr", 1))
sched_row("CyclicLR", {"base_momentum": [0.8]}, ValueError, same_length("base_momentum", 1))
sched_row("CyclicLR", {"max_momentum": [0.9]}, ValueError, same_length("max_momentum", 1))
sched_row("CyclicLR", {"base_momentum": [0.8], "max_momentum": [0.9]}, ValueError,
          same_length("base_momentum", 1))
sched_row("CyclicLR", {"step_size_up": 0}, ZeroDivisionError, "float division by zero")
sched_row("CyclicLR", {"step_size_up": 0, "step_size_down": 2}, ZeroDivisionError,
          "float division by zero")  # the initial step divides by step_size_up's share
sched_row("CyclicLR", {"step_size_up": 1, "step_size_down": 0})
sched_row("CyclicLR", {"step_size_up": "a"}, ValueError, "could not convert string to float: 'a'")
sched_row("CyclicLR", {"mode": "x", "step_size_up": 0}, ZeroDivisionError, "float division by zero")
for _name, _exc in [("Adagrad", ValueError), ("Rprop", ValueError), ("ASGD", ValueError),
                    ("Adam", None), ("RMSprop", None), ("NAdam", None)]:
    sched_row("CyclicLR", {}, _exc, NO_MOMENTUM if _exc else None,
              opt=lambda s, n=_name: s.opt(n), id=f"CyclicLR({_name})")
sched_row("CyclicLR", {"cycle_momentum": False}, opt=lambda s: s.opt("Adagrad"),
          id="CyclicLR(Adagrad, cycle_momentum=False)")
sched_row("CyclicLR", {"mode": "x"}, ValueError, "mode is invalid and scale_fn is None",
          opt=lambda s: s.opt("Adagrad"), id="CyclicLR(Adagrad, mode='x') (mode before momentum)")
sched_row("CyclicLR", {"max_lr": [0.1]}, ValueError, same_length("max_lr", 1))

# -- OneCycleLR ------------------------------------------------------------------------

ONE_CYCLE_STEPS = "You must define either total_steps OR (epochs AND steps_per_epoch)"
ANNEAL = "anneal_strategy must be one of 'cos' or 'linear', instead got {}"


def one_cycle(kwargs: dict, exc: type | None = None, message: Message = None, *,
              opt: Callable | None = None, note: str = "") -> None:
    """A OneCycleLR row (max_lr=0.1 unless given) over a two-group SGD or ``opt(s)``."""
    kwargs = {"max_lr": 0.1, **kwargs}

    def make(s: Side) -> Any:
        return s.lr_scheduler.OneCycleLR(opt(s) if opt else s.opt(), **kwargs)

    ROWS.append(Row(f"OneCycleLR({_kw_id((), kwargs)}){note}", make, exc, message))


one_cycle({}, ValueError, ONE_CYCLE_STEPS)
one_cycle({"epochs": 2}, ValueError, ONE_CYCLE_STEPS)
one_cycle({"steps_per_epoch": 2}, ValueError, ONE_CYCLE_STEPS)
one_cycle({"total_steps": 0}, ValueError, "Expected positive integer total_steps, but got 0")
one_cycle({"total_steps": -1}, ValueError, "Expected positive integer total_steps, but got -1")
one_cycle({"total_steps": 1.5}, ValueError, "Expected positive integer total_steps, but got 1.5")
one_cycle({"total_steps": 10, "epochs": 0, "steps_per_epoch": 0})  # total_steps wins
one_cycle({"epochs": 0, "steps_per_epoch": 2}, ValueError, "Expected positive integer epochs, but got 0")
one_cycle({"epochs": 1.5, "steps_per_epoch": 2}, ValueError,
          "Expected positive integer epochs, but got 1.5")
one_cycle({"epochs": 2, "steps_per_epoch": 0}, ValueError,
          "Expected positive integer steps_per_epoch, but got 0")
one_cycle({"epochs": 2, "steps_per_epoch": -3}, ValueError,
          "Expected positive integer steps_per_epoch, but got -3")
one_cycle({"epochs": 2, "steps_per_epoch": 5})
one_cycle({"total_steps": 5, "pct_start": 1}, ValueError,
          "Expected float between 0 and 1 pct_start, but got 1")
one_cycle({"total_steps": 5, "pct_start": 1.5}, ValueError,
          "Expected float between 0 and 1 pct_start, but got 1.5")
one_cycle({"total_steps": 5, "pct_start": -0.1}, ValueError,
          "Expected float between 0 and 1 pct_start, but got -0.1")
one_cycle({"total_steps": 5, "pct_start": 0.0})
one_cycle({"total_steps": 5, "pct_start": 1.0, "three_phase": True})
one_cycle({"total_steps": 0, "pct_start": 2.0}, ValueError,
          "Expected positive integer total_steps, but got 0")
one_cycle({"total_steps": 5, "anneal_strategy": "exp"}, ValueError, ANNEAL.format("exp"))
one_cycle({"total_steps": 5, "pct_start": 2.0, "anneal_strategy": "exp"}, ValueError,
          "Expected float between 0 and 1 pct_start, but got 2.0")
one_cycle({"total_steps": 5, "anneal_strategy": "linear"})
one_cycle({"total_steps": 5, "max_lr": [0.1]}, ValueError, same_length("max_lr", 1))
one_cycle({"total_steps": 5, "max_lr": [0.1], "anneal_strategy": "exp"}, ValueError,
          ANNEAL.format("exp"))
one_cycle({"total_steps": 5, "max_momentum": [0.9]}, ValueError, same_length("max_momentum", 1))
one_cycle({"total_steps": 5, "base_momentum": [0.8]}, ValueError,
          same_length("base_momentum", 1))
one_cycle({"total_steps": 5, "max_momentum": [0.9], "base_momentum": [0.8]}, ValueError,
          same_length("max_momentum", 1))
one_cycle({"total_steps": 5}, ValueError, NO_MOMENTUM, opt=lambda s: s.opt("Adagrad"),
          note=" on Adagrad")
one_cycle({"total_steps": 5, "cycle_momentum": False}, opt=lambda s: s.opt("Adagrad"),
          note=" on Adagrad")
one_cycle({"total_steps": 5}, opt=lambda s: s.opt("Adam"), note=" on Adam")
one_cycle({"total_steps": 5, "max_lr": [0.1]}, ValueError, same_length("max_lr", 1),
          opt=lambda s: s.opt("Adagrad"), note=" on Adagrad (max_lr before momentum)")
one_cycle({"total_steps": 5, "div_factor": 0.0}, ZeroDivisionError, "float division by zero")
one_cycle({"total_steps": 5, "final_div_factor": 0.0}, ZeroDivisionError,
          "float division by zero")
one_cycle({"total_steps": 5, "max_lr": 1, "div_factor": 0}, ZeroDivisionError, "division by zero")

# -- CosineAnnealingWarmRestarts -------------------------------------------------------

T0 = "Expected positive integer T_0, but got {}"
TMULT = "Expected integer T_mult >= 1, but got {}"
CAWR = "CosineAnnealingWarmRestarts"
sched_row(CAWR, {"T_0": 0}, ValueError, T0.format(0))
sched_row(CAWR, {"T_0": -1}, ValueError, T0.format(-1))
sched_row(CAWR, {"T_0": 1.5}, ValueError, T0.format(1.5))
sched_row(CAWR, {"T_0": 2.0}, ValueError, T0.format(2.0))
sched_row(CAWR, {"T_0": "2"}, TypeError, "'<=' not supported between instances of 'str' and 'int'")
sched_row(CAWR, {"T_0": True})  # a bool is an int
sched_row(CAWR, {"T_mult": 0}, ValueError, TMULT.format(0))
sched_row(CAWR, {"T_mult": 1.5}, ValueError, TMULT.format(1.5))
sched_row(CAWR, {"T_mult": 3})
sched_row(CAWR, {"T_0": 0, "T_mult": 0}, ValueError, T0.format(0))
sched_row(CAWR, {"eta_min": "0"}, ValueError,
          "Expected float or int eta_min, but got 0 of type <class 'str'>")
sched_row(CAWR, {"eta_min": None}, ValueError,
          "Expected float or int eta_min, but got None of type <class 'NoneType'>")
sched_row(CAWR, {"T_mult": 0, "eta_min": "0"}, ValueError, TMULT.format(0))
sched_row(CAWR, {"eta_min": -1.0})
sched_row(CAWR, {"T_0": 0}, ValueError, T0.format(0), opt=lambda s: _NotAnOptimizer(),
          id=f"{CAWR}(not an optimizer, T_0=0) (T_0 first)")

# -- swa_utils: SWALR, the averaging factories, AveragedModel ---------------------------------

sched_row("SWALR", {"swa_lr": [0.1]}, ValueError, same_length("swa_lr", 1))
sched_row("SWALR", {"swa_lr": [0.1, 0.2]})
sched_row("SWALR", {"swa_lr": 0.1, "anneal_strategy": "exp"}, ValueError, ANNEAL.format("exp"))
sched_row("SWALR", {"swa_lr": 0.1, "anneal_epochs": -1}, ValueError,
          "anneal_epochs must be equal or greater than 0, got -1")
sched_row("SWALR", {"swa_lr": 0.1, "anneal_epochs": 1.5}, ValueError,
          "anneal_epochs must be equal or greater than 0, got 1.5")
sched_row("SWALR", {"swa_lr": 0.1, "anneal_epochs": 0})
sched_row("SWALR", {"swa_lr": 0.1, "anneal_strategy": "linear", "anneal_epochs": 3})
sched_row("SWALR", {"swa_lr": [0.1], "anneal_strategy": "exp"}, ValueError,
          same_length("swa_lr", 1))
sched_row("SWALR", {"swa_lr": 0.1, "anneal_strategy": "exp", "anneal_epochs": -1}, ValueError,
          ANNEAL.format("exp"))

DECAY = "Invalid decay value {} provided. Please provide a value in [0,1] range."
for _factory in ("get_ema_avg_fn", "get_ema_multi_avg_fn"):
    for _decay, _exc in [(1.5, ValueError), (-0.1, ValueError), (1.0001, ValueError),
                         (0.0, None), (1.0, None), (NAN, None)]:
        row(f"{_factory}({_decay})", lambda s, f=_factory, d=_decay: getattr(s.swa_utils, f)(d),
            _exc, DECAY.format(_decay) if _exc else None)
for _factory in ("get_swa_avg_fn", "get_swa_multi_avg_fn"):
    row(f"{_factory}()", lambda s, f=_factory: getattr(s.swa_utils, f)(), None)
    row(f"{_factory}(0.5)", lambda s, f=_factory: getattr(s.swa_utils, f)(0.5), TypeError,
        f"{_factory}() takes 0 positional arguments but 1 was given")


def _averaged(s: Side, **kwargs: Any) -> Any:
    fns = {"avg_fn": s.swa_utils.get_swa_avg_fn(), "multi_avg_fn": s.swa_utils.get_swa_multi_avg_fn()}
    return s.swa_utils.AveragedModel(s.model(), **{k: fns[k] for k in kwargs})


row("AveragedModel(avg_fn and multi_avg_fn)",
    lambda s: _averaged(s, avg_fn=1, multi_avg_fn=1), AssertionError,
    "Only one of avg_fn and multi_avg_fn should be provided")
row("AveragedModel(avg_fn)", lambda s: _averaged(s, avg_fn=1), None)
row("AveragedModel(multi_avg_fn)", lambda s: _averaged(s, multi_avg_fn=1), None)
row("AveragedModel(use_buffers=True)",
    lambda s: s.swa_utils.AveragedModel(s.model(), use_buffers=True), None)
row("AveragedModel(device='cpu')", lambda s: s.swa_utils.AveragedModel(s.model(), device="cpu"),
    None, sides=(TORCH, P_TORCH, P_NUMPY),
    why_not="array_api_strict names its devices itself ('CPU_DEVICE')")

_ids = [r.id for r in ROWS]
assert len(_ids) == len(set(_ids)), sorted({i for i in _ids if _ids.count(i) > 1})


# -- the test ------------------------------------------------------------------------------


def _comparable(row: Row, side: str) -> bool:
    """Whether torch on torch tensors must give this side's very outcome."""
    return TORCH in row.sides and not (row.deviation is not None and side in row.deviation.sides)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("row", ROWS, ids=_ids)
def test_construction(row: Row, side: str) -> None:
    if side not in row.sides:
        pytest.skip(row.why_not)
    s = side_named(side)
    got = outcome(row.make, s)
    deviates = row.deviation is not None and side in row.deviation.sides
    assert got == row.expected(s), row.deviation.why if deviates else "torch's behaviour"
    if side == TORCH or not _comparable(row, side):
        return
    try:
        oracle = side_named(TORCH)
    except pytest.skip.Exception:
        return  # without torch the hand-written row is the whole check
    theirs = outcome(row.make, oracle)
    if side == P_TORCH or not callable(row.message):
        assert got == theirs  # the same tensors (or a message that quotes no input)
    else:
        assert (got is None) == (theirs is None) and (got is None or got[0] is theirs[0])


def test_the_table_is_large_and_covers_every_class() -> None:
    assert len(ROWS) >= 200
    text = " ".join(_ids)
    for name in [*ALL15, *SCHEDULERS, "SequentialLR", "ChainedScheduler", "ReduceLROnPlateau",
                 "SWALR", "AveragedModel", "get_ema_avg_fn", "get_ema_multi_avg_fn",
                 "get_swa_avg_fn", "get_swa_multi_avg_fn"]:
        assert f"{name}(" in text, name
