"""Run an optimizer and torch.optim side by side and compare them after every step.

Both start from the same parameters. Without a closure both receive the same gradients
at every step (computed once, from the reference's parameters, and copied to both;
dense, or sparse COO with repeated rows). With a closure each side evaluates the same
objective on its own parameters, as a closure does in training (LBFGS evaluates it many
times per step). After each step every parameter and every state entry is compared
under the tolerance table. With ``resync=True`` the reference's parameters and state are
then copied into the candidate, so that a failure names the step that introduced it
instead of drift.
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
from ..parameter import Parameter, SparseGrad
from ._backends import TestBackend
from ._cases import ArrayArg, OptimCase
from ._tolerances import ErrorMeasure, Tolerance, measure, tolerance_for

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
        """The fields as a plain dict (the JSON report's rows)."""
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


def _real(x: np.ndarray) -> np.ndarray:
    """Complex arrays as (re, im) pairs, in float64: the objective's variables."""
    x = np.asarray(x)
    if np.iscomplexobj(x):
        return np.stack([x.real, x.imag], axis=-1).astype(np.float64)
    return x.astype(np.float64)


def _objective(x: np.ndarray, target: np.ndarray, noise: np.ndarray) -> tuple[float, np.ndarray]:
    """Loss and gradient of ``sum((x - t)^2 + n x / 2 + cos(3x) / 10)`` over the real
    components of ``x``; the gradient comes back in ``x``'s dtype (complex as complex)."""
    xr, tr, nr = _real(x), _real(target), _real(noise)
    loss = float(np.sum((xr - tr) ** 2 + 0.5 * nr * xr + 0.1 * np.cos(3 * xr)))
    g = 2.0 * (xr - tr) + 0.5 * nr - 0.3 * np.sin(3 * xr)
    if np.iscomplexobj(x):
        g = g[..., 0] + 1j * g[..., 1]
    return loss, np.asarray(g, dtype=np.asarray(x).dtype)


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
        shapes: parameter shapes of group 0.
        second_group: parameter shapes of group 1, or ``None`` for a single group.
        group_kwargs: hyper-parameters of group 1 (both sides).
        grads: ``"dense"``, or ``"sparse"`` (COO gradients with repeated rows:
            ``SparseGrad`` for the candidate, a sparse tensor for torch).
        closure: step through ``step(closure)``; each side's closure evaluates the
            objective and its gradient on its own parameters.
        name: the case name reported in the result.
    """

    def __init__(self, make_candidate: Callable[[list[dict]], Any],
                 make_reference: Callable[[list[dict]], Any], *, backend: TestBackend,
                 dtype: str, tolerance: Tolerance | None = None, resync: bool = False,
                 seed: int = 0, shapes: Sequence[tuple[int, ...]] = SHAPES,
                 second_group: Sequence[tuple[int, ...]] | None = SECOND_GROUP_SHAPES,
                 group_kwargs: dict[str, Any] | None = None, grads: str = "dense",
                 closure: bool = False, name: str = "custom") -> None:
        if grads not in ("dense", "sparse"):
            raise ValueError(f"grads must be 'dense' or 'sparse', not {grads!r}")
        self.make_candidate = make_candidate
        self.make_reference = make_reference
        self.backend = backend
        self.dtype = dtype
        self.tol = tolerance or tolerance_for(dtype)
        self.resync = resync
        self.seed = seed
        self.shapes = tuple(tuple(s) for s in shapes)
        self.second_group = None if second_group is None else tuple(tuple(s) for s in second_group)
        self.group_kwargs = dict(group_kwargs or {})
        self.grads = grads
        self.closure = closure
        self.name = name
        self.torch = _torch_module()
        self.error = ErrorMeasure()

    # -- building ---------------------------------------------------------------------

    def _all_shapes(self) -> tuple[tuple[int, ...], ...]:
        return self.shapes + (self.second_group or ())

    def _groups(self, params: list[Any]) -> list[dict[str, Any]]:
        n = len(self.shapes)
        if self.second_group is None:
            return [{"params": params[:n]}]
        return [{"params": params[:n]}, {"params": params[n:], **self.group_kwargs}]

    def _torch_param(self, a: np.ndarray) -> Any:
        return self.torch.from_numpy(np.array(a, copy=True))

    def _new_candidate(self, values: list[np.ndarray]) -> _Side:
        params = [self.backend.param(v) for v in values]
        groups = self._groups(params)
        return _Side([p for g in groups for p in g["params"]], self.make_candidate(groups))

    def _new_reference(self, values: list[np.ndarray]) -> _Side:
        params = [self._torch_param(v) for v in values]
        groups = self._groups(params)
        return _Side([p for g in groups for p in g["params"]], self.make_reference(groups))

    @staticmethod
    def _to_numpy(x: Any) -> np.ndarray:
        """A NumPy copy of a parameter, array or sparse state entry (made dense)."""
        if isinstance(x, Parameter):
            x = x.data
        if isinstance(x, SparseGrad):
            from ..optim._sparse import add_rows, sparse_rows

            be = get_backend(x.values)
            sp = sparse_rows(x, coalesce=False)
            x = add_rows(be.xp.zeros(x.shape, dtype=x.dtype, device=be.device(x.values)),
                         sp, sp.values)
        elif getattr(x, "is_sparse", False):  # a torch sparse tensor
            x = x.to_dense()
        return np.asarray(get_backend(x).to_numpy(x))

    def _set_grad(self, side: _Side, i: int, g: Any) -> None:
        p = side.params[i]
        data = p.data if isinstance(p, Parameter) else p
        be = get_backend(data)
        if g is None:
            p.grad = None
        elif isinstance(g, tuple):  # sparse: (indices, values, shape)
            indices, values, shape = g
            if be.name == "torch":
                torch = self.torch
                p.grad = torch.sparse_coo_tensor(torch.from_numpy(indices), be.convert(values),
                                                 shape, check_invariants=True)
            else:
                p.grad = SparseGrad(be.convert(indices), be.convert(values), shape)
        else:
            p.grad = be.convert(g)

    def _sparse(self, rng: np.random.Generator, dense: np.ndarray) -> tuple:
        """A COO version of ``dense`` on a few rows, with rows repeated (split values)."""
        n = dense.shape[0]
        rows = rng.integers(0, n, size=max(1, (2 * n) // 3))
        rows = np.concatenate([rows, rows[:2]])  # repeated entries must be summed
        weight = np.where(np.arange(len(rows)) < len(rows) - 2, 1.0, 0.5)
        values = dense[rows] * weight.reshape((-1,) + (1,) * (dense.ndim - 1))
        return rows[None, :].astype(np.int64), np.asarray(values, dtype=dense.dtype), dense.shape

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
        torch = self.torch
        if isinstance(r, torch.Tensor):
            cn, rn = self._to_numpy(c), self._to_numpy(r.detach())
            if cn.dtype != rn.dtype:
                raise ConformanceError(step, f"{what} has dtype {cn.dtype}, torch has {rn.dtype}")
            if key == "step":  # a counter: exactly equal
                if float(cn) != float(rn):
                    raise ConformanceError(step, f"{what} is {cn!r}, torch has {rn!r}")
                return
            self._compare_values(cn, rn, what, step)
        elif isinstance(r, (list, tuple)):  # e.g. LBFGS's history of directions
            if not isinstance(c, (list, tuple)) or len(c) != len(r):
                raise ConformanceError(step, f"{what} is {c!r:.80}, torch has {len(r)} entries")
            for k, (ck, rk) in enumerate(zip(c, r)):
                self._compare_state(ck, rk, None, f"{what}[{k}]", step)
        elif isinstance(r, float) and not isinstance(c, bool):
            self._compare_values(np.asarray(float(c)), np.asarray(r), what, step)
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
        shapes = self._all_shapes()
        values = _rng_arrays(rng, shapes, self.dtype)
        targets = _rng_arrays(rng, shapes, self.dtype, 0.5)
        cand = self._new_candidate(values)
        ref = self._new_reference(values)
        closure = self.closure or scenario == "closure"
        event_step = steps // 2

        for t in range(steps):
            if t == event_step:
                cand = self._event(scenario, cand, ref, rng, targets)
            self._step_both(cand, ref, rng, targets, closure, t)
            self._compare(cand, ref, t)
            if self.resync:
                self._resync(cand, ref)
        return steps

    def _step_both(self, cand: _Side, ref: _Side, rng: np.random.Generator,
                   targets: list[np.ndarray], closure: bool, t: int) -> float:
        """Step both sides on the same gradients (or through closures); return the
        reference's loss before the step."""
        skipped = {i for (s, i) in SKIPPED_GRADS if s == t}
        if closure:
            noise = _rng_arrays(rng, [np.shape(v) for v in targets], self.dtype, 1.0)
            return self._closure_step(cand, ref, targets, noise, skipped, t)
        grads: list[Any] = []
        loss = 0.0
        for i, p in enumerate(ref.params):
            value = self._to_numpy(p)
            noise = _rng_arrays(rng, [value.shape], self.dtype)[0]
            part, g = _objective(value, targets[i], noise)
            loss += part
            if i in skipped:
                g = None
            elif self.grads == "sparse" and g.ndim:
                g = self._sparse(rng, g)
            grads.append(g)
        for side in (cand, ref):
            for i, g in enumerate(grads):
                self._set_grad(side, i, g)
        ref.optimizer.step()
        cand.optimizer.step()
        return loss

    def _closure_step(self, cand: _Side, ref: _Side, targets: list[np.ndarray],
                      noise: list[np.ndarray], skipped: set[int], t: int) -> float:
        def closure_for(side: _Side) -> Callable[[], float]:
            def closure() -> float:
                total = 0.0
                for i, p in enumerate(side.params):
                    loss, grad = _objective(self._to_numpy(p), targets[i], noise[i])
                    total += loss
                    if self.grads == "sparse" and grad.ndim:
                        # the same rows on both sides: a generator seeded by step and param
                        grad = self._sparse(np.random.default_rng((self.seed, t, i)), grad)
                    self._set_grad(side, i, None if i in skipped else grad)
                return total
            return closure

        loss_ref = ref.optimizer.step(closure_for(ref))
        loss_cand = cand.optimizer.step(closure_for(cand))
        if not np.isclose(loss_cand, loss_ref, rtol=self.tol.rtol * 10, atol=self.tol.atol):
            raise ConformanceError(t, f"step(closure) returned {loss_cand}, torch {loss_ref}")
        return float(loss_ref)

    def _reload_reference(self, ref: _Side) -> None:
        """Pass the reference through its own state_dict, as the candidate is: torch's
        load casts some state (NAdam's ``mu_product``, ASGD's ``eta``) to the parameter's
        dtype, so the comparison after a reload is with torch after the same reload.
        (A deep copy, since torch's load would alias the tensors it is given.)"""
        ref.optimizer.load_state_dict(copy.deepcopy(ref.optimizer.state_dict()))

    def _event(self, scenario: str, cand: _Side, ref: _Side, rng: np.random.Generator,
               targets: list[np.ndarray]) -> _Side:
        """The mid-run event of a scenario; returns the candidate to continue with."""
        if scenario in ("roundtrip", "to-torch", "from-torch"):
            cand = self._round_trip(scenario, cand, ref)
            self._reload_reference(ref)
            return cand
        if scenario == "add-group":
            shape = self.shapes[0]  # a shape every algorithm of the case accepts
            (value,) = _rng_arrays(rng, [shape], self.dtype)
            targets.append(np.asarray(value * 0.5, dtype=targets[0].dtype))
            pc, pr = self.backend.param(value), self._torch_param(value)
            lr = 0.5 * float(ref.optimizer.param_groups[0]["lr"])
            cand.optimizer.add_param_group({"params": [pc], "lr": lr})
            ref.optimizer.add_param_group({"params": [pr], "lr": lr})
            cand.params.append(pc)
            ref.params.append(pr)
        return cand

    def _round_trip(self, scenario: str, cand: _Side, ref: _Side) -> _Side:
        """A fresh optimizer that continues from a state_dict, per the scenario."""
        if scenario == "roundtrip":
            fresh = self._new_candidate([self._to_numpy(p) for p in cand.params])
            fresh.optimizer.load_state_dict(cand.optimizer.state_dict())
            return fresh
        if scenario == "to-torch":
            from ..checkpoint import to_torch

            fresh = self._new_reference([self._to_numpy(p) for p in cand.params])
            fresh.optimizer.load_state_dict(to_torch(cand.optimizer.state_dict()))
            return fresh
        fresh = self._new_candidate([self._to_numpy(p) for p in cand.params])
        fresh.optimizer.load_state_dict(ref.optimizer.state_dict())  # from-torch
        return fresh

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
        self._reload_reference(ref)


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
                     tolerance=tolerance_for(dtype, case.name),
                     shapes=case.shapes or SHAPES,
                     second_group=None if case.single_group else
                     (case.second_group or SECOND_GROUP_SHAPES),
                     group_kwargs={"lr": group_lr}, grads=case.grads,
                     closure=case.closure, name=case.id)
    return cmp.run(case.steps, scenario=case.scenario)
