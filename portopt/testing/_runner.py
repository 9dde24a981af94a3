"""Run an optimizer and torch.optim side by side and compare them after every step.

Both start from the same parameters and receive the same gradients at every step
(computed once, from the reference's parameters, and copied to both). After each step
every parameter and every state entry is compared under the tolerance table. With
``resync=True`` the reference's parameters and state are then copied into the
candidate, so that a failure names the step that introduced it instead of drift.
"""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import get_backend
from ..parameter import Parameter
from ._backends import TestBackend
from ._cases import ArrayArg, OptimCase
from ._tolerances import TOLERANCES, ErrorMeasure, Tolerance, measure

#: Parameter shapes of the standard problem: a matrix, a vector, a 0-d array (torch's
#: tests append one too) in group 0, and a matrix with a lower lr in group 1.
SHAPES: tuple[tuple[int, ...], ...] = ((4, 3), (5,), ())
SECOND_GROUP_SHAPES: tuple[tuple[int, ...], ...] = ((2, 3),)
#: (step, parameter index) pairs whose gradient is None: the step must skip them.
SKIPPED_GRADS = frozenset({(0, 1), (5, 1), (6, 3)})


@dataclass
class CaseResult:
    """The outcome of one case on one backend and dtype."""

    case: str
    backend: str
    dtype: str
    passed: bool
    steps: int
    rel: float
    ulp: float | None
    message: str = ""
    failed_step: int | None = None
    seconds: float = 0.0
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class ConformanceError(AssertionError):
    """A candidate left the reference trajectory at ``step``."""

    def __init__(self, step: int, message: str) -> None:
        super().__init__(f"step {step}: {message}")
        self.step = step


@dataclass
class _Side:
    """One optimizer being stepped: its params (in order) and the optimizer."""

    params: list[Any]
    optimizer: Any


def _rng_arrays(rng: np.random.Generator, shapes: Sequence[tuple[int, ...]],
                dtype: str, scale: float = 1.0) -> list[np.ndarray]:
    out = []
    for shape in shapes:
        a = rng.standard_normal(shape) * scale
        if dtype.startswith("complex"):
            a = a + 1j * rng.standard_normal(shape) * scale
        out.append(np.asarray(a, dtype=dtype))
    return out


def _materialize(value: Any, make: Callable[[float, str], Any]) -> Any:
    if isinstance(value, ArrayArg):
        return make(value.value, value.dtype)
    if isinstance(value, tuple):
        return tuple(_materialize(v, make) for v in value)
    return value


def _torch_module() -> Any:
    import torch

    return torch


