"""Small forward-only models that follow portopt's model protocol, on any backend.

They mirror ``torch.nn.Linear``, ``BatchNorm1d``, ``ReLU`` and ``Sequential`` closely
enough for the swa_utils conformance cases to compare :class:`AveragedModel` and
``update_bn`` on them with torch's on the equivalent torch module. They show the
protocol (see :mod:`portopt.optim.swa_utils`): ``parameters()``, ``buffers()``,
``modules()``, ``training``, ``train()``, ``eval()``, ``__call__``, and batch-norm layers
with ``running_mean``, ``running_var``, ``momentum`` and ``reset_running_stats()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import array_api_compat

from ..backends import get_backend
from ..parameter import Parameter


class Module:
    """The protocol's plumbing: children, training mode, parameters and buffers."""

    def __init__(self) -> None:
        self.training = True

    def children(self) -> list[Module]:
        return []

    def own_parameters(self) -> list[Parameter]:
        return []

    def own_buffers(self) -> list[Any]:
        return []

    def modules(self) -> Iterator[Module]:
        yield self
        for child in self.children():
            yield from child.modules()

    def parameters(self) -> Iterator[Parameter]:
        for m in self.modules():
            yield from m.own_parameters()

    def buffers(self) -> Iterator[Any]:
        for m in self.modules():
            yield from m.own_buffers()

    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)


class Linear(Module):
    """``x @ weight.T + bias``."""

    def __init__(self, weight: Any, bias: Any) -> None:
        super().__init__()
        self.weight, self.bias = Parameter(weight), Parameter(bias)

    def own_parameters(self) -> list[Parameter]:
        return [self.weight, self.bias]

    def __call__(self, x: Any) -> Any:
        xp = array_api_compat.array_namespace(x)
        return x @ xp.matrix_transpose(self.weight.data) + self.bias.data


class ReLU(Module):
    def __call__(self, x: Any) -> Any:
        xp = array_api_compat.array_namespace(x)
        return xp.maximum(x, xp.zeros_like(x))


class BatchNorm1d(Module):
    """torch's ``BatchNorm1d`` on ``(batch, features)``: batch statistics in training
    mode, folded into the running ones with ``momentum`` (a cumulative average when it is
    ``None``), the running statistics in evaluation mode."""

    def __init__(self, weight: Any, bias: Any, *, momentum: float | None = 0.1,
                 eps: float = 1e-5) -> None:
        super().__init__()
        xp = array_api_compat.array_namespace(weight)
        self.weight, self.bias = Parameter(weight), Parameter(bias)
        self.running_mean = xp.zeros_like(weight)
        self.running_var = xp.ones_like(weight)
        self.num_batches_tracked = xp.zeros((), dtype=xp.int64, device=weight.device)
        self.momentum, self.eps = momentum, eps

    def own_parameters(self) -> list[Parameter]:
        return [self.weight, self.bias]

    def own_buffers(self) -> list[Any]:
        return [self.running_mean, self.running_var, self.num_batches_tracked]

    def reset_running_stats(self) -> None:
        self.running_mean[...] = 0
        self.running_var[...] = 1
        self.num_batches_tracked[...] = 0

    def __call__(self, x: Any) -> Any:
        xp = array_api_compat.array_namespace(x)
        if self.training:
            n = x.shape[0]
            mean = xp.mean(x, axis=0)
            var = xp.mean((x - mean) ** 2, axis=0)
            self.num_batches_tracked[...] = self.num_batches_tracked + 1
            factor = (1.0 / int(self.num_batches_tracked) if self.momentum is None
                      else self.momentum)
            be = get_backend(x)
            be.assign(self.running_mean, (1 - factor) * self.running_mean + factor * mean)
            be.assign(self.running_var,
                      (1 - factor) * self.running_var + factor * var * (n / (n - 1)))
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) / xp.sqrt(var + self.eps) * self.weight.data + self.bias.data


class Sequential(Module):
    def __init__(self, *layers: Module) -> None:
        super().__init__()
        self.layers = list(layers)

    def children(self) -> list[Module]:
        return self.layers

    def __call__(self, x: Any) -> Any:
        for layer in self.layers:
            x = layer(x)
        return x


def mirror_torch_module(module: Any, make: Any) -> Module:
    """The protocol model equivalent to a torch ``nn.Sequential`` of ``Linear``,
    ``BatchNorm1d`` and ``ReLU`` layers, its arrays built by ``make(numpy_array)``."""
    import torch

    def arr(t: Any) -> Any:
        return make(t.detach().cpu().numpy())

    layers: list[Module] = []
    for layer in module:
        if isinstance(layer, torch.nn.Linear):
            layers.append(Linear(arr(layer.weight), arr(layer.bias)))
        elif isinstance(layer, torch.nn.BatchNorm1d):
            bn = BatchNorm1d(arr(layer.weight), arr(layer.bias), momentum=layer.momentum,
                             eps=layer.eps)
            for ours, theirs in zip(bn.own_buffers(), (layer.running_mean, layer.running_var,
                                                      layer.num_batches_tracked)):
                get_backend(ours).assign(ours, arr(theirs))
            layers.append(bn)
        elif isinstance(layer, torch.nn.ReLU):
            layers.append(ReLU())
        else:
            raise TypeError(f"no mirror for {type(layer).__name__}")
    return Sequential(*layers)
