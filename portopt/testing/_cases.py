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
        reference_kwargs: extra arguments for torch's constructor only.
        shapes: parameter shapes of group 0 (``None``: the runner's standard ones).
        second_group: shapes of group 1 (``None``: the standard one).
        single_group: one param group only (LBFGS).
        grads: ``"dense"`` or ``"sparse"`` gradients.
        closure: step through ``step(closure)`` in every scenario (LBFGS needs it).
    """

    name: str
    kwargs: Mapping[str, Any]
    desc: str
    scenario: str = "trajectory"
    dtypes: tuple[str, ...] | None = None
    backends: tuple[str, ...] | None = None
    steps: int = 16
    reference_kwargs: Mapping[str, Any] = field(default_factory=dict)
    shapes: tuple[tuple[int, ...], ...] | None = None
    second_group: tuple[tuple[int, ...], ...] | None = None
    single_group: bool = False
    grads: str = "dense"
    closure: bool = False

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


def configs(name: str, table: dict[str, dict[str, Any]], **fields: Any) -> list[OptimCase]:
    """One trajectory case per entry of ``{desc: kwargs}``; ``fields`` go to every case."""
    return [OptimCase(name, kwargs, desc, **fields) for desc, kwargs in table.items()]


def scenarios(name: str, desc: str, kwargs: dict[str, Any], *,
              skip: tuple[str, ...] = (), **fields: Any) -> list[OptimCase]:
    """One case per scenario besides the plain trajectory, for one configuration."""
    return [OptimCase(name, kwargs, desc, scenario=s, **fields)
            for s in SCENARIOS[1:] if s not in skip]
