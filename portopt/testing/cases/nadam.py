"""Conformance cases of NAdam (NAdamW is its decoupled_weight_decay flag, as in torch).

torch's load_state_dict casts every floating state tensor to the parameter's dtype, so
after a round trip a float64 parameter's ``mu_product`` is float64 and accumulates in
float64 from then on; portopt reproduces the cast, and the runner passes torch through
the same round trip (``tests/test_nadam.py`` compares with torch's own round trip).
"""

from .._cases import ArrayArg, OptimCase, configs, scenarios

NADAM = {
    "default": {},
    "lr": {"lr": 0.01},
    "betas": {"lr": 0.01, "betas": (0.5, 0.9)},
    "eps": {"lr": 0.01, "eps": 1e-3},
    "weight-decay": {"lr": 0.01, "weight_decay": 0.1},
    "decoupled": {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
    "momentum-decay": {"lr": 0.01, "momentum_decay": 0.3},
    "no-momentum-decay": {"lr": 0.01, "momentum_decay": 0.0},
    "maximize": {"lr": 0.01, "maximize": True},
    "array-lr": {"lr": ArrayArg(0.01, "float32")},
    "array-lr64": {"lr": ArrayArg(0.01, "float64"), "weight_decay": 0.1,
                   "decoupled_weight_decay": True},
    "array-betas": {"lr": 0.01, "betas": (ArrayArg(0.8, "float32"), ArrayArg(0.95, "float64"))},
    "array-hyper": {"lr": 0.01, "eps": ArrayArg(1e-4, "float32"),
                    "weight_decay": ArrayArg(0.1, "float64"),
                    "momentum_decay": ArrayArg(0.05, "float64")},
    "foreach": {"lr": 0.01, "foreach": True},
    "mixed": {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1,
              "momentum_decay": 0.01, "maximize": True},
    "mixed-decoupled": {"lr": 0.02, "betas": (0.6, 0.95), "weight_decay": 0.05,
                        "momentum_decay": 0.02, "decoupled_weight_decay": True},
}

CASES = [
    *configs("NAdam", NADAM),
    *scenarios("NAdam", "default", NADAM["default"]),
    *scenarios("NAdam", "mixed-decoupled", NADAM["mixed-decoupled"]),
    OptimCase("NAdam", {"lr": 0.01, "weight_decay": 0.1, "differentiable": True},
              "differentiable", backends=("torch",)),
    OptimCase("NAdam", {"lr": ArrayArg(0.01, "float64"), "maximize": True,
                        "differentiable": True}, "differentiable-array-lr",
              backends=("torch",)),
    OptimCase("NAdam", {"lr": 0.01, "decoupled_weight_decay": True, "weight_decay": 0.1,
                        "differentiable": True}, "differentiable",
              scenario="from-torch", backends=("torch",)),
    OptimCase("NAdam", {"lr": 0.005}, "long", steps=60),
]
