"""Stochastic Weight Averaging (SWA) for a NumPy model, with portopt's swa_utils.

The model is a small multilayer perceptron written in NumPy, with hand-written forward and
backward passes (no autograd): ``Linear -> BatchNorm1d -> ReLU -> Linear -> BatchNorm1d ->
ReLU -> Linear``. It learns a noisy nonlinear function of two inputs from 512 samples.

The recipe is the one from ``torch.optim.swa_utils``, unchanged apart from the imports:

1. Train with SGD (momentum 0.9, weight decay) under a cosine learning-rate schedule.
2. From epoch ``swa_start`` on, switch to :class:`SWALR`, which anneals the learning rate to a
   constant ``swa_lr``; after each of these epochs, ``swa_model.update_parameters(model)``
   folds the current weights into a running mean held by ``swa_model = AveragedModel(model)``
   (a deep copy of the model).
3. The averaged weights never saw the batch-norm statistics that go with them, so at the end
   ``update_bn(train_loader, swa_model)`` recomputes each BatchNorm1d layer's running mean and
   variance with one pass over the training data (a loader is any iterable of batches: arrays
   or ``(x, y)`` tuples).
4. Evaluate the averaged model in eval mode, like the raw one.

What makes a NumPy model usable by ``AveragedModel`` and ``update_bn`` is a small duck-typed
protocol (see :class:`Module`): ``parameters()`` yielding ``portopt.Parameter`` objects,
``buffers()`` yielding the buffer arrays themselves (updated in place), ``modules()``
(including the module itself), ``training``, ``train(mode)``, ``eval()`` and ``__call__``.
A batch-norm layer is any module with ``running_mean``, ``running_var``, ``momentum`` and
``reset_running_stats()``; with ``momentum=None`` it keeps a cumulative average, which is
what ``update_bn`` relies on.

Run it with::

    python examples/swa_numpy.py

It trains for a few seconds and prints the train and test losses (mean squared error) of the
raw model and of the averaged one. Only NumPy and portopt are needed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

import portopt
from portopt.optim import SGD
from portopt.optim.lr_scheduler import CosineAnnealingLR
from portopt.optim.swa_utils import SWALR, AveragedModel, update_bn

# ---------------------------------------------------------------------------------------------
# The model: layers with a forward, a manual backward, and the protocol swa_utils uses.
# ---------------------------------------------------------------------------------------------


def _accumulate_grad(param: portopt.Parameter, grad: np.ndarray) -> None:
    """Add ``grad`` to ``param.grad``, as autograd would (``zero_grad`` clears it)."""
    param.grad = grad if param.grad is None else param.grad + grad


class Module:
    """Base layer: the duck-typed model protocol of ``AveragedModel`` and ``update_bn``.

    A subclass lists its own trainable parameters in ``_own_parameters()``, its own buffers in
    ``_own_buffers()`` and its sub-layers in ``_children()``; the public methods walk the tree.
    """

    def __init__(self) -> None:
        self.training = True

    def _own_parameters(self) -> list[portopt.Parameter]:
        return []

    def _own_buffers(self) -> list[np.ndarray]:
        return []

    def _children(self) -> list[Module]:
        return []

    def modules(self) -> Iterator[Module]:
        """This module, then every sub-module, depth first."""
        yield self
        for child in self._children():
            yield from child.modules()

    def parameters(self) -> Iterator[portopt.Parameter]:
        for module in self.modules():
            yield from module._own_parameters()

    def buffers(self) -> Iterator[np.ndarray]:
        """The buffer arrays themselves: whoever updates them does so in place."""
        for module in self.modules():
            yield from module._own_buffers()

    def train(self, mode: bool = True) -> Module:
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Add the gradients of the last forward to the parameters; return d(loss)/d(input)."""
        raise NotImplementedError


class Linear(Module):
    """``y = x @ weight.T + bias``, initialised like torch's ``nn.Linear``."""

    def __init__(self, in_features: int, out_features: int, rng: np.random.Generator) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = portopt.Parameter(rng.uniform(-bound, bound, (out_features, in_features)))
        self.bias = portopt.Parameter(rng.uniform(-bound, bound, out_features))
        self._x: np.ndarray | None = None

    def _own_parameters(self) -> list[portopt.Parameter]:
        return [self.weight, self.bias]

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        return x @ self.weight.data.T + self.bias.data

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        _accumulate_grad(self.weight, grad_out.T @ self._x)
        _accumulate_grad(self.bias, grad_out.sum(axis=0))
        return grad_out @ self.weight.data


