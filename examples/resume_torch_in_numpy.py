"""Resume a torch training run in NumPy: the optimizer and the schedule carry on as if
nothing had moved.

A small regression network (``tanh(x W1^T + b1) W2^T + b2``, 8 inputs, 32 hidden units)
is trained in torch with AdamW under a OneCycleLR schedule. Half-way through, the run is
saved with :func:`portopt.save`: the weights, ``optimizer.state_dict()`` and
``scheduler.state_dict()``, torch tensors and all, into one pickle-free file. Then

1. NumPy picks it up: ``portopt.load(path)`` rebuilds everything as NumPy arrays; the
   weights become ``portopt.Parameter`` objects, a ``portopt.optim.AdamW`` and a
   ``OneCycleLR`` are built exactly as in torch, and their ``load_state_dict`` take torch's
   state_dicts as they are (Adam's moments, the step counts, the schedule's position).
   Training carries on with hand-written gradients.
2. For comparison, torch carries on too, from the same file loaded with
   ``backend="torch"``.

At the end the script prints how far apart the two runs are. Both compute in float32 and
their gradients are computed differently (autograd versus the NumPy backward below), so
they agree to float32 rounding, not bit for bit; the optimizer and schedule add no
difference of their own (the conformance suite checks that step by step).

Run it with::

    python examples/resume_torch_in_numpy.py

It needs torch (``pip install torch==2.13.0``) for the first half; the second half needs
only NumPy and portopt.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import portopt
from portopt import optim
from portopt.optim import lr_scheduler

HIDDEN = 32
INPUTS = 8
NAMES = ("w1", "b1", "w2", "b2")


def make_data(seed: int = 0, n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets of a smooth nonlinear function, in float32."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, INPUTS)).astype(np.float32)
    y = (np.sin(x[:, :1] * 1.5) + 0.5 * x[:, 1:2] * x[:, 2:3]).astype(np.float32)
    return x, y


def initial_weights(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w1": (rng.standard_normal((HIDDEN, INPUTS)) / np.sqrt(INPUTS)).astype(np.float32),
        "b1": np.zeros(HIDDEN, dtype=np.float32),
        "w2": (rng.standard_normal((1, HIDDEN)) / np.sqrt(HIDDEN)).astype(np.float32),
        "b2": np.zeros(1, dtype=np.float32),
    }


# -- torch: the first half of the run ---------------------------------------------------


def torch_run(weights: dict[str, Any], x: np.ndarray, y: np.ndarray, steps: int,
              total_steps: int, state: dict[str, Any] | None = None
              ) -> tuple[dict[str, Any], Any, Any, list[float]]:
    """Train in torch for ``steps`` steps, from ``weights`` and (if given) a saved
    optimizer and scheduler state; return the tensors, optimizer, scheduler and losses."""
    import torch

    params = {k: torch.as_tensor(v).clone().requires_grad_(True) for k, v in weights.items()}
    opt = torch.optim.AdamW(list(params.values()), lr=1e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.02, total_steps=total_steps)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    losses = []
    for _ in range(steps):
        hidden = torch.tanh(xt @ params["w1"].T + params["b1"])
        loss = ((hidden @ params["w2"].T + params["b2"] - yt) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    return params, opt, sched, losses


# -- NumPy: the second half ---------------------------------------------------------------


def loss_and_grads(w: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray
                   ) -> tuple[float, dict[str, np.ndarray]]:
    """Mean squared error of the network and its gradients, by hand."""
    hidden = np.tanh(x @ w["w1"].T + w["b1"])
    err = hidden @ w["w2"].T + w["b2"] - y
    n = np.float32(err.size)
    d_out = (2 / n) * err                                  # d loss / d output
    d_hidden = (d_out @ w["w2"]) * (1 - hidden * hidden)   # through tanh
    grads = {"w2": d_out.T @ hidden, "b2": d_out.sum(0),
             "w1": d_hidden.T @ x, "b1": d_hidden.sum(0)}
    return float(np.mean(err * err)), {k: g.astype(np.float32) for k, g in grads.items()}


def numpy_run(saved: dict[str, Any], x: np.ndarray, y: np.ndarray, steps: int,
              total_steps: int) -> tuple[dict[str, portopt.Parameter], list[float]]:
    """Carry on from a checkpoint loaded as NumPy arrays."""
    params = {k: portopt.Parameter(saved["weights"][k]) for k in NAMES}
    opt = optim.AdamW(list(params.values()), lr=1e-3, weight_decay=1e-2)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.02, total_steps=total_steps)
    opt.load_state_dict(saved["optimizer"])    # torch's state_dict, as it is
    sched.load_state_dict(saved["scheduler"])
    losses = []
    for _ in range(steps):
        loss, grads = loss_and_grads({k: p.data for k, p in params.items()}, x, y)
        for k, p in params.items():
            p.grad = grads[k]
        opt.step()
        sched.step()
        losses.append(loss)
    return params, losses


def main(torch_steps: int = 150, numpy_steps: int = 150, checkpoint: Path | None = None,
         verbose: bool = True) -> dict[str, float]:
    """Run both halves; return the largest relative weight and loss differences."""
    x, y = make_data()
    total = torch_steps + numpy_steps
    params, opt, sched, first = torch_run(initial_weights(), x, y, torch_steps, total)
    with tempfile.TemporaryDirectory() as folder:
        path = checkpoint or Path(folder) / "run.portopt"
        portopt.save({"weights": {k: p.detach() for k, p in params.items()},
                      "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                      "step": torch_steps}, path)
        in_numpy = portopt.load(path)              # NumPy arrays
        in_torch = portopt.load(path, backend="torch")
    resumed, numpy_losses = numpy_run(in_numpy, x, y, numpy_steps, total)
    ref, _, _, torch_losses = torch_run(in_torch["weights"], x, y, numpy_steps, total,
                                        state=in_torch)
    weight_diff = max(
        float(np.max(np.abs(resumed[k].data - ref[k].detach().numpy()))
              / max(float(np.max(np.abs(ref[k].detach().numpy()))), 1e-30))
        for k in NAMES)
    loss_diff = max(abs(a - b) / abs(b) for a, b in zip(numpy_losses, torch_losses))
    if verbose:
        print(f"torch, steps 1-{torch_steps}: loss {first[0]:.4f} -> {first[-1]:.4f}")
        print(f"saved at step {in_numpy['step']}; resumed in NumPy with portopt")
        print(f"NumPy, steps {torch_steps + 1}-{total}: loss {numpy_losses[0]:.4f} -> "
              f"{numpy_losses[-1]:.4f} (torch carrying on: {torch_losses[-1]:.4f})")
        print(f"largest difference from torch carrying on: weights {weight_diff:.1e} "
              f"relative, losses {loss_diff:.1e} relative (float32 rounding of two "
              "different gradient codes)")
    return {"weights": weight_diff, "losses": loss_diff, "first_loss": first[0],
            "last_loss": numpy_losses[-1]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-steps", type=int, default=150)
    parser.add_argument("--numpy-steps", type=int, default=150)
    parser.add_argument("--checkpoint", type=Path,
                        help="keep the checkpoint at this path (default: a temporary file)")
    args = parser.parse_args()
    main(args.torch_steps, args.numpy_steps, args.checkpoint)
