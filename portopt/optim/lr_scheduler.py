"""Learning-rate schedulers with torch 2.13's names, arguments, state and numbers.

Every scheduler computes as ``torch.optim.lr_scheduler`` does: ``step()`` uses the
recursive (chainable) form from the current ``group["lr"]`` where torch does, so a
hand-edited lr and ChainedScheduler behave the same; ``step(epoch)`` uses the closed
forms of :mod:`portopt.optim._schedules` where torch has one. Learning rates are Python
floats, or 0-d arrays of any backend, which keep their type and are written in place.

Differences from torch (deliberate, each small):

* A scheduler call that raises (a constructor's check, ``OneCycleLR`` stepped past its
  end, a user lambda that fails) leaves the optimizer's param groups and the scheduler
  exactly as they were. torch validates some arguments after writing group keys and
  counts a failed step.
* ``CyclicLR.load_state_dict`` does not remove ``_scale_fn_custom`` from the dict it is
  given, so the same dict can be loaded twice (torch's second load raises ``KeyError``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from . import _schedules
from ._lr_base import EPOCH_DEPRECATION_WARNING as EPOCH_DEPRECATION_WARNING  # as torch has it
from ._lr_base import (
    LRScheduler,
    group_values,
    saved_callables,
    set_group_value,
    unchanged_on_error,
)
from ._lr_base import _LRScheduler as _LRScheduler  # torch's old name, for subclasses
from ._lr_composite import ChainedScheduler, SequentialLR
from ._lr_cyclic import CyclicLR, OneCycleLR
from ._lr_plateau import ReduceLROnPlateau

__all__ = [
    "LambdaLR",
    "MultiplicativeLR",
    "StepLR",
    "MultiStepLR",
    "ConstantLR",
    "LinearLR",
    "ExponentialLR",
    "SequentialLR",
    "CosineAnnealingLR",
    "ChainedScheduler",
    "ReduceLROnPlateau",
    "CyclicLR",
    "CosineAnnealingWarmRestarts",
    "OneCycleLR",
    "PolynomialLR",
    "LRScheduler",
]


# -- schedules of a user function ------------------------------------------------------


class _UserLambdas(LRScheduler):
    """Shared by LambdaLR and MultiplicativeLR: one user function per param group, of
    which a state_dict keeps only the ``__dict__`` of callable objects."""

    lr_lambdas: list[Callable[[int], float]]

    def _set_lambdas(self, optimizer: Any, lr_lambda: Any) -> None:
        n = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != n:
                raise ValueError(f"Expected {n} lr_lambdas, but got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * n

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's attributes; of each lambda, ``None`` for a function and a copy
        of ``__dict__`` for a callable object (code is never saved)."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}
        state["lr_lambdas"] = saved_callables(self.lr_lambdas)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore attributes, and the saved ``__dict__`` of callable-object lambdas."""
        state = dict(state_dict)
        saved = state.pop("lr_lambdas")
        with unchanged_on_error(self, self.optimizer):
            self.__dict__.update(state)
            for fn, attrs in zip(self.lr_lambdas, saved):
                if attrs is not None:
                    fn.__dict__.update(attrs)


class LambdaLR(_UserLambdas):
    """Sets each group's lr to its initial lr times ``lr_lambda(epoch)``.

    Args:
        optimizer: the optimizer whose lrs are scheduled.
        lr_lambda: a function of the epoch returning a factor, or a list of them, one per
            param group.
        last_epoch: the last epoch done (``-1`` to start).
    """

    def __init__(self, optimizer: Any, lr_lambda: Callable[[int], float]
                 | list[Callable[[int], float]], last_epoch: int = -1) -> None:
        self.optimizer = optimizer
        self._set_lambdas(optimizer, lr_lambda)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        return [_schedules.lambda_lr(self.last_epoch, base_lr=base_lr, lr_lambda=fn)
                for fn, base_lr in zip(self.lr_lambdas, self.base_lrs, strict=True)]


