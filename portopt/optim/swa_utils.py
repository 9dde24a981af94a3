"""Stochastic Weight Averaging utilities, as ``torch.optim.swa_utils``.

:class:`SWALR` anneals each group's lr to a constant SWA lr.
"""

from __future__ import annotations

from typing import Any, Literal

from . import _schedules
from ._lr_base import LRScheduler, format_param, unchanged_on_error

__all__ = ["SWALR"]


class SWALR(LRScheduler):
    """Anneals each param group's lr to ``swa_lr`` over ``anneal_epochs`` epochs, then
    keeps it there; used for the averaging phase of SWA.

    Like torch it is recursive: each step starts from the lr the group holds, so it takes
    over smoothly from whatever schedule ran before. It counts steps with ``_step_count``.

    Args:
        optimizer: the optimizer whose lrs are scheduled.
        swa_lr: the lr to anneal to, one for all groups or one per group (kept as the
            group key ``swa_lr``).
        anneal_epochs: epochs of the annealing (an int >= 0, default 10).
        anneal_strategy: ``"cos"`` (default) or ``"linear"``.
        last_epoch: the last epoch done (``-1`` to start).
    """

    def __init__(self, optimizer: Any, swa_lr: float, anneal_epochs: int = 10,
                 anneal_strategy: Literal["cos", "linear"] = "cos",
                 last_epoch: int = -1) -> None:
        swa_lrs = format_param("swa_lr", optimizer, swa_lr)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError("anneal_strategy must be one of 'cos' or 'linear', instead got "
                             f"{anneal_strategy}")
        if not isinstance(anneal_epochs, int) or anneal_epochs < 0:
            raise ValueError(f"anneal_epochs must be equal or greater than 0, got {anneal_epochs}")
        self.optimizer = optimizer
        with unchanged_on_error(self, optimizer):
            for value, group in zip(swa_lrs, optimizer.param_groups):
                group["swa_lr"] = value
            self._set_anneal_func(anneal_strategy)
            self.anneal_epochs = anneal_epochs
            super().__init__(optimizer, last_epoch)

    def _set_anneal_func(self, anneal_strategy: str) -> None:
        self._anneal_strategy = anneal_strategy
        self.anneal_func = (_schedules.swa_cos_factor if anneal_strategy == "cos"
                            else _schedules.swa_linear_factor)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        span = max(1, self.anneal_epochs)
        # the lr the annealing started from, recovered from the one the group holds
        prev_alpha = self.anneal_func(max(0, min(1, (step - 1) / span)))
        alpha = self.anneal_func(max(0, min(1, step / span)))
        groups = self.optimizer.param_groups
        starts = [group["swa_lr"] if prev_alpha == 1
                  else (group["lr"] - prev_alpha * group["swa_lr"]) / (1 - prev_alpha)
                  for group in groups]
        return [group["swa_lr"] * alpha + start * (1 - alpha)
                for group, start in zip(groups, starts, strict=True)]

    def state_dict(self) -> dict[str, Any]:
        """The attributes, all but the optimizer and the annealing function."""
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "anneal_func")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the attributes and the annealing function named by the state."""
        self.__dict__.update(state_dict)
        self._set_anneal_func(self._anneal_strategy)
