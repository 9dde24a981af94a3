"""examples/mlp_digits.py and mlp_digits_cupy.py: the digits MLP trains, its backward is
autograd's, its state_dict has torch's names, its training agrees with torch.optim, it runs
on array-api-strict as on NumPy, and the CuPy entry point says clearly when it cannot run.

The examples are loaded by path (examples/ is not a package) or run as the one command a user
types. torch is the oracle for the gradients and the training; those tests skip without it.
The model's matrices are tiny, so BLAS and numba threads would only contend for the shared
cores: the tests run them on one thread.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the example reads scikit-learn's bundled digits")

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mlp_digits.py"
CUPY_EXAMPLE = ROOT / "examples" / "mlp_digits_cupy.py"
TOL = {"rtol": 1e-12, "atol": 1e-14}
# a few epochs on a subset: 8 batches of 64 per epoch, the last 3 epochs averaged
SMALL = {"epochs": 6, "swa_epochs": 3, "train_size": 512, "hidden": 32}


@pytest.fixture(scope="module")
def ex() -> Any:
    spec = importlib.util.spec_from_file_location("mlp_digits_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]



def run_script(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python <path> <args>`` as a user runs it, with this checkout's portopt."""
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                        os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=ROOT)


def t2n(t: Any) -> np.ndarray:
    return t.detach().numpy()


# --- the example trains ------------------------------------------------------------------------


