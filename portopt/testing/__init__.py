"""The conformance harness: check an optimizer against torch.optim, step by step.

``OPTIM_CASES`` is the case table (one module per optimizer in ``portopt.testing.cases``)
and ``SCHEDULER_CASES`` the schedulers' that the ``conformance/`` suite and ``portopt
conformance`` run; :class:`Comparison` is the engine, usable on your own optimizer.
"""

from ._backends import TestBackend, available_backends
from ._cases import SCENARIOS, ArrayArg, OptimCase
from ._runner import CaseResult, Comparison, ConformanceError, run_case
from ._schedulers import SCHEDULER_SCENARIOS, Fresh, Sched, SchedulerCase, run_scheduler_case
from ._tolerances import TOLERANCES, ErrorMeasure, Tolerance, measure, tolerance_for
from .cases import OPTIM_CASES, SCHEDULER_CASES

__all__ = [
    "OPTIM_CASES", "SCENARIOS", "SCHEDULER_CASES", "SCHEDULER_SCENARIOS", "TOLERANCES",
    "ArrayArg", "CaseResult", "Comparison", "ConformanceError", "ErrorMeasure", "Fresh",
    "OptimCase", "Sched", "SchedulerCase", "TestBackend", "Tolerance", "available_backends",
    "measure", "run_case", "run_scheduler_case", "tolerance_for",
]
