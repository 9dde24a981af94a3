"""Conformance cases of RMSprop."""

from .._cases import ArrayArg, OptimCase, configs, scenarios

TABLE = {
    "default": {},
    "lr": {"lr": 0.05},
    "alpha": {"alpha": 0.9},
    "eps": {"eps": 1e-3},
    "weight-decay": {"weight_decay": 0.1},
    "momentum": {"momentum": 0.9},
    "centered": {"centered": True},
    "centered-momentum": {"centered": True, "momentum": 0.5},
    "maximize": {"maximize": True},
    "array-lr": {"lr": ArrayArg(0.01, "float32")},
    "array-lr-f64": {"lr": ArrayArg(0.02, "float64"), "momentum": 0.5},
    "array-alpha": {"alpha": ArrayArg(0.9, "float32"), "centered": True},
    "array-hyper": {"eps": ArrayArg(1e-4, "float64"), "momentum": ArrayArg(0.5, "float32"),
                    "weight_decay": ArrayArg(0.05, "float32")},
    "foreach": {"momentum": 0.9, "centered": True, "foreach": True},
    "alpha-above-one": {"alpha": 1.5},  # accepted by torch; the parameters become NaN
    "mixed": {"lr": 0.02, "alpha": 0.95, "eps": 1e-6, "weight_decay": 0.05, "momentum": 0.7,
              "centered": True, "maximize": True},
}

CASES = [
    *configs("RMSprop", TABLE),
    *scenarios("RMSprop", "centered-momentum", TABLE["centered-momentum"]),
    *scenarios("RMSprop", "mixed", TABLE["mixed"]),
    # torch autograd through the step: torch tensors only
    OptimCase("RMSprop", {"momentum": 0.5, "centered": True, "differentiable": True},
              "differentiable", backends=("torch",)),
]
