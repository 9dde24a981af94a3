"""Conformance cases of Adagrad (dense and sparse gradients)."""

from .._cases import ArrayArg, OptimCase, configs, scenarios

TABLE = {
    "default": {},
    "lr": {"lr": 0.05},
    "lr-decay": {"lr": 0.1, "lr_decay": 0.05},
    "weight-decay": {"lr": 0.05, "weight_decay": 0.1},
    "initial-accumulator": {"lr": 0.05, "initial_accumulator_value": 0.3},
    "eps": {"lr": 0.05, "eps": 1e-3},
    "maximize": {"lr": 0.05, "maximize": True},
    "array-lr": {"lr": ArrayArg(0.05, "float32")},
    "array-lr-f64": {"lr": ArrayArg(0.05, "float64"), "lr_decay": 0.01},
    "foreach": {"lr": 0.05, "foreach": True},
    "mixed": {"lr": 0.08, "lr_decay": 0.02, "weight_decay": 0.05,
              "initial_accumulator_value": 0.1, "eps": 1e-6, "maximize": True},
}

#: Sparse gradients (COO with repeated rows); torch refuses them with weight decay.
SPARSE = {
    "plain": {"lr": 0.05},
    "lr-decay": {"lr": 0.1, "lr_decay": 0.05},
    "initial-accumulator": {"lr": 0.05, "initial_accumulator_value": 0.3},
    "maximize": {"lr": 0.05, "maximize": True},
    "array-lr": {"lr": ArrayArg(0.05, "float32")},
    "mixed": {"lr": 0.08, "lr_decay": 0.02, "initial_accumulator_value": 0.1, "eps": 1e-6,
              "maximize": True},
}
SPARSE_FIELDS = {"grads": "sparse", "shapes": ((6, 3), (5,)), "second_group": ((4, 2),)}

CASES = [
    *configs("Adagrad", TABLE),
    *scenarios("Adagrad", "default", TABLE["default"]),
    *scenarios("Adagrad", "mixed", TABLE["mixed"]),
    *configs("Adagrad", {f"sparse-{k}": v for k, v in SPARSE.items()}, **SPARSE_FIELDS),
    *scenarios("Adagrad", "sparse-mixed", SPARSE["mixed"], **SPARSE_FIELDS),
    OptimCase("Adagrad", {"lr": 0.05, "lr_decay": 0.01, "differentiable": True},
              "differentiable", backends=("torch",)),
]
