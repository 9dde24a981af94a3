"""Conformance cases of Adafactor.

The standard problem has a matrix, a vector and a 0-d parameter in group 0 and a matrix
in group 1, so it runs both the factored (ndim > 1) and the unfactored second moment.
``STACKED`` adds a 3-D parameter (a stack of matrices) and a 16-row matrix, whose norms
and row means sum more than a handful of numbers.
"""

from .._cases import ArrayArg, configs, scenarios

STACKED = ((2, 4, 3), (16, 9), (5,), ())

TABLE = {
    "default": {},
    "lr": {"lr": 0.05},
    # 1/sqrt(t) drops below lr after step 11: the relative step size switches branch
    "lr-capped": {"lr": 0.3},
    "beta2-decay": {"beta2_decay": -0.5},
    "beta2-decay-zero": {"beta2_decay": 0.0},
    "eps": {"eps": (1e-3, 1e-2)},
    # a large eps1 floors the row means and the variance estimate for real
    "eps1-floor": {"eps": (0.3, 1e-3)},
    # eps2 above the parameters' RMS: the step size is eps2 * rho_t
    "eps2-floor": {"eps": (None, 2.0)},
    "d": {"d": 2.0},
    "d-no-clip": {"d": 1e3},
    "weight-decay": {"lr": 0.05, "weight_decay": 0.5},
    "maximize": {"maximize": True},
    "array-lr": {"lr": ArrayArg(0.02, "float32")},
    "array-lr-f64": {"lr": ArrayArg(0.3, "float64"), "weight_decay": 0.2},
    "array-others": {"beta2_decay": ArrayArg(-0.6, "float32"), "d": ArrayArg(1.5, "float32"),
                     "weight_decay": ArrayArg(0.3, "float64"),
                     "eps": (ArrayArg(1e-3, "float32"), ArrayArg(0.5, "float32"))},
    "foreach": {"foreach": True},
    "mixed": {"lr": 0.05, "beta2_decay": -0.6, "eps": (1e-4, 1e-2), "d": 1.5,
              "weight_decay": 0.2, "maximize": True},
}

CASES = [
    *configs("Adafactor", TABLE),
    *configs("Adafactor", {"stacked": TABLE["default"], "stacked-mixed": TABLE["mixed"],
                           "stacked-eps1-floor": TABLE["eps1-floor"]}, shapes=STACKED),
    *scenarios("Adafactor", "default", TABLE["default"]),
    *scenarios("Adafactor", "mixed", TABLE["mixed"]),
    *scenarios("Adafactor", "stacked-mixed", TABLE["mixed"], shapes=STACKED),
]
