"""Classify handwritten digits with a NumPy (or CuPy) MLP trained by portopt, and check the
result against torch.optim.

The data are scikit-learn's bundled *digits* (1,797 grey 8x8 images of the digits 0-9, read
from the package itself: no download), split once into 1,437 training and 360 test images
by a permutation with a fixed seed. The model is a small multilayer perceptron written with
arrays, with a hand-written forward and backward pass (no autograd), and a softmax
cross-entropy loss::

    Linear(64, 128, no bias) -> BatchNorm1d(128) -> ReLU -> Linear(128, 10)

Its parameters are ``portopt.Parameter`` objects, and it is trained with the recipe one
would write with ``torch.optim``, with only the imports changed:

1. AdamW under a OneCycleLR schedule (stepped after every mini-batch), with the gradient
   norm clipped to ``max_norm`` before each step (``portopt.utils.clip_grad_norm_``);
2. for the last ``swa_epochs`` epochs, Stochastic Weight Averaging: SWALR anneals the lr to a
   constant ``swa_lr`` and ``AveragedModel`` keeps the running mean of the weights reached
   at the end of each of these epochs;
3. ``update_bn`` recomputes the averaged model's batch-norm statistics with one pass over
   the training data (the averaged weights never saw the statistics that go with them).

It prints the train and test accuracy of the raw and of the averaged model, and draws the
loss and the learning rate of every step to a PNG file (matplotlib).

**Backends.** The layers compute with the array namespace of their inputs
(``array_api_compat.array_namespace``), so the same code runs on NumPy and on CuPy:
``--backend cupy`` (or ``examples/mlp_digits_cupy.py``) puts the data and the weights on
the GPU and nothing else changes. The model follows the small duck-typed protocol that
``swa_utils`` understands (:class:`Module`: ``parameters()``, ``buffers()``, ``modules()``,
``training``, ``train(mode)``, ``__call__``; a batch-norm layer has ``running_mean``,
``running_var``, ``momentum`` and ``reset_running_stats()``), and a ``state_dict()`` that
names its arrays as torch names those of the equivalent ``nn.Sequential``.

**The check against torch.optim.** ``--check-torch`` trains the same architecture as a
torch ``nn.Sequential`` with ``torch.optim`` (AdamW, OneCycleLR,
``torch.nn.utils.clip_grad_norm_``, torch's AveragedModel, SWALR and update_bn), with
gradients from torch autograd, from the same initial weights and on the same mini-batches.
The training loop (:func:`fit`) is written once and run twice, once with portopt's modules
and once with torch's: the drop-in claim, in action. Both runs compute in float64, so that
the comparison can be tight, and the example prints the largest relative difference between
their final models, raw and averaged (over the arrays of their state_dicts, each array's
largest absolute difference over the larger magnitude of the two), and whether it is within
``TORCH_TOLERANCE`` (1e-10). The two are not bit-identical, and not because of the
optimizers (the conformance suite checks those step by step): the gradients come from
different code, the backward below versus autograd, whose matrix products and batch-norm
reductions add the same numbers in another order, so they differ in the last bits, and every
step carries these differences forward. They stay near 1e-14. (A bias in the first layer
would break this: see :func:`make_model`.)

Run it with::

    python examples/mlp_digits.py                      # NumPy, 30 epochs, a few seconds
    python examples/mlp_digits.py --check-torch        # and compare with torch.optim
    python examples/mlp_digits.py --backend cupy       # on the GPU
    python examples/mlp_digits.py --help               # epochs, batch size, seed, ...

It needs scikit-learn and matplotlib (``pip install "portopt[examples]"``); ``--check-torch``
needs torch, ``--backend cupy`` needs CuPy and an NVIDIA GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import array_api_compat
import numpy as np
from array_api_compat import array_namespace

import portopt
from portopt.optim import lr_scheduler, swa_utils
from portopt.utils import clip_grad_norm_

N_CLASSES = 10
SPLIT_SEED = 0  # the train/test split is the same for every run
N_TEST = 360  # test images; the other 1,437 are for training
#: the largest relative weight difference that counts as agreement with torch.optim (float64)
TORCH_TOLERANCE = 1e-10

# ---------------------------------------------------------------------------------------------
# The model: layers with a forward, a hand-written backward, and the protocol swa_utils uses.
# ---------------------------------------------------------------------------------------------


def _accumulate_grad(param: portopt.Parameter, grad: Any) -> None:
    """Add ``grad`` to ``param.grad``, as autograd would (``zero_grad`` clears it)."""
    param.grad = grad if param.grad is None else param.grad + grad


class Module:
    """Base layer: the duck-typed model protocol of ``AveragedModel`` and ``update_bn``.

    A subclass names its own parameters in ``_own_parameters()``, its own buffers in
    ``_own_buffers()`` and its sub-layers in ``_children()`` (dicts, in torch's order); the
    public methods walk the tree.
    """

    def __init__(self) -> None:
        self.training = True

    def _own_parameters(self) -> dict[str, portopt.Parameter]:
        return {}

    def _own_buffers(self) -> dict[str, Any]:
        return {}

    def _children(self) -> dict[str, Module]:
        return {}

    def modules(self) -> Iterator[Module]:
        """This module, then every sub-module, depth first."""
        yield self
        for child in self._children().values():
            yield from child.modules()

    def parameters(self) -> Iterator[portopt.Parameter]:
        for module in self.modules():
            yield from module._own_parameters().values()

    def buffers(self) -> Iterator[Any]:
        """The buffer arrays themselves: whoever updates them does so in place."""
        for module in self.modules():
            yield from module._own_buffers().values()

    def state_dict(self) -> dict[str, Any]:
        """Every parameter's array and every buffer, under the names torch gives them
        (``"0.weight"``, ``"1.running_mean"``, ...): the live arrays, not copies."""
        named = {name: p.data for name, p in self._own_parameters().items()}
        named.update(self._own_buffers())
        for child_name, child in self._children().items():
            named.update((f"{child_name}.{k}", v) for k, v in child.state_dict().items())
        return named

    def train(self, mode: bool = True) -> Module:
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def __call__(self, x: Any) -> Any:
        return self.forward(x)

    def forward(self, x: Any) -> Any:
        raise NotImplementedError

    def backward(self, grad_out: Any) -> Any:
        """Add the gradients of the last forward to the parameters; return d(loss)/d(input)."""
        raise NotImplementedError


class Linear(Module):
    """``y = x @ weight.T + bias`` (no bias if ``bias`` is None)."""

    def __init__(self, weight: Any, bias: Any = None) -> None:
        super().__init__()
        self.weight = portopt.Parameter(weight)
        self.bias = None if bias is None else portopt.Parameter(bias)
        self._x = None

    def _own_parameters(self) -> dict[str, portopt.Parameter]:
        if self.bias is None:
            return {"weight": self.weight}
        return {"weight": self.weight, "bias": self.bias}

    def forward(self, x: Any) -> Any:
        self._x = x
        y = x @ self.weight.data.T
        return y if self.bias is None else y + self.bias.data

    def backward(self, grad_out: Any) -> Any:
        xp = array_namespace(grad_out)
        _accumulate_grad(self.weight, grad_out.T @ self._x)
        if self.bias is not None:
            _accumulate_grad(self.bias, xp.sum(grad_out, axis=0))
        return grad_out @ self.weight.data


class BatchNorm1d(Module):
    """Batch normalisation of ``(N, C)`` inputs over the batch axis, as torch's ``BatchNorm1d``.

    In training mode it normalises with the batch mean and the biased batch variance, and
    moves the running statistics towards the batch mean and the *unbiased* batch variance by
    ``momentum`` (or, with ``momentum=None``, by ``1 / num_batches_tracked``: a cumulative
    average, which ``update_bn`` relies on). In eval mode it uses the running statistics.
    """

    def __init__(self, num_features: int, xp: Any, dtype: Any, eps: float = 1e-5,
                 momentum: float | None = 0.1) -> None:
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.weight = portopt.Parameter(xp.ones(num_features, dtype=dtype))
        self.bias = portopt.Parameter(xp.zeros(num_features, dtype=dtype))
        self.running_mean = xp.zeros(num_features, dtype=dtype)
        self.running_var = xp.ones(num_features, dtype=dtype)
        self.num_batches_tracked = xp.zeros((), dtype=xp.int64)
        self._cache = None

    def _own_parameters(self) -> dict[str, portopt.Parameter]:
        return {"weight": self.weight, "bias": self.bias}

    def _own_buffers(self) -> dict[str, Any]:
        return {"running_mean": self.running_mean, "running_var": self.running_var,
                "num_batches_tracked": self.num_batches_tracked}

    def reset_running_stats(self) -> None:
        """Back to mean 0, variance 1, no batch seen; in place, so the buffers stay the same."""
        self.running_mean[...] = 0.0
        self.running_var[...] = 1.0
        self.num_batches_tracked[...] = 0

    def forward(self, x: Any) -> Any:
        xp = array_namespace(x)
        if self.training:
            n = x.shape[0]
            if n < 2:
                raise ValueError("BatchNorm1d needs more than 1 value per channel when training")
            mean = xp.mean(x, axis=0)
            var = xp.var(x, axis=0)  # biased: what the batch is normalised with
            self.num_batches_tracked += 1
            factor = (1.0 / int(self.num_batches_tracked) if self.momentum is None
                      else self.momentum)
            self.running_mean[...] = (1.0 - factor) * self.running_mean + factor * mean
            self.running_var[...] = ((1.0 - factor) * self.running_var
                                     + factor * var * (n / (n - 1)))  # unbiased
        else:
            mean, var = self.running_mean, self.running_var
        inv_std = 1.0 / xp.sqrt(var + self.eps)
        x_hat = (x - mean) * inv_std
        self._cache = (x_hat, inv_std, self.training)
        return x_hat * self.weight.data + self.bias.data

    def backward(self, grad_out: Any) -> Any:
        xp = array_namespace(grad_out)
        x_hat, inv_std, used_batch_stats = self._cache
        _accumulate_grad(self.weight, xp.sum(grad_out * x_hat, axis=0))
        _accumulate_grad(self.bias, xp.sum(grad_out, axis=0))
        grad_x_hat = grad_out * self.weight.data
        if not used_batch_stats:  # the running statistics are constants
            return grad_x_hat * inv_std
        # the batch mean and variance depend on every sample of the batch
        return inv_std * (grad_x_hat - xp.mean(grad_x_hat, axis=0)
                          - x_hat * xp.mean(grad_x_hat * x_hat, axis=0))


class ReLU(Module):
    def forward(self, x: Any) -> Any:
        xp = array_namespace(x)
        self._positive = x > 0
        return xp.where(self._positive, x, xp.zeros_like(x))

    def backward(self, grad_out: Any) -> Any:
        xp = array_namespace(grad_out)
        return xp.where(self._positive, grad_out, xp.zeros_like(grad_out))


class Sequential(Module):
    """Layers applied in order, named ``"0"``, ``"1"``, ... as in torch's ``nn.Sequential``."""

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        self.layers = list(layers)

    def _children(self) -> dict[str, Module]:
        return {str(i): layer for i, layer in enumerate(self.layers)}

    def forward(self, x: Any) -> Any:
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, grad_out: Any) -> Any:
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out


