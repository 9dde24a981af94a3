"""swa_utils: the averaging rules by hand, AveragedModel and update_bn on protocol
models, and the torch-module flavour. (The comparison with torch after every update is
conformance/test_swa_utils.py.)"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from helpers import raises

from portopt.optim import swa_utils
from portopt.testing._models import BatchNorm1d, Linear, ReLU, Sequential


def _model(xp, seed=0):
    rng = np.random.default_rng(seed)

    def arr(*shape):
        return xp.asarray(rng.standard_normal(shape))

    return Sequential(Linear(arr(3, 2), arr(3)), BatchNorm1d(xp.ones(3, dtype=xp.float64),
                                                             xp.zeros(3, dtype=xp.float64)),
                      ReLU(), Linear(arr(1, 3), arr(1)))


def _set_weights(model, xp, value):
    for p in model.parameters():
        p.data[...] = xp.full(p.data.shape, value, dtype=p.data.dtype)


def _values(model):
    return [float(np.asarray(p.data).ravel()[0]) for p in model.parameters()]


def test_swa_average_is_the_mean_of_the_models(xp):
    model = _model(xp)
    avg = swa_utils.AveragedModel(model)
    for value in (1.0, 2.0, 6.0):
        _set_weights(model, xp, value)
        avg.update_parameters(model)
    assert _values(avg) == [3.0] * 6
    assert int(avg.n_averaged) == 3
    assert _values(model) == [6.0] * 6  # the model itself is untouched


def test_ema_average_by_hand(xp):
    model = _model(xp)
    avg = swa_utils.AveragedModel(model, avg_fn=swa_utils.get_ema_avg_fn(0.5))
    for value in (4.0, 8.0, 0.0):
        _set_weights(model, xp, value)
        avg.update_parameters(model)
    # the first update copies 4; then 0.5*4 + 0.5*8 = 6; then 0.5*6 + 0.5*0 = 3
    assert _values(avg) == [3.0] * 6


def test_multi_avg_fns_update_lists_in_place(xp):
    a = [xp.asarray([1.0, 2.0]), xp.asarray([0.0])]
    swa_utils.get_swa_multi_avg_fn()(a, [xp.asarray([3.0, 6.0]), xp.asarray([4.0])], 1)
    assert [list(np.asarray(x)) for x in a] == [[2.0, 4.0], [2.0]]
    swa_utils.get_ema_multi_avg_fn(0.75)(a, [xp.asarray([6.0, 8.0]), xp.asarray([6.0])], 0)
    assert [list(np.asarray(x)) for x in a] == [[3.0, 5.0], [3.0]]


def test_integer_buffers_are_averaged_in_float32_and_truncated():
    avg, cur = np.asarray(3, dtype=np.int64), np.asarray(8, dtype=np.int64)
    out = swa_utils.swa_avg(avg, cur, np.asarray(1))  # 3 + 5/2
    assert out.dtype == np.float32 and float(out) == 5.5
    model = Sequential(BatchNorm1d(np.ones(2), np.zeros(2)))
    averaged = swa_utils.AveragedModel(model, use_buffers=True)
    averaged.update_parameters(model)
    model.layers[0].num_batches_tracked[...] = 5
    averaged.update_parameters(model)
    assert int(averaged.module.layers[0].num_batches_tracked) == 2  # (0 + 5) / 2 truncated


def test_buffers_are_copied_unless_averaged():
    model = _model(np)
    averaged = swa_utils.AveragedModel(model)
    averaged.update_parameters(model)
    model.layers[1].running_mean[...] = 7.0
    averaged.update_parameters(model)
    assert list(averaged.module.layers[1].running_mean) == [7.0, 7.0, 7.0]


def test_protocol_of_the_averaged_model():
    model = _model(np)
    averaged = swa_utils.AveragedModel(model)
    assert [p is q for p, q in zip(averaged.parameters(), model.parameters())] == [False] * 6
    buffers = list(averaged.buffers())
    assert buffers[0] is averaged.n_averaged and len(buffers) == 4
    assert list(averaged.modules())[0] is averaged and list(averaged.modules())[1] is averaged.module
    assert averaged.eval() is averaged and not averaged.training and not averaged.module.training
    x = np.ones((4, 2))
    np.testing.assert_array_equal(averaged(x), averaged.module(x))
    clone = copy.deepcopy(averaged)
    assert clone.module is not averaged.module and int(clone.n_averaged) == 0


def test_device_without_to_must_match():
    model = _model(np)
    assert swa_utils.AveragedModel(model, device="cpu").module is not model
    with pytest.raises(ValueError, match="has no to\\(device\\) method"):
        swa_utils.AveragedModel(model, device="cuda")


def test_update_bn_recomputes_and_restores(xp):
    model = _model(xp)
    model.eval()
    bn = model.layers[1]
    bn.momentum = 0.3
    x = [xp.asarray(np.random.default_rng(i).standard_normal((8, 2))) for i in range(3)]
    swa_utils.update_bn([(b, None) for b in x], model)
    assert bn.momentum == 0.3 and not model.training
    # a cumulative average of the three batch means of the first layer's output
    means = [np.asarray(model.layers[0](b)).mean(axis=0) for b in x]
    np.testing.assert_allclose(np.asarray(bn.running_mean), np.mean(means, axis=0), rtol=1e-12)
    assert int(bn.num_batches_tracked) == 3


def test_update_bn_without_batch_norm_does_nothing():
    model = Sequential(Linear(np.ones((1, 1)), np.zeros(1)))
    model.eval()
    swa_utils.update_bn([np.ones((2, 1))], model)
    assert not model.training


def test_argument_errors_are_torchs():
    raises(AssertionError, "Only one of avg_fn and multi_avg_fn should be provided",
           swa_utils.AveragedModel, _model(np), avg_fn=swa_utils.get_swa_avg_fn(),
           multi_avg_fn=swa_utils.get_swa_multi_avg_fn())
    for factory in (swa_utils.get_ema_avg_fn, swa_utils.get_ema_multi_avg_fn):
        raises(ValueError, "Invalid decay value 1.5 provided. Please provide a value in [0,1] range.",
               factory, 1.5)


def test_torch_module_gives_a_torch_module(torch):
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    averaged = swa_utils.AveragedModel(net)
    assert isinstance(averaged, torch.nn.Module) and isinstance(averaged, swa_utils.AveragedModel)
    theirs = torch.optim.swa_utils.AveragedModel(net)
    assert list(averaged.state_dict()) == list(theirs.state_dict())
    averaged.update_parameters(net)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(2.0)
    averaged.update_parameters(net)
    for p, q in zip(averaged.parameters(), net.parameters()):
        torch.testing.assert_close(p, q - 1.0)
    restored = pickle.loads(pickle.dumps(averaged))
    assert int(restored.n_averaged) == 2 and type(restored) is type(averaged)
    assert averaged(torch.ones(3, 2)).shape == (3, 2)


def test_update_bn_takes_unhashable_layers():
    from dataclasses import dataclass, field

    @dataclass
    class Norm:  # eq=True leaves a dataclass without __hash__
        running_mean: np.ndarray = field(default_factory=lambda: np.full(2, 5.0))
        running_var: np.ndarray = field(default_factory=lambda: np.ones(2))
        momentum: float = 0.1
        training: bool = False
        seen: list = field(default_factory=list)

        def reset_running_stats(self):
            self.running_mean[...] = 0.0

        def modules(self):
            yield self

        def train(self, mode=True):
            self.training = mode
            return self

        def __call__(self, x):
            self.seen.append(self.momentum)

    norm = Norm()
    swa_utils.update_bn([np.zeros((2, 2))], norm)
    assert norm.seen == [None] and norm.momentum == 0.1 and not norm.training
    assert list(norm.running_mean) == [0.0, 0.0]
