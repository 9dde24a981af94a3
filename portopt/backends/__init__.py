"""Find the backend of an array from its type, without importing any framework.

``get_backend(x)`` looks at ``type(x)`` once and caches the answer. A backend is only
asked whether it owns ``x`` when its library is already in ``sys.modules``: if nobody
imported torch, ``x`` cannot be a tensor, so ``import portopt`` never pulls in torch or
CuPy. Third-party array types join with :func:`register_backend`.
"""

from __future__ import annotations

import sys
from typing import Any

from ._base import Backend
from ._cupy import CupyBackend
from ._numpy import NumpyBackend
from ._strict import StrictBackend
from ._torch import TorchBackend

__all__ = ["Backend", "get_backend", "register_backend", "registered_backends"]

# Ordered: the first backend that owns an array type wins. Registered backends go in
# front, so a third party can claim a subclass of a built-in array type.
_REGISTRY: list[type[Backend]] = [NumpyBackend, CupyBackend, TorchBackend, StrictBackend]
_by_type: dict[type, Backend] = {}


def get_backend(x: Any) -> Backend:
    """The :class:`Backend` of array ``x``.

    Raises:
        TypeError: no registered backend owns arrays of ``type(x)``.
    """
    t = type(x)
    try:
        return _by_type[t]
    except KeyError:
        pass
    for cls in _REGISTRY:
        # Never import a framework to answer: if it is not loaded, x is not its array.
        if cls.module_name in sys.modules and cls.owns(x):
            backend = _by_type[t] = cls(x)
            return backend
    raise TypeError(
        f"portopt has no backend for arrays of type {t.__module__}.{t.__qualname__}; "
        "supported are NumPy, CuPy, torch and array-api-strict arrays, and any type "
        "added with portopt.backends.register_backend()"
    )


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Add a :class:`Backend` subclass for a third-party array type.

    It takes precedence over the built-in backends. Usable as a class decorator.

    Example:
        >>> from portopt.backends import Backend, register_backend
        >>> @register_backend
        ... class MyBackend(Backend):
        ...     name = "mylib"
        ...     module_name = "mylib"
        ...     @classmethod
        ...     def owns(cls, x):
        ...         return isinstance(x, sys.modules["mylib"].Array)
    """
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"register_backend expects a Backend subclass, got {cls!r}")
    if not cls.name or not cls.module_name:
        raise ValueError(f"{cls.__qualname__} must set both `name` and `module_name`")
    if cls in _REGISTRY:
        _REGISTRY.remove(cls)
    _REGISTRY.insert(0, cls)
    _by_type.clear()  # an array type may now belong to the new backend
    return cls


def registered_backends() -> tuple[type[Backend], ...]:
    """The registered backend classes, in the order they are asked."""
    return tuple(_REGISTRY)