def make_model(n_inputs: int, hidden: int, rng: np.random.Generator, xp: Any,
               dtype: Any) -> Sequential:
    """The MLP, its weights drawn as torch's ``nn.Linear`` draws them (uniform in
    ``±1/sqrt(fan_in)``) by NumPy's ``rng`` and then put on ``xp``'s device in ``dtype``:
    the same seed gives the same start on every backend.

    The first layer has no bias: the batch norm right after it subtracts the batch mean,
    which cancels any bias. Such a bias would change nothing, and its gradient, zero in
    exact arithmetic, would be rounding noise, which AdamW's normalised steps turn into
    updates of about ``lr * noise / eps``: different noise in the torch check, so weights
    that differ by 1e-9 instead of 1e-14.
    """

    def uniform(fan_in: int, shape: tuple[int, ...]) -> Any:
        bound = 1.0 / math.sqrt(fan_in)
        return xp.asarray(rng.uniform(-bound, bound, shape), dtype=dtype)

    return Sequential(
        Linear(uniform(n_inputs, (hidden, n_inputs))),
        BatchNorm1d(hidden, xp, dtype),
        ReLU(),
        Linear(uniform(hidden, (N_CLASSES, hidden)), uniform(hidden, (N_CLASSES,))),
    )


def cross_entropy(logits: Any, labels: Any) -> tuple[Any, Any]:
    """The mean softmax cross-entropy of ``logits`` (N, classes) against integer ``labels``
    (N,), and its gradient with respect to ``logits``: ``(softmax(logits) - onehot) / N``.
    The loss is a 0-d array (reading it as a float would wait for the GPU)."""
    xp = array_namespace(logits)
    n, n_classes = logits.shape
    classes = xp.arange(n_classes, device=array_api_compat.device(labels))
    onehot = xp.astype(labels[:, None] == classes[None, :], logits.dtype)
    shifted = logits - xp.max(logits, axis=1, keepdims=True)  # exp cannot overflow
    log_probs = shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
    loss = -xp.sum(onehot * log_probs) / n
    return loss, (xp.exp(log_probs) - onehot) / n


