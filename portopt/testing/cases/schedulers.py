"""Conformance cases of the 15 LR schedulers and SWALR.

Each scheduler has at least three configurations, plus the scenarios that exercise
its paths: ``step(epoch)`` where torch has a closed form, a hand edit of the lr, a
resume through state_dicts, 0-d array lrs. Some configurations make torch raise at a
step (OneCycleLR past its end, ConstantLR with ``factor=0``); portopt must raise the
same exception with the same message there.
"""

from __future__ import annotations

from typing import Any

from .._schedulers import Fresh, SchedulerCase
from .._schedulers import Sched as S

# -- user functions (plain functions: a state_dict keeps None for them) ----------------


def decay95(epoch: int) -> float:
    return 0.95**epoch


def thirds(epoch: int) -> float:
    return epoch // 3 + 1


def keep98(epoch: int) -> float:
    return 0.98


def alternate(epoch: int) -> float:
    return 1.1 if epoch % 2 else 0.8


def halving(cycle: float) -> float:
    return 0.5 ** (cycle - 1)


def slow_decay(iteration: float) -> float:
    return 1 / (1 + 0.05 * iteration)


class Warmup:
    """A callable object: its ``__dict__`` is what LambdaLR's state_dict keeps."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def __call__(self, epoch: int) -> float:
        return min(1.0, (epoch + 1) / self.steps)


class Shrink:
    """A callable object for MultiplicativeLR and CyclicLR's ``scale_fn``."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def __call__(self, x: float) -> float:
        return self.rate


def _warmup(steps: int) -> Fresh:
    return Fresh(lambda: Warmup(steps), f"Warmup({steps})")


def _shrink(rate: float) -> Fresh:
    return Fresh(lambda: Shrink(rate), f"Shrink({rate})")


# -- the table -----------------------------------------------------------------------------

# scenarios with torch's deprecated step(epoch): jumps, repeats and going back
_EPOCHS = (1, 2, 2, 5, 3, None, None, 9, 10, 10, 4, None, 12, 15, 20, 21, 7, None, 30, 31)
# a loss that improves, plateaus, improves a little and plateaus again
_LOSS = (1.0, 0.9, 0.85, 0.85, 0.86, 0.849, 0.85, 0.851, 0.7, 0.7, 0.69995, 0.7, 0.71, 0.72,
         0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.49, 0.49, 0.49, 0.49, 0.49)
_ACCURACY = (0.1, 0.3, 0.5, 0.5, 0.49, 0.5, 0.6, 0.6, 0.6, 0.6, 0.61, 0.6, 0.65, 0.65, 0.65,
             0.65, 0.65, 0.7, 0.7, 0.7)
_NAN = (1.0, float("nan"), float("nan"), float("nan"), 0.5, float("nan"), 0.4, 0.4, 0.4, 0.4)


def _cases(name: str, configs: dict[str, dict[str, Any]], **fields: Any) -> list[SchedulerCase]:
    return [SchedulerCase(name, kwargs, desc, **fields) for desc, kwargs in configs.items()]


def _scenario(name: str, desc: str, kwargs: dict[str, Any], scenario: str,
              **fields: Any) -> SchedulerCase:
    return SchedulerCase(name, kwargs, desc, scenario=scenario, **fields)