class BatchNorm1d(Module):
    """Batch normalisation over the batch axis of ``(N, C)`` inputs, as torch's ``BatchNorm1d``.

    In training mode it normalises with the batch mean and the biased batch variance, and
    moves the running statistics towards the batch mean and the *unbiased* batch variance by
    ``momentum`` (or, with ``momentum=None``, by ``1 / num_batches_tracked``: a cumulative
    average). In eval mode it normalises with the running statistics.
    """

    def __init__(self, num_features: int, eps: float = 1e-5,
                 momentum: float | None = 0.1) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.weight = portopt.Parameter(np.ones(num_features))
        self.bias = portopt.Parameter(np.zeros(num_features))
        self.running_mean = np.zeros(num_features)
        self.running_var = np.ones(num_features)
        self.num_batches_tracked = np.zeros((), dtype=np.int64)
        self._cache: tuple[np.ndarray, np.ndarray, bool] | None = None

    def _own_parameters(self) -> list[portopt.Parameter]:
        return [self.weight, self.bias]

    def _own_buffers(self) -> list[np.ndarray]:
        return [self.running_mean, self.running_var, self.num_batches_tracked]

    def reset_running_stats(self) -> None:
        """Back to mean 0, variance 1, no batch seen; in place, so the buffers stay the same."""
        self.running_mean[...] = 0.0
        self.running_var[...] = 1.0
        self.num_batches_tracked[...] = 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.training:
            n = x.shape[0]
            if n < 2:
                raise ValueError("BatchNorm1d needs more than 1 value per channel when training")
            mean = x.mean(axis=0)
            var = x.var(axis=0)  # biased: what the batch is normalised with
            self.num_batches_tracked += 1
            factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                      else self.momentum)
            self.running_mean[...] = (1.0 - factor) * self.running_mean + factor * mean
            self.running_var[...] = ((1.0 - factor) * self.running_var
                                     + factor * var * (n / (n - 1)))  # unbiased
        else:
            mean, var = self.running_mean, self.running_var
        inv_std = 1.0 / np.sqrt(var + self.eps)
        x_hat = (x - mean) * inv_std
        self._cache = (x_hat, inv_std, self.training)
        return x_hat * self.weight.data + self.bias.data

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x_hat, inv_std, used_batch_stats = self._cache
        _accumulate_grad(self.weight, (grad_out * x_hat).sum(axis=0))
        _accumulate_grad(self.bias, grad_out.sum(axis=0))
        grad_x_hat = grad_out * self.weight.data
        if not used_batch_stats:  # the running statistics are constants
            return grad_x_hat * inv_std
        # the batch mean and variance depend on every sample of the batch
        return inv_std * (grad_x_hat - grad_x_hat.mean(axis=0)
                          - x_hat * (grad_x_hat * x_hat).mean(axis=0))


class ReLU(Module):
    def forward(self, x: np.ndarray) -> np.ndarray:
        self._mask = x > 0
        return np.where(self._mask, x, 0.0)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return np.where(self._mask, grad_out, 0.0)


class Sequential(Module):
    def __init__(self, *layers: Module) -> None:
        super().__init__()
        self.layers = list(layers)

    def _children(self) -> list[Module]:
        return self.layers

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out


def make_model(width: int, rng: np.random.Generator) -> Sequential:
    return Sequential(
        Linear(2, width, rng), BatchNorm1d(width), ReLU(),
        Linear(width, width, rng), BatchNorm1d(width), ReLU(),
        Linear(width, 1, rng),
    )


# ---------------------------------------------------------------------------------------------
# Data, loss and the training loop.
# ---------------------------------------------------------------------------------------------


def target_function(x: np.ndarray) -> np.ndarray:
    """The noiseless function to learn, of shape ``(N, 1)``."""
    x0, x1 = x[:, 0], x[:, 1]
    return (np.sin(2.0 * x0) * np.cos(1.5 * x1) + 0.3 * x0 * x1)[:, None]


