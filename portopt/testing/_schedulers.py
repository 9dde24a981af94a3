"""Scheduler conformance: a portopt scheduler and torch's, driven side by side.

Each side gets an optimizer over the same parameters (portopt's on the backend under
test, torch's on CPU tensors), the same scheduler arguments and the same inputs: plain
``step()``s, deprecated ``step(epoch)``s, ReduceLROnPlateau metrics, a hand edit of the
lr, or a resume through both state_dicts into a fresh optimizer and scheduler. After
construction and after every step the runner compares every group's ``lr``,
``momentum`` and ``betas[0]`` (and the group keys schedulers write), ``get_last_lr()``,
the warnings raised and, when torch raises, the exception. At the end it compares the
state_dict keys.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from ._backends import TestBackend
from ._runner import CaseResult, ConformanceError

#: What a scheduler case runs (the trajectory is always compared step by step).
SCHEDULER_SCENARIOS = (
    "trajectory",  # plain step() (ReduceLROnPlateau: step(metric)) every step
    "epoch",       # step(epoch) with the case's epochs: the deprecated closed-form path
    "hand-edit",   # the user overwrites every group["lr"] mid-run
    "resume",      # mid-run: both state_dicts into a new optimizer and scheduler, continue
    "array-lr",    # the group lrs are 0-d arrays (torch: tensors) that must keep their type
)
#: Group keys the schedulers write, compared whenever a group has them.
GROUP_KEYS = ("lr", "momentum", "initial_lr", "max_lr", "min_lr", "swa_lr",
              "max_momentum", "base_momentum")
#: The relative tolerance of every scheduler comparison (the issue's bound; floats
#: computed in the same order are in fact identical).
REL_TOL = 1e-12


@dataclass(frozen=True)
class Sched:
    """A scheduler inside another one's arguments (SequentialLR, ChainedScheduler)."""

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.name}({args})"


@dataclass(frozen=True)
class Fresh:
    """An argument made anew for each side by calling ``make`` (a callable object whose
    ``__dict__`` a state_dict saves must not be shared between portopt and torch)."""

    make: Callable[[], Any]
    label: str

    def __repr__(self) -> str:
        return self.label


@dataclass(frozen=True)
class SchedulerCase:
    """One configuration of one scheduler, checked against torch.

    Attributes:
        name: the class name in ``portopt.optim.lr_scheduler`` (or ``swa_utils``), the
            same in torch.
        kwargs: constructor arguments, the optimizer aside (``Sched`` for members of a
            composite scheduler).
        desc: short id of the configuration.
        scenario: one of :data:`SCHEDULER_SCENARIOS`.
        steps: scheduler steps.
        optimizer, optimizer_kwargs: the optimizer both schedulers drive.
        lrs: one param group per entry, with that lr.
        metrics: ReduceLROnPlateau's metric per step.
        epochs: the ``epoch`` argument per step (``None`` entries step plainly).
        edit: ``(step, lr)``: before that step, every group's lr is set to ``lr * (i + 1)``.
        resume_at: the step after which the resume scenario rebuilds both sides.
        resume_kwargs: constructor arguments for the rebuilt scheduler (default: kwargs).
        dtypes: parameter (and, for array-lr, lr) dtypes.
    """

    name: str
    kwargs: Mapping[str, Any]
    desc: str
    scenario: str = "trajectory"
    steps: int = 30
    optimizer: str = "SGD"
    optimizer_kwargs: Mapping[str, Any] = field(default_factory=lambda: {"momentum": 0.9})
    lrs: tuple[float, ...] = (0.05, 0.5)
    metrics: tuple[float, ...] | None = None
    epochs: tuple[float | None, ...] | None = None
    edit: tuple[int, float] | None = None
    resume_at: int = 7
    resume_kwargs: Mapping[str, Any] | None = None
    dtypes: tuple[str, ...] = ("float64",)

    def __post_init__(self) -> None:
        if self.scenario not in SCHEDULER_SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}")
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))
        object.__setattr__(self, "optimizer_kwargs",
                           MappingProxyType(dict(self.optimizer_kwargs)))

    def run_dtypes(self) -> tuple[str, ...]:
        """The dtypes this case runs in (its ``dtypes``)."""
        return self.dtypes

    @property
    def id(self) -> str:
        base = f"{self.name}-{self.desc}"
        return base if self.scenario == "trajectory" else f"{base}-{self.scenario}"