def accuracy(model: Any, x: Any, labels: Any) -> float:
    """The fraction of ``x`` that ``model`` classifies right, in eval mode (running
    batch-norm statistics). Works for the NumPy/CuPy model and the torch one alike."""
    model.eval()
    xp = array_namespace(x)
    predicted = xp.argmax(model(x), axis=1)
    return int(xp.sum(xp.astype(predicted == labels, xp.int64))) / x.shape[0]


# ---------------------------------------------------------------------------------------------
# Data.
# ---------------------------------------------------------------------------------------------


def load_split() -> dict[str, np.ndarray]:
    """scikit-learn's digits (from the package, no download), pixels scaled to [0, 1],
    split into training and test images by a permutation with a fixed seed."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise SystemExit('this example reads scikit-learn\'s bundled digits: '
                         'pip install "portopt[examples]" (or scikit-learn)') from exc
    digits = load_digits()
    x = digits.data / 16.0  # 64 pixels with values 0..16
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    test, train = order[:N_TEST], order[N_TEST:]
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}


class BatchLoader:
    """Mini-batches ``(x, labels)`` of ``batch_size`` samples, reshuffled on every pass.

    Re-iterable like a torch DataLoader. The order comes from a NumPy generator seeded with
    ``seed``, whatever the arrays are, so two loaders with the same seed give the same
    batches, on NumPy, CuPy or torch. An incomplete last batch is dropped, so batch norm
    never sees a batch of one.
    """

    def __init__(self, x: Any, labels: Any, batch_size: int, seed: Any) -> None:
        self.x, self.labels, self.batch_size = x, labels, batch_size
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.x.shape[0] // self.batch_size

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        xp = array_namespace(self.x)
        order = self.rng.permutation(self.x.shape[0])
        for i in range(len(self)):
            rows = xp.asarray(order[i * self.batch_size:(i + 1) * self.batch_size],
                              device=array_api_compat.device(self.x))
            yield xp.take(self.x, rows, axis=0), xp.take(self.labels, rows, axis=0)


# ---------------------------------------------------------------------------------------------
# Training: one loop, run with portopt's modules or with torch's.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a run is made of; the defaults are the example's."""

    epochs: int = 30
    swa_epochs: int = 8  # the last epochs, averaged by SWA
    batch_size: int = 64
    hidden: int = 128
    max_lr: float = 0.01  # OneCycleLR's peak
    weight_decay: float = 0.01
    max_norm: float = 1.0  # gradient clipping
    swa_lr: float = 0.002
    anneal_epochs: int = 2  # SWALR's annealing to swa_lr
    train_size: int | None = None  # a subset of the training images (None: all)
    seed: int = 0  # the initial weights and the batch order
    dtype: str = "float32"

    @property
    def swa_start(self) -> int:
        return self.epochs - self.swa_epochs


