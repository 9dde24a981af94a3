"""Run the whole case table (case x backend x dtype) and write reports of it."""

from __future__ import annotations

import json
import platform
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ._backends import TestBackend
from ._cases import OptimCase
from ._migration import MigrationCase, run_migration_case
from ._runner import CaseResult, run_case
from ._schedulers import SchedulerCase, run_scheduler_case
from ._swa import SwaCase, run_swa_case
from ._tolerances import OPTIMIZER_TOLERANCES, TOLERANCES
from .cases import MIGRATION_CASES, OPTIM_CASES, SCHEDULER_CASES, SWA_CASES

Case = OptimCase | SchedulerCase | SwaCase | MigrationCase


def select_cases(names: Iterable[str] | None = None,
                 scenarios: Iterable[str] | None = None,
                 cases: list[Case] | None = None) -> list[Case]:
    """The cases of the table (optimizers, schedulers, swa_utils, then the migrations)
    that match the filters: class names compare case-insensitively."""
    wanted = {o.lower() for o in names} if names else None
    scen = set(scenarios) if scenarios else None
    if cases is None:
        cases = OPTIM_CASES + SCHEDULER_CASES + SWA_CASES + MIGRATION_CASES
    return [c for c in cases
            if (wanted is None or c.name.lower() in wanted)
            and (scen is None or c.scenario in scen)]


def _scheduler_names() -> set[str]:
    return {c.name for c in SCHEDULER_CASES}


def plan_matrix(cases: list[Case], backends: list[TestBackend],
                dtypes: Iterable[str] | None = None) -> list[tuple[Case, TestBackend, str]]:
    """Every (case, backend, dtype) to run, in order: the dtype filter applied, and the
    combinations a case rules out itself (a case for torch only, NumPy to NumPy
    migration) left out."""
    dtype_filter = set(dtypes) if dtypes else None
    jobs = []
    for case in cases:
        for backend in backends:
            only = getattr(case, "backends", None)
            if only is not None and backend.value not in only:
                continue
            if isinstance(case, MigrationCase) and case.skip_reason(backend) is not None:
                continue
            for dtype in case.run_dtypes():
                if dtype_filter is None or dtype in dtype_filter:
                    jobs.append((case, backend, dtype))
    return jobs


def run_matrix(cases: list[Case], backends: list[TestBackend], dtypes: Iterable[str] | None,
               *, resync: bool = False,
               on_result: Callable[[CaseResult], None] | None = None) -> list[CaseResult]:
    """Run every case on every backend and dtype (see :func:`plan_matrix`); skipped
    combinations are left out of the results."""
    return run_jobs(plan_matrix(cases, backends, dtypes), resync=resync, on_result=on_result)


def run_jobs(jobs: list[tuple[Case, TestBackend, str]], *, resync: bool = False,
             on_result: Callable[[CaseResult], None] | None = None) -> list[CaseResult]:
    """Run planned (case, backend, dtype) jobs in order, calling ``on_result`` after each
    (with the skipped ones too, so that a progress count reaches the total)."""
    results = []
    # some cases make NaN on purpose (RMSprop with alpha > 1, as torch accepts it):
    # NumPy would warn where torch is silent; and torch's own sparse Adagrad asks for
    # its invariant checks to be set explicitly
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly")
        for case, backend, dtype in jobs:
            result = _run_one(case, backend, dtype, resync)
            if not result.skipped:
                results.append(result)
            if on_result is not None:
                on_result(result)
    return results


def _run_one(case: Case, backend: TestBackend, dtype: str, resync: bool) -> CaseResult:
    if isinstance(case, SchedulerCase):
        return run_scheduler_case(case, backend, dtype)
    if isinstance(case, SwaCase):
        return run_swa_case(case, backend, dtype)
    if isinstance(case, MigrationCase):
        return run_migration_case(case, backend, dtype)
    return run_case(case, backend, dtype, resync=resync)


def summarize(results: list[CaseResult]) -> dict[str, Any]:
    """Counts and worst errors per dtype: under the standard table, and apart for each
    optimizer that has an entry of its own in ``OPTIMIZER_TOLERANCES`` and for the
    swa_utils cases (whose tolerances live in ``_swa.py``)."""
    worst: dict[str, dict[str, float | None]] = {}
    own: dict[str, dict[str, float]] = {}
    swa_names = {c.name for c in SWA_CASES}
    for r in results:
        name = r.case.split("-", 1)[0]
        if r.dtype in OPTIMIZER_TOLERANCES.get(name, {}) or name in swa_names:
            entry = own.setdefault(name, {})
            entry[r.dtype] = max(entry.get(r.dtype, 0.0), r.rel)
            continue
        w = worst.setdefault(r.dtype, {"rel": 0.0, "ulp": None})
        w["rel"] = max(w["rel"], r.rel)
        if r.ulp is not None:
            w["ulp"] = max(w["ulp"] or 0.0, r.ulp)
    failed = [r for r in results if not r.passed]
    names = {r.case.split("-", 1)[0] for r in results}
    schedulers = _scheduler_names()
    swa = {c.name for c in SWA_CASES}
    return {"total": len(results), "passed": len(results) - len(failed),
            "failed": len(failed), "worst": worst, "worst_own_entries": own,
            "optimizers": sorted(names - schedulers - swa),
            "schedulers": sorted(names & schedulers),
            "swa_utils": sorted(names & swa),
            "backends": sorted({r.backend for r in results})}


