"""The conformance case tables, one module per optimizer file of portopt.optim."""

from __future__ import annotations

from .. import _cases
from . import (
    adadelta,
    adafactor,
    adagrad,
    adam,
    adamax,
    asgd,
    lbfgs,
    migration,
    muon,
    nadam,
    radam,
    rmsprop,
    rprop,
    schedulers,
    sgd,
    sparse_adam,
    swa,
)

_MODULES = (
    sgd,
    adam,
    adadelta,
    adagrad,
    adamax,
    asgd,
    nadam,
    radam,
    rmsprop,
    rprop,
    sparse_adam,
    adafactor,
    muon,
    lbfgs,
)

#: Every optimizer case, in table order.
OPTIM_CASES: list[_cases.OptimCase] = [case for module in _MODULES for case in module.CASES]
#: Every scheduler case (the 15 LR schedulers and SWALR).
SCHEDULER_CASES = schedulers.SCHEDULER_CASES
#: The swa_utils cases (AveragedModel, update_bn).
SWA_CASES = swa.SWA_CASES
#: Runs moved between frameworks mid-way (see ``_migration.py``).
MIGRATION_CASES = migration.MIGRATION_CASES
