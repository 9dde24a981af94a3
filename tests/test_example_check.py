"""examples/check_your_optimizer.py: the textbook Adam passes against torch.optim.Adam, and the
buggy variant fails at the step derived by hand.

The example is loaded by path (examples/ is not a package). The harness needs torch, the
reference, so the checks skip without it; the hand derivation of the bug's effect does not.
"""

from __future__ import annotations

import importlib.util
import math
import runpy
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portopt
from portopt.testing import TOLERANCES

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "check_your_optimizer.py"
BETA1, BETA2 = 0.9, 0.999  # torch.optim.Adam's defaults, which the example uses


@pytest.fixture(scope="module")
def ex() -> Any:
    spec = importlib.util.spec_from_file_location("check_your_optimizer_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module



def test_textbook_adam_passes_and_the_buggy_one_fails_at_step_1(ex: Any, torch: Any) -> None:
    from portopt.testing._runner import SKIPPED_GRADS

    res = ex.main(steps=12, verbose=False)
    assert res["ok"]
    assert [(r.dtype, r.passed) for r in res["good"]] == [
        ("float32", True), ("float32", True), ("float64", True), ("float64", True)]
    for r in res["good"]:
        assert r.steps == 12 and 0.0 <= r.rel <= TOLERANCES[r.dtype].rtol, r
    # Where the bug must show, by hand: the harness gives param 1 no gradient at step 0
    # (the premise, checked here), so the optimizer has counted one step more than param 1
    # from then on. No parameter was skipped before step 0, so step 0 is right for all;
    # at step 1, param 1's first update uses t = 2 in the bias corrections instead of 1,
    # which scales it by 0.744 (test below): off by ~2.6e-3 for lr 1e-2, far over 1e-12.
    assert (0, 1) in SKIPPED_GRADS
    buggy = res["buggy"]
    assert not buggy.passed and buggy.failed_step == 1
    assert buggy.message.startswith("step 1: param 1 is off by"), buggy.message


def test_the_buggy_one_also_fails_at_step_1_without_resync(ex: Any, torch: Any) -> None:
    # the bug is not drift: it changes one number at step 1 whatever happened before
    for dtype in ("float32", "float64"):
        result = ex.check(ex.SharedCountAdam, dtype, resync=False, steps=4)
        assert result.failed_step == 1 and "param 1" in result.message, result


def test_a_skipped_parameters_first_step_is_0_744_of_adams(ex: Any) -> None:
    """Hand derivation, no torch: after one skipped step, SharedCountAdam's first update of
    a parameter is sqrt(1 + beta2) / (1 + beta1) of TextbookAdam's, which is Adam's."""
    lr = 1e-2
    grad = np.array([0.3, -2.0, 5.0])
    moved = {}
    for cls in (ex.TextbookAdam, ex.SharedCountAdam):
        other, param = portopt.Parameter(np.zeros(2)), portopt.Parameter(np.ones(3))
        opt = cls([other, param], lr=lr)
        other.grad = np.ones(2)  # step 1: only `other` has a gradient
        opt.step()
        other.grad, param.grad = np.ones(2), grad.copy()
        opt.step()
        assert float(opt.state[param]["step"]) == 1.0  # both count param's own steps...
        moved[cls] = param.data - 1.0
    # ... but Adam's first step is lr * g / (|g| + eps): about lr against the sign of g
    np.testing.assert_allclose(moved[ex.TextbookAdam], -lr * np.sign(grad), rtol=1e-7)
    # with t = 2: m_hat = (1 - b1) g / (1 - b1^2) = g / (1 + b1), likewise v_hat = g^2 / (1 + b2)
    ratio = math.sqrt(1 + BETA2) / (1 + BETA1)
    assert ratio == pytest.approx(0.7441, abs=1e-4)
    np.testing.assert_allclose(moved[ex.SharedCountAdam], ratio * moved[ex.TextbookAdam],
                               rtol=1e-7)


def test_textbook_adam_state_has_torchs_layout(ex: Any) -> None:
    param = portopt.Parameter(np.ones((2, 2), dtype=np.float32))
    opt = ex.TextbookAdam([param], lr=0.1)
    param.grad = np.full((2, 2), 0.5, dtype=np.float32)
    opt.step()
    state = opt.state_dict()["state"][0]
    assert sorted(state) == ["exp_avg", "exp_avg_sq", "step"]
    assert np.asarray(state["step"]).dtype == np.float32 and float(state["step"]) == 1.0
    assert state["exp_avg"].dtype == np.float32
    np.testing.assert_allclose(state["exp_avg"], 0.05)  # (1 - 0.9) * 0.5
    np.testing.assert_allclose(param.data, 0.9, rtol=1e-6)  # first step: lr * sign(g)


def test_the_command_runs_and_exits_0(torch: Any, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """``python examples/check_your_optimizer.py --steps 3``, run in this process."""
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), "--steps", "3"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(EXAMPLE), run_name="__main__")
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(" pass " in line for line in lines) == 4
    assert any(line.startswith("float64  yes    FAIL   step 1: param 1 is off by")
               for line in lines), lines
    assert any(line.startswith("As expected") for line in lines), lines
