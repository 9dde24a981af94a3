"""Conformance cases of SparseAdam: sparse COO gradients with repeated rows."""

from .._cases import ArrayArg, configs, scenarios

# every parameter has a row dimension for the gradient to be sparse over (a 0-d one
# would get a dense gradient, which SparseAdam refuses)
SPARSE = {"grads": "sparse", "shapes": ((6, 3), (5,)), "second_group": ((4, 2),)}

TABLE = {
    "default": {},
    "lr": {"lr": 0.01},
    "betas": {"lr": 0.01, "betas": (0.5, 0.9)},
    "eps": {"lr": 0.01, "eps": 1e-3},
    "maximize": {"lr": 0.01, "maximize": True},
    "array-lr": {"lr": ArrayArg(0.01, "float32")},
    "array-lr-f64": {"lr": ArrayArg(0.02, "float64"), "betas": (0.8, 0.99)},
    "array-betas": {"lr": 0.01, "betas": (ArrayArg(0.9, "float32"), ArrayArg(0.99, "float64"))},
    "mixed": {"lr": 0.02, "betas": (0.7, 0.95), "eps": 1e-6, "maximize": True},
}

CASES = [
    *configs("SparseAdam", TABLE, **SPARSE),
    *scenarios("SparseAdam", "default", TABLE["default"], **SPARSE),
    *scenarios("SparseAdam", "mixed", TABLE["mixed"], **SPARSE),
]