# -- one side of the comparison ----------------------------------------------------------


class _Side:
    """An optimizer and a scheduler of one library, with the means to rebuild them."""

    def __init__(self, case: SchedulerCase, *, optim: Any, schedulers: Any,
                 make_param: Callable[[np.ndarray], Any], make_lr: Callable[[float], Any],
                 value: Callable[[Any], np.ndarray], set_grad: Callable[[Any, np.ndarray], None],
                 torch_side: bool) -> None:
        self.case, self.optim, self.schedulers = case, optim, schedulers
        self.make_param, self.make_lr, self.value, self.set_grad = (
            make_param, make_lr, value, set_grad)
        self.torch_side = torch_side
        self.opt: Any = None
        self.sched: Any = None

    def build(self, start: list[np.ndarray], kwargs: Mapping[str, Any]) -> None:
        self.build_optimizer(start)
        self.sched = self._scheduler(self.case.name, kwargs)

    def build_optimizer(self, start: list[np.ndarray]) -> None:
        case = self.case
        self.params = [self.make_param(a) for a in start]
        groups = [{"params": [p], "lr": self.make_lr(lr)}
                  for p, lr in zip(self.params, case.lrs)]
        opt_kwargs = dict(case.optimizer_kwargs)
        if self.torch_side:
            opt_kwargs["foreach"] = False
        self.opt = getattr(self.optim, case.optimizer)(groups, lr=case.lrs[0], **opt_kwargs)

    def _scheduler(self, name: str, kwargs: Mapping[str, Any]) -> Any:
        args = {k: self._member(v) for k, v in kwargs.items()}
        cls = getattr(self.schedulers[0], name, None) or getattr(self.schedulers[1], name)
        return cls(**args) if name == "ChainedScheduler" else cls(self.opt, **args)

    def _member(self, v: Any) -> Any:
        if isinstance(v, Fresh):
            return v.make()
        if isinstance(v, Sched):
            return self._scheduler(v.name, v.kwargs)
        if isinstance(v, list) and v and all(isinstance(x, Sched) for x in v):
            return [self._scheduler(x.name, x.kwargs) for x in v]
        return v

    def groups(self) -> list[dict[str, float]]:
        out = []
        for g in self.opt.param_groups:
            row = {k: float(g[k]) for k in GROUP_KEYS if k in g}
            if "betas" in g:
                row["beta1"] = float(g["betas"][0])
            out.append(row)
        return out

    def last_lr(self) -> list[float]:
        return [float(v) for v in self.sched.get_last_lr()]

    def step(self, i: int, grads: list[np.ndarray]) -> None:
        """One optimizer step and one scheduler step, as a training loop makes them."""
        for p, g in zip(self.params, grads):
            self.set_grad(p, g)
        self.opt.step()
        case = self.case
        if case.metrics is not None:
            self.sched.step(case.metrics[i])
        elif case.epochs is not None and case.epochs[i] is not None:
            self.sched.step(case.epochs[i])
        else:
            self.sched.step()

    def resume(self, kwargs: Mapping[str, Any]) -> None:
        """Save both state_dicts, build a new optimizer and scheduler, load them.

        With ``last_epoch`` among the new scheduler's arguments, resume the older way
        instead: load the optimizer's state first, then build the scheduler at that epoch
        (it needs the ``initial_lr`` the optimizer's groups carry) and load nothing into it.
        """
        opt_state = self.opt.state_dict()
        sched_state = self.sched.state_dict()
        current = [self.value(p) for p in self.params]
        if "last_epoch" in kwargs:
            self.build_optimizer(current)
            self.opt.load_state_dict(opt_state)
            self.sched = self._scheduler(self.case.name, kwargs)
            return
        self.build(current, kwargs)
        self.opt.load_state_dict(opt_state)
        self.sched.load_state_dict(sched_state)


