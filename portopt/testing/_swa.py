"""swa_utils conformance: AveragedModel and update_bn against torch.optim.swa_utils.

The reference is torch's AveragedModel over a torch ``nn.Sequential`` (Linear,
BatchNorm1d, ReLU, Linear). The candidate is portopt's AveragedModel over the same torch
module (torch backend) or over its mirror in the protocol models of
:mod:`portopt.testing._models` (every other backend). Between updates both models get
the same new weights and a training-mode forward pass that moves their batch-norm
statistics; the candidate's statistics are then set to the reference's (the forward
passes are not what is under test, and their reductions differ in the last bits), and
both averaged models are updated. After every update the runner compares every
averaged parameter and buffer, ``n_averaged``, and any exception; ``update_bn`` cases
then run torch's and portopt's ``update_bn`` on the same loader and compare the
recomputed statistics, the restored momenta and training mode, and the outputs.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._backends import TestBackend
from ._runner import CaseResult, ConformanceError

#: (rtol, atol) for the averages, per dtype: lerp and the division round as in torch,
#: up to torch's fused multiply-add in float64 lerp.
AVERAGE_TOLERANCE = {"float32": (2e-7, 1e-9), "float64": (1e-13, 1e-15)}
#: (rtol, atol) for statistics recomputed by forward passes (update_bn, outputs): the
#: batch reductions run in a different order than torch's kernels.
FORWARD_TOLERANCE = {"float32": (1e-5, 1e-6), "float64": (1e-11, 1e-13)}


@dataclass(frozen=True)
class SwaCase:
    """One configuration of AveragedModel (and, optionally, update_bn after it).

    Attributes:
        desc: short id.
        average: ``"swa"`` (the default rule), ``"swa-fn"``/``"ema-fn"`` (``avg_fn`` from
            the factories), ``"swa-multi"``/``"ema-multi"`` (``multi_avg_fn``),
            ``"custom"`` (a user ``avg_fn``).
        use_buffers: average the buffers too.
        updates: calls of ``update_parameters``.
        update_bn: run ``update_bn`` at the end, with this loader form: ``"tuples"``
            ((x, y) batches) or ``"arrays"``; ``None``: no update_bn.
        decay: the EMA decay.
    """

    desc: str
    average: str = "swa"
    use_buffers: bool = False
    updates: int = 6
    update_bn: str | None = None
    decay: float = 0.9
    dtypes: tuple[str, ...] = ("float32", "float64")

    scenario = "swa"

    @property
    def name(self) -> str:
        return "update_bn" if self.update_bn else "AveragedModel"

    @property
    def kwargs(self) -> dict[str, Any]:
        return {"average": self.average, "use_buffers": self.use_buffers,
                **({"update_bn": self.update_bn} if self.update_bn else {})}

    def run_dtypes(self) -> tuple[str, ...]:
        """The dtypes this case runs in (its ``dtypes``)."""
        return self.dtypes

    @property
    def id(self) -> str:
        return f"{self.name}-{self.desc}"


def _custom_average(avg: Any, cur: Any, n: Any) -> Any:
    return avg * 0.75 + cur * 0.25


def _averaging(swa: Any, case: SwaCase) -> dict[str, Any]:
    """AveragedModel's keyword arguments for ``case`` from one library's swa_utils."""
    kind = case.average
    if kind == "swa":
        return {}
    if kind == "swa-fn":
        return {"avg_fn": swa.get_swa_avg_fn()}
    if kind == "ema-fn":
        return {"avg_fn": swa.get_ema_avg_fn(case.decay)}
    if kind == "swa-multi":
        return {"multi_avg_fn": swa.get_swa_multi_avg_fn()}
    if kind == "ema-multi":
        return {"multi_avg_fn": swa.get_ema_multi_avg_fn(case.decay)}
    if kind == "custom":
        return {"avg_fn": _custom_average}
    raise ValueError(f"unknown average {kind!r}")


def _attempt(fn: Callable[[], Any]) -> BaseException | None:
    try:
        fn()
    except Exception as exc:  # compared with the other side's
        return exc
    return None


def _numpy(x: Any) -> np.ndarray:
    from portopt.backends import get_backend
    from portopt.optim._params import data_of

    x = data_of(x)
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return get_backend(x).to_numpy(x)


def _close(step: int, what: str, cand: Any, ref: Any, tol: tuple[float, float]) -> float:
    c, r = _numpy(cand), _numpy(ref)
    if c.shape != r.shape or c.dtype != r.dtype:
        raise ConformanceError(step, f"{what}: {c.dtype}{c.shape} != torch's {r.dtype}{r.shape}")
    if not np.allclose(c, r, rtol=tol[0], atol=tol[1], equal_nan=True):
        err = np.max(np.abs(c.astype(np.float64) - r) / np.maximum(np.abs(r), tol[1]))
        raise ConformanceError(step, f"{what}: portopt {c.ravel()[:4]} != torch "
                                     f"{r.ravel()[:4]} (rel {err:.2e})")
    if np.issubdtype(r.dtype, np.floating) and r.size:
        return float(np.max(np.abs(c.astype(np.float64) - r) / np.maximum(np.abs(r), 1e-30)))
    return 0.0


def run_swa_case(case: SwaCase, backend: TestBackend, dtype: str, *,
                 seed: int = 0) -> CaseResult:
    """Run one swa_utils case against torch.optim.swa_utils."""
    import torch

    from portopt.optim import swa_utils

    from ._models import mirror_torch_module

    reason = backend.unavailable()
    if reason is not None:
        return CaseResult(case.id, backend.value, dtype, True, 0, 0.0, None, skipped=reason)
    tdtype = getattr(torch, dtype)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ref_model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8),
                                    torch.nn.ReLU(), torch.nn.Linear(8, 3)).to(tdtype)
    if backend is TestBackend.TORCH:
        cand_model = copy.deepcopy(ref_model)
    else:
        cand_model = mirror_torch_module(ref_model, backend.array)

    def batch(n: int = 16) -> np.ndarray:
        return rng.standard_normal((n, 4)).astype(dtype)

    def cand_array(a: np.ndarray) -> Any:
        return torch.from_numpy(a.copy()) if backend is TestBackend.TORCH else backend.array(a)

    worst = 0.0
    step = 0
    began = time.perf_counter()
    avg_tol, fwd_tol = AVERAGE_TOLERANCE[dtype], FORWARD_TOLERANCE[dtype]
    try:
        ref_avg = torch.optim.swa_utils.AveragedModel(
            ref_model, use_buffers=case.use_buffers, **_averaging(torch.optim.swa_utils, case))
        cand_avg = swa_utils.AveragedModel(
            cand_model, use_buffers=case.use_buffers, **_averaging(swa_utils, case))
        for step in range(1, case.updates + 1):
            _new_weights(rng, ref_model, cand_model)
            x = batch()
            ref_model.train()
            cand_model.train()
            with torch.no_grad():
                ref_model(torch.from_numpy(x))
            cand_model(cand_array(x))
            for c, r in zip(cand_model.buffers(), ref_model.buffers()):
                _close(step, "model buffer after forward", c, r, fwd_tol)
                _set(c, r)
            r_err = _attempt(lambda: ref_avg.update_parameters(ref_model))
            c_err = _attempt(lambda: cand_avg.update_parameters(cand_model))
            if (r_err is None) != (c_err is None) or (
                    r_err is not None and (type(r_err) is not type(c_err)
                                           or str(r_err) != str(c_err))):
                raise ConformanceError(step, f"torch: {r_err!r}; portopt: {c_err!r}")
            if r_err is not None:
                break
            worst = max(worst, _compare_averaged(step, cand_avg, ref_avg, avg_tol))
        else:
            if case.update_bn:
                worst = max(worst, _compare_update_bn(case, step, cand_avg, ref_avg, batch,
                                                      cand_array, fwd_tol))
    except ConformanceError as exc:
        return CaseResult(case.id, backend.value, dtype, False, step, worst, None,
                          message=str(exc), failed_step=exc.step,
                          seconds=time.perf_counter() - began)
    return CaseResult(case.id, backend.value, dtype, True, step, worst, None,
                      seconds=time.perf_counter() - began)


def _new_weights(rng: np.random.Generator, ref_model: Any, cand_model: Any) -> None:
    """Give both models the same new parameter values, as a training epoch would."""
    import torch

    for c, r in zip(cand_model.parameters(), ref_model.parameters()):
        new = rng.standard_normal(tuple(r.shape)).astype(str(r.dtype).replace("torch.", ""))
        with torch.no_grad():
            r.copy_(torch.from_numpy(new))
        _set(c, r)


def _set(cand: Any, ref: Any) -> None:
    """Write torch tensor ``ref``'s values into the candidate's array ``cand``."""
    from portopt.backends import get_backend
    from portopt.optim._params import data_of

    arr = data_of(cand)
    if hasattr(arr, "detach"):
        import torch

        with torch.no_grad():
            arr.copy_(ref)
        return
    be = get_backend(arr)
    be.assign(arr, be.from_numpy(ref.detach().numpy().copy()))


def _compare_averaged(step: int, cand: Any, ref: Any, tol: tuple[float, float]) -> float:
    worst = 0.0
    c_params, r_params = list(cand.parameters()), list(ref.parameters())
    if len(c_params) != len(r_params):
        raise ConformanceError(step, f"{len(c_params)} parameters, torch has {len(r_params)}")
    for i, (c, r) in enumerate(zip(c_params, r_params)):
        worst = max(worst, _close(step, f"averaged parameter {i}", c, r, tol))
    c_bufs, r_bufs = list(cand.buffers()), list(ref.buffers())
    if len(c_bufs) != len(r_bufs):
        raise ConformanceError(step, f"{len(c_bufs)} buffers, torch has {len(r_bufs)}")
    for i, (c, r) in enumerate(zip(c_bufs, r_bufs)):
        worst = max(worst, _close(step, f"averaged buffer {i}", c, r, tol))
    if int(cand.n_averaged) != int(ref.n_averaged):
        raise ConformanceError(step, f"n_averaged {int(cand.n_averaged)} != torch's "
                                     f"{int(ref.n_averaged)}")
    return worst


def _compare_update_bn(case: SwaCase, step: int, cand: Any, ref: Any,
                       batch: Callable[..., np.ndarray], cand_array: Callable[[Any], Any],
                       tol: tuple[float, float]) -> float:
    import torch

    from portopt.optim import swa_utils

    xs = [batch(12) for _ in range(5)]
    if case.update_bn == "tuples":
        ref_loader = [(torch.from_numpy(x), torch.zeros(len(x))) for x in xs]
        cand_loader = [(cand_array(x), None) for x in xs]
    else:
        ref_loader = [torch.from_numpy(x) for x in xs]
        cand_loader = [cand_array(x) for x in xs]
    ref.eval()
    cand.eval()
    torch.optim.swa_utils.update_bn(ref_loader, ref)
    swa_utils.update_bn(cand_loader, cand)
    worst = 0.0
    for i, (c, r) in enumerate(zip(cand.buffers(), ref.buffers())):
        worst = max(worst, _close(step, f"buffer {i} after update_bn", c, r, tol))
    if cand.training or ref.training:
        raise ConformanceError(step, "update_bn did not restore evaluation mode")
    c_moms = [m.momentum for m in cand.modules() if hasattr(m, "running_mean")]
    r_moms = [m.momentum for m in ref.modules() if hasattr(m, "running_mean")]
    if c_moms != r_moms:
        raise ConformanceError(step, f"momenta {c_moms} != torch's {r_moms}")
    x = batch(7)
    with torch.no_grad():
        r_out = ref(torch.from_numpy(x))
    worst = max(worst, _close(step, "output in eval mode", cand(cand_array(x)), r_out, tol))
    return worst
