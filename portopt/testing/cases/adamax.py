"""Conformance cases of Adamax."""

from .._cases import ArrayArg, OptimCase, configs, scenarios

TABLE = {
    "default": {},
    "lr": {"lr": 0.05},
    "betas": {"lr": 0.05, "betas": (0.5, 0.8)},
    "eps": {"lr": 0.05, "eps": 0.5},
    "weight-decay": {"lr": 0.05, "weight_decay": 0.1},
    "maximize": {"lr": 0.05, "maximize": True},
    "array-lr": {"lr": ArrayArg(0.05, "float32")},
    "array-lr-f64": {"lr": ArrayArg(0.03, "float64"), "betas": (0.6, 0.9)},
    "array-betas": {"lr": 0.05, "betas": (ArrayArg(0.7, "float32"), ArrayArg(0.9, "float32"))},
    # a float64 beta promotes a 0-d float32 parameter, as two 0-d tensors do in torch
    "array-betas-f64": {"lr": 0.05, "betas": (ArrayArg(0.7, "float64"), ArrayArg(0.9, "float64"))},
    "foreach": {"lr": 0.05, "foreach": True},
    "mixed": {"lr": 0.04, "betas": (0.7, 0.95), "eps": 0.1, "weight_decay": 0.05,
              "maximize": True},
}

CASES = [
    *configs("Adamax", TABLE),
    *scenarios("Adamax", "default", TABLE["default"]),
    *scenarios("Adamax", "mixed", TABLE["mixed"]),
    # torch autograd through the step (its cat/amax form of the maximum): torch only
    OptimCase("Adamax", {"lr": 0.05, "eps": 0.5, "differentiable": True}, "differentiable",
              backends=("torch",)),
]
