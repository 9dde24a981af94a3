"""AveragedModel state_dicts of non-torch models: torch's layout, loaded both ways."""

from __future__ import annotations

import numpy as np
import pytest

import portopt
from portopt.optim.swa_utils import AveragedModel


class TinyNet:
    """A NumPy model with torch's names: a linear layer and batch-norm statistics."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.training = True
        self.weight = portopt.Parameter(rng.standard_normal((2, 3)))
        self.bias = portopt.Parameter(rng.standard_normal(2))
        self.running_mean = np.zeros(2)
        self.num_batches_tracked = np.zeros((), dtype=np.int64)

    def parameters(self):
        return iter([self.weight, self.bias])

    def buffers(self):
        return iter([self.running_mean, self.num_batches_tracked])

    def modules(self):
        return iter([self])

    def train(self, mode: bool = True):
        self.training = mode
        return self

    def __call__(self, x):
        return x @ self.weight.data.T + self.bias.data

    def state_dict(self):
        return {"0.weight": self.weight, "0.bias": self.bias,
                "1.running_mean": self.running_mean,
                "1.num_batches_tracked": self.num_batches_tracked}


def _torch_twin(torch, net: TinyNet):
    """torch's Sequential(Linear, BN-like buffers) holding ``net``'s values."""
    lin = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(net.weight.data))
        lin.bias.copy_(torch.from_numpy(net.bias.data))
    stats = torch.nn.Module()
    stats.register_buffer("running_mean", torch.zeros(2, dtype=torch.float64))
    stats.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.int64))
    return torch.nn.Sequential(lin, stats)


def _trained(seed: int = 0):
    rng = np.random.default_rng(seed)
    net = TinyNet(rng)
    avg = AveragedModel(net)
    for _ in range(3):
        net.weight.data += rng.standard_normal((2, 3))
        net.bias.data += rng.standard_normal(2)
        net.running_mean += 1.0
        avg.update_parameters(net)
    return net, avg


def test_state_dict_has_torchs_keys_and_live_arrays():
    _, avg = _trained()
    sd = avg.state_dict()
    assert list(sd) == ["n_averaged", "module.0.weight", "module.0.bias",
                        "module.1.running_mean", "module.1.num_batches_tracked"]
    assert int(sd["n_averaged"]) == 3
    assert sd["module.0.weight"] is avg.module.weight.data


def test_a_model_without_names_is_told_what_it_lacks():
    class Unnamed(TinyNet):
        state_dict = None

    avg = AveragedModel(Unnamed(np.random.default_rng(0)))
    with pytest.raises(TypeError, match="Unnamed has no state_dict"):
        avg.state_dict()


def test_round_trip_between_numpy_models():
    _, avg = _trained(0)
    _, other = _trained(1)
    result = other.load_state_dict(avg.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    for key, value in avg.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key], value)
    assert other.state_dict()["module.0.weight"] is not avg.state_dict()["module.0.weight"]


def test_torchs_state_dict_loads_and_ours_loads_into_torch(torch):
    from torch.optim import swa_utils

    net, avg = _trained()
    ref = swa_utils.AveragedModel(_torch_twin(torch, net))
    rng = np.random.default_rng(5)
    twin = _torch_twin(torch, net)
    for _ in range(4):
        with torch.no_grad():
            for p in twin.parameters():
                p.add_(torch.from_numpy(rng.standard_normal(tuple(p.shape))))
        ref.update_parameters(twin)
    # torch -> portopt
    result = avg.load_state_dict(ref.state_dict())
    assert tuple(result) == ([], [])
    for key, value in ref.state_dict().items():
        np.testing.assert_array_equal(avg.state_dict()[key], value.numpy())
    assert avg.state_dict()["n_averaged"].dtype == np.int64
    # portopt -> torch
    fresh = swa_utils.AveragedModel(_torch_twin(torch, net))
    fresh.load_state_dict(portopt.to_torch(avg.state_dict()))
    assert int(fresh.n_averaged) == 4
    torch.testing.assert_close(fresh.module[0].weight, ref.module[0].weight, rtol=0, atol=0)


def test_bad_state_dicts_get_torchs_messages_and_change_nothing(torch):
    from torch.optim import swa_utils

    net, avg = _trained()
    ref = swa_utils.AveragedModel(_torch_twin(torch, net))
    before = {k: np.array(v, copy=True) for k, v in avg.state_dict().items()}
    bad = dict(avg.state_dict())
    del bad["module.0.bias"]
    bad["foo"] = np.ones(1)
    bad_torch = dict(ref.state_dict())
    del bad_torch["module.0.bias"]
    bad_torch["foo"] = torch.ones(1)
    with pytest.raises(RuntimeError) as ours:
        avg.load_state_dict(bad)
    with pytest.raises(RuntimeError) as theirs:
        ref.load_state_dict(bad_torch)
    assert str(ours.value) == str(theirs.value)
    # a wrong shape: torch's sentence, shapes written as tuples
    bad = dict(avg.state_dict(), **{"module.0.weight": np.ones((3, 2))})
    with pytest.raises(RuntimeError, match=r"size mismatch for module\.0\.weight: copying a "
                       r"param with shape \(3, 2\) from checkpoint, the shape in current "
                       r"model is \(2, 3\)\."):
        avg.load_state_dict(bad)
    for key, value in avg.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    result = avg.load_state_dict({k: v for k, v in before.items() if k != "n_averaged"},
                                 strict=False)
    assert result.missing_keys == ["n_averaged"]
