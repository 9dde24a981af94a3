"""Removable hook handles, as ``torch.utils.hooks.RemovableHandle`` behaves."""

from __future__ import annotations

import itertools
import weakref
from collections import OrderedDict
from typing import Any

_ids = itertools.count()


class RemovableHandle:
    """Returned by every ``register_*_hook``; ``remove()`` unregisters the hook.

    Usable as a context manager: the hook is removed on exit.
    """

    def __init__(self, hooks_dict: OrderedDict) -> None:
        self.hooks_dict_ref = weakref.ref(hooks_dict)
        self.id = next(_ids)

    def remove(self) -> None:
        hooks_dict = self.hooks_dict_ref()
        if hooks_dict is not None:
            hooks_dict.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def add_hook(hooks_dict: OrderedDict, hook: Any, prepend: bool = False) -> RemovableHandle:
    """Register ``hook`` in ``hooks_dict`` (first if ``prepend``) and return its handle."""
    handle = RemovableHandle(hooks_dict)
    hooks_dict[handle.id] = hook
    if prepend:
        hooks_dict.move_to_end(handle.id, last=False)
    return handle
