"""Conformance cases of Adam and AdamW (one algorithm, as in torch)."""

from .._cases import ArrayArg, OptimCase, configs, scenarios

ADAM = {
    "default": {},
    "lr": {"lr": 0.01},
    "amsgrad": {"lr": 0.01, "amsgrad": True},
    "weight-decay": {"lr": 0.01, "weight_decay": 0.1},
    "decoupled": {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
    "maximize": {"lr": 0.01, "maximize": True},
    "betas": {"lr": 0.01, "betas": (0.4, 0.9)},
    "eps": {"lr": 0.01, "eps": 1e-3},
    "array-lr": {"lr": ArrayArg(0.01, "float32")},
    "array-betas": {"lr": 0.01, "betas": (ArrayArg(0.9, "float32"), ArrayArg(0.99, "float64"))},
    "foreach": {"lr": 0.01, "foreach": True},
    "mixed": {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1,
              "amsgrad": True, "maximize": True},
    "mixed-decoupled": {"lr": 0.02, "betas": (0.6, 0.95), "weight_decay": 0.05,
                        "amsgrad": True, "decoupled_weight_decay": True},
}

ADAMW = {
    "default": {},
    "lr": {"lr": 0.01},
    "amsgrad": {"lr": 0.01, "amsgrad": True},
    "maximize": {"lr": 0.01, "maximize": True},
    "weight-decay": {"lr": 0.01, "weight_decay": 0.3},
    "array-lr": {"lr": ArrayArg(0.01, "float64"), "weight_decay": 0.1},
    "mixed": {"lr": 0.02, "betas": (0.7, 0.98), "eps": 1e-5, "weight_decay": 0.2,
              "amsgrad": True, "maximize": True},
}

CASES = [
    *configs("Adam", ADAM),
    *scenarios("Adam", "default", ADAM["default"]),
    *scenarios("Adam", "mixed", ADAM["mixed"]),
    *configs("AdamW", ADAMW),
    *scenarios("AdamW", "mixed", ADAMW["mixed"]),
    OptimCase("Adam", {"lr": 0.01, "amsgrad": True, "differentiable": True},
              "differentiable", backends=("torch",)),
]
