"""Migration cases: every optimizer, with one of three schedulers (and SGD with SWALR),
moved mid-run between torch.optim and portopt (both ways) and from NumPy to another
backend."""

from __future__ import annotations

from typing import Any

from .._cases import OptimCase
from .._migration import DIRECTIONS, MigrationCase

#: Three schedules with state worth moving: OneCycleLR also cycles momentum or beta1,
#: CosineAnnealingWarmRestarts keeps its place in the cycle, ReduceLROnPlateau its best
#: loss and patience counters (a threshold this strict makes it reduce often).
ONE_CYCLE = ("OneCycleLR", {"max_lr": 0.05, "total_steps": 20})
RESTARTS = ("CosineAnnealingWarmRestarts", {"T_0": 4, "T_mult": 2, "eta_min": 1e-4})
PLATEAU = ("ReduceLROnPlateau", {"patience": 0, "factor": 0.5, "threshold": 0.3})
#: And swa_utils' scheduler, annealing towards the averaging lr.
SWA = ("SWALR", {"swa_lr": 0.02, "anneal_epochs": 8})

#: (optimizer configuration, schedule): state in every optimizer, every flag that adds some.
RUNS: list[tuple[OptimCase, tuple[str, dict[str, Any]]]] = [
    (OptimCase("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}, "nesterov"), ONE_CYCLE),
    (OptimCase("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.1}, "dampening"), SWA),
    (OptimCase("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01}, "amsgrad"),
     ONE_CYCLE),
    (OptimCase("AdamW", {"lr": 0.01}, "default"), RESTARTS),
    (OptimCase("Adadelta", {"lr": 0.5, "weight_decay": 0.01}, "decay"), PLATEAU),
    (OptimCase("Adagrad", {"lr": 0.1, "lr_decay": 0.01}, "lr-decay"), RESTARTS),
    (OptimCase("Adamax", {"lr": 0.02}, "default"), ONE_CYCLE),
    (OptimCase("ASGD", {"lr": 0.05, "t0": 3}, "averaging"), PLATEAU),
    (OptimCase("NAdam", {"lr": 0.01, "decoupled_weight_decay": True, "weight_decay": 0.01},
               "decoupled"), ONE_CYCLE),
    (OptimCase("RAdam", {"lr": 0.01}, "default"), RESTARTS),
    (OptimCase("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5}, "centered"),
     ONE_CYCLE),
    (OptimCase("Rprop", {"lr": 0.01}, "default"), PLATEAU),
    (OptimCase("SparseAdam", {"lr": 0.01}, "default", shapes=((6, 3), (5,)), grads="sparse"),
     RESTARTS),
    (OptimCase("Adafactor", {"lr": 0.01}, "default"), PLATEAU),
    (OptimCase("Muon", {"lr": 0.02, "momentum": 0.9}, "default", shapes=((4, 3), (5, 4))),
     ONE_CYCLE),
    (OptimCase("LBFGS", {"lr": 0.5, "max_iter": 4, "history_size": 3}, "default",
               single_group=True, closure=True), PLATEAU),
]


def _cases() -> list[MigrationCase]:
    out = []
    for optim, (scheduler, kwargs) in RUNS:
        plateau = scheduler == "ReduceLROnPlateau"
        for direction in DIRECTIONS:
            out.append(MigrationCase(optim, scheduler, kwargs, direction=direction,
                                     plateau=plateau))
        for direction in ("torch-to-backend", "backend-to-torch"):
            out.append(MigrationCase(optim, scheduler, kwargs, direction=direction,
                                     via="file", plateau=plateau))
    return out


#: Every optimizer in every direction, the state passed as state_dict objects; and
#: between torch and portopt through a checkpoint file (portopt.save / portopt.load).
MIGRATION_CASES: list[MigrationCase] = _cases()
