"""The optimizer shell: param groups, lazy state, hooks, closures and state_dict.

The shell does no math. Each algorithm supplies a pure kernel and three small pieces
of glue (:meth:`Optimizer._init_state`, :meth:`Optimizer._update` and, where torch
checks something at step time, :meth:`Optimizer._check_group`); everything a user of
``torch.optim.Optimizer`` relies on lives here once.

A step is all or nothing. It runs in three phases: validate every group and gradient,
compute every new parameter and state with the pure kernels, then write the results
back. An error in the first two phases leaves parameters, state and groups exactly as
they were (torch gives no such guarantee: a failure on the second parameter leaves the
first one updated).
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from typing import Any, NamedTuple

import array_api_compat

from ..backends import Backend, get_backend
from ..parameter import Parameter, SparseGrad, _check_grad
from . import _fast
from ._hooks import (
    RemovableHandle,
    add_hook,
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
    with_step_hooks,
)
from ._params import data_of, is_param, is_sparse, is_torch_tensor, typename
from ._state_dict import StateDictMixin

__all__ = [
    "Optimizer",
    "register_optimizer_step_pre_hook",
    "register_optimizer_step_post_hook",
    "required",
]


class _RequiredParameter:
    """Marks a hyper-parameter that every param group must set (torch's ``required``)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


def _grad_enabled(enabled: bool) -> contextlib.AbstractContextManager:
    """torch's grad mode, when torch is loaded; nothing otherwise."""
    torch = sys.modules.get("torch")
    return torch.set_grad_enabled(enabled) if torch is not None else contextlib.nullcontext()


class _Work(NamedTuple):
    """One parameter of one step, between validation and write-back."""

    param: Any
    data: Any
    grad: Any
    backend: Backend


class Optimizer(StateDictMixin):
    """Base class of every portopt optimizer; the same contract as ``torch.optim.Optimizer``.

    Args:
        params: an iterable of parameters (:class:`portopt.Parameter` or torch
            tensors), of ``(name, parameter)`` pairs, or of dicts defining param
            groups. Use ordered collections: a set changes order between runs.
        defaults: default hyper-parameters, used by groups that do not set them.

    A subclass written as in torch (its own ``step``) works as in torch. The built-in
    algorithms instead implement three hooks of the shell's step:

    * ``_init_state(data, group)``: the initial state, a NamedTuple whose fields are
      torch's state keys;
    * ``_update(data, grad, state, group)``: calls the pure kernel and returns
      ``(new_data, new_state)``;
    * ``_check_group(group, work)`` (optional): torch's step-time checks.

    Differences from torch.optim:
        * A step validates everything before it changes anything, so a failing step
          leaves parameters, state and groups as they were.
        * ``load_state_dict`` copies the arrays it loads instead of aliasing them
          (torch shares tensors between the loaded dict and the optimizer,
          pytorch/pytorch#196083), and accepts arrays of any backend.
        * A param group must not mix backends or devices (torch allows several
          devices in one group); the error comes when the group is added.
    """

    #: NamedTuple type of one parameter's state (fields = torch's state keys).
    _state_type: type | None = None
    #: Keep ``step`` as torch does: a 0-d float32 host scalar of the param's backend.
    _tensor_step: bool = True
    #: Group keys filled in when loading a state_dict from an older torch version.
    _setstate_defaults: dict[str, Any] = {}
    #: Whether complex parameters are accepted.
    _supports_complex: bool = True
    #: Whether sparse gradients are accepted.
    _supports_sparse_grad: bool = False
    #: Whether more param groups can be added (LBFGS works on exactly one).
    _supports_param_groups: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "step" in cls.__dict__:
            cls.step = with_step_hooks(cls.__dict__["step"])  # type: ignore[method-assign]

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self._optimizer_step_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_step_post_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_state_dict_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_state_dict_post_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._optimizer_load_state_dict_post_hooks: OrderedDict[int, Callable] = OrderedDict()

        if is_param(params) or array_api_compat.is_array_api_obj(params):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors "
                "or dicts, but got " + typename(params)
            )

        self.state: defaultdict[Any, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []

        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for param_group in param_groups:
            self.add_param_group(param_group)

    # -- pickling, printing ------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "state": self.state,
                "param_groups": self.param_groups}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name in ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks",
                     "_optimizer_state_dict_pre_hooks", "_optimizer_state_dict_post_hooks",
                     "_optimizer_load_state_dict_pre_hooks",
                     "_optimizer_load_state_dict_post_hooks"):
            if name not in self.__dict__:
                setattr(self, name, OrderedDict())
        self.defaults.setdefault("differentiable", False)
        for group in self.param_groups:
            for key, value in self._setstate_defaults.items():
                group.setdefault(key, value)
            if self._tensor_step:
                # torch converts a `step` saved as a plain number back to its tensor form,
                # and reads `step` from every non-empty state (a KeyError without one)
                for p in group["params"]:
                    st = self.state.get(p, {})
                    if len(st) != 0 and not array_api_compat.is_array_api_obj(st["step"]):
                        st["step"] = self._new_step(data_of(p), group, float(st["step"]))
            self._setstate_group(group)

    def _setstate_group(self, group: dict[str, Any]) -> None:
        """Per-class fix-ups of a group after loading (AdamW forces its decay mode)."""

    def __repr__(self) -> str:
        text = self.__class__.__name__ + " ("
        for i, group in enumerate(self.param_groups):
            text += f"\nParameter Group {i}\n"
            for key in sorted(group.keys()):
                if key != "params":
                    text += f"    {key}: {group[key]}\n"
        return text + ")"

    # -- param groups ------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group to :attr:`param_groups`, filling in :attr:`defaults`.

        Args:
            param_group: a dict with ``"params"`` (parameters or ``(name, param)``
                pairs) and optional hyper-parameters for this group.

        Raises:
            TypeError, ValueError: with torch's messages, for a non-dict, a set of
                params, a non-parameter, names on some params only, a missing required
                hyper-parameter, or a parameter already in another group; and (portopt
                only) for a group that mixes backends or devices.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")

        params = param_group["params"]
        if is_param(params):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but "
                "the ordering of tensors in sets will change between runs. Please use a "
                "list instead."
            )
        else:
            params = list(params)

        names = [p[0] for p in params if isinstance(p, tuple)]
        tensors = [p[1] if isinstance(p, tuple) else p for p in params]
        if names and len(names) != len(tensors):
            raise ValueError(
                "all optimizer params should be with/without names. Some param names are missing"
            )

        for p in tensors:
            if not is_param(p):
                hint = ""
                if array_api_compat.is_array_api_obj(p):
                    hint = " (wrap arrays in portopt.Parameter, which holds their .grad)"
                raise TypeError(
                    "optimizer can only optimize Tensors, but one of the params is "
                    + typename(p) + hint
                )
            if (is_torch_tensor(p) and not self.defaults.get("differentiable", None)
                    and not (p.is_leaf or p.retains_grad)):
                raise ValueError("can't optimize a non-leaf Tensor")

        group = dict(param_group)
        group["params"] = tensors
        if names:
            group["param_names"] = names
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(
                    "parameter group didn't specify a value of required optimization "
                    f"parameter {name}"
                )
            group.setdefault(name, default)

        self._check_group_backends(group)

        if len(tensors) != len(set(tensors)):
            warnings.warn(
                "optimizer contains a parameter group with duplicate parameters; in "
                "future, this will cause an error; see "
                "github.com/pytorch/pytorch/issues/40967 for more information",
                stacklevel=3,
            )

        param_set: set[Any] = set()
        for other in self.param_groups:
            param_set.update(other["params"])
            if ("param_names" in group) != ("param_names" in other):
                which = "with names" if "param_names" in group else "without names"
                raise ValueError(
                    "all optimizer param groups should be with/without names. "
                    f"cannot add param group {which} to the optimizer"
                )
        if not param_set.isdisjoint(tensors):
            raise ValueError("some parameters appear in more than one parameter group")

        # torch fills the caller's dict in place; do the same, now that nothing can fail
        param_group.clear()
        param_group.update(group)
        self.param_groups.append(param_group)

    def _check_group_backends(self, group: dict[str, Any]) -> None:
        """Reject a group that mixes backends or devices, or asks for torch-only modes."""
        first = None
        for p in group["params"]:
            data = data_of(p)
            be = get_backend(data)
            if first is None:
                first = (p, be, be.device(data))
                continue
            _, be0, dev0 = first
            if type(be) is not type(be0):
                raise TypeError(
                    f"a param group must hold arrays of one backend, but this one mixes "
                    f"{be0.name} and {be.name} arrays; put them in separate param groups"
                )
            dev = be.device(data)
            if dev != dev0:
                raise ValueError(
                    f"a param group must hold arrays on one device, but this one mixes "
                    f"{dev0} and {dev}; put them in separate param groups"
                )
        if first is not None:
            self._check_torch_only_flags(group, first[1])

    def _check_torch_only_flags(self, group: dict[str, Any], be: Backend) -> None:
        if be.name == "torch":
            return
        for flag, why in (("capturable", "CUDA graph capture"),
                          ("differentiable", "torch autograd")):
            if group.get(flag):
                raise RuntimeError(
                    f"`{flag}=True` needs {why}, which only torch tensors have; it "
                    f"cannot be used with {be.name} arrays"
                )

    # -- gradients ---------------------------------------------------------------------

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all parameters.

        Args:
            set_to_none: set ``.grad`` to ``None`` (the default) instead of filling it
                with zeros. A step skips parameters whose grad is ``None`` but steps
                those with a zero grad, so the two are not interchangeable.
        """
        for group in self.param_groups:
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                elif is_torch_tensor(grad):
                    if grad.grad_fn is not None:
                        grad.detach_()
                    else:
                        grad.requires_grad_(False)
                    grad.zero_()
                else:
                    target = grad.values if isinstance(grad, SparseGrad) else grad
                    be = get_backend(target)
                    zeros = be.xp.zeros_like(target)
                    if be.mutable and be.is_writable(target):
                        be.assign(target, zeros)
                    elif isinstance(grad, SparseGrad):
                        grad.values = zeros
                    else:
                        p.grad = zeros

    # -- stepping ----------------------------------------------------------------------

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step and return the closure's loss (or ``None``).

        Args:
            closure: re-evaluates the model and returns the loss; it runs first, with
                torch's autograd enabled when torch is loaded.
        """
        if type(self)._update is Optimizer._update:
            raise NotImplementedError(
                f"{type(self).__name__} must define step(), or _init_state() and _update()"
            )
        loss = None
        if closure is not None:
            with _grad_enabled(True):
                loss = closure()
        with _grad_enabled(bool(self.defaults.get("differentiable", False))):
            if self._planned_step():
                return loss
            plan = [self._prepare_group(group) for group in self.param_groups]
            fused = [self._fused_step(group, work)
                     for group, work in zip(self.param_groups, plan)]
            results = [None if run is not None else self._compute_group(group, work)
                       for group, work, run in zip(self.param_groups, plan, fused)]
            # everything that can raise has run: now write, in place
            for work, new, run in zip(plan, results, fused):
                if run is not None:
                    run()
                else:
                    self._commit(work, new)
        return loss

    def _prepare_group(self, group: dict[str, Any]) -> list[_Work]:
        """Validate one group for a step: nothing has changed yet when this raises."""
        work = []
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            data = data_of(p)
            be = get_backend(data)
            if not self._supports_complex and be.is_complex(data):
                raise RuntimeError(
                    f"{type(self).__name__} does not support complex parameters"
                )
            if is_sparse(grad) and not self._supports_sparse_grad:
                raise RuntimeError(self._sparse_grad_message())
            if isinstance(p, Parameter):  # torch checks a tensor's grad on assignment
                _check_grad(data, grad)
            if be.mutable and not be.is_writable(data):
                raise ValueError(
                    f"a parameter of {type(self).__name__} is a read-only {be.name} array; "
                    "portopt updates parameters in place, so they must be writable"
                )
            work.append(_Work(p, data, grad, be))
        if work:
            # a parameter's array may have been swapped since the group was added
            self._check_group_backends(group)
            self._check_group(group, work)
        return work

    def _sparse_grad_message(self) -> str:
        return f"{type(self).__name__} does not support sparse gradients"

    def _check_group(self, group: dict[str, Any], work: list[_Work]) -> None:
        """Step-time checks of one group (torch's messages); override where torch has them."""

    def _compute_group(self, group: dict[str, Any], work: list[_Work]) -> list[tuple[Any, Any]]:
        """New ``(data, state)`` for each parameter of a group, from the pure kernel."""
        out: list[tuple[Any, Any]] = []
        # torch steps a parameter listed twice twice, the second time from the first
        # result; `pending` holds a parameter's latest uncommitted values
        pending: dict[int, tuple[Any, Any]] = {}
        for item in work:
            if id(item.param) in pending:
                data, state = pending[id(item.param)]
            else:
                data, state = item.data, self._saved_state(item, group)
            if group.get("differentiable"):
                # autograd may keep the current parameter for the backward pass, and the
                # write-back overwrites it: let the kernel read a copy (torch tensors only)
                data = data.clone()
            result = self._update(data, item.grad, state, group)
            pending[id(item.param)] = result
            out.append(result)
        return out

    def _saved_state(self, item: _Work, group: dict[str, Any]) -> Any:
        """The parameter's state as the kernel's NamedTuple, created lazily as in torch."""
        saved = self.state.get(item.param)
        if saved:
            return self._state_type._make(saved.get(f) for f in self._state_type._fields)
        state = self._init_state(item.data, group)
        if self._tensor_step and "step" in state._fields:
            state = state._replace(step=self._new_step(item.data, group, 0.0))
        return state

    def _commit(self, work: list[_Work], results: list[tuple[Any, Any]]) -> None:
        """Write new values into the parameters and state (cannot fail once validated)."""
        for item, (new_data, new_state) in zip(work, results):
            be = item.backend
            if be.mutable:
                be.assign(item.data, new_data)
            else:
                item.param.data = new_data
            entries = {k: v for k, v in new_state._asdict().items() if v is not None}
            if entries or item.param in self.state:
                self.state[item.param].update(entries)

    def _planned_step(self) -> bool:
        """Step every group through its fast plan (see ``_fast.Plan``) when each group
        still has a valid one; ``False`` (nothing done) otherwise."""
        plans = self.__dict__.get("_fused_plans")
        if not plans:
            return False
        ready = []
        for group in self.param_groups:
            plan = plans.get(id(group))
            if plan is None or not plan.gather(group, self.state, self._fused_numbers):
                return False
            ready.append((plan, group))
        for plan, group in ready:
            self._run_plan(plan, group)
        return True

    #: whether every operation of the algorithm treats each element alike, so that a
    #: param group can be stepped as one flat array (all optimizers but LBFGS,
    #: SparseAdam, Adafactor and Muon)
    _elementwise: bool = False

    #: group entries the fast paths read, which must be plain numbers for them
    _fused_numbers: tuple[str, ...] = ()

    #: state entries (besides ``step``) that are numbers rather than arrays
    _scalar_state: tuple[str, ...] = ()

    def _fast_path_allows(self, group: dict[str, Any]) -> bool:
        """A last say of the optimizer on whether a group may take a fast path."""
        return True

    def _launch(self, plan: Any, group: dict[str, Any]) -> None:
        """Run the compiled kernel through ``plan.launch`` and finish the step
        (``plan.finish``)."""
        raise NotImplementedError

    def _run_plan(self, plan: Any, group: dict[str, Any]) -> None:
        if plan.compiled:
            self._launch(plan, group)
        else:
            plan.run_chunked(self._state_type, lambda *a: self._update(*a, group))

    def _fused_step(self, group: dict[str, Any], work: list[_Work]) -> Callable[[], None] | None:
        """A fast in-place step of a whole group, or ``None`` for the generic kernel. It is
        called after validation and must not mutate; the returned function runs after
        every group has been computed and cannot fail.

        A group of an elementwise optimizer takes a fast path when ``_fast.eligible``
        says so: the compiled kernel where numba is installed and the optimizer has one,
        else the generic kernel over flat chunks. Its plan is kept for the next steps,
        which then skip the per-parameter work entirely."""
        if not self._elementwise:
            return None
        found = _fast.eligible(group, work, self.state, self._fused_numbers,
                               self._scalar_state)
        if found is None or not self._fast_path_allows(group):
            return None
        plans = self.__dict__.setdefault("_fused_plans", {})
        live = {id(g) for g in self.param_groups}
        for stale in [k for k in plans if k not in live]:
            del plans[stale]
        compiled = type(self)._launch is not Optimizer._launch and _fast.kernels() is not None
        plan = _fast.Plan(group, self.state, *found, compiled=compiled)
        if not plan.gather(group, self.state, self._fused_numbers):
            return None
        plans[id(group)] = plan
        return lambda: self._run_plan(plan, group)

    def _init_state(self, data: Any, group: dict[str, Any]) -> Any:
        """The initial state of one parameter (a NamedTuple of torch's state keys)."""
        raise NotImplementedError

    def _update(self, data: Any, grad: Any, state: Any, group: dict[str, Any]) -> tuple[Any, Any]:
        """One kernel call: ``(new_data, new_state)`` for one parameter."""
        raise NotImplementedError

    def _new_step(self, data: Any, group: dict[str, Any], value: float) -> Any:
        """A fresh ``state["step"]`` in torch's form: a 0-d float32 host scalar.

        torch keeps the step of a capturable or fused group on the parameter's device,
        and a fused group's in float32 (it is float64 elsewhere under torch's float64
        default dtype); those groups only exist for torch tensors.
        """
        be = get_backend(data)
        step = be.step_scalar(value)
        if be.name == "torch" and (group.get("capturable") or group.get("fused")):
            dtype = be.torch.float32 if group.get("fused") else step.dtype
            step = step.to(device=data.device, dtype=dtype)
        return step

    def _current_step(self, item: _Work, group: dict[str, Any]) -> Any:
        """The parameter's ``step`` as this step will find it (a fresh one if none yet)."""
        step = self.state.get(item.param, {}).get("step")
        return self._new_step(item.data, group, 0.0) if step is None else step

    # -- hook registration -------------------------------------------------------------

    def register_step_pre_hook(self, hook: Callable) -> RemovableHandle:
        """Register ``hook(optimizer, args, kwargs) -> None or (args, kwargs)`` before step."""
        return add_hook(self._optimizer_step_pre_hooks, hook)

    def register_step_post_hook(self, hook: Callable) -> RemovableHandle:
        """Register ``hook(optimizer, args, kwargs)`` to run after each step."""
        return add_hook(self._optimizer_step_post_hooks, hook)

    def register_state_dict_pre_hook(self, hook: Callable,
                                     prepend: bool = False) -> RemovableHandle:
        """Register ``hook(optimizer)`` to run before :meth:`state_dict` builds its result."""
        return add_hook(self._optimizer_state_dict_pre_hooks, hook, prepend)

    def register_state_dict_post_hook(self, hook: Callable,
                                      prepend: bool = False) -> RemovableHandle:
        """Register ``hook(optimizer, state_dict) -> state_dict or None`` after state_dict."""
        return add_hook(self._optimizer_state_dict_post_hooks, hook, prepend)

    def register_load_state_dict_pre_hook(self, hook: Callable,
                                          prepend: bool = False) -> RemovableHandle:
        """Register ``hook(optimizer, state_dict) -> state_dict or None`` before loading.

        The hook receives a shallow copy of the caller's dict; a dict it returns is
        loaded instead.
        """
        return add_hook(self._optimizer_load_state_dict_pre_hooks, hook, prepend)

    def register_load_state_dict_post_hook(self, hook: Callable,
                                           prepend: bool = False) -> RemovableHandle:
        """Register ``hook(optimizer)`` to run after :meth:`load_state_dict`."""
        return add_hook(self._optimizer_load_state_dict_post_hooks, hook, prepend)


Optimizer.step = with_step_hooks(Optimizer.step)  # type: ignore[method-assign]
