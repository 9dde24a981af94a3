"""The optimizers of ``torch.optim``, on any array backend.

Each algorithm lives in the module of the same name as torch's (``adam.py``,
``_adafactor.py``, ...) and is imported the first time it is used; so are the
``lr_scheduler`` and ``swa_utils`` submodules.
"""

from __future__ import annotations

import importlib
from typing import Any

from .optimizer import Optimizer

# class name -> module, as torch.optim lays them out
_ALGORITHMS = {
    "Adadelta": "adadelta",
    "Adafactor": "_adafactor",
    "Adagrad": "adagrad",
    "Adam": "adam",
    "Adamax": "adamax",
    "AdamW": "adamw",
    "ASGD": "asgd",
    "LBFGS": "lbfgs",
    "Muon": "_muon",
    "NAdam": "nadam",
    "RAdam": "radam",
    "RMSprop": "rmsprop",
    "Rprop": "rprop",
    "SGD": "sgd",
    "SparseAdam": "sparse_adam",
}

# submodules reachable as attributes, as torch.optim.lr_scheduler is
_SUBMODULES = ("lr_scheduler", "swa_utils")

__all__ = [*_ALGORITHMS, "Optimizer"]


def __getattr__(name: str) -> Any:
    if name in _ALGORITHMS:
        cls = getattr(importlib.import_module(f".{_ALGORITHMS[name]}", __name__), name)
        globals()[name] = cls
        return cls
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
