"""The conformance harness: check an optimizer against torch.optim, step by step.

The case tables (``portopt.testing.cases``) that the ``conformance/`` suite and ``portopt
conformance`` run: ``OPTIM_CASES`` (one module per optimizer), ``SCHEDULER_CASES`` and
``SWA_CASES``. :class:`Comparison` is the engine, usable on your own optimizer.
"""

from ._backends import TestBackend, available_backends
from ._cases import SCENARIOS, ArrayArg, OptimCase
from ._migration import DIRECTIONS, MigrationCase, run_migration_case
from ._runner import CaseResult, Comparison, ConformanceError, run_case
from ._schedulers import SCHEDULER_SCENARIOS, Fresh, Sched, SchedulerCase, run_scheduler_case
from ._swa import SwaCase, run_swa_case
from ._tolerances import TOLERANCES, ErrorMeasure, Tolerance, measure, tolerance_for
from .cases import MIGRATION_CASES, OPTIM_CASES, SCHEDULER_CASES, SWA_CASES

__all__ = [
    "DIRECTIONS", "MIGRATION_CASES", "MigrationCase", "OPTIM_CASES", "SCENARIOS",
    "SCHEDULER_CASES", "SCHEDULER_SCENARIOS", "SWA_CASES", "TOLERANCES", "ArrayArg",
    "CaseResult", "Comparison", "ConformanceError", "ErrorMeasure", "Fresh", "OptimCase",
    "Sched", "SchedulerCase", "SwaCase", "TestBackend", "Tolerance", "available_backends",
    "measure", "run_case", "run_migration_case", "run_scheduler_case", "run_swa_case",
    "tolerance_for",
]
