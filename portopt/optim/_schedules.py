"""Every learning-rate curve of ``torch.optim.lr_scheduler`` as a closed-form function.

Each function maps a step (torch's ``last_epoch``) and the schedule's arguments to the
learning rate, using only :mod:`math` and plain arithmetic. They document the curves,
draw the plots and serve the schedulers wherever torch itself evaluates a closed form:
``step(epoch)``, the schedules torch only defines in closed form (LambdaLR,
CosineAnnealingWarmRestarts, CyclicLR, OneCycleLR) and SWALR's annealing factor.

The arithmetic is written in the order torch evaluates it, so a result is the same
float torch computes, bit for bit. ``base_lr`` may also be a 0-d array (a tensor lr):
the expressions are plain ``*``, ``+`` and ``/`` on it, as in torch.

Stepping a scheduler with ``step()`` uses the *recursive* forms in ``lr_scheduler.py``
instead, as torch does: they build the next lr from the current ``group["lr"]``, so they
honour a hand-edited lr and compose under ChainedScheduler. The two forms agree to about
1e-16 relative when nothing else writes the lr, but they are not bit-identical.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from typing import Any

# -- the schedules with a closed form in torch (``_get_closed_form_lr``) ---------------


def step_lr(epoch: int, *, base_lr: Any, step_size: int, gamma: float) -> Any:
    """StepLR: ``base_lr`` times ``gamma`` once every ``step_size`` epochs."""
    return base_lr * gamma ** (epoch // step_size)


def multi_step_lr(epoch: int, *, base_lr: Any, milestones: Iterable[int], gamma: float) -> Any:
    """MultiStepLR: ``base_lr`` times ``gamma`` for each milestone reached (a milestone
    listed twice counts twice)."""
    return base_lr * gamma ** bisect_right(sorted(milestones), epoch)


def constant_lr(epoch: int, *, base_lr: Any, factor: float, total_iters: int) -> Any:
    """ConstantLR: ``base_lr * factor`` until ``total_iters``, then ``base_lr``."""
    return base_lr * (factor + (epoch >= total_iters) * (1 - factor))


def linear_lr(epoch: int, *, base_lr: Any, start_factor: float, end_factor: float,
              total_iters: int) -> Any:
    """LinearLR: the factor moves linearly from ``start_factor`` to ``end_factor`` over
    ``total_iters`` epochs, then stays."""
    span = end_factor - start_factor
    return base_lr * (start_factor + span * min(total_iters, epoch) / total_iters)


def exponential_lr(epoch: int, *, base_lr: Any, gamma: float) -> Any:
    """ExponentialLR: ``base_lr * gamma ** epoch``."""
    return base_lr * gamma ** epoch


def polynomial_lr(epoch: int, *, base_lr: Any, total_iters: int, power: float) -> Any:
    """PolynomialLR: ``base_lr * (1 - t / total_iters) ** power``, with ``t`` capped at
    ``total_iters`` (the lr is then 0)."""
    return base_lr * (1.0 - min(total_iters, epoch) / total_iters) ** power


def cosine_annealing_lr(epoch: float, *, base_lr: Any, T_max: float, eta_min: float) -> Any:
    """CosineAnnealingLR: half a cosine from ``base_lr`` down to ``eta_min`` over ``T_max``
    epochs (and back up over the next ``T_max``: the closed form is periodic)."""
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * epoch / T_max)) / 2


# -- schedules torch defines only in closed form ----------------------------------------


def lambda_lr(epoch: int, *, base_lr: Any, lr_lambda: Any) -> Any:
    """LambdaLR: ``base_lr`` times the user's factor for this epoch."""
    return base_lr * lr_lambda(epoch)


def cosine_warm_restarts_lr(T_cur: float, *, base_lr: Any, T_i: float, eta_min: float) -> Any:
    """CosineAnnealingWarmRestarts within one period: ``T_cur`` epochs into a period of
    ``T_i`` epochs (the scheduler tracks both across restarts)."""
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * T_cur / T_i)) / 2


def warm_restart_position(epoch: float, *, T_0: int, T_mult: int) -> tuple[float, float]:
    """``(T_cur, T_i)`` at a (possibly fractional) ``epoch`` of CosineAnnealingWarmRestarts,
    when periods start at ``T_0`` epochs and grow ``T_mult``-fold after each restart."""
    if epoch < T_0:
        return epoch, T_0
    if T_mult == 1:
        return epoch % T_0, T_0
    # periods so far: T_0 * (1 + T_mult + ... + T_mult**(n-1)) <= epoch
    n = int(math.log(epoch / T_0 * (T_mult - 1) + 1, T_mult))
    return epoch - T_0 * (T_mult**n - 1) / (T_mult - 1), T_0 * T_mult**n


def cyclic_position(epoch: int, *, total_size: float, step_ratio: float) -> tuple[int, float]:
    """``(cycle, height)`` of CyclicLR at ``epoch``: the 1-based cycle number and where the
    lr stands between its base (0) and its peak (1) on the triangle of that cycle."""
    cycle = math.floor(1 + epoch / total_size)
    x = 1.0 + epoch / total_size - cycle
    if x <= step_ratio:
        return cycle, x / step_ratio
    return cycle, (x - 1) / (step_ratio - 1)


def cyclic_lr(height: float, scale: float, *, base_lr: Any, max_lr: Any) -> Any:
    """CyclicLR's lr: ``height`` up the triangle from ``base_lr`` to ``max_lr``, the
    amplitude scaled by ``scale`` (the mode's scale function)."""
    return base_lr + (max_lr - base_lr) * height * scale


def cyclic_momentum(height: float, scale: float, *, base_momentum: float,
                    max_momentum: float) -> float:
    """CyclicLR's momentum, which moves against the lr: ``max_momentum`` at the lr's base."""
    return max_momentum - (max_momentum - base_momentum) * height * scale


def triangular_scale(cycle: float) -> float:
    """CyclicLR ``mode="triangular"``: every cycle at full amplitude."""
    return 1.0


def triangular2_scale(cycle: float) -> float:
    """CyclicLR ``mode="triangular2"``: the amplitude halves each cycle."""
    return 1 / (2.0 ** (cycle - 1))


def exp_range_scale(iteration: float, *, gamma: float) -> float:
    """CyclicLR ``mode="exp_range"``: the amplitude shrinks by ``gamma`` each iteration."""
    return gamma**iteration


def anneal_cos(start: Any, end: Any, pct: float) -> Any:
    """OneCycleLR's cosine annealing from ``start`` to ``end``, ``pct`` of the way."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def anneal_linear(start: Any, end: Any, pct: float) -> Any:
    """OneCycleLR's linear annealing from ``start`` to ``end``, ``pct`` of the way."""
    return (end - start) * pct + start


def swa_cos_factor(t: float) -> float:
    """SWALR's cosine weight of ``swa_lr`` at fraction ``t`` of the annealing."""
    return (1 - math.cos(math.pi * t)) / 2


def swa_linear_factor(t: float) -> float:
    """SWALR's linear weight of ``swa_lr`` at fraction ``t`` of the annealing."""
    return t
