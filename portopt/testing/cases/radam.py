"""Conformance cases of RAdam (RAdamW is its decoupled_weight_decay flag, as in torch).

With beta2 = 0.999 or 0.9 the rectified branch starts at step 6, with 0.7 at step 10,
and with beta2 <= 0.6 never (rho_inf <= 5): the cases cover all three.
"""

from .._cases import ArrayArg, OptimCase, configs, scenarios

RADAM = {
    "default": {},
    "lr": {"lr": 0.01},
    "betas": {"lr": 0.01, "betas": (0.5, 0.9)},
    "betas-late": {"lr": 0.01, "betas": (0.8, 0.7)},
    "betas-never": {"lr": 0.01, "betas": (0.9, 0.5)},
    "eps": {"lr": 0.01, "eps": 1e-3},
    "weight-decay": {"lr": 0.01, "weight_decay": 0.1},
    "decoupled": {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
    "maximize": {"lr": 0.01, "maximize": True},
    "array-lr": {"lr": ArrayArg(0.01, "float32")},
    "array-lr64": {"lr": ArrayArg(0.01, "float64"), "weight_decay": 0.1,
                   "decoupled_weight_decay": True},
    "array-betas": {"lr": 0.01, "betas": (ArrayArg(0.8, "float32"), ArrayArg(0.9, "float64"))},
    "array-hyper": {"lr": 0.01, "eps": ArrayArg(1e-4, "float32"),
                    "weight_decay": ArrayArg(0.1, "float64")},
    "foreach": {"lr": 0.01, "foreach": True},
    "mixed": {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1,
              "maximize": True},
    "mixed-decoupled": {"lr": 0.02, "betas": (0.6, 0.7), "weight_decay": 0.05,
                        "decoupled_weight_decay": True},
}

CASES = [
    *configs("RAdam", RADAM),
    *scenarios("RAdam", "default", RADAM["default"]),
    *scenarios("RAdam", "mixed-decoupled", RADAM["mixed-decoupled"]),
    OptimCase("RAdam", {"lr": 0.01, "weight_decay": 0.1, "differentiable": True},
              "differentiable", backends=("torch",)),
    OptimCase("RAdam", {"lr": ArrayArg(0.01, "float64"), "betas": (0.9, 0.7),
                        "maximize": True, "differentiable": True},
              "differentiable-array-lr", backends=("torch",)),
    OptimCase("RAdam", {"lr": 0.005}, "long", steps=60),
    # float32 beta2 makes rho_t and the rectification float32 0-d arrays; torch's CPU
    # sqrt of a float32 0-d tensor is not correctly rounded (1 ULP, e.g. at step 9
    # here), which float32 parameters absorb and float64 ones would not (3e-9)
    OptimCase("RAdam", {"lr": 0.01, "betas": (ArrayArg(0.7, "float32"),
                                              ArrayArg(0.8, "float32"))},
              "array-betas32", dtypes=("float32",)),
]