def format_row(r: CaseResult) -> str:
    status = "pass" if r.passed else "FAIL"
    ulp = "" if r.ulp is None else f"{r.ulp:6.1f} ulp"
    line = (f"{status}  {r.case:<36} {r.backend:<17} {r.dtype:<10} {r.steps:>3} steps  "
            f"rel {r.rel:8.2e} {ulp:>10}  {r.seconds:5.2f}s")
    return line if r.passed else f"{line}\n      {r.message}"


def format_summary(summary: dict[str, Any]) -> str:
    worst = ", ".join(
        f"{dt} {w['rel']:.2e}" + ("" if w["ulp"] is None else f" ({w['ulp']:.0f} ulp)")
        for dt, w in sorted(summary["worst"].items())
    )
    text = (f"{summary['passed']}/{summary['total']} passed, {summary['failed']} failed "
            f"({len(summary['optimizers'])} optimizers, {len(summary['schedulers'])} schedulers"
            + (", swa_utils" if summary.get("swa_utils") else "")
            + f" on {', '.join(summary['backends'])}); "
            f"worst relative error: {worst or 'n/a'}")
    own = summary["worst_own_entries"]
    if own:
        text += "; with tolerance entries of their own: " + "; ".join(
            f"{name} " + ", ".join(f"{dt} {v:.2e}" for dt, v in sorted(errs.items()))
            for name, errs in sorted(own.items()))
    return text


def _environment() -> dict[str, str]:
    import numpy

    import portopt

    env = {"portopt": portopt.__version__, "numpy": numpy.__version__,
           "python": platform.python_version(), "machine": platform.machine()}
    try:
        import torch

        env["torch"] = torch.__version__
    except ImportError:
        pass
    return env


def to_json(results: list[CaseResult]) -> str:
    return json.dumps({"environment": _environment(), "summary": summarize(results),
                       "tolerances": {k: vars(v) for k, v in TOLERANCES.items()},
                       "optimizer_tolerances": {
                           name: {dt: vars(t) for dt, t in entries.items()}
                           for name, entries in OPTIMIZER_TOLERANCES.items()},
                       "results": [r.as_dict() for r in results]}, indent=2)


def to_markdown(results: list[CaseResult]) -> str:
    env = _environment()
    lines = [
        "# portopt conformance report",
        "",
        "Against torch.optim " + env.get("torch", "(torch missing)") + ", CPU, single-tensor path; "
        + ", ".join(f"{k} {v}" for k, v in env.items() if k != "torch") + ".",
        "",
        format_summary(summarize(results)),
        "",
        "| result | case | backend | dtype | steps | worst rel. error | worst ULP |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for r in results:
        ulp = "" if r.ulp is None else f"{r.ulp:.1f}"
        lines.append(f"| {'pass' if r.passed else '**FAIL**'} | {r.case} | {r.backend} | "
                     f"{r.dtype} | {r.steps} | {r.rel:.2e} | {ulp} |")
    failures = [r for r in results if not r.passed]
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- {r.case} on {r.backend} {r.dtype}: {r.message}" for r in failures]
    return "\n".join(lines) + "\n"


def to_html(results: list[CaseResult]) -> str:
    """A self-contained HTML page: the environment, the summary, the failures first,
    then every row."""
    from html import escape

    env = _environment()
    failures = [r for r in results if not r.passed]
    rows = []
    for r in failures + [r for r in results if r.passed]:
        ulp = "" if r.ulp is None else f"{r.ulp:.1f}"
        status = "pass" if r.passed else "FAIL"
        message = f"<br><small>{escape(r.message)}</small>" if r.message else ""
        rows.append(
            f'<tr class="{status.lower()}"><td>{status}</td><td>{escape(r.case)}{message}'
            f"</td><td>{escape(r.backend)}</td><td>{escape(r.dtype)}</td>"
            f'<td class="n">{r.steps}</td><td class="n">{r.rel:.2e}</td>'
            f'<td class="n">{ulp}</td><td class="n">{r.seconds:.2f}</td></tr>')
    against = "torch.optim " + env.get("torch", "(torch missing)")
    others = ", ".join(f"{escape(k)} {escape(v)}" for k, v in env.items() if k != "torch")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>portopt conformance report</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}"
        "td.n{text-align:right;font-variant-numeric:tabular-nums}"
        "tr.fail{background:#fdd}tr.pass td:first-child{color:#070}</style>",
        "</head><body>",
        "<h1>portopt conformance report</h1>",
        f"<p>Against {escape(against)}, CPU, single-tensor path; {others}.</p>",
        f"<p><strong>{escape(format_summary(summarize(results)))}</strong></p>",
        "<table><thead><tr><th>result</th><th>case</th><th>backend</th><th>dtype</th>"
        "<th>steps</th><th>worst rel. error</th><th>worst ULP</th><th>seconds</th></tr>"
        "</thead><tbody>",
        *rows,
        "</tbody></table></body></html>",
        "",
    ])
