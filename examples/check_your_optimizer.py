"""Write your own optimizer on portopt's shell and check it against torch.optim, step by step.

The optimizer here is Adam as a textbook states it (Kingma & Ba, Algorithm 1), written for
portopt in the way its own optimizers are written. A subclass of
``portopt.optim.Optimizer`` supplies three things and inherits the rest of torch.optim's
behaviour (param groups, lazy state, skipping parameters whose ``.grad`` is ``None``,
``zero_grad``, ``state_dict``/``load_state_dict``, hooks, all-or-nothing steps):

* ``_state_type``: a NamedTuple for one parameter's state. Name its fields with torch's
  state keys (``step``, ``exp_avg``, ``exp_avg_sq`` for Adam): then ``opt.state[p]`` and
  ``state_dict()`` have torch's layout, a torch state_dict loads into your optimizer, and
  the harness can compare your state with torch's entry by entry. With a ``step`` field the
  shell keeps the count as torch does, a 0-d float32 value.
* ``_init_state(param, group)``: the state before the first step.
* ``_update(param, grad, state, group)``: one step of one parameter, returning
  ``(new_param, new_state)`` as new arrays; the shell writes them back in place. Write the
  math against ``xp = array_namespace(param, grad)`` (the Python Array API) and it runs on
  NumPy, CuPy and torch arrays alike.

The check is :class:`portopt.testing.Comparison`, the engine of portopt's own conformance
suite. It builds the same parameters for your optimizer (NumPy here) and for torch's (a
matrix, a vector and a 0-d value in group 0; a matrix with its own lr in group 1), feeds both
the same gradients, with a few of them ``None`` as for a parameter that a batch did not
use, and after **every** step compares every parameter and every state entry, values and
dtypes, under portopt's tolerance table: ``5e-6`` relative in float32 (about 5 ULP a
step), ``1e-12`` in float64. ``result.rel`` and ``result.ulp`` are the worst errors seen.
With ``resync=True`` torch's parameters and state are copied into yours after each
comparison (through ``load_state_dict``), so each step is measured on its own instead of
on top of the rounding of the steps before, and a failure names the step that caused it.

The textbook's operation order is not torch's (torch uses ``lerp``, ``addcmul`` and
``addcdiv``, and divides by ``sqrt(v) / sqrt(1 - beta2^t)`` rather than bias-correcting
``v`` first), so the two differ in the last bits: about 1e-15 relative in float64; in
float32 an ULP or two per step, which add up without resync (17 ULP after 50 steps here)
and stay at an ULP or two with it. Every check passes.

Then a buggy variant, and what its failure looks like. ``SharedCountAdam`` bias-corrects
with one step count for the whole optimizer (as frameworks with a global ``iterations``
counter do) where torch counts the steps of each parameter. The two agree while every
parameter gets a gradient at every step; the harness gives parameter 1 none at step 0
(steps are counted from 0 in its messages), so at step 1 that parameter takes its first
step with ``t = 2`` in the bias corrections instead of ``t = 1``. A first Adam step moves
each element by ``lr * g / (|g| + eps)``, about ``lr`` against the sign of the gradient;
with ``t = 2`` it moves ``lr * sqrt(1 + beta2) / (1 + beta1)`` (the moments are
``(1 - beta1) g`` and ``(1 - beta2) g^2``), 0.744 of that. The harness reports
``step 1: param 1 is off by ...``.

Run it with::

    python examples/check_your_optimizer.py            # 50 steps per check
    python examples/check_your_optimizer.py --steps 20

It needs torch (``pip install torch==2.13.0``), the reference. It exits with 0 when every
check of the textbook Adam passes and the buggy variant fails at step 1, else 1.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NamedTuple

from array_api_compat import array_namespace

from portopt.optim import Optimizer
from portopt.testing import CaseResult, Comparison, TestBackend

# ---------------------------------------------------------------------------------------------
# Your optimizer: its state, the math of one step, and the glue to the shell.
# ---------------------------------------------------------------------------------------------


class AdamState(NamedTuple):
    """One parameter's state; the field names are torch.optim.Adam's state keys."""

    step: Any  # steps this parameter has taken (the shell keeps it as torch does)
    exp_avg: Any  # m, the running mean of the gradient
    exp_avg_sq: Any  # v, the running mean of its square


def textbook_adam(param: Any, grad: Any, exp_avg: Any, exp_avg_sq: Any, *, t: float,
                  lr: float, beta1: float, beta2: float,
                  eps: float) -> tuple[Any, Any, Any]:
    """One Adam step as the paper writes it: returns new ``(param, exp_avg, exp_avg_sq)``.

    ``t`` is the step number (1 on the first step) of the bias corrections. Pure: arrays in,
    new arrays out, nothing mutated. The hyper-parameters are Python floats, so that a
    float32 parameter stays float32.
    """
    xp = array_namespace(param, grad)
    exp_avg = beta1 * exp_avg + (1 - beta1) * grad
    exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    m_hat = exp_avg / (1 - beta1**t)
    v_hat = exp_avg_sq / (1 - beta2**t)
    param = param - lr * m_hat / (xp.sqrt(v_hat) + eps)
    return param, exp_avg, exp_avg_sq


class TextbookAdam(Optimizer):
    """Adam, written from the paper: the same update as ``torch.optim.Adam`` with its
    defaults (no weight decay, no AMSGrad), in the paper's operation order."""

    _state_type = AdamState

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    def _init_state(self, param: Any, group: dict[str, Any]) -> AdamState:
        xp = array_namespace(param)
        return AdamState(0, xp.zeros_like(param), xp.zeros_like(param))

    def _update(self, param: Any, grad: Any, state: AdamState,
                group: dict[str, Any]) -> tuple[Any, AdamState]:
        beta1, beta2 = group["betas"]
        step = state.step + 1
        param, exp_avg, exp_avg_sq = textbook_adam(
            param, grad, state.exp_avg, state.exp_avg_sq, t=self._bias_correction_step(step),
            lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"])
        return param, AdamState(step, exp_avg, exp_avg_sq)

    def _bias_correction_step(self, step: Any) -> float:
        """The ``t`` of the bias corrections: this parameter's own count, as in torch."""
        return float(step)


class SharedCountAdam(TextbookAdam):
    """TextbookAdam with a bug: its bias corrections count the optimizer's steps.

    Right as long as every parameter has a gradient at every step; one step ahead, for
    the rest of the run, on a parameter that was skipped once.
    """

    def __init__(self, params: Any, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.iterations = 0  # steps taken by the optimizer as a whole

    def step(self, closure: Any = None) -> Any:
        self.iterations += 1
        return super().step(closure)

    def _bias_correction_step(self, step: Any) -> float:
        return float(self.iterations)  # the bug: not this parameter's count


# ---------------------------------------------------------------------------------------------
# The check.
# ---------------------------------------------------------------------------------------------

LR = 1e-2  # group 0
GROUP_1 = {"lr": 5e-3}  # group 1 has its own learning rate, on both sides


def check(optimizer_class: type, dtype: str, resync: bool, steps: int) -> CaseResult:
    """Run ``optimizer_class`` and ``torch.optim.Adam`` side by side; the worst errors."""
    import torch

    comparison = Comparison(
        lambda groups: optimizer_class(groups, lr=LR),
        # the single-tensor path (foreach=False) is torch's reference implementation
        lambda groups: torch.optim.Adam(groups, lr=LR, foreach=False),
        backend=TestBackend.NUMPY, dtype=dtype, resync=resync, group_kwargs=GROUP_1,
        name=optimizer_class.__name__)
    return comparison.run(steps)


def row(result: CaseResult, resync: bool) -> str:
    """One line of the report: dtype, resync, pass/fail, worst errors or the message."""
    head = f"{result.dtype:8s} {'yes' if resync else 'no':6s}"
    if not result.passed:
        return f"{head} FAIL   {result.message}"
    ulp = "-" if result.ulp is None else f"{result.ulp:g}"
    return f"{head} pass   {result.rel:<17.2g} {ulp}"


def main(steps: int = 50, verbose: bool = True) -> dict[str, Any]:
    """Check TextbookAdam in float32 and float64, with and without resync, then the buggy
    SharedCountAdam (float64, resync); return the results (``good``: a list, ``buggy``) and
    ``ok``: whether everything came out as expected."""
    say = print if verbose else (lambda *args: None)
    settings = [(dtype, resync) for dtype in ("float32", "float64") for resync in (False, True)]

    say(f"TextbookAdam against torch.optim.Adam (NumPy parameters, {steps} steps, "
        f"lr {LR:g}, group 1 lr {GROUP_1['lr']:g})")
    say(f"{'dtype':8s} {'resync':6s} {'result':6s} {'worst rel. error':17s} worst ULP")
    good = []
    for dtype, resync in settings:
        result = check(TextbookAdam, dtype, resync, steps)
        good.append(result)
        say(row(result, resync))

    say()
    say("SharedCountAdam, whose bias corrections count the optimizer's steps instead of each "
        "parameter's:")
    buggy = check(SharedCountAdam, "float64", True, steps)
    say(row(buggy, resync=True))

    ok = all(r.passed for r in good) and buggy.failed_step == 1
    say()
    if ok:
        say("As expected: TextbookAdam passes every check. SharedCountAdam fails at step 1, "
            "parameter 1's first\nstep (it had no gradient at step 0), where its bias "
            "corrections use t = 2 instead of 1.")
    else:
        say("NOT as expected: see the rows above.")
    return {"good": good, "buggy": buggy, "ok": ok}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="steps per check (default 50)")
    args = parser.parse_args()
    try:
        import torch  # noqa: F401  (the reference)
    except ImportError:
        sys.exit("this example needs torch, the reference: pip install torch==2.13.0")
    sys.exit(0 if main(args.steps)["ok"] else 1)