def portopt_toolkit() -> SimpleNamespace:
    """portopt's modules, under the names the training loop uses."""
    return SimpleNamespace(optim=portopt.optim, lr_scheduler=lr_scheduler, swa_utils=swa_utils,
                           clip_grad_norm_=clip_grad_norm_)


def torch_toolkit() -> SimpleNamespace:
    """torch's modules, under the same names."""
    import torch

    return SimpleNamespace(optim=torch.optim, lr_scheduler=torch.optim.lr_scheduler,
                           swa_utils=torch.optim.swa_utils,
                           clip_grad_norm_=torch.nn.utils.clip_grad_norm_)


def numpy_loss_and_backward(model: Module, x: Any, labels: Any) -> Any:
    """The loss of a batch; the gradients go to the parameters by the hand-written backward."""
    loss, grad_logits = cross_entropy(model(x), labels)
    model.backward(grad_logits)
    return loss


def torch_loss_and_backward(model: Any, x: Any, labels: Any) -> Any:
    """The same for the torch model, by autograd."""
    import torch

    loss = torch.nn.functional.cross_entropy(model(x), labels)
    loss.backward()
    return loss.detach()


def fit(model: Any, loader: BatchLoader, s: Settings, lib: SimpleNamespace,
        loss_and_backward: Callable[[Any, Any, Any], Any]) -> dict[str, Any]:
    """Train ``model`` with AdamW + OneCycleLR and gradient clipping, then average its last
    epochs with SWA and recompute the averaged model's batch-norm statistics.

    ``lib`` holds ``optim``, ``lr_scheduler``, ``swa_utils`` and ``clip_grad_norm_``: portopt's
    or torch's, with the same names and the same signatures. Returns the averaged model and
    the history of every step: mini-batch loss, lr and gradient norm before clipping.
    """
    opt = lib.optim.AdamW(model.parameters(), lr=s.max_lr, weight_decay=s.weight_decay)
    schedule = lib.lr_scheduler.OneCycleLR(opt, max_lr=s.max_lr,
                                           total_steps=s.swa_start * len(loader))
    swa_model = lib.swa_utils.AveragedModel(model)
    swa_schedule = lib.swa_utils.SWALR(opt, swa_lr=s.swa_lr, anneal_epochs=s.anneal_epochs)

    losses, lrs, grad_norms = [], [], []
    for epoch in range(s.epochs):
        model.train()
        for x, labels in loader:
            lrs.append(opt.param_groups[0]["lr"])
            opt.zero_grad()
            losses.append(loss_and_backward(model, x, labels))
            grad_norms.append(lib.clip_grad_norm_(model.parameters(), s.max_norm))
            opt.step()
            if epoch < s.swa_start:
                schedule.step()
        if epoch >= s.swa_start:
            swa_model.update_parameters(model)
            swa_schedule.step()
    lib.swa_utils.update_bn(loader, swa_model)
    # 0-d arrays until now, so that a GPU run does not wait for every step
    return {"swa_model": swa_model, "loss": [float(v) for v in losses], "lr": lrs,
            "grad_norm": [float(v) for v in grad_norms]}


