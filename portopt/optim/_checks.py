"""Constructor and step-time checks that several optimizers share, with torch's messages."""

from __future__ import annotations

import math
from typing import Any

import array_api_compat


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


def check_capturable_devices(group: dict[str, Any], work: list[Any], steps: list[Any]) -> None:
    """torch's assertion that capturable params and their ``step`` share a graph device."""
    if not group.get("capturable"):
        return
    for item, step in zip(work, steps):
        device = getattr(item.data, "device", None)
        step_device = getattr(step, "device", None)
        kind = getattr(device, "type", None)
        if not (kind in CAPTURABLE_DEVICES and getattr(step_device, "type", None) == kind):
            raise AssertionError(
                "If capturable=True, params and state_steps must be on supported devices: "
                f"{CAPTURABLE_DEVICES}."
            )
