"""The conformance harness finds what is wrong, and says at which step."""

from __future__ import annotations

import numpy as np
import pytest

import portopt
from portopt.testing import (
    TOLERANCES,
    ArrayArg,
    Comparison,
    OptimCase,
    TestBackend,
    measure,
    run_case,
)
from portopt.testing._tolerances import Tolerance


def test_measure_relative_error_with_floor():
    tol = Tolerance(rtol=1e-6, atol=1e-7)  # floor 0.1
    err = measure(np.array([1.0 + 1e-6, 0.0]), np.array([1.0, 1e-9]), tol)
    assert err.rel == pytest.approx(max(1e-6 / 1.1, 1e-9 / 0.1), rel=1e-6)
    assert measure(np.array([np.nan, np.inf]), np.array([np.nan, np.inf]), tol).rel == 0.0
    assert measure(np.array([np.nan]), np.array([1.0]), tol).rel == np.inf
    c = measure(np.array([1 + 2j]), np.array([1 + 2.000002j]), tol)
    assert c.rel == pytest.approx(2e-6 / 2.1, rel=1e-3)


def test_measure_counts_float32_ulps():
    r = np.array([1.0, 2.0], dtype=np.float32)
    c = np.array([np.nextafter(np.float32(1), np.float32(2)), 2.0], dtype=np.float32)
    assert measure(c, r, TOLERANCES["float32"]).ulp == 1.0


def test_case_ids_and_validation():
    assert OptimCase("Adam", {}, "default").id == "Adam-default"
    assert OptimCase("Adam", {}, "default", scenario="closure").id == "Adam-default-closure"
    with pytest.raises(ValueError, match="unknown scenario"):
        OptimCase("Adam", {}, "x", scenario="nope")
    assert OptimCase("SGD", {}, "d").run_dtypes() == ("float32", "float64", "complex128")
    assert repr(ArrayArg(0.1)) == "array(0.1, float32)"


class _DriftingSGD(portopt.optim.SGD):
    """Correct until step 5, then a slightly larger learning rate."""

    def step(self, closure=None):
        self.count = getattr(self, "count", 0) + 1
        if self.count == 6:
            for g in self.param_groups:
                g["lr"] = g["lr"] * (1 + 1e-9)
        return super().step(closure)


def test_a_drifting_optimizer_fails_at_the_step_it_drifts(torch):
    cmp = Comparison(lambda groups: _DriftingSGD(groups, lr=0.1),
                     lambda groups: torch.optim.SGD(groups, lr=0.1, foreach=False),
                     backend=TestBackend.NUMPY, dtype="float64", resync=True)
    result = cmp.run(steps=10)
    assert not result.passed and result.failed_step == 5
    assert result.message.startswith("step 5: param 0 is off by")


def test_a_wrong_hyper_parameter_is_caught_at_once(torch):
    cmp = Comparison(lambda groups: portopt.optim.Adam(groups, lr=0.1, eps=1e-3),
                     lambda groups: torch.optim.Adam(groups, lr=0.1, foreach=False),
                     backend=TestBackend.NUMPY, dtype="float32")
    result = cmp.run(steps=4)
    assert not result.passed and result.failed_step == 0


def test_a_missing_state_key_is_named(torch):
    cmp = Comparison(lambda groups: portopt.optim.Adam(groups, lr=0.1),
                     lambda groups: torch.optim.Adam(groups, lr=0.1, amsgrad=True, foreach=False),
                     backend=TestBackend.NUMPY, dtype="float64")
    result = cmp.run(steps=2)
    assert not result.passed
    assert "state keys of param 0 differ" in result.message and "max_exp_avg_sq" in result.message


def test_a_matching_optimizer_passes_and_reports_its_error(torch):
    result = run_case(OptimCase("Adam", {"lr": 0.01}, "lr"), TestBackend.NUMPY, "float32")
    assert result.passed and result.steps == 16
    assert 0.0 <= result.rel <= TOLERANCES["float32"].rtol and result.ulp is not None


def test_cases_restricted_to_a_backend_are_skipped_elsewhere(torch):
    case = OptimCase("SGD", {"differentiable": True}, "d", backends=("torch",))
    result = run_case(case, TestBackend.NUMPY, "float64")
    assert result.skipped and "torch" in result.skipped


def test_sparse_gradients_reach_both_sides_alike(torch):
    """torch against itself on sparse gradients: the harness feeds the same COO gradient."""
    cmp = Comparison(lambda groups: torch.optim.SGD(groups, lr=0.1, momentum=0.5),
                     lambda groups: torch.optim.SGD(groups, lr=0.1, momentum=0.5, foreach=False),
                     backend=TestBackend.TORCH, dtype="float32", grads="sparse",
                     shapes=((6, 3), (5,)), second_group=((4, 2),))
    result = cmp.run(steps=6)
    assert result.passed and result.rel == 0.0, result.message


def test_closures_evaluate_each_sides_own_parameters(torch):
    cmp = Comparison(lambda groups: torch.optim.LBFGS(groups[0]["params"], lr=0.5),
                     lambda groups: torch.optim.LBFGS(groups[0]["params"], lr=0.5),
                     backend=TestBackend.TORCH, dtype="float64", closure=True,
                     second_group=None)
    result = cmp.run(steps=4)
    assert result.passed and result.rel == 0.0, result.message


def test_sparse_gradients_for_numpy_parameters_are_sparse_grads(torch):
    seen = []

    class Spy(portopt.optim.SGD):
        def step(self, closure=None):
            seen.extend(p.grad for g in self.param_groups for p in g["params"])
            return None

    cmp = Comparison(lambda groups: Spy(groups), lambda groups: torch.optim.SGD(groups),
                     backend=TestBackend.NUMPY, dtype="float64", grads="sparse",
                     shapes=((6, 3),), second_group=None)
    cmp.run(steps=1)
    assert seen and all(isinstance(g, portopt.SparseGrad) for g in seen)


def test_summary_reports_own_tolerance_entries_apart():
    from portopt.testing import CaseResult
    from portopt.testing._matrix import format_summary, summarize

    rows = [CaseResult("SGD-default", "numpy", "float64", True, 16, 1e-15, None),
            CaseResult("LBFGS-default", "numpy", "float64", True, 3, 1e-9, None),
            CaseResult("Adam-default", "numpy", "float32", False, 2, 1e-3, 12.0)]
    summary = summarize(rows)
    assert summary["worst"]["float64"]["rel"] == 1e-15  # LBFGS has its own float64 entry
    assert summary["worst_own_entries"] == {"LBFGS": {"float64": 1e-9}}
    assert summary["failed"] == 1 and summary["optimizers"] == ["Adam", "LBFGS", "SGD"]
    text = format_summary(summary)
    assert text.startswith("2/3 passed, 1 failed") and "LBFGS float64 1.00e-09" in text