def make_data(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(-2.0, 2.0, (n, 2))
    return x, target_function(x) + noise * rng.standard_normal((n, 1))


class BatchLoader:
    """Mini-batches ``(x, y)`` of ``batch_size`` samples, reshuffled on every pass.

    Re-iterable like a torch DataLoader; a last, incomplete batch is dropped, so batch norm
    never sees a batch of one.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int,
                 rng: np.random.Generator) -> None:
        self.x, self.y, self.batch_size, self.rng = x, y, batch_size, rng

    def __len__(self) -> int:
        return len(self.x) // self.batch_size

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = self.rng.permutation(len(self.x))
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield self.x[idx], self.y[idx]


def mse_loss(pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """The mean squared error and its gradient with respect to ``pred``."""
    diff = pred - target
    return float(np.mean(diff**2)), 2.0 * diff / diff.size


def train_epoch(model: Module, loader: BatchLoader, opt: SGD) -> float:
    """One pass over the loader; returns the mean training loss of its batches."""
    model.train()
    losses = []
    for x, y in loader:
        loss, grad = mse_loss(model(x), y)
        opt.zero_grad()
        model.backward(grad)
        opt.step()
        losses.append(loss)
    return float(np.mean(losses))


def evaluate(model: Module, x: np.ndarray, y: np.ndarray) -> float:
    """The loss of ``model`` in eval mode (running batch-norm statistics) on ``(x, y)``."""
    model.eval()
    return mse_loss(model(x), y)[0]


def main(epochs: int = 80, swa_start: int = 50, seed: int = 0, verbose: bool = True,
         n_train: int = 512, n_test: int = 2048, batch_size: int = 32, width: int = 64,
         lr: float = 0.1, swa_lr: float = 0.05, weight_decay: float = 1e-4) -> dict[str, float]:
    """Train the NumPy model with SGD, then average it with SWA; return the final losses.

    Epochs ``0 .. swa_start - 1`` follow a cosine schedule; epochs ``swa_start .. epochs - 1``
    follow SWALR and are averaged into the SWA model.
    """
    if not 0 < swa_start < epochs:
        raise ValueError(f"need 0 < swa_start < epochs, got swa_start={swa_start}, "
                         f"epochs={epochs}")
    rng = np.random.default_rng(seed)
    x_train, y_train = make_data(n_train, noise=0.2, rng=rng)
    x_test, y_test = make_data(n_test, noise=0.2, rng=rng)
    train_loader = BatchLoader(x_train, y_train, batch_size, rng)
    model = make_model(width, rng)

    results = {"initial_train_loss": evaluate(model, x_train, y_train),
               "initial_test_loss": evaluate(model, x_test, y_test)}

    opt = SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    scheduler = CosineAnnealingLR(opt, T_max=epochs)
    swa_model = AveragedModel(model)
    swa_scheduler = SWALR(opt, swa_lr=swa_lr, anneal_epochs=5)

    for epoch in range(epochs):
        lr_used = opt.param_groups[0]["lr"]
        train_loss = train_epoch(model, train_loader, opt)
        if epoch >= swa_start:
            swa_model.update_parameters(model)
            swa_scheduler.step()
        else:
            scheduler.step()
        if verbose and (epoch % 10 == 0 or epoch == epochs - 1):
            print(f"epoch {epoch:3d}  lr {lr_used:.4f}  mean batch loss {train_loss:.4f}")

    results["raw_train_loss"] = evaluate(model, x_train, y_train)
    results["raw_test_loss"] = evaluate(model, x_test, y_test)
    # Until update_bn, the averaged model still holds the raw model's batch-norm statistics.
    results["swa_test_loss_before_update_bn"] = evaluate(swa_model, x_test, y_test)
    update_bn(train_loader, swa_model)
    results["swa_train_loss"] = evaluate(swa_model, x_train, y_train)
    results["swa_test_loss"] = evaluate(swa_model, x_test, y_test)

    if verbose:
        print(f"initial model: train loss {results['initial_train_loss']:.4f}, "
              f"test loss {results['initial_test_loss']:.4f}")
        print(f"raw model:     train loss {results['raw_train_loss']:.4f}, "
              f"test loss {results['raw_test_loss']:.4f}")
        print(f"SWA model:     train loss {results['swa_train_loss']:.4f}, "
              f"test loss {results['swa_test_loss']:.4f} "
              f"(before update_bn: test loss {results['swa_test_loss_before_update_bn']:.4f})")
        print(f"(noise floor: test loss {0.2**2:.4f}; "
              f"{int(swa_model.n_averaged)} epochs averaged)")
    return results


if __name__ == "__main__":
    main()
