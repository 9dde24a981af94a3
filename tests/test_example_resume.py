"""examples/resume_torch_in_numpy.py: a torch run resumed in NumPy lands where torch lands."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "resume_torch_in_numpy.py"


@pytest.fixture(scope="module")
def ex():
    spec = importlib.util.spec_from_file_location("resume_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_numpy_backward_is_autograds(ex, torch):
    """The example's hand-written gradients are the ones torch computes (float64)."""
    x, y = ex.make_data(n=32)
    w = {k: v.astype(np.float64) for k, v in ex.initial_weights().items()}
    loss, grads = ex.loss_and_grads(w, x.astype(np.float64), y.astype(np.float64))
    t = {k: torch.tensor(v, requires_grad=True) for k, v in w.items()}
    xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    out = torch.tanh(xt @ t["w1"].T + t["b1"]) @ t["w2"].T + t["b2"]
    ref = ((out - yt) ** 2).mean()
    ref.backward()
    assert loss == pytest.approx(float(ref.detach()), rel=1e-12)
    for k in ex.NAMES:
        np.testing.assert_allclose(grads[k], t[k].grad.numpy(), rtol=1e-6, atol=1e-7)


def test_resuming_in_numpy_carries_on_as_torch(ex, torch, tmp_path):
    path = tmp_path / "run.portopt"
    out = ex.main(torch_steps=20, numpy_steps=20, checkpoint=path, verbose=False)
    assert path.exists()  # the checkpoint the user asked to keep
    # both runs compute in float32 with different gradient code: rounding, not drift
    assert out["weights"] < 1e-4
    assert out["losses"] < 1e-4
    assert out["last_loss"] < out["first_loss"]  # and it trains


def test_the_saved_state_is_torchs(ex, torch, tmp_path):
    import portopt

    path = tmp_path / "run.portopt"
    ex.main(torch_steps=5, numpy_steps=1, checkpoint=path, verbose=False)
    saved = portopt.load(path, backend="torch")
    assert saved["step"] == 5
    assert set(saved["optimizer"]["state"]) == {0, 1, 2, 3}
    assert float(saved["optimizer"]["state"][0]["step"]) == 5.0
    assert saved["scheduler"]["last_epoch"] == 5