def test_it_trains_averages_and_draws_the_curves(ex: Any, tmp_path: Path) -> None:
    s = ex.Settings(**SMALL)
    png = tmp_path / "curves.png"
    res = ex.run(s, ex.array_module("numpy"), plot=png, verbose=False)
    # chance is 10%: a few epochs on 512 images get far above it
    for key in ("raw_train_accuracy", "raw_test_accuracy", "swa_train_accuracy",
                "swa_test_accuracy"):
        assert res[key] > 0.8, (key, res[key])
    assert int(res["swa_model"].n_averaged) == s.swa_epochs
    assert res["swa_model"].module is not res["model"]
    history = res["history"]
    steps = s.epochs * (s.train_size // s.batch_size)
    assert len(history["loss"]) == len(history["lr"]) == len(history["grad_norm"]) == steps
    assert np.mean(history["loss"][-8:]) < 0.5 * np.mean(history["loss"][:8])
    # OneCycleLR starts at max_lr / div_factor (25); SWALR's cosine anneal over 2 epochs
    # holds swa_lr in the third SWA epoch
    assert history["lr"][0] == pytest.approx(s.max_lr / 25, rel=1e-12)
    assert history["lr"][-1] == pytest.approx(s.swa_lr, rel=1e-12)
    assert 0 < res["clipped_steps"] < steps  # clipping happened, and not on every step
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(png).shape
    assert (width, height) == (840, 660)  # 7 x 5.5 inches at 120 dpi


def test_it_is_seeded(ex: Any) -> None:
    xp = ex.array_module("numpy")
    tiny = {"epochs": 2, "swa_epochs": 1, "train_size": 128, "hidden": 8}
    first = ex.run(ex.Settings(seed=3, **tiny), xp, verbose=False)["history"]
    again = ex.run(ex.Settings(seed=3, **tiny), xp, verbose=False)["history"]
    other = ex.run(ex.Settings(seed=4, **tiny), xp, verbose=False)["history"]
    assert first == again
    assert first["loss"] != other["loss"]


def test_the_split_is_a_fixed_partition_of_the_digits(ex: Any) -> None:
    from sklearn.datasets import load_digits

    split = ex.load_split()
    assert split["x_train"].shape == (1437, 64) and split["x_test"].shape == (360, 64)
    for key, value in ex.load_split().items():
        np.testing.assert_array_equal(value, split[key])
    # every image once, in one part or the other (rows sorted to compare as multisets)
    digits = load_digits()
    both = np.concatenate([
        np.column_stack([split["x_train"] * 16, split["y_train"]]),
        np.column_stack([split["x_test"] * 16, split["y_test"]])])
    whole = np.column_stack([digits.data, digits.target])
    np.testing.assert_array_equal(np.unique(both, axis=0, return_counts=True)[1],
                                  np.unique(whole, axis=0, return_counts=True)[1])
    np.testing.assert_array_equal(np.unique(both, axis=0), np.unique(whole, axis=0))
    assert set(split["y_test"]) == set(range(10))


def test_largest_relative_difference_is_per_array_scale(ex: Any) -> None:
    ours = {"a": np.array([1.0, 2.0]), "b": np.array([[10.0, -20.0]]), "c": np.zeros(2)}
    theirs = {"a": np.array([1.0, 4.0]), "b": np.array([[10.0, -21.0]]), "c": np.zeros(2)}
    # a: |2 - 4| / 4 = 0.5; b: 1 / 21; c: no difference (0 / 0 counts as none)
    assert ex.largest_relative_difference(ours, theirs) == 0.5
    assert ex.largest_relative_difference(theirs, ours) == 0.5  # symmetric
    del ours["a"], theirs["a"]
    assert ex.largest_relative_difference(ours, theirs) == pytest.approx(1 / 21, rel=1e-15)
    assert ex.largest_relative_difference(ours, ours) == 0.0
    assert ex.largest_relative_difference({"c": np.array([0.0, 3.0])}, {"c": np.zeros(2)}) == 1


# --- the model against torch -------------------------------------------------------------------


def float64_model(ex: Any, hidden: int = 16, seed: int = 0) -> Any:
    return ex.make_model(64, hidden, np.random.default_rng(seed), ex.array_module("numpy"),
                         np.float64)


def torch_reference(torch: Any, hidden: int) -> Any:
    """The architecture the example claims to be, built here from torch's layers."""
    nn = torch.nn
    return nn.Sequential(nn.Linear(64, hidden, bias=False), nn.BatchNorm1d(hidden),
                         nn.ReLU(), nn.Linear(hidden, 10)).double()


def test_state_dict_has_torchs_names(ex: Any, torch: Any) -> None:
    from torch.optim import swa_utils as torch_swa

    from portopt.optim import swa_utils

    model = float64_model(ex)
    ref = torch_reference(torch, 16)
    mine, theirs = model.state_dict(), ref.state_dict()
    assert list(mine) == list(theirs)
    for key, value in theirs.items():
        assert tuple(mine[key].shape) == tuple(value.shape), key
    # the live arrays, as torch's state_dict gives its tensors
    assert mine["0.weight"] is model.layers[0].weight.data
    assert mine["1.running_mean"] is model.layers[1].running_mean
    assert (list(swa_utils.AveragedModel(model).state_dict())
            == list(torch_swa.AveragedModel(ref).state_dict()))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_backward_is_autograds_layer_by_layer(ex: Any, torch: Any, training: bool) -> None:
    rng = np.random.default_rng(1)
    model = float64_model(ex)
    model(rng.uniform(0, 1, (32, 64)))  # running statistics that are not the initial ones
    model.train(training)
    ref = torch_reference(torch, 16)
    ref.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in
                         model.state_dict().items()})
    ref.train(training)
    split = ex.load_split()
    x, labels = split["x_train"][:24], split["y_train"][:24]

    # torch: keep every layer's input and output, and their gradients
    inputs_t = [torch.from_numpy(x.copy()).requires_grad_()]
    for layer in ref:
        out = layer(inputs_t[-1])
        out.retain_grad()
        inputs_t.append(out)
    loss_t = torch.nn.functional.cross_entropy(inputs_t[-1], torch.from_numpy(labels))
    loss_t.backward()

    inputs = [x]
    for layer in model.layers:
        inputs.append(layer(inputs[-1]))
    for mine, theirs in zip(inputs, inputs_t):
        np.testing.assert_allclose(mine, t2n(theirs), **TOL)
    loss, grad = ex.cross_entropy(inputs[-1], labels)
    assert float(loss) == pytest.approx(loss_t.item(), rel=1e-13)
    np.testing.assert_allclose(grad, t2n(inputs_t[-1].grad), **TOL)
    for i in reversed(range(len(model.layers))):
        layer, layer_t = model.layers[i], ref[i]
        grad = layer.backward(grad)
        np.testing.assert_allclose(grad, t2n(inputs_t[i].grad), **TOL, err_msg=f"layer {i}")
        params, params_t = list(layer.parameters()), list(layer_t.parameters())
        assert len(params) == len(params_t)
        for p, q in zip(params, params_t):
            np.testing.assert_allclose(p.grad, t2n(q.grad), **TOL, err_msg=f"layer {i}")
    for key, value in ref.state_dict().items():  # batch-norm statistics
        np.testing.assert_allclose(model.state_dict()[key], t2n(value), **TOL, err_msg=key)


