"""examples/swa_numpy.py: it trains, its layers match torch's, and swa_utils can use its model.

The example is loaded by path (examples/ is not a package). torch is the oracle for the layers
and for ``update_bn``; those tests skip without it.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "swa_numpy.py"
TOL = {"rtol": 1e-12, "atol": 1e-12}


@pytest.fixture(scope="module")
def ex() -> Any:
    spec = importlib.util.spec_from_file_location("swa_numpy_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- helpers: the equivalent torch layers, and comparisons ------------------------------------


def torch_twin(layer: Any, ex: Any, torch: Any) -> Any:
    """A float64 torch module with the same weights, buffers, momentum and mode as ``layer``."""
    nn = torch.nn

    def put(dst: Any, src: np.ndarray) -> None:
        with torch.no_grad():
            dst.copy_(torch.from_numpy(np.array(src)))

    if isinstance(layer, ex.Sequential):
        twin = nn.Sequential(*(torch_twin(sub, ex, torch) for sub in layer.layers))
    elif isinstance(layer, ex.Linear):
        out_features, in_features = layer.weight.shape
        twin = nn.Linear(in_features, out_features, dtype=torch.float64)
        put(twin.weight, layer.weight.data)
        put(twin.bias, layer.bias.data)
    elif isinstance(layer, ex.BatchNorm1d):
        twin = nn.BatchNorm1d(layer.num_features, eps=layer.eps, momentum=layer.momentum,
                              dtype=torch.float64)
        put(twin.weight, layer.weight.data)
        put(twin.bias, layer.bias.data)
        put(twin.running_mean, layer.running_mean)
        put(twin.running_var, layer.running_var)
        put(twin.num_batches_tracked, layer.num_batches_tracked)
    elif isinstance(layer, ex.ReLU):
        twin = nn.ReLU()
    else:
        raise TypeError(type(layer).__name__)
    return twin.train(layer.training)


def t2n(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy()


def assert_same_bn_state(mine: Any, theirs: Any) -> None:
    np.testing.assert_allclose(mine.running_mean, t2n(theirs.running_mean), **TOL)
    np.testing.assert_allclose(mine.running_var, t2n(theirs.running_var), **TOL)
    assert int(mine.num_batches_tracked) == int(theirs.num_batches_tracked)


def batchnorm_pairs(model: Any, torch_model: Any, ex: Any, torch: Any) -> list[tuple[Any, Any]]:
    mine = [m for m in model.modules() if isinstance(m, ex.BatchNorm1d)]
    theirs = [m for m in torch_model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(mine) == len(theirs) > 0
    return list(zip(mine, theirs))


def random_bn(ex: Any, rng: np.random.Generator, features: int, momentum: Any) -> Any:
    bn = ex.BatchNorm1d(features, momentum=momentum)
    bn.weight.data[...] = rng.uniform(0.5, 2.0, features)
    bn.bias.data[...] = rng.standard_normal(features)
    return bn


# --- (a) the example trains and averages ------------------------------------------------------


def test_main_trains_and_averages(ex: Any) -> None:
    res = ex.main(epochs=20, swa_start=12, seed=3, verbose=False, n_train=256, n_test=512,
                  width=32)
    assert all(math.isfinite(v) for v in res.values()), res
    assert res["raw_train_loss"] < 0.5 * res["initial_train_loss"], res
    assert res["raw_test_loss"] < 0.5 * res["initial_test_loss"], res
    assert res["swa_train_loss"] < 0.5 * res["initial_train_loss"], res
    assert 0.5 < res["swa_test_loss"] / res["raw_test_loss"] < 2.0, res
    # update_bn changed the averaged model's statistics
    assert res["swa_test_loss"] != res["swa_test_loss_before_update_bn"], res


def test_main_prints_the_losses(ex: Any, capsys: pytest.CaptureFixture[str]) -> None:
    res = ex.main(epochs=4, swa_start=2, seed=1, verbose=True, n_train=64, n_test=64, width=8)
    out = capsys.readouterr().out
    assert f"raw model:     train loss {res['raw_train_loss']:.4f}, " in out
    assert f"test loss {res['raw_test_loss']:.4f}" in out
    assert f"SWA model:     train loss {res['swa_train_loss']:.4f}, " in out
    assert f"test loss {res['swa_test_loss']:.4f}" in out


def test_main_is_seeded(ex: Any) -> None:
    kwargs = {"epochs": 4, "swa_start": 2, "verbose": False, "n_train": 64, "n_test": 64,
              "width": 8}
    assert ex.main(seed=5, **kwargs) == ex.main(seed=5, **kwargs)
    assert ex.main(seed=5, **kwargs) != ex.main(seed=6, **kwargs)


# --- (b) the layers against torch -------------------------------------------------------------


def test_linear_init_is_torch_bound(ex: Any) -> None:
    layer = ex.Linear(25, 400, np.random.default_rng(0))
    for p in (layer.weight.data, layer.bias.data):
        assert np.abs(p).max() <= 1 / 5
        assert np.abs(p).max() > 0.95 / 5  # spread over the whole interval
    assert layer.weight.shape == (400, 25) and layer.bias.shape == (400,)


def test_linear_forward_backward_match_torch(ex: Any, torch: Any) -> None:
    rng = np.random.default_rng(1)
    layer = ex.Linear(5, 3, rng)
    twin = torch_twin(layer, ex, torch)
    x = rng.standard_normal((7, 5))
    grad_out = rng.standard_normal((7, 3))

    xt = torch.from_numpy(x.copy()).requires_grad_()
    out_t = twin(xt)
    out_t.backward(torch.from_numpy(grad_out))

    np.testing.assert_allclose(layer(x), t2n(out_t), **TOL)
    np.testing.assert_allclose(layer.backward(grad_out), t2n(xt.grad), **TOL)
    np.testing.assert_allclose(layer.weight.grad, t2n(twin.weight.grad), **TOL)
    np.testing.assert_allclose(layer.bias.grad, t2n(twin.bias.grad), **TOL)
    # a second backward accumulates, as autograd does
    layer.backward(grad_out)
    np.testing.assert_allclose(layer.weight.grad, 2 * t2n(twin.weight.grad), **TOL)


@pytest.mark.parametrize("momentum", [0.1, 0.3, None], ids=lambda m: f"momentum={m}")
def test_batchnorm_training_matches_torch(ex: Any, torch: Any, momentum: Any) -> None:
    rng = np.random.default_rng(2)
    bn = random_bn(ex, rng, 4, momentum)
    twin = torch_twin(bn, ex, torch)
    for n in (6, 9, 2, 5):
        x = 3.0 + 2.0 * rng.standard_normal((n, 4))
        grad_out = rng.standard_normal((n, 4))
        bn.weight.grad = bn.bias.grad = None
        twin.zero_grad()

        xt = torch.from_numpy(x.copy()).requires_grad_()
        out_t = twin(xt)
        out_t.backward(torch.from_numpy(grad_out))

        np.testing.assert_allclose(bn(x), t2n(out_t), **TOL)
        assert_same_bn_state(bn, twin)
        np.testing.assert_allclose(bn.backward(grad_out), t2n(xt.grad), **TOL)
        np.testing.assert_allclose(bn.weight.grad, t2n(twin.weight.grad), **TOL)
        np.testing.assert_allclose(bn.bias.grad, t2n(twin.bias.grad), **TOL)
    assert int(bn.num_batches_tracked) == 4
    assert not np.allclose(bn.running_mean, 0.0)


def test_batchnorm_eval_matches_torch(ex: Any, torch: Any) -> None:
    rng = np.random.default_rng(3)
    bn = random_bn(ex, rng, 3, 0.1)
    bn.running_mean[...] = rng.standard_normal(3)
    bn.running_var[...] = rng.uniform(0.5, 3.0, 3)
    bn.eval()
    twin = torch_twin(bn, ex, torch)
    x = rng.standard_normal((5, 3))
    grad_out = rng.standard_normal((5, 3))
    before = (bn.running_mean.copy(), bn.running_var.copy())

    xt = torch.from_numpy(x.copy()).requires_grad_()
    out_t = twin(xt)
    out_t.backward(torch.from_numpy(grad_out))

    np.testing.assert_allclose(bn(x), t2n(out_t), **TOL)
    np.testing.assert_allclose(bn.backward(grad_out), t2n(xt.grad), **TOL)
    np.testing.assert_allclose(bn.weight.grad, t2n(twin.weight.grad), **TOL)
    np.testing.assert_allclose(bn.bias.grad, t2n(twin.bias.grad), **TOL)
    np.testing.assert_array_equal(bn.running_mean, before[0])  # eval leaves the stats alone
    np.testing.assert_array_equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == 0


def test_batchnorm_buffers_are_updated_in_place(ex: Any) -> None:
    bn = ex.BatchNorm1d(3)
    held = list(bn.buffers())
    bn(np.random.default_rng(4).standard_normal((5, 3)))
    assert [id(b) for b in bn.buffers()] == [id(b) for b in held]
    assert int(held[2]) == 1 and not np.allclose(held[0], 0.0)
    bn.reset_running_stats()
    assert [id(b) for b in bn.buffers()] == [id(b) for b in held]
    np.testing.assert_array_equal(held[0], 0.0)
    np.testing.assert_array_equal(held[1], 1.0)
    assert int(held[2]) == 0


def test_batchnorm_rejects_a_single_sample_in_training(ex: Any) -> None:
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        ex.BatchNorm1d(3)(np.ones((1, 3)))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_model_forward_backward_match_torch(ex: Any, torch: Any, training: bool) -> None:
    rng = np.random.default_rng(5)
    model = ex.make_model(6, rng)
    model(rng.standard_normal((8, 2)))  # nontrivial running stats for eval mode
    model.train(training)
    twin = torch_twin(model, ex, torch)
    x, y = ex.make_data(10, noise=0.2, rng=rng)

    xt = torch.from_numpy(x.copy()).requires_grad_()
    loss_t = torch.nn.functional.mse_loss(twin(xt), torch.from_numpy(y))
    loss_t.backward()

    loss, grad = ex.mse_loss(model(x), y)
    assert loss == pytest.approx(loss_t.item(), rel=1e-12)
    np.testing.assert_allclose(model.backward(grad), t2n(xt.grad), **TOL)
    mine = list(model.parameters())
    theirs = list(twin.parameters())
    assert len(mine) == len(theirs) == 10
    for p, q in zip(mine, theirs):
        np.testing.assert_allclose(p.grad, t2n(q.grad), **TOL)
    for b, c in zip(model.buffers(), twin.buffers(), strict=True):
        np.testing.assert_allclose(b, t2n(c), **TOL)


# --- (c) the protocol, as swa_utils uses it ----------------------------------------------------


def test_model_protocol(ex: Any) -> None:
    model = ex.make_model(4, np.random.default_rng(6))
    mods = list(model.modules())
    assert mods[0] is model and len(mods) == 8
    assert model.eval() is model and not any(m.training for m in mods)
    assert model.train() is model and all(m.training for m in mods)
    assert model.train(False) is model and not any(m.training for m in mods)
    assert len(list(model.buffers())) == 6
    assert all(type(p).__name__ == "Parameter" for p in model.parameters())


def make_loader(rng: np.random.Generator, with_targets: bool) -> list[Any]:
    batches = []
    for n in (5, 8, 3, 6):
        x = 0.5 + rng.standard_normal((n, 2))
        batches.append((x, rng.standard_normal((n, 1))) if with_targets else x)
    return batches


def torch_loader(loader: list[Any], torch: Any) -> list[Any]:
    return [tuple(torch.from_numpy(a) for a in b) if isinstance(b, tuple)
            else torch.from_numpy(b) for b in loader]


@pytest.mark.parametrize("with_targets", [True, False], ids=["xy", "x"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_update_bn_matches_torch(ex: Any, torch: Any, with_targets: bool,
                                 training: bool) -> None:
    from torch.optim import swa_utils as torch_swa

    from portopt.optim.swa_utils import update_bn

    rng = np.random.default_rng(7)
    model = ex.make_model(5, rng)
    bns = [m for m in model.modules() if isinstance(m, ex.BatchNorm1d)]
    bns[1].momentum = 0.3
    for _ in range(3):  # stale statistics that update_bn must reset
        model(4.0 + rng.standard_normal((7, 2)))
    model.train(training)
    twin = torch_twin(model, ex, torch)
    loader = make_loader(rng, with_targets)
    weights = [p.data.copy() for p in model.parameters()]

    update_bn(loader, model)
    torch_swa.update_bn(torch_loader(loader, torch), twin)

    for mine, theirs in batchnorm_pairs(model, twin, ex, torch):
        assert_same_bn_state(mine, theirs)
    assert int(bns[0].num_batches_tracked) == len(loader)
    assert [bn.momentum for bn in bns] == [0.1, 0.3]
    assert all(m.training is training for m in model.modules())
    for p, w in zip(model.parameters(), weights):
        np.testing.assert_array_equal(p.data, w)


AVERAGING = {
    "swa": lambda swa: {},
    "swa-use_buffers": lambda swa: {"use_buffers": True},
    "ema-use_buffers": lambda swa: {"multi_avg_fn": swa.get_ema_multi_avg_fn(0.9),
                                    "use_buffers": True},
}


@pytest.mark.parametrize("averaging", list(AVERAGING))
def test_averaged_model_then_update_bn_matches_torch(ex: Any, torch: Any,
                                                     averaging: str) -> None:
    from torch.optim import swa_utils as torch_swa

    from portopt.optim import swa_utils

    rng = np.random.default_rng(8)
    model = ex.make_model(5, rng)
    twin = torch_twin(model, ex, torch)
    swa = swa_utils.AveragedModel(model, **AVERAGING[averaging](swa_utils))
    swa_t = torch_swa.AveragedModel(twin, **AVERAGING[averaging](torch_swa))
    assert swa.module is not model
    assert all(p is not q for p, q in zip(swa.parameters(), model.parameters()))

    for _ in range(3):  # perturb both models alike: new weights, new running stats
        for p, q in zip(model.parameters(), twin.parameters()):
            p.data += 0.1 * rng.standard_normal(p.shape)
            with torch.no_grad():
                q.copy_(torch.from_numpy(p.data))
        x = rng.standard_normal((6, 2))
        model(x)
        twin(torch.from_numpy(x))
        swa.update_parameters(model)
        swa_t.update_parameters(twin)
    assert int(swa.n_averaged) == int(swa_t.n_averaged) == 3
    for p, q in zip(swa.parameters(), swa_t.parameters(), strict=True):
        np.testing.assert_allclose(p.data, t2n(q), **TOL)
    for b, c in zip(swa.buffers(), swa_t.buffers(), strict=True):
        np.testing.assert_allclose(b, t2n(c), **TOL)

    swa.eval()
    swa_t.eval()
    loader = make_loader(rng, with_targets=True)
    swa_utils.update_bn(loader, swa)
    torch_swa.update_bn(torch_loader(loader, torch), swa_t)

    for mine, theirs in batchnorm_pairs(swa.module, swa_t.module, ex, torch):
        assert_same_bn_state(mine, theirs)
        assert mine.momentum == 0.1
    assert not swa.training and not any(m.training for m in swa.module.modules())
    x = rng.standard_normal((9, 2))
    np.testing.assert_allclose(swa(x), t2n(swa_t(torch.from_numpy(x))), **TOL)