def _record(fn: Callable[[], Any]) -> tuple[list[str], BaseException | None]:
    """Run ``fn``; return the warnings it raised and the exception, if any."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fn()
            error = None
        except Exception as exc:  # compared with the other side's
            error = exc
    return [f"{w.category.__name__}: {w.message}" for w in caught], error


class _Compare:
    def __init__(self) -> None:
        self.worst = 0.0

    def values(self, step: int, what: str, cand: Any, ref: Any) -> None:
        if isinstance(ref, dict):
            if set(cand) != set(ref):
                raise ConformanceError(step, f"{what}: keys {sorted(cand)} != torch's "
                                             f"{sorted(ref)}")
            for k in ref:
                self.values(step, f"{what}[{k!r}]", cand[k], ref[k])
            return
        if isinstance(ref, list):
            if len(cand) != len(ref):
                raise ConformanceError(step, f"{what}: {len(cand)} entries, torch has {len(ref)}")
            for i, (c, r) in enumerate(zip(cand, ref)):
                self.values(step, f"{what}[{i}]", c, r)
            return
        if ref == cand or (np.isnan(ref) and np.isnan(cand)):
            return
        rel = abs(cand - ref) / abs(ref) if ref != 0 else float("inf")
        self.worst = max(self.worst, rel)
        if rel > REL_TOL:
            raise ConformanceError(step, f"{what}: portopt {cand!r} != torch {ref!r} "
                                         f"(rel {rel:.2e})")

    def events(self, step: int, cand: tuple[list[str], BaseException | None],
               ref: tuple[list[str], BaseException | None]) -> None:
        if cand[0] != ref[0]:
            raise ConformanceError(step, f"warnings {cand[0]} != torch's {ref[0]}")
        c_err, r_err = cand[1], ref[1]
        if r_err is None and c_err is not None:
            raise ConformanceError(step, f"portopt raised {type(c_err).__name__}: {c_err}")
        if r_err is not None and (type(c_err) is not type(r_err) or str(c_err) != str(r_err)):
            raise ConformanceError(step, f"torch raised {type(r_err).__name__}: {r_err}; "
                                         f"portopt {type(c_err).__name__}: {c_err}")


def run_scheduler_case(case: SchedulerCase, backend: TestBackend, dtype: str, *,
                       seed: int = 0) -> CaseResult:
    """Run one scheduler case against torch's scheduler of the same name."""
    import torch

    import portopt.optim
    from portopt.optim import lr_scheduler, swa_utils

    reason = backend.unavailable()
    if reason is not None:
        return CaseResult(case.id, backend.value, dtype, True, 0, 0.0, None, skipped=reason)
    tdtype = getattr(torch, dtype)
    array_lr = case.scenario == "array-lr"
    cand = _Side(
        case, optim=portopt.optim, schedulers=(lr_scheduler, swa_utils),
        make_param=backend.param,
        make_lr=(lambda lr: backend.array(np.asarray(lr, dtype=dtype))) if array_lr else float,
        value=_to_numpy,
        set_grad=lambda p, g: setattr(p, "grad", backend.array(g)),
        torch_side=False)
    ref = _Side(
        case, optim=torch.optim, schedulers=(torch.optim.lr_scheduler, torch.optim.swa_utils),
        make_param=lambda a: torch.tensor(a, dtype=tdtype, requires_grad=True),
        make_lr=(lambda lr: torch.tensor(lr, dtype=tdtype)) if array_lr else float,
        value=lambda p: p.detach().numpy().copy(),
        set_grad=lambda p, g: setattr(p, "grad", torch.tensor(g, dtype=tdtype)),
        torch_side=True)
    rng = np.random.default_rng(seed)
    start = [rng.standard_normal(3).astype(dtype) for _ in case.lrs]
    cmp = _Compare()
    began = time.perf_counter()
    step = 0
    try:
        events = (_record(lambda: cand.build(start, case.kwargs)),
                  _record(lambda: ref.build(start, case.kwargs)))
        cmp.events(0, *events)
        if events[1][1] is not None:
            raise _Stop
        live_lrs = [g["lr"] for g in cand.opt.param_groups] if array_lr else None
        _compare_state(cmp, 0, cand, ref)
        for step in range(1, case.steps + 1):
            i = step - 1
            if case.scenario == "hand-edit" and case.edit is not None and case.edit[0] == i:
                for side in (cand, ref):
                    for k, g in enumerate(side.opt.param_groups):
                        g["lr"] = case.edit[1] * (k + 1)
            grads = [rng.standard_normal(3).astype(dtype) for _ in case.lrs]
            events = (_record(functools.partial(cand.step, i, grads)),
                      _record(functools.partial(ref.step, i, grads)))
            cmp.events(step, *events)
            _compare_state(cmp, step, cand, ref)
            if events[1][1] is not None:
                break
            if array_lr:
                _check_array_lrs(step, cand, live_lrs, backend)
            if case.scenario == "resume" and step == case.resume_at:
                kwargs = case.resume_kwargs if case.resume_kwargs is not None else case.kwargs
                events = (_record(functools.partial(cand.resume, kwargs)),
                          _record(functools.partial(ref.resume, kwargs)))
                cmp.events(step, *events)
                _compare_state(cmp, step, cand, ref)
                if array_lr:
                    live_lrs = [g["lr"] for g in cand.opt.param_groups]
        _compare_keys(step, cand.sched, ref.sched)
    except _Stop:
        pass
    except ConformanceError as exc:
        return CaseResult(case.id, backend.value, dtype, False, step, cmp.worst, None,
                          message=str(exc), failed_step=exc.step,
                          seconds=time.perf_counter() - began)
    return CaseResult(case.id, backend.value, dtype, True, step, cmp.worst, None,
                      seconds=time.perf_counter() - began)


