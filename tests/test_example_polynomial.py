"""examples/polynomial_sin.py: its hand-written gradient is the gradient, it learns, and its
run is torch's tutorial run.

The example is loaded by path (examples/ is not a package). torch autograd and
torch.optim.RMSprop are the oracles of the torch tests, which skip without torch; the
finite-difference and first-step tests are derived by hand and need none.
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

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "polynomial_sin.py"
STEPS = 300  # a short run, well before the zig-zag phase (see test_same_run_as_torch)


@pytest.fixture(scope="module")
def ex() -> Any:
    spec = importlib.util.spec_from_file_location("polynomial_sin_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module



@pytest.fixture(scope="module")
def data(ex: Any) -> tuple[np.ndarray, np.ndarray]:
    return ex.make_data()


def coefficient_sets() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [rng.standard_normal(4), np.array([0.0, 0.85, 0.0, -0.09]), 3 * rng.standard_normal(4)]


def test_data_is_the_tutorials(data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = data
    assert x.shape == y.shape == (2000,) and x.dtype == np.float64
    assert x[0] == -math.pi and x[-1] == math.pi
    np.testing.assert_allclose(np.diff(x), 2 * math.pi / 1999, rtol=1e-12)
    np.testing.assert_array_equal(y, np.sin(x))


@pytest.mark.parametrize("coeffs", coefficient_sets(), ids=["random", "near-best", "large"])
def test_gradient_matches_torch_autograd(ex: Any, data: Any, torch: Any,
                                         coeffs: np.ndarray) -> None:
    x, y = data
    loss, grads = ex.loss_and_gradient([np.asarray(k) for k in coeffs], ex.powers_of(x), y)

    a, b, c, d = (torch.tensor(float(k), dtype=torch.float64, requires_grad=True)
                  for k in coeffs)
    xt = torch.from_numpy(x)
    loss_t = ((a + b * xt + c * xt**2 + d * xt**3 - torch.sin(xt)) ** 2).sum()
    loss_t.backward()

    assert loss == pytest.approx(loss_t.item(), rel=1e-12)
    expected = np.array([k.grad.item() for k in (a, b, c, d)])
    assert all(g.shape == () and g.dtype == np.float64 for g in grads)
    # summation order differs: tolerance relative to the largest term of the gradient
    np.testing.assert_allclose(np.array(grads, dtype=float), expected, rtol=1e-12,
                               atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("coeffs", coefficient_sets(), ids=["random", "near-best", "large"])
def test_gradient_matches_central_differences(ex: Any, data: Any, coeffs: np.ndarray) -> None:
    """No torch: the loss is quadratic in the coefficients, so a central difference is its
    derivative exactly, up to the rounding of the loss (~1e-16 of it, divided by 2h)."""
    x, y = data
    powers = ex.powers_of(x)
    loss, grads = ex.loss_and_gradient(list(coeffs), powers, y)
    h = 1e-3
    for i in range(4):
        up, down = coeffs.copy(), coeffs.copy()
        up[i] += h
        down[i] -= h
        slope = (ex.loss_and_gradient(list(up), powers, y)[0]
                 - ex.loss_and_gradient(list(down), powers, y)[0]) / (2 * h)
        assert float(grads[i]) == pytest.approx(slope, rel=1e-7, abs=1e-9 * loss)


def test_first_step_is_rmsprops(ex: Any, data: Any) -> None:
    """No torch: from zero state, RMSprop's first step is lr * g / (sqrt((1 - alpha) g^2) + eps),
    about 10 * lr = 0.01 against the gradient's sign."""
    x, y = data
    start = np.array([0.3, -1.2, 0.5, 2.0])
    run = ex.fit(start, x, y, 1, verbose=False)
    _, grads = ex.loss_and_gradient(list(start), ex.powers_of(x), y)
    g = np.array(grads, dtype=float)
    expected = start - 1e-3 * g / (np.sqrt(0.01 * g * g) + 1e-8)
    np.testing.assert_allclose(run["history"][0], expected, rtol=1e-14)
    np.testing.assert_allclose(np.abs(run["history"][0] - start), 0.01, rtol=1e-6)