def test_training_agrees_with_torch_optim(ex: Any, torch: Any,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    s = ex.Settings(dtype="float64", **SMALL)
    res = ex.run(s, ex.array_module("numpy"), check_torch=True)
    out = capsys.readouterr().out
    assert res["torch_raw_diff"] <= ex.TORCH_TOLERANCE
    assert res["torch_swa_diff"] <= ex.TORCH_TOLERANCE
    assert res["torch_agrees"]
    assert f"They agree within the tolerance of {ex.TORCH_TOLERANCE:.0e}" in out
    assert f"raw model {res['torch_raw_diff']:.1e}, SWA model {res['torch_swa_diff']:.1e}" in out
    # what was compared is a real run: clipped steps, weights far from their start, an
    # average of several epochs that differs from the last weights
    assert res["clipped_steps"] > 0
    start = float64_model(ex, hidden=s.hidden,
                          seed=np.random.SeedSequence(s.seed).spawn(2)[0]).state_dict()
    trained = res["model"].state_dict()
    for key in ("0.weight", "3.weight"):
        assert ex.largest_relative_difference({key: trained[key]}, {key: start[key]}) > 0.1
    averaged = {k[len("module."):]: v for k, v in res["swa_model"].state_dict().items()
                if k.startswith("module.")}
    assert ex.largest_relative_difference(averaged, res["model"].state_dict()) > 1e-3


def test_it_runs_on_array_api_strict_as_on_numpy(ex: Any) -> None:
    """The layers use only the Array API standard, which is what lets CuPy run them."""
    xps = pytest.importorskip("array_api_strict", reason="the portability check needs it")
    tiny = ex.Settings(epochs=3, swa_epochs=1, train_size=192, hidden=16, dtype="float64")
    strict = ex.run(tiny, xps, verbose=False)
    reference = ex.run(tiny, ex.array_module("numpy"), verbose=False)
    assert type(strict["model"].layers[0].weight.data).__module__.startswith("array_api_strict")
    np.testing.assert_allclose(strict["history"]["loss"], reference["history"]["loss"], **TOL)
    for key in ("raw_test_accuracy", "swa_test_accuracy"):
        assert strict[key] == reference[key]


# --- the commands ------------------------------------------------------------------------------


def test_the_command_trains_and_writes_the_plot(tmp_path: Path) -> None:
    png = tmp_path / "curves.png"
    out = run_script(EXAMPLE, "--epochs", "4", "--swa-epochs", "2", "--train-size", "256",
                     "--seed", "1", "--batch-size", "32", "--plot", str(png))
    assert out.returncode == 0, out.stderr
    assert "raw model:  train accuracy" in out.stdout
    assert "SWA model:  train accuracy" in out.stdout
    assert "8 batches of 32 per epoch" in out.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_bad_options_are_refused(ex: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        ex.main(["--check-torch", "--dtype", "float32"])
    assert exc.value.code == 2
    assert "--check-torch compares float64 runs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ex.main(["--epochs", "3", "--swa-epochs", "3"])
    assert "need 0 < --swa-epochs < --epochs" in capsys.readouterr().err


def test_check_torch_without_torch_says_so(ex: Any, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    assert ex.main(["--check-torch", "--no-plot"]) == 1
    assert "--check-torch needs torch" in capsys.readouterr().out


def test_the_cupy_command_runs_or_says_clearly_why_not(ex: Any) -> None:
    out = run_script(CUPY_EXAMPLE, "--epochs", "3", "--swa-epochs", "1", "--train-size", "256",
                     "--no-plot")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    problem = ex.cupy_problem()
    if problem is None:  # a GPU with CuPy: it trains there
        assert "cupy arrays" in out.stdout and "test accuracy" in out.stdout
    else:
        assert out.stdout.strip() == problem
        assert "cannot run" in problem
        if importlib.util.find_spec("cupy") is None:
            assert "pip install cupy-cuda12x" in problem
