"""The conformance cases, as data: which optimizer, which arguments, which scenario.

pytest and ``portopt conformance`` multiply each case by backend and dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: What a case runs besides the plain trajectory (see ``_runner.py``).
SCENARIOS = (
    "trajectory",     # step side by side, compare after every step
    "roundtrip",      # mid-run: state_dict into a fresh portopt optimizer, continue
    "to-torch",       # mid-run: portopt's state_dict into a fresh torch optimizer, continue
    "from-torch",     # mid-run: torch's state_dict into a fresh portopt optimizer, continue
    "add-group",      # mid-run: add a param group with a new parameter to both
    "closure",        # every step through step(closure), comparing the returned loss
)


@dataclass(frozen=True)
class ArrayArg:
    """A hyper-parameter given as a 0-d array (torch: a tensor) of ``dtype``.

    The runner builds it in the candidate's backend and as a torch tensor for the
    reference.
    """

    value: float
    dtype: str = "float32"

    def __repr__(self) -> str:
        return f"array({self.value}, {self.dtype})"


@dataclass(frozen=True)
class OptimCase:
    """One configuration of one optimizer, checked against torch.optim.

    Attributes:
        name: the class name, the same in ``portopt.optim`` and ``torch.optim``.
        kwargs: constructor arguments (``ArrayArg`` for array-valued ones).
        desc: short id of the configuration (part of the test id).
        scenario: one of :data:`SCENARIOS`.
        dtypes: the dtypes to run; by default float32 and float64, and complex128
            where the optimizer declares complex support (``_supports_complex``).
        backends: restrict to these backends (``None``: every backend).
        steps: number of steps.
    """

    name: str
    kwargs: Mapping[str, Any]
    desc: str
    scenario: str = "trajectory"
    dtypes: tuple[str, ...] | None = None
    backends: tuple[str, ...] | None = None
    steps: int = 16
    reference_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; expected one of {SCENARIOS}")
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))
        object.__setattr__(self, "reference_kwargs",
                           MappingProxyType(dict(self.reference_kwargs)))

    def run_dtypes(self) -> tuple[str, ...]:
        """The dtypes this case runs in."""
        if self.dtypes is not None:
            return self.dtypes
        import portopt.optim

        complex_ok = getattr(portopt.optim, self.name)._supports_complex
        return ("float32", "float64") + (("complex128",) if complex_ok else ())

    @property
    def id(self) -> str:
        base = f"{self.name}-{self.desc}"
        return base if self.scenario == "trajectory" else f"{base}-{self.scenario}"


def _configs(name: str, table: dict[str, dict[str, Any]]) -> list[OptimCase]:
    return [OptimCase(name, kwargs, desc) for desc, kwargs in table.items()]


def _scenarios(name: str, desc: str, kwargs: dict[str, Any]) -> list[OptimCase]:
    return [OptimCase(name, kwargs, desc, scenario=s) for s in SCENARIOS[1:]]


_SGD = {
    "default": {},
    "lr": {"lr": 0.1},
    "momentum": {"lr": 0.1, "momentum": 0.9},
    "dampening": {"lr": 0.1, "momentum": 0.9, "dampening": 0.3},
    "nesterov": {"lr": 0.1, "momentum": 0.9, "nesterov": True},
    "weight-decay": {"lr": 0.1, "weight_decay": 0.1},
    "maximize": {"lr": 0.1, "maximize": True},
    "array-lr": {"lr": ArrayArg(0.1, "float32")},
    "array-lr-f64": {"lr": ArrayArg(0.05, "float64"), "momentum": 0.5},
    "array-weight-decay": {"lr": 0.1, "weight_decay": ArrayArg(0.05, "float32")},
    "foreach": {"lr": 0.1, "momentum": 0.9, "foreach": True},
    "mixed": {"lr": 0.05, "momentum": 0.8, "dampening": 0.1, "weight_decay": 0.01,
              "maximize": True},
}

_ADAM = {
    "default": {},
    "lr": {"lr": 0.01},
    "amsgrad": {"lr": 0.01, "amsgrad": True},
    "weight-decay": {"lr": 0.01, "weight_decay": 0.1},
    "decoupled": {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
    "maximize": {"lr": 0.01, "maximize": True},
    "betas": {"lr": 0.01, "betas": (0.4, 0.9)},
    "eps": {"lr": 0.01, "eps": 1e-3},
    "array-lr": {"lr": ArrayArg(0.01, "float32")},
    "array-betas": {"lr": 0.01, "betas": (ArrayArg(0.9, "float32"), ArrayArg(0.99, "float64"))},
    "foreach": {"lr": 0.01, "foreach": False},
    "mixed": {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1,
              "amsgrad": True, "maximize": True},
    "mixed-decoupled": {"lr": 0.02, "betas": (0.6, 0.95), "weight_decay": 0.05,
                        "amsgrad": True, "decoupled_weight_decay": True},
}

_ADAMW = {
    "default": {},
    "lr": {"lr": 0.01},
    "amsgrad": {"lr": 0.01, "amsgrad": True},
    "maximize": {"lr": 0.01, "maximize": True},
    "weight-decay": {"lr": 0.01, "weight_decay": 0.3},
    "array-lr": {"lr": ArrayArg(0.01, "float64"), "weight_decay": 0.1},
    "mixed": {"lr": 0.02, "betas": (0.7, 0.98), "eps": 1e-5, "weight_decay": 0.2,
              "amsgrad": True, "maximize": True},
}

OPTIM_CASES: list[OptimCase] = [
    *_configs("SGD", _SGD),
    *_scenarios("SGD", "momentum", _SGD["momentum"]),
    *_scenarios("SGD", "mixed", _SGD["mixed"]),
    *_configs("Adam", _ADAM),
    *_scenarios("Adam", "default", _ADAM["default"]),
    *_scenarios("Adam", "mixed", _ADAM["mixed"]),
    *_configs("AdamW", _ADAMW),
    *_scenarios("AdamW", "mixed", _ADAMW["mixed"]),
    # torch autograd through the step: torch tensors only
    OptimCase("SGD", {"lr": 0.1, "momentum": 0.9, "differentiable": True}, "differentiable",
              backends=("torch",)),
    OptimCase("Adam", {"lr": 0.01, "amsgrad": True, "differentiable": True},
              "differentiable", backends=("torch",)),
]