SCHEDULER_CASES: list[SchedulerCase] = [
    # LambdaLR
    *_cases("LambdaLR", {
        "decay": {"lr_lambda": decay95},
        "per-group": {"lr_lambda": [thirds, decay95]},
        "callable-object": {"lr_lambda": _warmup(6)},
    }),
    _scenario("LambdaLR", "callable-object", {"lr_lambda": _warmup(6)}, "resume",
              resume_kwargs={"lr_lambda": _warmup(2)}),
    _scenario("LambdaLR", "decay", {"lr_lambda": decay95}, "hand-edit", edit=(5, 0.3)),
    # MultiplicativeLR
    *_cases("MultiplicativeLR", {
        "constant": {"lr_lambda": keep98},
        "per-group": {"lr_lambda": [keep98, alternate]},
        "callable-object": {"lr_lambda": _shrink(0.9)},
    }),
    _scenario("MultiplicativeLR", "callable-object", {"lr_lambda": _shrink(0.9)}, "resume",
              resume_kwargs={"lr_lambda": _shrink(0.5)}),
    _scenario("MultiplicativeLR", "constant", {"lr_lambda": keep98}, "hand-edit",
              edit=(4, 0.2)),
    # StepLR
    *_cases("StepLR", {
        "size3-gamma0.5": {"step_size": 3, "gamma": 0.5},
        "size7": {"step_size": 7},
        "size1-gamma0.9": {"step_size": 1, "gamma": 0.9},
        "size0": {"step_size": 0},  # torch accepts it and fails at the first step
    }),
    _scenario("StepLR", "size3-gamma0.5", {"step_size": 3, "gamma": 0.5}, "epoch",
              epochs=_EPOCHS, steps=len(_EPOCHS)),
    _scenario("StepLR", "size3-gamma0.5", {"step_size": 3, "gamma": 0.5}, "hand-edit",
              edit=(4, 1.0)),
    _scenario("StepLR", "size3-gamma0.5", {"step_size": 3, "gamma": 0.5}, "resume"),
    _scenario("StepLR", "size3-gamma0.5", {"step_size": 3, "gamma": 0.5}, "array-lr",
              dtypes=("float32", "float64")),
    # MultiStepLR
    *_cases("MultiStepLR", {
        "three": {"milestones": [3, 7, 12], "gamma": 0.5},
        "repeated": {"milestones": [4, 4, 9]},
        "unsorted": {"milestones": [10, 2, 6], "gamma": 0.3},
    }),
    _scenario("MultiStepLR", "repeated", {"milestones": [4, 4, 9]}, "epoch",
              epochs=_EPOCHS, steps=len(_EPOCHS)),
    _scenario("MultiStepLR", "three", {"milestones": [3, 7, 12], "gamma": 0.5}, "resume",
              resume_kwargs={"milestones": [1, 2], "gamma": 0.9}),
    # ConstantLR
    *_cases("ConstantLR", {
        "default": {},
        "half-4": {"factor": 0.5, "total_iters": 4},
        "one": {"factor": 1.0, "total_iters": 3},
        "zero": {"factor": 0.0, "total_iters": 3},  # 1/factor at total_iters: torch raises
    }),
    _scenario("ConstantLR", "half-4", {"factor": 0.5, "total_iters": 4}, "epoch",
              epochs=_EPOCHS, steps=len(_EPOCHS)),
    _scenario("ConstantLR", "half-4", {"factor": 0.5, "total_iters": 4}, "array-lr",
              dtypes=("float32", "float64")),
    # LinearLR
    *_cases("LinearLR", {
        "default": {},
        "warmup-10": {"start_factor": 0.1, "total_iters": 10},
        "decay-8": {"start_factor": 1.0, "end_factor": 0.1, "total_iters": 8},
    }),
    _scenario("LinearLR", "warmup-10", {"start_factor": 0.1, "total_iters": 10}, "epoch",
              epochs=_EPOCHS, steps=len(_EPOCHS)),
    _scenario("LinearLR", "warmup-10", {"start_factor": 0.1, "total_iters": 10}, "hand-edit",
              edit=(5, 0.25)),
    _scenario("LinearLR", "warmup-10", {"start_factor": 0.1, "total_iters": 10}, "array-lr",
              dtypes=("float32", "float64")),
    # ExponentialLR
    *_cases("ExponentialLR", {
        "0.9": {"gamma": 0.9},
        "0.5": {"gamma": 0.5},
        "1.05": {"gamma": 1.05},
    }),
    _scenario("ExponentialLR", "0.9", {"gamma": 0.9}, "epoch", epochs=_EPOCHS,
              steps=len(_EPOCHS)),
    _scenario("ExponentialLR", "0.9", {"gamma": 0.9}, "resume"),
    # PolynomialLR
    *_cases("PolynomialLR", {
        "default": {},
        "square-10": {"total_iters": 10, "power": 2.0},
        "sqrt-12": {"total_iters": 12, "power": 0.5},
    }),
    _scenario("PolynomialLR", "square-10", {"total_iters": 10, "power": 2.0}, "epoch",
              epochs=_EPOCHS, steps=len(_EPOCHS)),
    # CosineAnnealingLR
    *_cases("CosineAnnealingLR", {
        "T10": {"T_max": 10},
        "T7-eta0.01": {"T_max": 7, "eta_min": 0.01},
        "T3-eta0.001": {"T_max": 3, "eta_min": 0.001},
    }, steps=40),
    _scenario("CosineAnnealingLR", "T7-eta0.01", {"T_max": 7, "eta_min": 0.01}, "epoch",
              epochs=_EPOCHS, steps=len(_EPOCHS)),
    _scenario("CosineAnnealingLR", "T10", {"T_max": 10}, "hand-edit", edit=(4, 0.02)),
    _scenario("CosineAnnealingLR", "T10", {"T_max": 10}, "resume"),
    # resumed the old way: a scheduler built at last_epoch=7 takes torch's closed-form branch
    _scenario("CosineAnnealingLR", "T10-last-epoch", {"T_max": 10}, "resume",
              resume_kwargs={"T_max": 10, "last_epoch": 7}),
    _scenario("CosineAnnealingLR", "T7-eta0.01", {"T_max": 7, "eta_min": 0.01}, "array-lr",
              dtypes=("float32", "float64")),
    # SequentialLR
    *_cases("SequentialLR", {
        "warmup-constant-decay": {
            "schedulers": [S("LinearLR", {"start_factor": 0.1, "total_iters": 4}),
                           S("ConstantLR", {"factor": 0.5, "total_iters": 3}),
                           S("ExponentialLR", {"gamma": 0.9})],
            "milestones": [4, 9]},
        "constant-cosine": {
            "schedulers": [S("ConstantLR", {"factor": 0.2, "total_iters": 5}),
                           S("CosineAnnealingLR", {"T_max": 10})],
            "milestones": [5]},
        "step-multistep-poly": {
            "schedulers": [S("StepLR", {"step_size": 2, "gamma": 0.5}),
                           S("MultiStepLR", {"milestones": [2, 4]}),
                           S("PolynomialLR", {"total_iters": 10})],
            "milestones": [6, 12]},
    }),
    _scenario("SequentialLR", "warmup-constant-decay", {
        "schedulers": [S("LinearLR", {"start_factor": 0.1, "total_iters": 4}),
                       S("ConstantLR", {"factor": 0.5, "total_iters": 3}),
                       S("ExponentialLR", {"gamma": 0.9})],
        "milestones": [4, 9]}, "resume", resume_at=6),
    _scenario("SequentialLR", "constant-cosine", {
        "schedulers": [S("ConstantLR", {"factor": 0.2, "total_iters": 5}),
                       S("CosineAnnealingLR", {"T_max": 10})],
        "milestones": [5]}, "hand-edit", edit=(8, 0.3)),
    # ChainedScheduler
    *_cases("ChainedScheduler", {
        "constant-exponential": {
            "schedulers": [S("ConstantLR", {"factor": 0.5, "total_iters": 4}),
                           S("ExponentialLR", {"gamma": 0.9})]},
        "step-linear": {
            "schedulers": [S("StepLR", {"step_size": 3, "gamma": 0.5}),
                           S("LinearLR", {"start_factor": 0.2, "total_iters": 5})]},
        "cosine-multiplicative": {
            "schedulers": [S("CosineAnnealingLR", {"T_max": 10}),
                           S("MultiplicativeLR", {"lr_lambda": keep98})]},
    }),
    _scenario("ChainedScheduler", "constant-exponential", {
        "schedulers": [S("ConstantLR", {"factor": 0.5, "total_iters": 4}),
                       S("ExponentialLR", {"gamma": 0.9})]}, "resume"),
    _scenario("ChainedScheduler", "cosine-multiplicative", {
        "schedulers": [S("CosineAnnealingLR", {"T_max": 10}),
                       S("MultiplicativeLR", {"lr_lambda": keep98})]}, "hand-edit",
              edit=(6, 0.05)),
    # ReduceLROnPlateau
    *_cases("ReduceLROnPlateau", {
        "min-rel": {"patience": 1},
        "min-abs-cooldown": {"patience": 0, "threshold": 0.01, "threshold_mode": "abs",
                             "cooldown": 2, "factor": 0.5},
        "min-lr-per-group": {"patience": 0, "factor": 0.2, "min_lr": [0.01, 0.001]},
        "eps": {"patience": 0, "factor": 0.5, "eps": 0.05},
    }, metrics=_LOSS, steps=len(_LOSS)),
    *_cases("ReduceLROnPlateau", {
        "max-rel": {"mode": "max", "patience": 1, "factor": 0.5},
        "max-abs": {"mode": "max", "patience": 0, "threshold": 0.02, "threshold_mode": "abs"},
    }, metrics=_ACCURACY, steps=len(_ACCURACY)),
    SchedulerCase("ReduceLROnPlateau", {"patience": 0}, "nan", metrics=_NAN, steps=len(_NAN)),
    _scenario("ReduceLROnPlateau", "min-abs-cooldown",
              {"patience": 0, "threshold": 0.01, "threshold_mode": "abs", "cooldown": 2,
               "factor": 0.5}, "resume", metrics=_LOSS, steps=len(_LOSS), resume_at=9),
    _scenario("ReduceLROnPlateau", "min-rel", {"patience": 1}, "array-lr", metrics=_LOSS,
              steps=len(_LOSS), dtypes=("float32", "float64")),
    # CyclicLR
    *_cases("CyclicLR", {
        "triangular": {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 4},
        "triangular2": {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 3,
                        "step_size_down": 5, "mode": "triangular2"},
        "exp-range": {"base_lr": [0.01, 0.02], "max_lr": [0.1, 0.3], "step_size_up": 4,
                      "mode": "exp_range", "gamma": 0.95, "base_momentum": [0.8, 0.85]},
        "scale-fn": {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 3, "scale_fn": halving},
        "scale-fn-iterations": {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 2,
                                "scale_fn": slow_decay, "scale_mode": "iterations",
                                "cycle_momentum": False},
        "size0": {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 0},
    }),
    SchedulerCase("CyclicLR", {"base_lr": 0.001, "max_lr": 0.01, "step_size_up": 5},
                  "adam-beta1", optimizer="Adam", optimizer_kwargs={}),
    _scenario("CyclicLR", "scale-object",
              {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 3, "scale_fn": _shrink(0.7)},
              "resume", resume_kwargs={"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 3,
                                       "scale_fn": _shrink(0.1)}),
    _scenario("CyclicLR", "triangular2", {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 3,
                                          "step_size_down": 5, "mode": "triangular2"},
              "resume"),
    # OneCycleLR
    *_cases("OneCycleLR", {
        "cos-20": {"max_lr": 0.1, "total_steps": 20},
        "linear-three-phase": {"max_lr": [0.1, 0.5], "total_steps": 24,
                               "anneal_strategy": "linear", "three_phase": True},
        "epochs": {"max_lr": 0.2, "epochs": 4, "steps_per_epoch": 6, "pct_start": 0.25,
                   "div_factor": 10.0, "final_div_factor": 100.0},
        "no-momentum": {"max_lr": 0.1, "total_steps": 25, "cycle_momentum": False},
    }, steps=25),  # one more step than the cycle holds: torch raises there
    SchedulerCase("OneCycleLR", {"max_lr": 0.01, "total_steps": 30}, "adam-beta1",
                  optimizer="Adam", optimizer_kwargs={}),
    _scenario("OneCycleLR", "cos-20", {"max_lr": 0.1, "total_steps": 20}, "resume",
              steps=20, resume_at=9),
    _scenario("OneCycleLR", "cos-20", {"max_lr": 0.1, "total_steps": 20}, "array-lr",
              steps=20, dtypes=("float32", "float64")),
    # CosineAnnealingWarmRestarts
    *_cases("CosineAnnealingWarmRestarts", {
        "T5": {"T_0": 5},
        "T3-mult2-eta": {"T_0": 3, "T_mult": 2, "eta_min": 0.01},
        "T2-mult3": {"T_0": 2, "T_mult": 3},
    }, steps=40),
    _scenario("CosineAnnealingWarmRestarts", "T3-mult2-eta",
              {"T_0": 3, "T_mult": 2, "eta_min": 0.01}, "epoch",
              epochs=(0.5, 1.0, 1.5, 2.9, 3.0, 3.2, 8.99, 9.0, 9.5, 21.0, 4.0, None, None, 45.5),
              steps=14),
    _scenario("CosineAnnealingWarmRestarts", "T5", {"T_0": 5}, "epoch",
              epochs=(0.25, 4.5, 5.0, 12.75, 3, None, 17), steps=7),
    _scenario("CosineAnnealingWarmRestarts", "T3-mult2-eta",
              {"T_0": 3, "T_mult": 2, "eta_min": 0.01}, "resume", resume_at=10),
    # SWALR
    *_cases("SWALR", {
        "cos-5": {"swa_lr": 0.05, "anneal_epochs": 5},
        "linear-3": {"swa_lr": [0.01, 0.2], "anneal_epochs": 3, "anneal_strategy": "linear"},
        "no-anneal": {"swa_lr": 0.03, "anneal_epochs": 0},
    }, steps=12),
    _scenario("SWALR", "cos-5", {"swa_lr": 0.05, "anneal_epochs": 5}, "resume", steps=12,
              resume_at=3),
    _scenario("SWALR", "cos-5", {"swa_lr": 0.05, "anneal_epochs": 5}, "hand-edit", steps=12,
              edit=(2, 0.4)),
]