# ---------------------------------------------------------------------------------------------
# The check against torch.optim.
# ---------------------------------------------------------------------------------------------


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy copy of a NumPy, CuPy or torch array."""
    if array_api_compat.is_cupy_array(a):
        return a.get()
    if array_api_compat.is_torch_array(a):
        return a.detach().cpu().numpy()
    return np.array(a, copy=True)


def torch_twin(model: Sequential) -> Any:
    """The same architecture as a torch ``nn.Sequential``, holding copies of ``model``'s
    parameters and buffers (loaded by name: the two state_dicts have the same keys)."""
    import torch
    from torch import nn

    first, last = model.layers[0].weight, model.layers[-1].weight
    hidden, n_inputs = first.shape
    dtype = getattr(torch, str(to_numpy(first.data).dtype))
    twin = nn.Sequential(nn.Linear(n_inputs, hidden, bias=False), nn.BatchNorm1d(hidden),
                         nn.ReLU(), nn.Linear(hidden, last.shape[0])).to(dtype)
    twin.load_state_dict({k: torch.from_numpy(to_numpy(v)) for k, v in
                          model.state_dict().items()})
    return twin


def largest_relative_difference(ours: dict[str, Any], theirs: dict[str, Any]) -> float:
    """Over the arrays of two state_dicts with the same keys, the largest of
    ``max|a - b| / max(|a|, |b|)``: each array's worst difference relative to its own scale
    (two arrays of zeros do not differ)."""
    worst = 0.0
    for key, value in theirs.items():
        a, b = to_numpy(ours[key]).astype(np.float64), to_numpy(value).astype(np.float64)
        scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))))
        if scale > 0:
            worst = max(worst, float(np.max(np.abs(a - b))) / scale)
    return worst


# ---------------------------------------------------------------------------------------------
# The run: data on the backend, training, accuracies, plot, check.
# ---------------------------------------------------------------------------------------------


def cupy_problem() -> str | None:
    """Why this example cannot run on CuPy here, in a sentence; ``None`` if it can."""
    try:
        import cupy
    except ModuleNotFoundError:
        return ("CuPy is not installed, so the CuPy version of this example cannot run here. "
                "On a machine with an NVIDIA GPU and CUDA 12, install it with "
                "`pip install cupy-cuda12x` (or `pip install \"portopt[cupy]\"`; for another "
                "CUDA version, the matching cupy-cudaXXx wheel) and run it again.")
    except ImportError as exc:
        return f"CuPy is installed but could not be imported ({exc}), so this example cannot " \
               "run on the GPU here."
    try:
        devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError when there is no driver or no device
        devices, reason = 0, f" ({exc})"
    else:
        reason = ""
    if devices < 1:
        return (f"CuPy is installed but finds no CUDA device{reason}, so this example cannot "
                "run on the GPU here; run it on a machine with an NVIDIA GPU.")
    return None


def array_module(backend: str) -> Any:
    """The Array API namespace of a backend name (``"numpy"`` or ``"cupy"``)."""
    if backend == "numpy":
        import array_api_compat.numpy as xp
    elif backend == "cupy":
        import array_api_compat.cupy as xp
    else:
        raise ValueError(f"unknown backend {backend!r}: 'numpy' or 'cupy'")
    return xp


def backend_name(xp: Any) -> str:
    """``"numpy"`` for ``array_api_compat.numpy``, and so on."""
    return xp.__name__.split(".")[-1]


def run(s: Settings, xp: Any, *, plot: str | Path | None = None, check_torch: bool = False,
        verbose: bool = True) -> dict[str, Any]:
    """Train on the digits with the arrays of namespace ``xp``; return the accuracies, the
    history and (with ``check_torch``) the largest relative difference from torch.optim."""
    say = print if verbose else (lambda *args: None)
    if check_torch and s.dtype != "float64":
        raise ValueError("the torch.optim check compares float64 runs: use dtype='float64'")
    data = load_split()
    if s.train_size is not None:
        data["x_train"], data["y_train"] = (data["x_train"][:s.train_size],
                                            data["y_train"][:s.train_size])
    dtype = getattr(xp, s.dtype)
    x_train, x_test = (xp.asarray(data[k], dtype=dtype) for k in ("x_train", "x_test"))
    y_train, y_test = (xp.asarray(data[k]) for k in ("y_train", "y_test"))
    init_seed, shuffle_seed = np.random.SeedSequence(s.seed).spawn(2)
    model = make_model(x_train.shape[1], s.hidden, np.random.default_rng(init_seed), xp, dtype)
    twin = torch_twin(model) if check_torch else None  # before training: the same start

    loader = BatchLoader(x_train, y_train, s.batch_size, shuffle_seed)
    say(f"digits: {x_train.shape[0]} training and {x_test.shape[0]} test images, "
        f"{backend_name(xp)} arrays, {s.dtype}")
    say(f"MLP 64-{s.hidden}-10 with BatchNorm1d, {len(loader)} batches of {s.batch_size} per "
        f"epoch: AdamW + OneCycleLR (max_lr {s.max_lr}) for {s.swa_start} epochs,")
    say(f"then SWA (SWALR to {s.swa_lr}) for {s.swa_epochs}; gradient norm clipped to "
        f"{s.max_norm}")
    history = fit(model, loader, s, portopt_toolkit(), numpy_loss_and_backward)
    swa_model = history.pop("swa_model")

    steps = len(loader)
    shown = sorted({*range(0, s.epochs, max(1, s.epochs // 6)), s.epochs - 1})
    for epoch in shown:
        epoch_losses = history["loss"][epoch * steps:(epoch + 1) * steps]
        say(f"  epoch {epoch + 1:3d}  lr {history['lr'][epoch * steps]:.2e}  "
            f"mean loss {np.mean(epoch_losses):.4f}")
    clipped = sum(norm > s.max_norm for norm in history["grad_norm"])
    results = {
        "raw_train_accuracy": accuracy(model, x_train, y_train),
        "raw_test_accuracy": accuracy(model, x_test, y_test),
        "swa_train_accuracy": accuracy(swa_model, x_train, y_train),
        "swa_test_accuracy": accuracy(swa_model, x_test, y_test),
        "clipped_steps": clipped, "history": history,
        "model": model, "swa_model": swa_model,
    }
    say(f"gradient norm clipped to {s.max_norm} in {clipped} of {len(history['loss'])} steps")
    say(f"raw model:  train accuracy {results['raw_train_accuracy']:.2%}, "
        f"test accuracy {results['raw_test_accuracy']:.2%}")
    say(f"SWA model:  train accuracy {results['swa_train_accuracy']:.2%}, "
        f"test accuracy {results['swa_test_accuracy']:.2%} "
        f"(average of {int(swa_model.n_averaged)} epoch ends, batch-norm statistics from "
        "update_bn)")

    if plot is not None:
        plot_curves(history, s, len(loader), plot, backend_name(xp))
        say(f"loss and lr curves written to {plot}")
    if twin is not None:
        results.update(compare_with_torch(model, swa_model, twin, data, s, shuffle_seed))
        say("torch.optim check: the same model trained by torch.optim (AdamW, OneCycleLR, "
            "clip_grad_norm_, AveragedModel, SWALR, update_bn) with torch autograd, from the "
            "same initial weights on the same mini-batches, in float64:")
        say(f"  largest relative weight difference: raw model {results['torch_raw_diff']:.1e},"
            f" SWA model {results['torch_swa_diff']:.1e}; torch's test accuracy "
            f"{results['torch_raw_test_accuracy']:.2%} (raw), "
            f"{results['torch_swa_test_accuracy']:.2%} (SWA)")
        if results["torch_agrees"]:
            say(f"  They agree within the tolerance of {TORCH_TOLERANCE:.0e}: portopt trained "
                "the model as torch.optim does.")
        else:
            say(f"  They do NOT agree within the tolerance of {TORCH_TOLERANCE:.0e}.")
    return results


def compare_with_torch(model: Sequential, swa_model: Any, twin: Any, data: dict[str, Any],
                       s: Settings, shuffle_seed: Any) -> dict[str, Any]:
    """Train ``twin`` (the model's starting point) with torch.optim on the same batches and
    measure how far the two final models are apart."""
    import torch

    x_train, y_train, x_test, y_test = (torch.from_numpy(data[k]) for k in
                                        ("x_train", "y_train", "x_test", "y_test"))
    loader = BatchLoader(x_train, y_train, s.batch_size, shuffle_seed)
    torch_swa = fit(twin, loader, s, torch_toolkit(), torch_loss_and_backward)["swa_model"]
    raw_diff = largest_relative_difference(model.state_dict(), twin.state_dict())
    swa_diff = largest_relative_difference(swa_model.state_dict(), torch_swa.state_dict())
    with torch.no_grad():
        torch_raw_acc, torch_swa_acc = (accuracy(m, x_test, y_test) for m in (twin, torch_swa))
    return {"torch_raw_diff": raw_diff, "torch_swa_diff": swa_diff,
            "torch_agrees": max(raw_diff, swa_diff) <= TORCH_TOLERANCE,
            "torch_raw_test_accuracy": torch_raw_acc, "torch_swa_test_accuracy": torch_swa_acc}


def plot_curves(history: dict[str, list[float]], s: Settings, steps_per_epoch: int,
                path: str | Path, backend: str = "numpy") -> None:
    """The mini-batch loss and the lr of every step, one above the other, to a PNG file."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    epochs = np.arange(len(history["loss"])) / steps_per_epoch
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, sharex=True, figsize=(7, 5.5))
    ax_loss.plot(epochs, history["loss"], lw=0.8)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("mini-batch loss")
    ax_loss.set_title(f"MLP on the digits ({backend}): AdamW + OneCycleLR, then SWA")
    ax_lr.plot(epochs, history["lr"], color="tab:orange")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("epoch")
    for ax in (ax_loss, ax_lr):
        ax.axvspan(s.swa_start, s.epochs, color="tab:green", alpha=0.12,
                   label="SWA (SWALR)" if ax is ax_lr else None)
    ax_lr.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--swa-epochs", type=int, default=defaults.swa_epochs,
                        help="the last epochs, averaged by SWA (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="initial weights and batch order (the split is fixed)")
    parser.add_argument("--train-size", type=int, default=None,
                        help="train on the first N training images only")
    parser.add_argument("--dtype", choices=("float32", "float64"), default=None,
                        help="float32, or float64 with --check-torch")
    parser.add_argument("--plot", default=None, metavar="FILE.png",
                        help="where to draw the loss and lr curves "
                             "(default mlp_digits_<backend>.png)")
    parser.add_argument("--no-plot", action="store_true", help="draw nothing")
    parser.add_argument("--check-torch", action="store_true",
                        help="train the same model with torch.optim and compare (float64)")
    args = parser.parse_args(argv)
    if not 0 < args.swa_epochs < args.epochs:
        parser.error(f"need 0 < --swa-epochs < --epochs, got {args.swa_epochs} and "
                     f"{args.epochs}")
    if args.check_torch and args.dtype == "float32":
        parser.error("--check-torch compares float64 runs; leave out --dtype float32")
    dtype = args.dtype or ("float64" if args.check_torch else "float32")

    if args.backend == "cupy" and (problem := cupy_problem()) is not None:
        print(problem)
        return 0
    if args.check_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("--check-torch needs torch (pip install torch); run without it to train "
                  "with portopt alone.")
            return 1
    settings = Settings(epochs=args.epochs, swa_epochs=args.swa_epochs,
                        batch_size=args.batch_size, seed=args.seed,
                        train_size=args.train_size, dtype=dtype)
    plot = None if args.no_plot else (args.plot or f"mlp_digits_{args.backend}.png")
    if plot is not None and importlib.util.find_spec("matplotlib") is None:
        print('matplotlib is not installed, so there will be no plot '
              '(pip install "portopt[examples]"); training anyway.')
        plot = None
    results = run(settings, array_module(args.backend), plot=plot,
                  check_torch=args.check_torch)
    return 0 if results.get("torch_agrees", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