class _Stop(Exception):
    """Both sides raised the same error at construction: nothing more to step."""


def _to_numpy(p: Any) -> np.ndarray:
    from portopt.backends import get_backend

    data = getattr(p, "data", p)
    return get_backend(data).to_numpy(data)


def _compare_state(cmp: _Compare, step: int, cand: _Side, ref: _Side) -> None:
    cmp.values(step, "param_groups", cand.groups(), ref.groups())
    if ref.sched is not None:
        cmp.values(step, "get_last_lr()", cand.last_lr(), ref.last_lr())


def _compare_keys(step: int, cand: Any, ref: Any) -> None:
    c, r = cand.state_dict(), ref.state_dict()
    if set(c) != set(r):
        raise ConformanceError(step, f"state_dict keys {sorted(c)} != torch's {sorted(r)}")
    for key in ("_schedulers",):
        if key in r:
            for i, (cs, rs) in enumerate(zip(c[key], r[key])):
                if set(cs) != set(rs):
                    raise ConformanceError(step, f"state_dict[{key!r}][{i}] keys {sorted(cs)} "
                                                 f"!= torch's {sorted(rs)}")


def _check_array_lrs(step: int, cand: _Side, live: list[Any], backend: TestBackend) -> None:
    """Array lrs stay the very arrays the groups were built with, and get_last_lr() gives
    copies of them, as torch keeps tensor lrs."""
    from portopt.backends import get_backend

    for k, g in enumerate(cand.opt.param_groups):
        if g["lr"] is not live[k]:
            raise ConformanceError(step, f"group {k}'s lr array was replaced by {g['lr']!r}")
        last = cand.sched.get_last_lr()[k]
        if last is g["lr"] or type(get_backend(last)) is not type(get_backend(g["lr"])):
            raise ConformanceError(step, f"get_last_lr()[{k}] is {last!r}: expected a copy "
                                         f"of the group's {backend.value} array")
