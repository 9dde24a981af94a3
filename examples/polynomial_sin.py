"""Fit ``sin(x)`` with a cubic polynomial and RMSprop, in NumPy: torch's first optimizer
exercise, on portopt.

The exercise comes from the PyTorch tutorial "Learning PyTorch with Examples", in the part
that introduces ``torch.optim``: take 2000 evenly spaced points ``x`` on ``[-pi, pi]`` and
``y = sin(x)``, and find the coefficients of

    y_pred = a + b x + c x^2 + d x^3

that minimize the sum of squared errors ``L = sum((y_pred - y)^2)``, with RMSprop at a
learning rate of 1e-3 for 2000 steps. torch gets the gradient from autograd. Here the model
is four NumPy numbers and the gradient is derived by hand; with ``r = y_pred - y`` (the
residual at each point) the chain rule gives

    dL/da = sum(2 r),  dL/db = sum(2 r x),  dL/dc = sum(2 r x^2),  dL/dd = sum(2 r x^3).

The optimizer part is the same as in torch, line for line: each coefficient is a
``portopt.Parameter`` (it holds the array in ``.data`` and its gradient in ``.grad``,
as a torch tensor does), ``portopt.optim.RMSprop`` takes them with torch's signature and
defaults, and each step is ``zero_grad()``, set the gradients, ``step()``. The step updates
the arrays in place, so the code that computes ``y_pred`` sees the new values.

Run it with::

    python examples/polynomial_sin.py                 # 2000 steps, as in the tutorial
    python examples/polynomial_sin.py --steps 500
    python examples/polynomial_sin.py --check-torch   # also run torch's version and compare

It prints the loss every 100 steps (the loss each step starts from), the polynomial found,
and for comparison the best cubic: the exact least-squares solution, which RMSprop with a
fixed learning rate approaches but keeps jittering around. Only NumPy and portopt are
needed; torch only for ``--check-torch``.

``--check-torch`` runs the tutorial's torch program (``nn.Linear(3, 1)`` on the features
``x, x^2, x^3``, a summed ``MSELoss``, autograd and ``torch.optim.RMSprop``) in float64 from
the same starting coefficients and compares the coefficients after every step. For about
700 steps they agree to rounding (~1e-16; autograd and the formulas above add up the
2000 terms of each gradient in different orders). Then the runs part, and this is the
problem, not either implementation: ``x`` and ``x^3`` are strongly correlated, so the
loss is a narrow valley in ``(b, d)``; from about step 700 RMSprop, whose step size does
not shrink with the gradient, zig-zags across it (``dL/dd`` changes sign more and more
often, by step 1000 at every step), and a zig-zag amplifies a difference in the last bit.
torch against itself does the same: the same program with the model written as four
scalar tensors instead of ``nn.Linear`` parts from it at about the same step. The script
prints both phases and the two final losses (8.908898 here and 8.908182 in torch from
the default start; the best cubic's is 8.817165).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

import numpy as np

import portopt
from portopt.optim import RMSprop

#: Below this, a difference between portopt's and torch's coefficients is rounding: the
#: float64 tolerance of portopt's conformance suite (coefficients are of order 0.01 to 1).
AGREE = 1e-12


def make_data(n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """``n`` evenly spaced points on ``[-pi, pi]`` and the sine at each (float64)."""
    x = np.linspace(-math.pi, math.pi, n)
    return x, np.sin(x)


def powers_of(x: np.ndarray) -> np.ndarray:
    """The rows ``1, x, x^2, x^3``: what ``a, b, c, d`` multiply. Shape ``(4, len(x))``."""
    return np.stack([np.ones_like(x), x, x**2, x**3])


def predict(coeffs: list[np.ndarray], powers: np.ndarray) -> np.ndarray:
    """The cubic ``a + b x + c x^2 + d x^3`` at every point."""
    a, b, c, d = coeffs
    return a * powers[0] + b * powers[1] + c * powers[2] + d * powers[3]


def loss_and_gradient(coeffs: list[np.ndarray], powers: np.ndarray,
                      y: np.ndarray) -> tuple[float, list[np.ndarray]]:
    """The summed squared error and its gradient with respect to ``a, b, c, d``.

    ``L = sum(r^2)`` with ``r = y_pred - y``, so ``dL/dk = sum(2 r * dy_pred/dk)``, and
    ``dy_pred/dk`` is the row of ``powers`` that ``k`` multiplies: ``1, x, x^2, x^3``.
    Each gradient is a 0-d array, the shape and dtype of its coefficient.
    """
    residual = predict(coeffs, powers) - y
    loss = float(np.sum(residual**2))
    grad_residual = 2.0 * residual  # dL/dr
    grads = [np.asarray(np.sum(grad_residual * row)) for row in powers]
    return loss, grads


def best_cubic(powers: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The exact minimizer of the loss (linear least squares), for comparison."""
    return np.linalg.lstsq(powers.T, y, rcond=None)[0]


def describe(coeffs: Any) -> str:
    """``y = a + b x + c x^2 + d x^3`` with the numbers filled in."""
    # rounded to the digits shown, + 0.0 so that a rounded -0.0 prints as 0.000000
    a, b, c, d = (round(float(k), 6) + 0.0 for k in coeffs)
    terms = [f"{a:.6f}"] + [f"{'-' if k < 0 else '+'} {abs(k):.6f} {power}"
                            for k, power in ((b, "x"), (c, "x^2"), (d, "x^3"))]
    return "y = " + " ".join(terms)


