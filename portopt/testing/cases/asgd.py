"""Conformance cases of ASGD.

torch's default ``t0=1e6`` never averages in a short run (``mu`` stays 1, so ``ax`` is
a copy of the parameter); the ``t0`` cases start averaging within the run.
"""

from .._cases import ArrayArg, OptimCase, configs, scenarios

TABLE = {
    "default": {},
    "lr": {"lr": 0.05},
    "lambd": {"lr": 0.05, "lambd": 0.2},
    "alpha": {"lr": 0.05, "lambd": 0.1, "alpha": 0.5},
    "t0": {"lr": 0.05, "t0": 3},
    "t0-fraction": {"lr": 0.05, "t0": 2.5, "lambd": 0.1},
    "weight-decay": {"lr": 0.05, "weight_decay": 0.1},
    "maximize": {"lr": 0.05, "maximize": True},
    "array-lr": {"lr": ArrayArg(0.05, "float32"), "lambd": 0.1, "t0": 4},
    "foreach": {"lr": 0.05, "t0": 3, "foreach": True},
    "mixed": {"lr": 0.04, "lambd": 0.05, "alpha": 0.6, "t0": 4, "weight_decay": 0.05,
              "maximize": True},
}

CASES = [
    *configs("ASGD", TABLE),
    # A float64 lr makes torch compute eta in float64 and round it into the float32 eta;
    # loading a state_dict casts eta to a float64 parameter's dtype, after which torch
    # keeps eta in float64 (tests/test_asgd.py checks that against torch).
    OptimCase("ASGD", {"lr": ArrayArg(0.03, "float64"), "lambd": 0.3, "alpha": 0.9},
              "array-lr-f64"),
    *scenarios("ASGD", "t0", TABLE["t0"]),
    *scenarios("ASGD", "mixed", TABLE["mixed"]),
    # torch autograd through the step: torch tensors only
    OptimCase("ASGD", {"lr": 0.05, "lambd": 0.1, "t0": 3, "differentiable": True},
              "differentiable", backends=("torch",)),
]
