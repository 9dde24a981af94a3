"""Conformance cases of SGD."""

from .._cases import ArrayArg, OptimCase, configs, scenarios

TABLE = {
    "default": {},
    "lr": {"lr": 0.1},
    "momentum": {"lr": 0.1, "momentum": 0.9},
    "dampening": {"lr": 0.1, "momentum": 0.9, "dampening": 0.3},
    "nesterov": {"lr": 0.1, "momentum": 0.9, "nesterov": True},
    "weight-decay": {"lr": 0.1, "weight_decay": 0.1},
    "maximize": {"lr": 0.1, "maximize": True},
    "array-lr": {"lr": ArrayArg(0.1, "float32")},
    "array-lr-f64": {"lr": ArrayArg(0.05, "float64"), "momentum": 0.5},
    "array-weight-decay": {"lr": 0.1, "weight_decay": ArrayArg(0.05, "float32")},
    "foreach": {"lr": 0.1, "momentum": 0.9, "foreach": True},
    "mixed": {"lr": 0.05, "momentum": 0.8, "dampening": 0.1, "weight_decay": 0.01,
              "maximize": True},
}

#: Sparse gradients (COO with repeated rows): torch's single-tensor path accepts them, but
#: not with weight decay, so none of these decay. Shapes without a 0-d parameter.
SPARSE = {
    "plain": {"lr": 0.1},
    "momentum": {"lr": 0.1, "momentum": 0.9},
    "dampening": {"lr": 0.1, "momentum": 0.9, "dampening": 0.3},
    "nesterov": {"lr": 0.1, "momentum": 0.9, "nesterov": True},
    "maximize": {"lr": 0.1, "momentum": 0.5, "maximize": True},
    "array-lr": {"lr": ArrayArg(0.05, "float32"), "momentum": 0.8},
    "mixed": {"lr": 0.05, "momentum": 0.8, "dampening": 0.1, "maximize": True},
}
SPARSE_FIELDS = {"grads": "sparse", "shapes": ((6, 3), (5,)), "second_group": ((4, 2),)}

CASES = [
    *configs("SGD", TABLE),
    *configs("SGD", {f"sparse-{k}": v for k, v in SPARSE.items()}, **SPARSE_FIELDS),
    *scenarios("SGD", "sparse-momentum", SPARSE["momentum"], **SPARSE_FIELDS),
    *scenarios("SGD", "momentum", TABLE["momentum"]),
    *scenarios("SGD", "mixed", TABLE["mixed"]),
    # torch autograd through the step: torch tensors only
    OptimCase("SGD", {"lr": 0.1, "momentum": 0.9, "differentiable": True}, "differentiable",
              backends=("torch",)),
]