def fit(start: np.ndarray, x: np.ndarray, y: np.ndarray, steps: int, *, lr: float = 1e-3,
        log_every: int = 100, verbose: bool = True) -> dict[str, Any]:
    """Fit the cubic from the coefficients ``start`` with ``steps`` RMSprop steps.

    Returns the losses before each step (``losses[t]`` is the loss that step ``t + 1``
    starts from), the coefficients after each step (an array of shape ``(steps, 4)``),
    and the final loss.
    """
    powers = powers_of(x)
    a, b, c, d = (portopt.Parameter(np.array(value, dtype=np.float64)) for value in start)
    coeffs = [a, b, c, d]
    optimizer = RMSprop(coeffs, lr=lr)  # torch's defaults: alpha=0.99, eps=1e-8

    losses = []
    history = np.empty((steps, 4))
    for t in range(steps):
        loss, grads = loss_and_gradient([p.data for p in coeffs], powers, y)
        losses.append(loss)
        if verbose and (t + 1) % log_every == 0:
            print(f"step {t + 1:5d}   loss {loss:12.6f}")
        optimizer.zero_grad()
        for param, grad in zip(coeffs, grads):
            param.grad = grad  # what loss.backward() leaves in .grad in torch
        optimizer.step()  # writes the new values into a.data, b.data, ... in place
        history[t] = [float(p.data) for p in coeffs]

    final_loss, _ = loss_and_gradient([p.data for p in coeffs], powers, y)
    return {"losses": losses, "history": history, "final_loss": final_loss}


def torch_tutorial(start: np.ndarray, x: np.ndarray, steps: int, *,
                   lr: float = 1e-3) -> dict[str, Any]:
    """The tutorial's torch program, in float64, from the same start.

    The model is ``nn.Linear(3, 1)`` (bias ``a``, weights ``b, c, d``) on the features
    ``x, x^2, x^3``, flattened to one prediction per point; autograd gives the gradient.
    Returns the coefficients ``a, b, c, d`` after each step (shape ``(steps, 4)``) and the
    final loss.
    """
    import torch

    xt = torch.from_numpy(x)
    yt = torch.sin(xt)
    features = xt.unsqueeze(-1).pow(torch.tensor([1, 2, 3]))  # shape (n, 3)
    model = torch.nn.Sequential(torch.nn.Linear(3, 1, dtype=torch.float64),
                                torch.nn.Flatten(0, 1))
    linear = model[0]
    with torch.no_grad():
        linear.bias.copy_(torch.from_numpy(start[:1].copy()))
        linear.weight.copy_(torch.from_numpy(start[1:].reshape(1, 3).copy()))
    loss_fn = torch.nn.MSELoss(reduction="sum")
    optimizer = torch.optim.RMSprop(model.parameters(), lr=lr)

    history = np.empty((steps, 4))
    for t in range(steps):
        loss = loss_fn(model(features), yt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history[t, 0] = linear.bias.item()
        history[t, 1:] = linear.weight.detach().numpy()[0]
    with torch.no_grad():
        final_loss = loss_fn(model(features), yt).item()
    return {"history": history, "final_loss": final_loss}


def main(steps: int = 2000, seed: int = 0, check_torch: bool = False,
         verbose: bool = True) -> dict[str, Any]:
    """Fit the cubic from a random start and print it; optionally compare with torch.

    Returns the starting coefficients, the losses before each step, the final loss and
    coefficients, the least-squares optimum and, with ``check_torch``: the largest
    difference between portopt's and torch's coefficients over all steps
    (``torch_max_diff``), the number of steps before they first differ by more than
    :data:`AGREE` (``torch_agree_steps``) and torch's final loss.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    x, y = make_data()
    start = np.random.default_rng(seed).standard_normal(4)  # a, b, c, d
    run = fit(start, x, y, steps, verbose=verbose)
    best = best_cubic(powers_of(x), y)
    results: dict[str, Any] = {
        "start": start,
        "losses": run["losses"],
        "final_loss": run["final_loss"],
        "coefficients": run["history"][-1],
        "best": best,
        "best_loss": loss_and_gradient(list(best), powers_of(x), y)[0],
    }
    if verbose:
        print(f"Result:     {describe(results['coefficients'])}   "
              f"(loss {results['final_loss']:.6f})")
        print(f"Best cubic: {describe(best)}   (loss {results['best_loss']:.6f})")
    if not check_torch:
        return results

    reference = torch_tutorial(start, x, steps)
    diff = np.max(np.abs(run["history"] - reference["history"]), axis=1)  # per step
    apart = np.flatnonzero(diff > AGREE)
    agree_steps = int(apart[0]) if apart.size else steps
    results.update(torch_max_diff=float(diff.max()), torch_agree_steps=agree_steps,
                   torch_final_loss=reference["final_loss"])
    if verbose:
        print("torch's program (nn.Linear, autograd, torch.optim.RMSprop), same start, "
              "float64:")
        if agree_steps > 0:
            print(f"  steps 1-{agree_steps}: coefficients within "
                  f"{float(diff[:agree_steps].max()):.2g} of torch's")
        if agree_steps < steps:
            print(f"  steps {agree_steps + 1}-{steps}: apart by up to "
                  f"{results['torch_max_diff']:.2g} (RMSprop zig-zags in d and amplifies "
                  "rounding; see the docstring)")
        print(f"  final loss {results['final_loss']:.6f} here, "
              f"{reference['final_loss']:.6f} in torch")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="RMSprop steps (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the starting coefficients")
    parser.add_argument("--check-torch", action="store_true",
                        help="run torch's tutorial from the same start and compare (needs torch)")
    args = parser.parse_args()
    if args.check_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            sys.exit("--check-torch needs torch: pip install torch==2.13.0")
    main(args.steps, args.seed, args.check_torch)
