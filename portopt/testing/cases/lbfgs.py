"""Conformance cases of LBFGS: every case steps through ``step(closure)`` on one group.

Each LBFGS step runs up to ``max_iter`` iterations (and more closure evaluations), and its
history makes the trajectory sensitive to rounding: torch against itself, started one ULP
apart, drifts as far as portopt on NumPy drifts from torch (whose dot products sum in
another order). Three steps keep that drift measurable; on torch tensors portopt is
bit-identical to torch at every step.
"""

from .._cases import ArrayArg, configs, scenarios

# LBFGS needs the objective (a closure) and refuses a second param group
FIELDS = {"closure": True, "single_group": True, "steps": 3}

TABLE = {
    "default": {},
    "lr": {"lr": 0.5},
    "max-iter": {"max_iter": 4},
    "max-iter-1": {"max_iter": 1},  # one iteration per step, as in stochastic use
    "max-eval": {"max_eval": 6},
    "tolerance-grad": {"tolerance_grad": 1e-2},
    "tolerance-change": {"tolerance_change": 1e-3},  # stops on the change of the loss
    "tolerance-change-step": {"lr": 0.01, "tolerance_change": 1e-3},  # ... of the step
    "history-size": {"history_size": 3},  # the history wraps around
    "history-size-max-iter": {"history_size": 3, "max_iter": 5},
    "array-lr": {"lr": ArrayArg(0.8, "float32")},
    "array-lr-f64": {"lr": ArrayArg(0.6, "float64"), "max_iter": 6},
    "strong-wolfe": {"line_search_fn": "strong_wolfe"},
    "strong-wolfe-lr": {"line_search_fn": "strong_wolfe", "lr": 30, "max_iter": 6},  # zoom
    "strong-wolfe-max-eval": {"line_search_fn": "strong_wolfe", "lr": 30, "max_eval": 4},
    "strong-wolfe-mixed": {"line_search_fn": "strong_wolfe", "lr": 0.7, "max_iter": 6,
                           "max_eval": 9, "history_size": 4, "tolerance_grad": 1e-4,
                           "tolerance_change": 1e-6},
}

CASES = [
    *configs("LBFGS", TABLE, **FIELDS),
    # "add-group" is left out: torch's LBFGS refuses a second param group at step
    *scenarios("LBFGS", "history-size-max-iter", TABLE["history-size-max-iter"],
               skip=("add-group",), **FIELDS),
    *scenarios("LBFGS", "strong-wolfe-mixed", TABLE["strong-wolfe-mixed"], skip=("add-group",),
               **FIELDS),
]