def _reference_kwargs(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """torch's arguments for a case: the single-tensor path, and nothing portopt-only."""
    params = inspect.signature(cls.__init__).parameters
    out = {k: v for k, v in kwargs.items() if k in params}
    for flag in ("foreach", "fused"):
        if flag in params:
            out[flag] = False
    return out


def _gradient(rng: np.random.Generator, p: np.ndarray, target: np.ndarray) -> np.ndarray:
    """A realistic gradient: pull towards a target plus noise, in float64, cast down."""
    noise = rng.standard_normal(p.shape)
    if np.iscomplexobj(p):
        noise = noise + 1j * rng.standard_normal(p.shape)
    g = 2.0 * (p.astype(np.complex128 if np.iscomplexobj(p) else np.float64) - target)
    return np.asarray(g + 0.5 * noise, dtype=p.dtype)


class Comparison:
    """Compare a candidate optimizer with a torch.optim reference, step by step.

    This is the engine behind the conformance suite; use it for your own optimizer by
    passing factories:

    Example:
        >>> from portopt.testing import Comparison, TestBackend
        >>> cmp = Comparison(
        ...     lambda groups: MyAdam(groups, lr=1e-2),            # your optimizer
        ...     lambda groups: torch.optim.Adam(groups, lr=1e-2),  # the reference
        ...     backend=TestBackend.NUMPY, dtype="float32")
        >>> result = cmp.run(steps=20)
        >>> result.passed, result.rel

    Args:
        make_candidate: builds the optimizer under test from a list of param-group
            dicts whose ``"params"`` are parameters of ``backend``.
        make_reference: builds the torch optimizer from the same groups of tensors.
        backend: the candidate's backend.
        dtype: ``"float32"``, ``"float64"``, ``"complex64"`` or ``"complex128"``.
        tolerance: overrides the table entry for ``dtype``.
        resync: copy the reference into the candidate after every comparison.
        seed: seed of parameters and gradients.
        group_kwargs: per-group hyper-parameters for group 1 (both sides).
        name: the case name reported in the result.
    """

    def __init__(self, make_candidate: Callable[[list[dict]], Any],
                 make_reference: Callable[[list[dict]], Any], *, backend: TestBackend,
                 dtype: str, tolerance: Tolerance | None = None, resync: bool = False,
                 seed: int = 0, group_kwargs: dict[str, Any] | None = None,
                 name: str = "custom") -> None:
        self.make_candidate = make_candidate
        self.make_reference = make_reference
        self.backend = backend
        self.dtype = dtype
        self.tol = tolerance or TOLERANCES[dtype]
        self.resync = resync
        self.seed = seed
        self.group_kwargs = dict(group_kwargs or {})
        self.name = name
        self.torch = _torch_module()
        self.error = ErrorMeasure()

    # -- building ---------------------------------------------------------------------

    def _groups(self, params: list[Any]) -> list[dict[str, Any]]:
        n = len(SHAPES)
        return [{"params": params[:n]}, {"params": params[n:], **self.group_kwargs}]

    def _torch_param(self, a: np.ndarray) -> Any:
        return self.torch.from_numpy(np.array(a, copy=True))

    def _new_candidate(self, values: list[np.ndarray]) -> _Side:
        params = [self.backend.param(v) for v in values]
        return _Side(params, self.make_candidate(self._groups(params)))

    def _new_reference(self, values: list[np.ndarray]) -> _Side:
        params = [self._torch_param(v) for v in values]
        return _Side(params, self.make_reference(self._groups(params)))

    @staticmethod
    def _to_numpy(x: Any) -> np.ndarray:
        if isinstance(x, Parameter):
            x = x.data
        return np.asarray(get_backend(x).to_numpy(x))

    def _set_grad(self, side: _Side, i: int, g: np.ndarray | None) -> None:
        p = side.params[i]
        if g is None:
            p.grad = None
        elif isinstance(p, Parameter):
            p.grad = get_backend(p.data).convert(g)
        else:
            p.grad = get_backend(p).convert(g)

    # -- comparing --------------------------------------------------------------------

    def _compare(self, cand: _Side, ref: _Side, step: int) -> None:
        for i, (pc, pr) in enumerate(zip(cand.params, ref.params)):
            self._compare_values(self._to_numpy(pc), self._to_numpy(pr), f"param {i}", step)
            sc = cand.optimizer.state.get(pc, {})
            sr = ref.optimizer.state.get(pr, {})
            if set(sc) != set(sr):
                raise ConformanceError(
                    step, f"state keys of param {i} differ: got {sorted(sc)}, "
                    f"torch has {sorted(sr)}"
                )
            for key in sr:
                self._compare_state(sc[key], sr[key], key, f"state[{key!r}] of param {i}", step)

    def _compare_state(self, c: Any, r: Any, key: Any, what: str, step: int) -> None:
        if isinstance(r, self.torch.Tensor):
            cn, rn = self._to_numpy(c), r.detach().cpu().numpy()
            if key == "step":  # a counter: exactly equal, dtype included
                if cn.dtype != rn.dtype or float(cn) != float(rn):
                    raise ConformanceError(step, f"{what} is {cn!r}, torch has {rn!r}")
                return
            self._compare_values(cn, rn, what, step)
        elif r != c:
            raise ConformanceError(step, f"{what} is {c!r}, torch has {r!r}")

    def _compare_values(self, c: np.ndarray, r: np.ndarray, what: str, step: int) -> None:
        if c.shape != r.shape:
            raise ConformanceError(step, f"{what} has shape {c.shape}, torch has {r.shape}")
        err = measure(c, r, self.tol)
        self.error.update(err)
        if err.rel > self.tol.rtol:
            raise ConformanceError(
                step, f"{what} is off by {err.rel:.3g} relative (tolerance {self.tol.rtol:g})"
            )

    # -- running ----------------------------------------------------------------------

    def run(self, steps: int = 16, *, scenario: str = "trajectory") -> CaseResult:
        """Step both sides ``steps`` times and return the worst errors seen."""
        start = time.perf_counter()
        self.error = ErrorMeasure()
        try:
            done = self._run(steps, scenario)
            message, failed, passed = "", None, True
        except ConformanceError as exc:
            message, passed, failed = str(exc), False, exc.step
            done = exc.step + 1
        return CaseResult(
            case=self.name, backend=self.backend.value, dtype=self.dtype, passed=passed,
            steps=done, rel=self.error.rel,
            ulp=self.error.ulp if self.dtype in ("float32", "complex64") else None,
            message=message, failed_step=failed, seconds=time.perf_counter() - start,
        )

    def _run(self, steps: int, scenario: str) -> int:
        rng = np.random.default_rng(self.seed)
        shapes = SHAPES + SECOND_GROUP_SHAPES
        values = _rng_arrays(rng, shapes, self.dtype)
        targets = [t.astype(np.complex128 if t.dtype.kind == "c" else np.float64)
                   for t in _rng_arrays(rng, shapes, self.dtype, 0.5)]
        cand = self._new_candidate(values)
        ref = self._new_reference(values)
        event_step = steps // 2

        for t in range(steps):
            if t == event_step:
                cand = self._event(scenario, cand, ref, rng, targets)
            ref_values = [self._to_numpy(p) for p in ref.params]
            grads = [None if (t, i) in SKIPPED_GRADS else _gradient(rng, v, targets[i])
                     for i, v in enumerate(ref_values)]
            for side in (cand, ref):
                for i, g in enumerate(grads):
                    self._set_grad(side, i, g)
            if scenario == "closure":
                self._closure_step(cand, ref, targets, t)
            else:
                ref.optimizer.step()
                cand.optimizer.step()
            self._compare(cand, ref, t)
            if self.resync:
                self._resync(cand, ref)
        return steps

    def _closure_step(self, cand: _Side, ref: _Side, targets: list[np.ndarray], t: int) -> None:
        def closure_for(side: _Side) -> Callable[[], float]:
            def closure() -> float:
                vals = [self._to_numpy(p) for p in side.params]
                return float(sum(np.sum(np.abs(v - tg) ** 2) for v, tg in zip(vals, targets)))
            return closure

        loss_ref = ref.optimizer.step(closure_for(ref))
        loss_cand = cand.optimizer.step(closure_for(cand))
        if not np.isclose(loss_cand, loss_ref, rtol=self.tol.rtol * 10, atol=self.tol.atol):
            raise ConformanceError(t, f"step(closure) returned {loss_cand}, torch {loss_ref}")

    def _event(self, scenario: str, cand: _Side, ref: _Side, rng: np.random.Generator,
               targets: list[np.ndarray]) -> _Side:
        """The mid-run event of a scenario; returns the candidate to continue with."""
        if scenario == "roundtrip":
            fresh = self._new_candidate([self._to_numpy(p) for p in cand.params])
            fresh.optimizer.load_state_dict(cand.optimizer.state_dict())
            return fresh
        if scenario == "to-torch":
            from ..checkpoint import to_torch

            fresh = self._new_reference([self._to_numpy(p) for p in cand.params])
            fresh.optimizer.load_state_dict(to_torch(cand.optimizer.state_dict()))
            return fresh
        if scenario == "from-torch":
            fresh = self._new_candidate([self._to_numpy(p) for p in cand.params])
            fresh.optimizer.load_state_dict(ref.optimizer.state_dict())
            return fresh
        if scenario == "add-group":
            (value,) = _rng_arrays(rng, [(3, 2)], self.dtype)
            targets.append(np.asarray(value * 0.5, dtype=targets[0].dtype))
            pc, pr = self.backend.param(value), self._torch_param(value)
            lr = 0.5 * float(ref.optimizer.param_groups[0]["lr"])
            cand.optimizer.add_param_group({"params": [pc], "lr": lr})
            ref.optimizer.add_param_group({"params": [pr], "lr": lr})
            cand.params.append(pc)
            ref.params.append(pr)
        return cand

    def _resync(self, cand: _Side, ref: _Side) -> None:
        for pc, pr in zip(cand.params, ref.params):
            value = self._to_numpy(pr)
            if isinstance(pc, Parameter):
                get_backend(pc.data).assign(pc.data, get_backend(pc.data).convert(value))
            else:
                with self.torch.no_grad():
                    pc.copy_(self.torch.from_numpy(np.array(value)))
        # deep copy: torch's load_state_dict would alias the reference's tensors
        cand.optimizer.load_state_dict(copy.deepcopy(ref.optimizer.state_dict()))


def run_case(case: OptimCase, backend: TestBackend, dtype: str, *,
             resync: bool = False, seed: int = 0) -> CaseResult:
    """Run one conformance case of the table against torch.optim."""
    import portopt.optim as portopt_optim

    torch = _torch_module()
    cand_cls = getattr(portopt_optim, case.name)
    ref_cls = getattr(torch.optim, case.name)
    reason = backend.unavailable()
    if reason is not None or (case.backends is not None and backend.value not in case.backends):
        return CaseResult(case.id, backend.value, dtype, True, 0, 0.0, None,
                          skipped=reason or f"{case.name} {case.desc} runs on {case.backends} only")

    def cand_make(value: float, dt: str) -> Any:
        return backend.array(np.asarray(value, dtype=dt))

    def ref_make(value: float, dt: str) -> Any:
        return torch.tensor(value, dtype=getattr(torch, dt))

    cand_kwargs = {k: _materialize(v, cand_make) for k, v in case.kwargs.items()}
    ref_kwargs = _reference_kwargs(ref_cls, {k: _materialize(v, ref_make)
                                             for k, v in case.kwargs.items()})
    ref_kwargs.update(case.reference_kwargs)
    lr = case.kwargs.get("lr", inspect.signature(ref_cls.__init__).parameters["lr"].default)
    group_lr = 0.5 * float(lr.value if isinstance(lr, ArrayArg) else lr)

    cmp = Comparison(lambda groups: cand_cls(groups, **cand_kwargs),
                     lambda groups: ref_cls(groups, **ref_kwargs),
                     backend=backend, dtype=dtype, resync=resync, seed=seed,
                     group_kwargs={"lr": group_lr}, name=case.id)
    return cmp.run(case.steps, scenario=case.scenario)
