"""Migration cases: a run moves between frameworks mid-way and must carry on as if it
had not moved.

torch.optim is the oracle and runs the whole trajectory unbroken, except that at the move
it passes through its own state_dict (torch's load casts some state, such as ASGD's
``eta``, to the parameter's dtype, so "torch carrying on" means torch resumed). The run
under test starts in one framework, trains ``moved_at`` steps there, and then its
parameters, optimizer state_dict and scheduler state_dict move to a fresh optimizer and
scheduler in another framework, which carries on. After every step, before and after the
move, the parameters, every state entry and the schedule's lrs are compared with torch's
under the tolerance table.

Directions: ``torch-to-backend`` starts as a second torch.optim run and moves to portopt
on the backend (resuming a torch run in NumPy); ``backend-to-torch`` starts in portopt and
moves to torch.optim (resuming back in torch); ``numpy-to-backend`` moves a portopt run
from NumPy to another backend (CuPy, torch). The state moves either as state_dict objects
(``via="state_dict"``: portopt loads torch's dicts as they are, :func:`portopt.to_torch`
makes torch's) or through a checkpoint file written by :func:`portopt.save` and read back
by :func:`portopt.load` on the target's backend (``via="file"``).
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ._backends import TestBackend
from ._cases import OptimCase
from ._runner import (
    SECOND_GROUP_SHAPES,
    SHAPES,
    CaseResult,
    Comparison,
    ConformanceError,
    _materialize,
    _reference_kwargs,
    _rng_arrays,
    _Side,
)
from ._schedulers import REL_TOL
from ._tolerances import tolerance_for

#: Who a run starts in and who it moves to. ``backend`` is the pytest/CLI backend.
DIRECTIONS = (
    "torch-to-backend",    # torch.optim's state resumed by portopt on the backend
    "backend-to-torch",    # portopt's state on the backend resumed by torch.optim
    "numpy-to-backend",    # portopt on NumPy resumed by portopt on the backend (CuPy...)
)
VIAS = ("state_dict", "file")


@dataclass(frozen=True)
class MigrationCase:
    """One optimizer and scheduler moved between frameworks mid-run.

    Attributes:
        optim: the optimizer configuration (an :class:`OptimCase`: name, arguments,
            shapes, sparse gradients, closure).
        scheduler: the scheduler's class name in ``lr_scheduler`` (or ``swa_utils``).
        scheduler_kwargs: its arguments besides the optimizer.
        direction: one of :data:`DIRECTIONS`.
        via: one of :data:`VIAS`.
        steps: steps in all; ``moved_at``: the step before which the run moves.
        plateau: ``True`` for a scheduler stepped with the loss (ReduceLROnPlateau).
    """

    optim: OptimCase
    scheduler: str
    scheduler_kwargs: Mapping[str, Any] = field(default_factory=dict)
    direction: str = "torch-to-backend"
    via: str = "state_dict"
    steps: int = 12
    moved_at: int = 6
    plateau: bool = False

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {self.direction!r}; expected one of "
                             f"{DIRECTIONS}")
        if self.via not in VIAS:
            raise ValueError(f"unknown via {self.via!r}; expected one of {VIAS}")
        object.__setattr__(self, "scheduler_kwargs",
                           MappingProxyType(dict(self.scheduler_kwargs)))

    #: the scenario name ``portopt conformance --scenario`` selects these cases by
    scenario = "migration"

    @property
    def name(self) -> str:
        """The optimizer's class name (what ``--optimizer`` selects)."""
        return self.optim.name

    @property
    def kwargs(self) -> Mapping[str, Any]:
        return self.optim.kwargs

    def run_dtypes(self) -> tuple[str, ...]:
        """The dtypes this case runs in (float32 and float64)."""
        return ("float32", "float64")

    def skip_reason(self, backend: TestBackend) -> str | None:
        """Why this case does not run on ``backend`` (``None``: it runs)."""
        if self.direction == "numpy-to-backend" and backend is TestBackend.NUMPY:
            return "NumPy to NumPy is the roundtrip scenario, not a migration"
        if self.optim.backends is not None and backend.value not in self.optim.backends:
            return f"{self.optim.name} runs on {self.optim.backends} only"
        return None

    @property
    def id(self) -> str:
        return (f"{self.optim.name}-{self.optim.desc}-{self.scheduler}-{self.direction}"
                + ("-file" if self.via == "file" else ""))


