"""ReduceLROnPlateau: cut the lr when a metric stops improving (re-exported by
:mod:`portopt.optim.lr_scheduler`)."""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal, SupportsFloat

from ._lr_base import (
    EPOCH_DEPRECATION_WARNING,
    LRScheduler,
    group_values,
    set_group_value,
    unchanged_on_error,
)
from .optimizer import Optimizer


class ReduceLROnPlateau(LRScheduler):
    """Multiplies the lr by ``factor`` once the metric given to ``step`` has not improved
    for more than ``patience`` epochs.

    Unlike the other schedulers it takes no initial step and keeps no ``initial_lr`` or
    ``base_lrs``: it only ever lowers the lr the groups hold.

    Args:
        optimizer: the optimizer whose lrs are scheduled.
        mode: ``"min"`` (the metric should fall) or ``"max"`` (it should rise).
        factor: the cut, ``new_lr = lr * factor``; below 1 (default 0.1).
        patience: epochs without improvement tolerated before a cut (default 10).
        threshold: how much better counts as better (default 1e-4).
        threshold_mode: ``"rel"`` (relative to the best so far) or ``"abs"``.
        cooldown: epochs after a cut during which bad epochs are not counted (default 0).
        min_lr: the lowest lr, one for all groups or a list with one per group.
        eps: a cut smaller than this is skipped (default 1e-8).
    """

    def __init__(self, optimizer: Optimizer, mode: Literal["min", "max"] = "min",
                 factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                 threshold_mode: Literal["rel", "abs"] = "rel", cooldown: int = 0,
                 min_lr: list[float] | float = 0, eps: float = 1e-8) -> None:
        if factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        n = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise ValueError(f"expected {n} min_lrs, got {len(min_lr)}")
            default_min_lr, min_lrs = None, list(min_lr)
        else:
            default_min_lr, min_lrs = min_lr, [min_lr] * n
        _check_modes(mode, threshold_mode)
        self.factor = factor
        self.optimizer = optimizer
        self.default_min_lr = default_min_lr
        self.min_lrs = min_lrs
        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.last_epoch = 0
        self._last_lr = group_values(optimizer, "lr")
        self._init_is_better(mode=mode, threshold=threshold, threshold_mode=threshold_mode)
        self._reset()

    def _reset(self) -> None:
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        """Whether the scheduler is resting after a cut."""
        return self.cooldown_counter > 0

    def step(self, metrics: SupportsFloat, epoch: int | None = None) -> None:  # type: ignore[override]
        """Record this epoch's metric and cut the lrs if it has plateaued."""
        current = float(metrics)
        if epoch is not None:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
        with unchanged_on_error(self, self.optimizer):
            self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
            if self._is_better(current, self.best):
                self.best = current
                self.num_bad_epochs = 0
            else:
                self.num_bad_epochs += 1
            if self.in_cooldown:
                self.cooldown_counter -= 1
                self.num_bad_epochs = 0  # bad epochs in cooldown do not count
            if self.num_bad_epochs > self.patience:
                self._reduce_lr(self.last_epoch)
                self.cooldown_counter = self.cooldown
                self.num_bad_epochs = 0
            self._last_lr = group_values(self.optimizer, "lr")

    def _reduce_lr(self, epoch: int) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(
                    f"The number of param groups in the `optimizer` ({len(groups)}) differs "
                    f"from when `ReduceLROnPlateau` was initialized ({len(self.min_lrs)}), "
                    "usually due to a new param group being added to the optimizer. Please "
                    "modify the `min_lrs` field to match the length of the `optimizer` param "
                    "groups."
                )
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, min_lr in zip(groups, self.min_lrs):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, min_lr)
            if old_lr - new_lr > self.eps:
                set_group_value(group, "lr", new_lr)

    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min" and self.threshold_mode == "abs":
            return a < best - self.threshold
        if self.mode == "max" and self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def _init_is_better(self, mode: str, threshold: float, threshold_mode: str) -> None:
        _check_modes(mode, threshold_mode)
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.mode = mode
        self.threshold = threshold
        self.threshold_mode = threshold_mode

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore attributes and re-derive the comparison from ``mode``."""
        with unchanged_on_error(self, self.optimizer):
            self.__dict__.update(state_dict)
            self._init_is_better(mode=self.mode, threshold=self.threshold,
                                 threshold_mode=self.threshold_mode)


def _check_modes(mode: str, threshold_mode: str) -> None:
    if mode not in {"min", "max"}:
        raise ValueError("mode " + mode + " is unknown!")
    if threshold_mode not in {"rel", "abs"}:
        raise ValueError("threshold mode " + threshold_mode + " is unknown!")
