"""Constructor and step-time checks that several optimizers share, with torch's messages."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat

from ..backends import get_backend


def is_array(x: Any) -> bool:
    """Whether ``x`` is an array of any library (a 0-d array lr counts)."""
    return array_api_compat.is_array_api_obj(x)


def check_one_element(x: Any, what: str = "lr") -> None:
    """torch accepts 1-element tensors as scalars (``lr``, ``betas``); portopt accepts a
    1-element array of any backend."""
    if is_array(x) and math.prod(x.shape) != 1:
        raise ValueError(f"Tensor {what} must be 1-element")


def to_scalar(x: Any) -> Any:
    """A 1-element array becomes 0-d (torch's ``_to_scalar``); other values pass through."""
    if is_array(x) and len(x.shape) != 0:
        return array_api_compat.array_namespace(x).reshape(x, ())
    return x


def requires_grad(x: Any) -> bool:
    """Whether ``x`` is a torch tensor that autograd tracks."""
    return bool(getattr(x, "requires_grad", False))


def hyper(value: Any, like: Any, differentiable: bool) -> Any:
    """A group's hyper-parameter as a kernel takes it.

    A 1-element array becomes 0-d; an array of another library (set by hand, say)
    becomes one of ``like``'s, keeping its dtype; outside differentiable mode a tensor
    that requires grad is read detached, as torch reads it there (as a plain number).
    """
    value = to_scalar(value)
    if is_array(value) and type(get_backend(value)) is not type(get_backend(like)):
        value = get_backend(like).convert(value)
    if not differentiable and requires_grad(value):
        value = value.detach()
    return value


def _one_or_many(x: Any) -> Any:
    """A 1-element array as 0-d, so that it compares as a number on every backend (strict
    arrays refuse ``bool()`` above 0-d); a bigger array stays as it is and meets its
    library's truth test, as a bigger tensor beta does in torch."""
    return to_scalar(x) if is_array(x) and math.prod(x.shape) == 1 else x


def check_adam_family(lr: Any, eps: Any, betas: Any, weight_decay: Any) -> None:
    """The checks torch's Adam, Adamax, NAdam and RAdam make, in its order and words."""
    check_one_element(lr, "lr")
    if not 0.0 <= to_scalar(lr):
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= _one_or_many(betas[0]) < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= _one_or_many(betas[1]) < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


def check_number_arguments(group: dict[str, Any]) -> None:
    """torch's TypeError, in NAdam's and RAdam's differentiable mode, for a
    hyper-parameter that requires grad where torch passes it to an op as a Python number
    (``alpha=``, ``value=``)."""
    weight_decay = group["weight_decay"]
    if (requires_grad(weight_decay) and weight_decay != 0
            and not group["decoupled_weight_decay"]):
        raise TypeError("add(): argument 'alpha' must be Number, not Tensor")
    if requires_grad(group["betas"][1]):
        raise TypeError("addcmul_(): argument 'value' must be Number, not Tensor")


def check_fused_flags(fused: Any, foreach: Any, differentiable: Any) -> None:
    """The two errors torch raises after construction when ``fused=True``."""
    if fused:
        if differentiable:
            raise RuntimeError("`fused` does not support `differentiable`")
        if foreach:
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")


def check_fused_available(name: str, group: dict[str, Any], backend: Any) -> None:
    """Raise at step time when ``fused=True`` asks for a kernel the backend lacks."""
    if group.get("fused") and backend.fused(name.lower()) is None:
        raise RuntimeError(
            f"`fused=True` requires a fused {name} kernel for {backend.name} arrays and "
            "portopt has none; leave `fused` unset (or False) to use the reference kernel"
        )


# torch's list of devices on which `capturable=True` may run (its private
# `_get_capturable_supported_devices()`, with the default privateuse1 name).
CAPTURABLE_DEVICES = ["cuda", "xpu", "hpu", "privateuseone", "xla"]


def device_type(x: Any) -> str | None:
    """The kind of device an array lives on (``"cpu"``, ``"cuda"``), where it says."""
    return getattr(getattr(x, "device", None), "type", None)


def check_capturable_devices(group: dict[str, Any], work: list[Any],
                             scalars: Callable[[Any], Sequence[Any]], *,
                             names: str = "params and state_steps", xla: bool = True) -> None:
    """torch's assertion that a capturable group's parameters and their state scalars
    (``step``; NAdam's ``mu_product``; ASGD's ``eta`` and ``mu``) share one device of a
    kind that can be captured in a graph.

    Args:
        scalars: the state scalars torch checks for one item of ``work``.
        names: how torch's message names the checked arrays.
        xla: whether this optimizer's device list has XLA (Adadelta's and the foreach
            paths' do not).
    """
    if not group.get("capturable"):
        return
    devices = [d for d in CAPTURABLE_DEVICES if xla or d != "xla"]
    for item in work:
        kind = device_type(item.data)
        if kind not in devices or any(device_type(s) != kind for s in scalars(item)):
            raise AssertionError(
                f"If capturable=True, {names} must be on supported devices: {devices}."
            )
