"""The scheduler shell: ``LRScheduler`` and the helpers every schedule shares.

A scheduler owns no math beyond its ``get_lr``; this module holds what torch's base
class does for all of them: the initial step at construction, ``initial_lr`` and
``base_lrs``, the step counting behind torch's warnings, ``state_dict``, and writing a
new value into a param group so that a 0-d array lr keeps its type and identity.
"""

from __future__ import annotations

import functools
import types
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ._checks import is_array, to_scalar
from ._math import detached_copy
from ._params import write_into
from .optimizer import Optimizer

EPOCH_DEPRECATION_WARNING = (
    "The epoch parameter in `scheduler.step()` was not necessary and is being "
    "deprecated where possible. Please use `scheduler.step()` to step the "
    "scheduler. During the deprecation, if epoch is different from None, the "
    "closed form is used instead of the new chainable form, where available. "
    "Please open an issue if you are unable to replicate your use case: "
    "https://github.com/pytorch/pytorch/issues/new/choose."
)
_HOW_TO = "https://pytorch.org/docs/stable/optim.html#how-to-adjust-learning-rate"
STEP_OVERRIDDEN_WARNING = (
    "Seems like `optimizer.step()` has been overridden after learning rate scheduler "
    "initialization. Please, make sure to call `optimizer.step()` before "
    f"`lr_scheduler.step()`. See more details at {_HOW_TO}"
)
STEP_ORDER_WARNING = (
    "Detected call of `lr_scheduler.step()` before `optimizer.step()`. "
    "In PyTorch 1.1.0 and later, you should call them in the opposite order: "
    "`optimizer.step()` before `lr_scheduler.step()`.  Failure to do this "
    "will result in PyTorch skipping the first value of the learning rate schedule. "
    f"See more details at {_HOW_TO}"
)
GET_LR_WARNING = (
    "To get the last learning rate computed by the scheduler, please use `get_last_lr()`."
)


# -- group values: floats are replaced, arrays are filled in place ---------------------


def _is_live_array(x: Any) -> bool:
    """An array a group value can be written into (a NumPy scalar is immutable, a float)."""
    return is_array(x) and not isinstance(x, np.generic)


def copy_value(x: Any) -> Any:
    """``x``, or a copy of it when it is an array, so no two holders alias one lr."""
    return detached_copy(x) if _is_live_array(x) else x


def group_values(optimizer: Any, key: str) -> list[Any]:
    """``group[key]`` of every param group, arrays copied (a ``KeyError`` if missing)."""
    return [copy_value(group[key]) for group in optimizer.param_groups]


def set_group_value(group: dict[str, Any], key: str, value: Any) -> None:
    """Store ``value`` as ``group[key]``.

    When the group holds an array there (a tensor lr), the array is filled in place, so it
    keeps its type, dtype, device and identity, as torch's ``fill_`` does; any other value
    is replaced.
    """
    current = group[key]
    if _is_live_array(current):
        write_into(current, to_scalar(value))
    else:
        group[key] = value


def format_param(name: str, optimizer: Any, value: Any) -> list[Any]:
    """One value per param group: a list or tuple of the right length, or one value for
    all (arrays copied)."""
    n = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(
                f"{name} must have the same length as optimizer.param_groups. "
                f"{name} has {len(value)} values, param_groups has {n}."
            )
        return [copy_value(v) for v in value]
    return [copy_value(value) for _ in range(n)]


def check_cycles_momentum(optimizer: Any) -> bool:
    """Whether the optimizer's momentum lives in ``betas[0]`` (True) or ``momentum``
    (False); a ``ValueError`` when it has neither, as torch's cycling schedulers say."""
    if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
        raise ValueError(
            "optimizer must support momentum or beta1 with `cycle_momentum` option enabled"
        )
    return "betas" in optimizer.defaults


def set_momentum(group: dict[str, Any], momentum: Any, use_beta1: bool) -> None:
    """Write a cycled momentum: ``betas[0]`` for the Adam family, else ``momentum``."""
    if use_beta1:
        group["betas"] = (momentum, *group["betas"][1:])
    else:
        group["momentum"] = momentum


# -- atomic steps ----------------------------------------------------------------------


def _schedulers_below(scheduler: Any) -> Iterator[Any]:
    yield scheduler
    for child in getattr(scheduler, "_schedulers", ()):
        yield from _schedulers_below(child)


@contextmanager
def unchanged_on_error(scheduler: Any, optimizer: Any) -> Iterator[None]:
    """Undo everything a scheduler call did to its optimizer's groups and to the
    schedulers' attributes when the call raises (torch leaves them half-updated)."""
    groups = [(group, dict(group), {k: copy_value(v) for k, v in group.items()
                                     if _is_live_array(v)})
              for group in optimizer.param_groups]
    attrs = [(s, dict(s.__dict__)) for s in _schedulers_below(scheduler)]
    try:
        yield
    except BaseException:
        for group, saved, arrays in groups:
            for key, value in arrays.items():
                set_group_value(saved, key, value)
            group.clear()
            group.update(saved)
        for s, saved in attrs:
            s.__dict__.clear()
            s.__dict__.update(saved)
        raise


# -- the base class ----------------------------------------------------------------------


