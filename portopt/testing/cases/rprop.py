"""Conformance cases of Rprop."""

from .._cases import ArrayArg, OptimCase, configs, scenarios

TABLE = {
    "default": {},
    "lr": {"lr": 0.1},
    "etas": {"etas": (0.3, 1.7)},
    "step-sizes": {"lr": 0.05, "step_sizes": (0.02, 0.08)},
    "step-sizes-crossed": {"step_sizes": (1.0, 0.1)},  # min > max: torch's clamp gives max
    "step-size-max-only": {"lr": 0.1, "step_sizes": (None, 0.3)},
    "maximize": {"maximize": True},
    "array-lr": {"lr": ArrayArg(0.01, "float32")},
    "array-lr-f64": {"lr": ArrayArg(0.03, "float64")},
    "array-step-sizes": {"step_sizes": (ArrayArg(1e-3, "float64"), ArrayArg(0.2, "float32"))},
    "foreach": {"foreach": True},
    "mixed": {"lr": 0.03, "etas": (0.35, 1.5), "step_sizes": (1e-3, 0.5), "maximize": True},
}

CASES = [
    *configs("Rprop", TABLE),
    *scenarios("Rprop", "default", TABLE["default"]),
    *scenarios("Rprop", "mixed", TABLE["mixed"]),
    # torch writes array etas by index assignment, which needs the parameter's dtype
    OptimCase("Rprop", {"etas": (ArrayArg(0.4, "float32"), ArrayArg(1.3, "float32"))},
              "array-etas", dtypes=("float32",)),
    OptimCase("Rprop", {"etas": (ArrayArg(0.4, "float64"), ArrayArg(1.3, "float64"))},
              "array-etas-f64", dtypes=("float64", "complex128")),
    # torch autograd through the step: torch tensors only
    OptimCase("Rprop", {"etas": (0.4, 1.3), "differentiable": True}, "differentiable",
              backends=("torch",)),
]