def test_loss_decreases(ex: Any) -> None:
    res = ex.main(steps=STEPS, verbose=False)
    losses = res["losses"]
    assert len(losses) == STEPS and all(math.isfinite(v) for v in losses)
    assert all(later < earlier for earlier, later in zip(losses[::25], losses[25::25]))
    assert res["final_loss"] < 0.2 * losses[0]
    # the best cubic is the least-squares fit: no run does better
    assert res["best_loss"] < res["final_loss"]
    np.testing.assert_allclose(res["best"], [0.0, 0.856741, 0.0, -0.093330], atol=1e-6)


def test_long_run_approaches_the_best_cubic(ex: Any) -> None:
    res = ex.main(steps=1500, verbose=False)
    assert res["final_loss"] < 1.02 * res["best_loss"]
    np.testing.assert_allclose(res["coefficients"], res["best"], atol=2e-3)


def test_same_run_as_torch(ex: Any, data: Any, torch: Any) -> None:
    """portopt's run equals torch.optim.RMSprop's on torch autograd's gradients, step by step.

    The oracle is written here, independently of the example's own torch program: four
    scalar tensors and autograd. Only the order of the sums differs, so the runs agree to
    rounding, for as long as the problem lets rounding be: from about step 700 RMSprop
    zig-zags in d and amplifies the last bits (torch against itself does the same; see
    the example's docstring), so the comparison stops at STEPS.
    """
    x, y = data
    start = np.random.default_rng(0).standard_normal(4)
    run = ex.fit(start, x, y, STEPS, verbose=False)

    coeffs = [torch.tensor(float(k), dtype=torch.float64, requires_grad=True) for k in start]
    optimizer = torch.optim.RMSprop(coeffs, lr=1e-3)
    xt = torch.from_numpy(x)
    expected = np.empty((STEPS, 4))
    for t in range(STEPS):
        a, b, c, d = coeffs
        loss = ((a + b * xt + c * xt**2 + d * xt**3 - torch.sin(xt)) ** 2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        expected[t] = [k.item() for k in coeffs]
        assert run["losses"][t] == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(run["history"], expected, rtol=1e-12, atol=1e-14)


def test_check_torch_reports_agreement(ex: Any, torch: Any,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    res = ex.main(steps=STEPS, check_torch=True)
    assert res["torch_agree_steps"] == STEPS
    assert res["torch_max_diff"] <= ex.AGREE
    assert res["torch_final_loss"] == pytest.approx(res["final_loss"], rel=1e-12)
    out = capsys.readouterr().out
    assert f"steps 1-{STEPS}: coefficients within" in out
    assert "apart by up to" not in out


def test_the_command_prints_the_losses_and_the_result(ex: Any, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """``python examples/polynomial_sin.py --steps 200 --seed 3``, run in this process."""
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), "--steps", "200", "--seed", "3"])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    res = ex.main(steps=200, seed=3, verbose=False)
    assert lines[:2] == [f"step   100   loss {res['losses'][99]:12.6f}",
                         f"step   200   loss {res['losses'][199]:12.6f}"]
    assert lines[2].startswith(f"Result:     {ex.describe(res['coefficients'])}")
    assert lines[3].startswith("Best cubic: y = 0.000000 + 0.856741 x + 0.000000 x^2 - 0.093330 x^3")
    assert len(lines) == 4


def test_describe_writes_signs_once(ex: Any) -> None:
    assert ex.describe([0.5, -1.25, 0.0, -1e-9]) == (
        "y = 0.500000 - 1.250000 x + 0.000000 x^2 + 0.000000 x^3")


def test_main_rejects_no_steps(ex: Any) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ex.main(steps=0, verbose=False)
