"""Small assertions shared by the unit tests (importable: pytest puts tests/ on the path)."""

from __future__ import annotations

from typing import Any

import pytest


def check_result(out: Any, like: Any) -> None:
    """The result lives in the input's namespace, with its dtype and shape."""
    assert type(out) is type(like)
    assert out.dtype == like.dtype
    assert tuple(out.shape) == tuple(like.shape)


def outcome(fn: Any, *args: Any, **kwargs: Any) -> tuple[type, str] | None:
    """``(exception class, message)`` of a call, or ``None`` when it succeeds."""
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # the class and message are what is compared
        return type(exc), str(exc)
    return None


def raises(exc: type, message: str, fn: Any, *args: Any, **kwargs: Any) -> None:
    """``fn(*args, **kwargs)`` raises ``exc`` with exactly ``message``."""
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert str(info.value) == message, str(info.value)