def _track_optimizer_steps(optimizer: Any) -> None:
    """Wrap ``optimizer.step`` (once per optimizer) so that it records it ran.

    The wrapper holds the optimizer weakly, so a scheduler and its optimizer never form a
    reference cycle; the attribute names are torch's, for code that looks at them.
    """
    if hasattr(optimizer.step, "_wrapped_by_lr_sched"):
        return
    step = optimizer.step.__func__
    owner = weakref.ref(optimizer)

    @functools.wraps(step)
    def recording_step(*args: Any, **kwargs: Any) -> Any:
        opt = owner()
        opt._opt_called = True
        return step.__get__(opt, type(opt))(*args, **kwargs)

    recording_step._wrapped_by_lr_sched = True  # type: ignore[attr-defined]
    optimizer.step = recording_step


class LRScheduler:
    """Base class of the learning-rate schedulers (torch's ``LRScheduler``).

    A subclass defines :meth:`get_lr`: the lr of every param group after one more step,
    usually from the current ``group["lr"]`` (the chainable form), and optionally
    ``_get_closed_form_lr`` used by the deprecated ``step(epoch)``.

    Args:
        optimizer: the portopt optimizer whose ``param_groups`` lrs are scheduled.
        last_epoch: index of the last epoch done; ``-1`` starts a schedule. Any other
            value resumes one and needs ``initial_lr`` in every param group.

    Construction writes each group's ``initial_lr`` (when missing) and performs the first
    step, which sets the lr of epoch 0, so build schedulers before loading an optimizer's
    state_dict. A group lr that is a 0-d array stays that array: it is written in place.
    A call that raises leaves the optimizer's groups and the scheduler as they were.
    """

    _get_lr_called_within_step: bool = False
    _is_initial: bool = False

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        if last_epoch != -1:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param 'initial_lr' is not specified in param_groups[{i}] when "
                        "resuming scheduler with last_epoch >= 0.\n"
                        "This typically happens when:\n"
                        "1. You're trying to resume training from a checkpoint but haven't "
                        "properly loaded the optimizer state\n"
                        "2. You're using last_epoch >= 0 for a fresh training run "
                        "(not recommended)"
                    )
        self.optimizer = optimizer
        with unchanged_on_error(self, optimizer):
            if last_epoch == -1:
                for group in optimizer.param_groups:
                    group.setdefault("initial_lr", copy_value(group["lr"]))
            self.base_lrs: list[Any] = group_values(optimizer, "initial_lr")
            self.last_epoch = last_epoch
            self._initial_step()
        _track_optimizer_steps(optimizer)

    def _initial_step(self) -> None:
        """Reset the step count and take the step that sets epoch 0's lr."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    # -- the schedule ----------------------------------------------------------------

    def get_lr(self) -> list[Any]:
        """The lr of every param group for the epoch being stepped into (subclasses)."""
        raise NotImplementedError

    def get_last_lr(self) -> list[Any]:
        """The lrs the last step set, one per param group (array lrs as copies)."""
        return self._last_lr

    def _warn_outside_step(self) -> None:
        if not self._get_lr_called_within_step:
            warnings.warn(GET_LR_WARNING, UserWarning, stacklevel=3)

    def step(self, epoch: int | None = None) -> None:
        """Advance one epoch and write the new lrs into the optimizer's param groups.

        Call it after ``optimizer.step()``. ``epoch`` is deprecated, as in torch: it jumps
        to that epoch and uses the closed form where the schedule has one.
        """
        if self._step_count == 1:
            if not hasattr(self.optimizer.step, "_wrapped_by_lr_sched"):
                warnings.warn(STEP_OVERRIDDEN_WARNING, UserWarning, stacklevel=2)
            elif not getattr(self.optimizer, "_opt_called", False):
                warnings.warn(STEP_ORDER_WARNING, UserWarning, stacklevel=2)
        if epoch is not None:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
        with unchanged_on_error(self, self.optimizer):
            self._step_count += 1
            self._update_lr(epoch)

    def _update_lr(self, epoch: int | None = None) -> None:
        self._get_lr_called_within_step = True
        try:
            if epoch is None:
                self.last_epoch += 1
                values = self.get_lr()
            else:
                self.last_epoch = epoch
                closed_form = getattr(self, "_get_closed_form_lr", None)
                values = closed_form() if closed_form is not None else self.get_lr()
        finally:
            self._get_lr_called_within_step = False
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            set_group_value(group, "lr", lr)
        self._last_lr: list[Any] = group_values(self.optimizer, "lr")

    # -- serialization -----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's attributes, all but the optimizer (torch's layout)."""
        return {key: value for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore attributes from :meth:`state_dict` (the caller's dict is not changed)."""
        with unchanged_on_error(self, self.optimizer):
            self.__dict__.update(state_dict)


class _LRScheduler(LRScheduler):
    """torch's old name for :class:`LRScheduler`, kept for code that subclasses it."""


def saved_callables(fns: list[Callable[..., Any]]) -> list[dict[str, Any] | None]:
    """What a state_dict keeps of user functions: ``None`` for a function or lambda (code
    is never saved), a copy of ``__dict__`` for a callable object."""
    return [None if isinstance(fn, types.FunctionType) else fn.__dict__.copy() for fn in fns]