class _Migration(Comparison):
    """The :class:`Comparison` engine with a scheduler on each side and a move mid-run."""

    def __init__(self, case: MigrationCase, backend: TestBackend, dtype: str,
                 seed: int) -> None:
        import portopt.optim as portopt_optim

        torch = self._torch = __import__("torch")
        oc = case.optim
        self.case = case
        self.cand_cls = getattr(portopt_optim, oc.name)
        self.ref_cls = getattr(torch.optim, oc.name)
        self.cand_kwargs = {  # per backend: array arguments live where the params live
            be: {k: _materialize(v, lambda x, dt, be=be: be.array(np.asarray(x, dtype=dt)))
                 for k, v in oc.kwargs.items()}
            for be in {backend, TestBackend.NUMPY}
        }
        ref_kwargs = _reference_kwargs(self.ref_cls, {
            k: _materialize(v, lambda x, dt: torch.tensor(x, dtype=getattr(torch, dt)))
            for k, v in oc.kwargs.items()})
        ref_kwargs.update(oc.reference_kwargs)
        super().__init__(
            lambda groups: self.cand_cls(groups, **self.cand_kwargs[self.backend]),
            lambda groups: self.ref_cls(groups, **ref_kwargs),
            backend=backend, dtype=dtype, seed=seed,
            tolerance=tolerance_for(dtype, oc.name), shapes=oc.shapes or SHAPES,
            second_group=None if oc.single_group else (oc.second_group or SECOND_GROUP_SHAPES),
            group_kwargs={"lr": 0.5 * self._lr()}, grads=oc.grads, closure=oc.closure,
            name=case.id)

    def _lr(self) -> float:
        import inspect

        lr = self.case.optim.kwargs.get(
            "lr", inspect.signature(self.ref_cls.__init__).parameters["lr"].default)
        return float(getattr(lr, "value", lr))

    # -- the two libraries ------------------------------------------------------------

    def _scheduler(self, optimizer: Any, torch_side: bool) -> Any:
        if torch_side:
            lib = (self._torch.optim.lr_scheduler, self._torch.optim.swa_utils)
        else:
            from ..optim import lr_scheduler, swa_utils

            lib = (lr_scheduler, swa_utils)
        name = self.case.scheduler
        cls = getattr(lib[0], name, None) or getattr(lib[1], name)
        return cls(optimizer, **self.case.scheduler_kwargs)

    def _on(self, backend: TestBackend, values: list[np.ndarray]) -> _Side:
        """A portopt optimizer on ``backend`` over copies of ``values``."""
        keep = self.backend
        self.backend = backend
        try:
            return self._new_candidate(values)
        finally:
            self.backend = keep

    # -- the run ----------------------------------------------------------------------

    def _run(self, steps: int, scenario: str) -> int:
        case = self.case
        rng = np.random.default_rng(self.seed)
        shapes = self._all_shapes()
        values = _rng_arrays(rng, shapes, self.dtype)
        targets = _rng_arrays(rng, shapes, self.dtype, 0.5)
        ref = self._new_reference(values)
        ref_sched = self._scheduler(ref.optimizer, torch_side=True)
        if case.direction == "torch-to-backend":
            # the run starts as a second torch.optim run, the twin of the oracle
            cand = self._new_reference(values)
            cand_sched = self._scheduler(cand.optimizer, torch_side=True)
        else:
            start = (self.backend if case.direction == "backend-to-torch"
                     else TestBackend.NUMPY)
            cand = self._on(start, values)
            cand_sched = self._scheduler(cand.optimizer, torch_side=False)
        for t in range(steps):
            if t == case.moved_at:
                cand, cand_sched = self._move(cand, cand_sched)
                # torch's own resume casts some state (ASGD's eta, NAdam's mu_product) to
                # the parameter's dtype: the oracle is torch resumed from its state_dict
                self._reload_reference(ref)
            loss = self._step_both(cand, ref, rng, targets, self.closure, t)
            self._step_schedulers(ref_sched, cand_sched, loss)
            self._compare(cand, ref, t)
            self._compare_schedules(cand_sched, ref_sched, cand, ref, t)
        return steps

    def _step_schedulers(self, ref_sched: Any, cand_sched: Any, loss: float) -> None:
        for sched in (ref_sched, cand_sched):
            if self.case.plateau:
                sched.step(loss)
            else:
                sched.step()

    def _move(self, side: _Side, sched: Any) -> tuple[_Side, Any]:
        """The run's parameters, optimizer and scheduler, rebuilt in the target framework
        from what ``side`` and ``sched`` saved."""
        case = self.case
        to_torch = case.direction == "backend-to-torch"
        saved = {"params": [self._to_numpy(p) for p in side.params],
                 "optimizer": side.optimizer.state_dict(),
                 "scheduler": sched.state_dict()}
        if case.via == "file":
            saved = self._through_file(saved, to_torch)
        elif to_torch:
            from ..checkpoint import to_torch as convert

            saved = convert(saved)
        else:
            # torch's load would alias what it is given; portopt copies, but the oracle
            # must not share anything with the run under test either way
            saved = copy.deepcopy(saved)
        values = [self._to_numpy(p) for p in saved["params"]]
        if to_torch:
            new = self._new_reference(values)
        else:
            new = self._on(self.backend, values)
        new_sched = self._scheduler(new.optimizer, torch_side=to_torch)
        # torch's order for resuming: build both, then load the optimizer, then the schedule
        new.optimizer.load_state_dict(saved["optimizer"])
        new_sched.load_state_dict(saved["scheduler"])
        return new, new_sched

    def _through_file(self, saved: dict[str, Any], to_torch: bool) -> dict[str, Any]:
        from ..checkpoint import load, save

        backend = "torch" if to_torch else self.backend.value
        if backend == "array_api_strict":
            backend = "numpy"  # portopt.load builds NumPy, CuPy or torch arrays
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "run.ckpt"
            save(saved, path)
            return load(path, backend=backend)

    def _compare_schedules(self, cand_sched: Any, ref_sched: Any, cand: _Side, ref: _Side,
                           t: int) -> None:
        c = [float(v) for v in cand_sched.get_last_lr()]
        r = [float(v) for v in ref_sched.get_last_lr()]
        self._close(c, r, "get_last_lr()", t)
        for k, (gc, gr) in enumerate(zip(cand.optimizer.param_groups,
                                         ref.optimizer.param_groups)):
            for key in ("lr", "initial_lr", "momentum", "betas", "max_lr", "min_lr"):
                if key in gr:
                    if key not in gc:
                        raise ConformanceError(t, f"group {k} has no {key!r}; torch's has one")
                    cv = list(gc[key]) if key == "betas" else [gc[key]]
                    rv = list(gr[key]) if key == "betas" else [gr[key]]
                    self._close([float(v) for v in cv], [float(v) for v in rv],
                                f"group {k}[{key!r}]", t)

    def _close(self, c: list[float], r: list[float], what: str, t: int) -> None:
        if len(c) != len(r) or not np.allclose(c, r, rtol=REL_TOL, atol=0.0):
            raise ConformanceError(t, f"{what} is {c}, torch has {r}")


def run_migration_case(case: MigrationCase, backend: TestBackend, dtype: str, *,
                       seed: int = 0) -> CaseResult:
    """Run one migration case with ``backend`` in the case's direction."""
    reason = backend.unavailable() or case.skip_reason(backend)
    if case.direction == "numpy-to-backend" and reason is None:
        reason = TestBackend.NUMPY.unavailable()
    if reason is not None:
        return CaseResult(case.id, backend.value, dtype, True, 0, 0.0, None, skipped=reason)
    began = time.perf_counter()
    run = _Migration(case, backend, dtype, seed)
    result = run.run(case.steps)
    result.seconds = time.perf_counter() - began
    return result
