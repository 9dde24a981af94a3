"""Conformance cases of Adadelta."""

from .._cases import ArrayArg, OptimCase, configs, scenarios

TABLE = {
    "default": {},
    "lr": {"lr": 0.5},
    "rho": {"rho": 0.5},
    "rho-zero": {"rho": 0.0},
    "rho-one": {"rho": 1.0},
    "eps": {"eps": 1e-3},
    "weight-decay": {"weight_decay": 0.1},
    "maximize": {"maximize": True},
    "array-lr": {"lr": ArrayArg(0.5, "float32")},
    "array-lr-f64": {"lr": ArrayArg(0.25, "float64"), "rho": 0.8},
    "foreach": {"foreach": True},
    "mixed": {"lr": 0.7, "rho": 0.75, "eps": 1e-4, "weight_decay": 0.05, "maximize": True},
}

CASES = [
    *configs("Adadelta", TABLE),
    *scenarios("Adadelta", "default", TABLE["default"]),
    *scenarios("Adadelta", "mixed", TABLE["mixed"]),
    # torch autograd through the step: torch tensors only
    OptimCase("Adadelta", {"rho": 0.8, "weight_decay": 0.1, "differentiable": True},
              "differentiable", backends=("torch",)),
]
