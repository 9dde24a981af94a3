"""Schedulers made of schedulers: SequentialLR (one after another) and ChainedScheduler
(all at once). Both are re-exported by :mod:`portopt.optim.lr_scheduler`."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

from ._lr_base import LRScheduler, group_values, set_group_value, unchanged_on_error
from ._lr_plateau import ReduceLROnPlateau


def _check_members(owner: str, optimizer: Any, schedulers: Sequence[Any]) -> None:
    """torch's checks on the schedulers a composite is built from, in its order."""
    for i, scheduler in enumerate(schedulers):
        if not hasattr(scheduler, "optimizer"):
            raise TypeError(f"{owner} at index {i} should have `optimizer` as its attribute.")
        if isinstance(scheduler, ReduceLROnPlateau):
            raise ValueError(
                f"{owner} does not support `ReduceLROnPlateau` scheduler as it requires "
                "additional kwargs to be specified when calling `step`, but got one at index "
                f"{i} in the given schedulers sequence."
            )
        if optimizer != scheduler.optimizer:
            raise ValueError(
                f"{owner} expects all schedulers to belong to the same optimizer, but got "
                f"scheduler {type(scheduler).__name__} at index {i} has "
                f"{scheduler.optimizer}, which is different from {type(optimizer).__name__}."
            )


class _Composite(LRScheduler):
    """A scheduler whose state_dict nests its members' state_dicts under ``_schedulers``."""

    _schedulers: Sequence[Any]

    def state_dict(self) -> dict[str, Any]:
        """Own attributes, with each member's state_dict in ``_schedulers``."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "_schedulers")}
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore own attributes, then each member from its nested state_dict."""
        state = dict(state_dict)
        members = state.pop("_schedulers")
        with unchanged_on_error(self, self.optimizer):
            self.__dict__.update(state)
            for scheduler, saved in zip(self._schedulers, members):
                scheduler.load_state_dict(saved)


class SequentialLR(_Composite):
    """Runs ``schedulers`` one after another, switching at each of the ``milestones``.

    At a milestone the next scheduler starts at its epoch 0 (its closed form where it has
    one); in between, only the active scheduler steps. ``step()`` takes no epoch.

    Args:
        optimizer: the optimizer all ``schedulers`` belong to.
        schedulers: the schedulers, in order (not ReduceLROnPlateau).
        milestones: the epochs at which to switch, one fewer than ``schedulers``.
        last_epoch: the last epoch done (``-1`` to start).
    """

    def __init__(self, optimizer: Any, schedulers: list[Any], milestones: list[int],
                 last_epoch: int = -1) -> None:
        owner = type(self).__name__
        if len(schedulers) < 1:
            raise ValueError(f"{owner} expects at least one scheduler, but got no scheduler.")
        _check_members(owner, optimizer, schedulers)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                "Sequential Schedulers expects number of schedulers provided to be one more "
                "than the number of milestone points, but got number of schedulers "
                f"{len(schedulers)} and the number of milestones to be equal to "
                f"{len(milestones)}"
            )
        self._schedulers = schedulers
        self._milestones = milestones
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        with unchanged_on_error(self, optimizer):
            # undo what building the members did: back to the initial lrs, and every
            # member one epoch back, before the first member takes epoch 0 again
            for group in optimizer.param_groups:
                set_group_value(group, "lr", group["initial_lr"])
            self.recursive_undo()
            first = self._schedulers[bisect_right(self._milestones, 0)]
            first._initial_step()
            self._last_lr = first.get_last_lr()

    def recursive_undo(self, sched: Any = None) -> None:
        """Step every member scheduler (members of nested composites included) one epoch
        back, as torch does when a SequentialLR is built."""
        scheds = self if sched is None else sched
        if hasattr(scheds, "_schedulers"):
            for s in scheds._schedulers:
                self.recursive_undo(s)
        elif hasattr(scheds, "last_epoch"):
            scheds.last_epoch -= 1

    def step(self) -> None:  # type: ignore[override]
        """Advance one epoch: start the next scheduler at a milestone, else step the active
        one."""
        with unchanged_on_error(self, self.optimizer):
            self.last_epoch += 1
            idx = bisect_right(self._milestones, self.last_epoch)
            scheduler = self._schedulers[idx]
            if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
                scheduler._update_lr(0)
            else:
                scheduler.step()
            self._last_lr = scheduler.get_last_lr()


class ChainedScheduler(_Composite):
    """Steps all ``schedulers`` at every step, in order, so their effects compose.

    Args:
        schedulers: the schedulers to chain (not ReduceLROnPlateau), on one optimizer.
        optimizer: that optimizer (default: the first scheduler's).
    """

    def __init__(self, schedulers: Sequence[Any], optimizer: Any = None) -> None:
        owner = type(self).__name__
        if len(schedulers) < 1:
            raise ValueError(
                f"{owner} expects at least one scheduler to be chained, but got no scheduler."
            )
        optimizer = optimizer or schedulers[0].optimizer
        _check_members(owner, optimizer, schedulers)
        self._schedulers = schedulers
        self.optimizer = optimizer
        self._last_lr = group_values(self._schedulers[-1].optimizer, "lr")

    def step(self) -> None:  # type: ignore[override]
        """Step every chained scheduler once."""
        with unchanged_on_error(self, self.optimizer):
            for scheduler in self._schedulers:
                scheduler.step()
            self._last_lr = group_values(self._schedulers[-1].optimizer, "lr")
