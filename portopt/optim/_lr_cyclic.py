"""The cycling schedulers, CyclicLR and OneCycleLR, which move the momentum (or Adam's
``betas[0]``) against the lr; re-exported by :mod:`portopt.optim.lr_scheduler`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

from . import _schedules
from ._lr_base import (
    LRScheduler,
    check_cycles_momentum,
    format_param,
    saved_callables,
    set_group_value,
    set_momentum,
    unchanged_on_error,
)
from .optimizer import Optimizer

_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


class CyclicLR(LRScheduler):
    """Cycles the lr between ``base_lr`` and ``max_lr`` along a triangle (Smith, 2017),
    moving the momentum the other way.

    The triangle rises over ``step_size_up`` steps and falls over ``step_size_down``;
    ``mode`` scales its amplitude per cycle (``triangular``: constant, ``triangular2``:
    halved each cycle, ``exp_range``: ``gamma**iteration``), or ``scale_fn`` does, applied
    per ``scale_mode`` (``"cycle"`` or ``"iterations"``).

    Args:
        optimizer: the optimizer whose lrs are scheduled.
        base_lr, max_lr: the bounds of the cycle, one for all groups or one per group.
        step_size_up, step_size_down: steps of the rising and falling half (the falling
            half defaults to the rising one).
        mode, gamma, scale_fn, scale_mode: the amplitude policy, as above.
        cycle_momentum: also cycle ``momentum`` (or ``betas[0]``) between
            ``max_momentum`` and ``base_momentum``.
        base_momentum, max_momentum: its bounds, one for all groups or one per group.
        last_epoch: the number of batches done (``-1`` to start).
    """

    def __init__(self, optimizer: Optimizer, base_lr: float | list[float],
                 max_lr: float | list[float], step_size_up: int = 2000,
                 step_size_down: int | None = None,
                 mode: Literal["triangular", "triangular2", "exp_range"] = "triangular",
                 gamma: float = 1.0, scale_fn: Callable[[float], float] | None = None,
                 scale_mode: Literal["cycle", "iterations"] = "cycle",
                 cycle_momentum: bool = True, base_momentum: float = 0.8,
                 max_momentum: float = 0.9, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        # every check first: nothing is written into the groups before they all pass
        base_lrs = format_param("base_lr", optimizer, base_lr)
        max_lrs = format_param("max_lr", optimizer, max_lr)
        up = float(step_size_up)
        down = float(step_size_down) if step_size_down is not None else up
        total_size = up + down
        step_ratio = up / total_size
        if mode not in _CYCLIC_MODES and scale_fn is None:
            raise ValueError("mode is invalid and scale_fn is None")
        if cycle_momentum:
            use_beta1 = check_cycles_momentum(optimizer)
            base_momentums = format_param("base_momentum", optimizer, base_momentum)
            max_momentums = format_param("max_momentum", optimizer, max_momentum)

        self.optimizer = optimizer
        self.max_lrs = max_lrs
        self.total_size = total_size
        self.step_ratio = step_ratio
        self.mode = mode
        self.gamma = gamma
        self._scale_fn_custom = scale_fn
        self.scale_mode = scale_mode
        self._init_scale_fn()
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self.use_beta1 = use_beta1
            self.base_momentums = base_momentums
            self.max_momentums = max_momentums
        groups = optimizer.param_groups
        with unchanged_on_error(self, optimizer):
            if last_epoch == -1:
                for lr, group in zip(base_lrs, groups):
                    set_group_value(group, "lr", lr)
                if cycle_momentum:
                    _start_momentum(groups, max_momentums, base_momentums, use_beta1)
            super().__init__(optimizer, last_epoch)
        # torch's order: the initial step above ran with base_lrs from initial_lr
        self.base_lrs = base_lrs

    def _init_scale_fn(self) -> None:
        """Derive the amplitude policy from ``mode`` unless the user gave ``scale_fn``."""
        if self._scale_fn_custom is not None:
            return
        if self.mode == "triangular":
            self._scale_fn_ref = _schedules.triangular_scale
            self.scale_mode = "cycle"
        elif self.mode == "triangular2":
            self._scale_fn_ref = _schedules.triangular2_scale
            self.scale_mode = "cycle"
        elif self.mode == "exp_range":
            self._scale_fn_ref = functools.partial(_schedules.exp_range_scale, gamma=self.gamma)
            self.scale_mode = "iterations"

    def scale_fn(self, x: float) -> float:
        """The amplitude at cycle (or iteration) ``x``."""
        if self._scale_fn_custom is not None:
            return self._scale_fn_custom(x)
        return self._scale_fn_ref(x)

    def get_lr(self) -> list[Any]:
        """The lrs of this step; also writes the cycled momentum into the groups."""
        self._warn_outside_step()
        cycle, height = _schedules.cyclic_position(self.last_epoch, total_size=self.total_size,
                                                   step_ratio=self.step_ratio)
        scale = self.scale_fn(cycle if self.scale_mode == "cycle" else self.last_epoch)
        lrs = [_schedules.cyclic_lr(height, scale, base_lr=low, max_lr=high)
               for low, high in zip(self.base_lrs, self.max_lrs, strict=True)]
        if self.cycle_momentum:
            momenta = [_schedules.cyclic_momentum(height, scale, base_momentum=low,
                                                  max_momentum=high)
                       for low, high in zip(self.base_momentums, self.max_momentums,
                                            strict=True)]
            for group, momentum in zip(self.optimizer.param_groups, momenta, strict=True):
                set_momentum(group, momentum, self.use_beta1)
        return lrs

    def state_dict(self) -> dict[str, Any]:
        """The attributes; a custom ``scale_fn`` as its ``__dict__`` if it is a callable
        object, else ``None`` (code is never saved)."""
        state = super().state_dict()
        state.pop("_scale_fn_ref", None)
        fn = state.pop("_scale_fn_custom")
        state["_scale_fn_custom"] = None if fn is None else saved_callables([fn])[0]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the attributes (and a callable-object ``scale_fn``'s ``__dict__``)."""
        state = dict(state_dict)
        fn_attrs = state.pop("_scale_fn_custom")
        with unchanged_on_error(self, self.optimizer):
            super().load_state_dict(state)
            if fn_attrs is not None:
                self._scale_fn_custom.__dict__.update(fn_attrs)
            self._init_scale_fn()


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin, 2018): the lr climbs from ``max_lr/div_factor``
    to ``max_lr``, then anneals far below its start, while the momentum moves the other
    way; with ``three_phase`` it first comes back down symmetrically.

    Args:
        optimizer: the optimizer whose lrs are scheduled.
        max_lr: the peak lr, one for all groups or one per group.
        total_steps: steps in the cycle, or give ``epochs`` and ``steps_per_epoch``.
        pct_start: the fraction of the cycle spent rising (a float, default 0.3).
        anneal_strategy: ``"cos"`` or ``"linear"``.
        cycle_momentum, base_momentum, max_momentum: as in :class:`CyclicLR`.
        div_factor: ``initial_lr = max_lr / div_factor`` (default 25).
        final_div_factor: ``min_lr = initial_lr / final_div_factor`` (default 1e4).
        three_phase: rise, fall back to ``initial_lr``, then anneal to ``min_lr``.
        last_epoch: the number of batches done (``-1`` to start).
    """

    def __init__(self, optimizer: Optimizer, max_lr: float | list[float],
                 total_steps: int | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: Literal["cos", "linear"] = "cos",
                 cycle_momentum: bool = True, base_momentum: float | list[float] = 0.85,
                 max_momentum: float | list[float] = 0.95, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        if total_steps is not None:
            if total_steps <= 0 or not isinstance(total_steps, int):
                raise ValueError(f"Expected positive integer total_steps, but got {total_steps}")
        elif epochs is not None and steps_per_epoch is not None:
            if not isinstance(epochs, int) or epochs <= 0:
                raise ValueError(f"Expected positive integer epochs, but got {epochs}")
            if not isinstance(steps_per_epoch, int) or steps_per_epoch <= 0:
                raise ValueError("Expected positive integer steps_per_epoch, but got "
                                 f"{steps_per_epoch}")
            total_steps = epochs * steps_per_epoch
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
        phases = _one_cycle_phases(pct_start, total_steps, three_phase)
        if pct_start < 0 or pct_start > 1 or not isinstance(pct_start, float):
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError("anneal_strategy must be one of 'cos' or 'linear', instead got "
                             f"{anneal_strategy}")
        max_lrs = format_param("max_lr", optimizer, max_lr)
        if cycle_momentum:
            use_beta1 = check_cycles_momentum(optimizer)
            max_momentums = format_param("max_momentum", optimizer, max_momentum)
            base_momentums = format_param("base_momentum", optimizer, base_momentum)

        self.optimizer = optimizer
        self.total_steps = total_steps
        self._schedule_phases = phases
        self._anneal_func_type = anneal_strategy
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self.use_beta1 = use_beta1
        groups = optimizer.param_groups
        with unchanged_on_error(self, optimizer):
            if last_epoch == -1:
                for peak, group in zip(max_lrs, groups):
                    group["initial_lr"] = peak / div_factor
                    group["max_lr"] = peak
                    group["min_lr"] = group["initial_lr"] / final_div_factor
                if cycle_momentum:
                    _start_momentum(groups, max_momentums, base_momentums, use_beta1)
            super().__init__(optimizer, last_epoch)

    def _anneal_func(self, start: Any, end: Any, pct: float) -> Any:
        if self._anneal_func_type == "cos":
            return _schedules.anneal_cos(start, end, pct)
        if self._anneal_func_type == "linear":
            return _schedules.anneal_linear(start, end, pct)
        raise ValueError(f"Unknown _anneal_func_type: {self._anneal_func_type}")

    def get_lr(self) -> list[Any]:
        """The lrs of this step; also writes the annealed momentum into the groups."""
        self._warn_outside_step()
        step_num = self.last_epoch
        if step_num > self.total_steps:
            raise ValueError(f"Tried to step {step_num} times. The specified number of total "
                             f"steps is {self.total_steps}")
        lrs = []
        last = len(self._schedule_phases) - 1
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for i, phase in enumerate(self._schedule_phases):
                end_step = phase["end_step"]
                if step_num <= end_step or i == last:
                    pct = (step_num - start_step) / (end_step - start_step)
                    lr = self._anneal_func(group[phase["start_lr"]], group[phase["end_lr"]], pct)
                    if self.cycle_momentum:
                        momentum = self._anneal_func(group[phase["start_momentum"]],
                                                     group[phase["end_momentum"]], pct)
                    break
                start_step = phase["end_step"]
            lrs.append(lr)
            if self.cycle_momentum:
                set_momentum(group, momentum, self.use_beta1)
        return lrs


def _start_momentum(groups: list[dict[str, Any]], max_momentums: list[Any],
                    base_momentums: list[Any], use_beta1: bool) -> None:
    """A cycle starts at the top momentum; both bounds are kept as group keys."""
    for high, low, group in zip(max_momentums, base_momentums, groups):
        set_momentum(group, high, use_beta1)
        group["max_momentum"] = high
        group["base_momentum"] = low


def _one_cycle_phases(pct_start: float, total_steps: int,
                      three_phase: bool) -> list[dict[str, Any]]:
    """The phases of the 1cycle policy: where each ends and which group keys hold the lr
    and momentum it anneals between (torch's ``_schedule_phases``)."""
    def phase(end_step: float, lr: tuple[str, str], momentum: tuple[str, str]) -> dict[str, Any]:
        return {"end_step": end_step, "start_lr": lr[0], "end_lr": lr[1],
                "start_momentum": momentum[0], "end_momentum": momentum[1]}

    rise = phase(float(pct_start * total_steps) - 1, ("initial_lr", "max_lr"),
                 ("max_momentum", "base_momentum"))
    if not three_phase:
        return [rise, phase(total_steps - 1, ("max_lr", "min_lr"),
                            ("base_momentum", "max_momentum"))]
    return [rise,
            phase(float(2 * pct_start * total_steps) - 2, ("max_lr", "initial_lr"),
                  ("base_momentum", "max_momentum")),
            phase(total_steps - 1, ("initial_lr", "min_lr"), ("max_momentum", "max_momentum"))]
