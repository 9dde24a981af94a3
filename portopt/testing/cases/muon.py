"""Conformance cases of Muon (2-D parameters only: a tall and a wide matrix per group)."""

from .._cases import ArrayArg, configs, scenarios

#: Muon accepts matrices only; tall (rows > cols) ones are orthogonalized transposed.
SHAPES = {"shapes": ((4, 3), (5, 4)), "second_group": ((3, 6),)}

TABLE = {
    "default": {},
    "lr": {"lr": 0.02},
    "weight-decay": {"lr": 0.02, "weight_decay": 0.3},
    "no-weight-decay": {"lr": 0.02, "weight_decay": 0.0},
    "momentum": {"lr": 0.02, "momentum": 0.5},
    "no-momentum": {"lr": 0.02, "momentum": 0.0},
    "no-nesterov": {"lr": 0.02, "nesterov": False},
    "ns-coefficients": {"lr": 0.02, "ns_coefficients": (2.0, -1.5, 0.5)},
    "eps": {"lr": 0.02, "eps": 4.0},  # larger than some update norms: the clamp acts
    "ns-steps": {"lr": 0.02, "ns_steps": 2},
    "ns-steps-0": {"lr": 0.02, "ns_steps": 0},
    "adjust-original": {"lr": 0.02, "adjust_lr_fn": "original"},
    "adjust-match-rms-adamw": {"lr": 0.02, "adjust_lr_fn": "match_rms_adamw"},
    "array-lr": {"lr": ArrayArg(0.02, "float32")},
    "array-lr-f64": {"lr": ArrayArg(0.02, "float64"), "adjust_lr_fn": "match_rms_adamw"},
    "mixed": {"lr": 0.05, "weight_decay": 0.05, "momentum": 0.9, "nesterov": False,
              "ns_coefficients": (3.0, -3.2, 1.2), "eps": 1e-5, "ns_steps": 7,
              "adjust_lr_fn": "match_rms_adamw"},
}

CASES = [
    *configs("Muon", TABLE, **SHAPES),
    *scenarios("Muon", "default", TABLE["default"], **SHAPES),
    *scenarios("Muon", "mixed", TABLE["mixed"], **SHAPES),
]