class MultiplicativeLR(_UserLambdas):
    """Multiplies each group's lr by ``lr_lambda(epoch)`` at every step after the first.

    Args:
        optimizer: the optimizer whose lrs are scheduled.
        lr_lambda: a function of the epoch returning a factor, or one per param group.
        last_epoch: the last epoch done (``-1`` to start).
    """

    def __init__(self, optimizer: Any, lr_lambda: Callable[[int], float]
                 | list[Callable[[int], float]], last_epoch: int = -1) -> None:
        self.optimizer = optimizer
        self._set_lambdas(optimizer, lr_lambda)
        for fn in self.lr_lambdas:
            if not callable(fn):
                raise TypeError(f"lr_lambda should be a function, but got {type(fn).__name__}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        if self._is_initial:
            return group_values(self.optimizer, "lr")
        return [group["lr"] * fn(self.last_epoch)
                for fn, group in zip(self.lr_lambdas, self.optimizer.param_groups, strict=True)]


# -- fixed-shape decays --------------------------------------------------------------


class StepLR(LRScheduler):
    """Multiplies the lr by ``gamma`` every ``step_size`` epochs.

    Args:
        optimizer: the optimizer whose lrs are scheduled.
        step_size: epochs between two decays.
        gamma: the decay factor (default 0.1).
        last_epoch: the last epoch done (``-1`` to start).
    """

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return group_values(self.optimizer, "lr")
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[Any]:
        return [_schedules.step_lr(self.last_epoch, base_lr=base_lr, step_size=self.step_size,
                                   gamma=self.gamma) for base_lr in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Multiplies the lr by ``gamma`` at each milestone epoch (by ``gamma**k`` at a
    milestone listed ``k`` times).

    Args:
        optimizer: the optimizer whose lrs are scheduled.
        milestones: epochs at which to decay; kept as a ``collections.Counter``.
        gamma: the decay factor (default 0.1).
        last_epoch: the last epoch done (``-1`` to start).
    """

    def __init__(self, optimizer: Any, milestones: Iterable[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        if self.last_epoch not in self.milestones:
            return group_values(self.optimizer, "lr")
        factor = self.gamma ** self.milestones[self.last_epoch]
        return [group["lr"] * factor for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[Any]:
        milestones = list(self.milestones.elements())
        return [_schedules.multi_step_lr(self.last_epoch, base_lr=base_lr,
                                         milestones=milestones, gamma=self.gamma)
                for base_lr in self.base_lrs]


class ConstantLR(LRScheduler):
    """Multiplies the lr by ``factor`` for the first ``total_iters`` epochs.

    Args:
        optimizer: the optimizer whose lrs are scheduled.
        factor: the factor, in [0, 1] (default 1/3).
        total_iters: epochs at the reduced lr (default 5).
        last_epoch: the last epoch done (``-1`` to start).
    """

    def __init__(self, optimizer: Any, factor: float = 1.0 / 3, total_iters: int = 5,
                 last_epoch: int = -1) -> None:
        if factor > 1.0 or factor < 0:
            raise ValueError("Constant multiplicative factor expected to be between 0 and 1.")
        self.factor = factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        if self.last_epoch == 0:
            return [group["lr"] * self.factor for group in self.optimizer.param_groups]
        if self.last_epoch != self.total_iters:
            return group_values(self.optimizer, "lr")
        return [group["lr"] * (1.0 / self.factor) for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[Any]:
        return [_schedules.constant_lr(self.last_epoch, base_lr=base_lr, factor=self.factor,
                                       total_iters=self.total_iters)
                for base_lr in self.base_lrs]


class LinearLR(LRScheduler):
    """Scales the lr by a factor moving linearly from ``start_factor`` to ``end_factor``
    over ``total_iters`` epochs.

    Args:
        optimizer: the optimizer whose lrs are scheduled.
        start_factor: the factor at epoch 0, in (0, 1] (default 1/3).
        end_factor: the factor from ``total_iters`` on, in [0, 1] (default 1.0).
        total_iters: epochs of the ramp (default 5).
        last_epoch: the last epoch done (``-1`` to start).
    """

    def __init__(self, optimizer: Any, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1) -> None:
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError("Starting multiplicative factor expected to be greater than 0 "
                             "and less or equal to 1.")
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        groups = self.optimizer.param_groups
        if self.last_epoch == 0:
            return [group["lr"] * self.start_factor for group in groups]
        if self._is_initial or self.last_epoch > self.total_iters:
            return group_values(self.optimizer, "lr")
        # the ratio of the factor at this epoch to the factor at the previous one
        span = self.end_factor - self.start_factor
        ratio = 1.0 + span / (self.total_iters * self.start_factor
                              + (self.last_epoch - 1) * span)
        return [group["lr"] * ratio for group in groups]

    def _get_closed_form_lr(self) -> list[Any]:
        return [_schedules.linear_lr(self.last_epoch, base_lr=base_lr,
                                     start_factor=self.start_factor,
                                     end_factor=self.end_factor, total_iters=self.total_iters)
                for base_lr in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Multiplies the lr by ``gamma`` every epoch.

    Args:
        optimizer: the optimizer whose lrs are scheduled.
        gamma: the decay factor.
        last_epoch: the last epoch done (``-1`` to start).
    """

    def __init__(self, optimizer: Any, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        if self._is_initial:
            return group_values(self.optimizer, "lr")
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[Any]:
        return [_schedules.exponential_lr(self.last_epoch, base_lr=base_lr, gamma=self.gamma)
                for base_lr in self.base_lrs]


class PolynomialLR(LRScheduler):
    """Decays the lr polynomially, ``(1 - t/total_iters) ** power``, to 0 at
    ``total_iters``.

    Args:
        optimizer: the optimizer whose lrs are scheduled.
        total_iters: epochs of the decay (default 5).
        power: the power of the polynomial (default 1.0).
        last_epoch: the last epoch done (``-1`` to start).
    """

    def __init__(self, optimizer: Any, total_iters: int = 5, power: float = 1.0,
                 last_epoch: int = -1) -> None:
        self.total_iters = total_iters
        self.power = power
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        if self._is_initial or self.last_epoch > self.total_iters:
            return group_values(self.optimizer, "lr")
        now = 1.0 - self.last_epoch / self.total_iters
        before = 1.0 - (self.last_epoch - 1) / self.total_iters
        decay = (now / before) ** self.power
        return [group["lr"] * decay for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[Any]:
        return [_schedules.polynomial_lr(self.last_epoch, base_lr=base_lr,
                                         total_iters=self.total_iters, power=self.power)
                for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Anneals the lr along half a cosine from its initial value to ``eta_min`` over
    ``T_max`` epochs (and back up over the next ``T_max``, as torch's recursion does).

    Args:
        optimizer: the optimizer whose lrs are scheduled.
        T_max: epochs of half a period.
        eta_min: the lowest lr (default 0.0).
        last_epoch: the last epoch done (``-1`` to start).
    """

    def __init__(self, optimizer: Any, T_max: int, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        groups = self.optimizer.param_groups
        e, T, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return group_values(self.optimizer, "lr")
        if self._step_count == 1 and e > 0:
            # the first step of a resumed schedule: the closed form, as torch writes it
            return [eta_min + (base_lr - eta_min) * (1 + math.cos(e * math.pi / T)) / 2
                    for base_lr in self.base_lrs]
        if (e - 1 - T) % (2 * T) == 0:
            # leaving the trough: the ratio below would divide by zero
            return [group["lr"] + (base_lr - eta_min) * (1 - math.cos(math.pi / T)) / 2
                    for base_lr, group in zip(self.base_lrs, groups, strict=True)]
        ratio = (1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T))
        return [ratio * (group["lr"] - eta_min) + eta_min for group in groups]

    def _get_closed_form_lr(self) -> list[Any]:
        return [_schedules.cosine_annealing_lr(self.last_epoch, base_lr=base_lr, T_max=self.T_max,
                                               eta_min=self.eta_min)
                for base_lr in self.base_lrs]


class CosineAnnealingWarmRestarts(LRScheduler):
    """Cosine annealing from the initial lr to ``eta_min``, restarting every period; the
    first period lasts ``T_0`` epochs, each next one ``T_mult`` times longer.

    ``step(epoch)`` takes fractional epochs (for steps within an epoch) and is not
    deprecated here.

    Args:
        optimizer: the optimizer whose lrs are scheduled.
        T_0: epochs of the first period (a positive int).
        T_mult: growth of the period after a restart (an int >= 1, default 1).
        eta_min: the lowest lr (default 0.0).
        last_epoch: the last epoch done (``-1`` to start).
    """

    def __init__(self, optimizer: Any, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        if T_0 <= 0 or not isinstance(T_0, int):
            raise ValueError(f"Expected positive integer T_0, but got {T_0}")
        if T_mult < 1 or not isinstance(T_mult, int):
            raise ValueError(f"Expected integer T_mult >= 1, but got {T_mult}")
        if not isinstance(eta_min, (float, int)):
            raise ValueError(f"Expected float or int eta_min, but got {eta_min} "
                             f"of type {type(eta_min)}")
        self.T_0 = T_0
        self.T_i = T_0
        self.T_mult = T_mult
        self.eta_min = eta_min
        self.T_cur = last_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        return [_schedules.cosine_warm_restarts_lr(self.T_cur, base_lr=base_lr, T_i=self.T_i,
                                                   eta_min=self.eta_min)
                for base_lr in self.base_lrs]

    def step(self, epoch: float | None = None) -> None:
        """Advance one epoch, or go to ``epoch`` (fractional allowed, not deprecated)."""
        if epoch is not None and epoch < 0:
            raise ValueError(f"Expected non-negative epoch, but got {epoch}")
        with unchanged_on_error(self, self.optimizer):
            if epoch is None and self.last_epoch < 0:
                epoch = 0
            if epoch is None:
                epoch = self.last_epoch + 1
                self.T_cur = self.T_cur + 1
                if self.T_cur >= self.T_i:
                    self.T_cur = self.T_cur % self.T_i
                    self.T_i = self.T_i * self.T_mult
            else:
                self.T_cur, T_i = _schedules.warm_restart_position(epoch, T_0=self.T_0,
                                                                   T_mult=self.T_mult)
                if self.T_mult != 1 or epoch < self.T_0:
                    self.T_i = T_i
            self.last_epoch = math.floor(epoch)
            self._get_lr_called_within_step = True
            try:
                values = self.get_lr()
            finally:
                self._get_lr_called_within_step = False
            for group, lr in zip(self.optimizer.param_groups, values, strict=True):
                set_group_value(group, "lr", lr)
            self._last_lr = group_values(self.optimizer, "lr")
