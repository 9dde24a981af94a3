"""Draw learning-rate schedules: the curve a scheduler gives, step by step.

:func:`lr_trajectory` runs a scheduler the way a training loop does and records the
learning rate (and the momentum, when the scheduler cycles it); :func:`make_scheduler`
builds a scheduler by name on a throwaway optimizer; :func:`plot_lr` draws either.
The ``portopt plot-lr`` command is a front end to :func:`plot_lr`.

Only :func:`plot_lr` needs matplotlib (``pip install "portopt[plot]"``); it is imported
when the function is called, never when this module is.

Example:
    >>> from portopt.plotting import lr_trajectory, make_scheduler
    >>> curve = lr_trajectory(make_scheduler("StepLR", step_size=2), 5)
    >>> [round(lr, 4) for lr in curve["lr"][0]]
    [0.1, 0.1, 0.01, 0.01, 0.001]
"""

from __future__ import annotations

import ast
import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SCHEDULERS", "default_metric", "lr_trajectory", "make_scheduler", "plot_lr"]

#: The names :func:`make_scheduler` knows: torch's 15 schedulers, then ``SWALR``.
SCHEDULERS = (
    "LambdaLR", "MultiplicativeLR", "StepLR", "MultiStepLR", "ConstantLR", "LinearLR",
    "ExponentialLR", "SequentialLR", "PolynomialLR", "CosineAnnealingLR",
    "ChainedScheduler", "ReduceLROnPlateau", "CyclicLR", "OneCycleLR",
    "CosineAnnealingWarmRestarts", "SWALR",
)

# arguments that take functions, which may be given as lambda strings
_FUNCTION_ARGS = {"LambdaLR": "lr_lambda", "MultiplicativeLR": "lr_lambda",
                  "CyclicLR": "scale_fn"}
_COMPOSITES = ("SequentialLR", "ChainedScheduler")
_OPTIMIZERS = ("SGD", "Adam")
_MISSING_MATPLOTLIB = 'plotting needs matplotlib: pip install "portopt[plot]"'


def default_metric(step: int) -> float:
    """The synthetic loss fed to ``ReduceLROnPlateau`` when no ``metrics`` are given.

    ``max(exp(-step / 15), 0.25)``: it falls from 1.0 and reaches its floor of 0.25 at
    step 21, then stays flat, so a ``mode="min"`` scheduler sees a plateau from there on
    and cuts the learning rate every ``patience + 1`` steps (plus ``cooldown``).
    """
    return max(math.exp(-step / 15), 0.25)


# --- running a scheduler -------------------------------------------------------------


def lr_trajectory(scheduler: Any, steps: int, *,
                  metrics: Sequence[float] | None = None) -> dict[str, Any]:
    """Step ``scheduler`` (and its optimizer) ``steps`` times and record the schedule.

    The loop is the one torch users plot with: read ``group["lr"]``, call
    ``optimizer.step()``, then ``scheduler.step()``; so entry ``i`` is the learning rate
    in effect for step ``i``, and entry 0 is the one set when the scheduler was built.
    Stepping the optimizer first keeps the "``lr_scheduler.step()`` before
    ``optimizer.step()``" warning quiet. Parameters whose ``grad`` is ``None`` are left
    alone by the optimizer, as usual; those built by :func:`make_scheduler` carry zero
    gradients (an optimizer with weight decay still moves them, which does not matter
    for the schedule).

    Args:
        scheduler: a scheduler with an ``optimizer`` attribute, e.g. from
            :func:`make_scheduler`. It is advanced in place, so pass a fresh one.
        steps: how many steps to record.
        metrics: for ``ReduceLROnPlateau`` only, the value passed to
            ``scheduler.step(metric)`` at each step (at least ``steps`` of them). When
            omitted, :func:`default_metric` supplies a loss that falls, then plateaus.

    Returns:
        ``{"lr": [[lr at step 0, 1, ...] for each param group], "momentum": ...}``,
        where ``"momentum"`` has the same shape and holds ``momentum`` (or
        ``betas[0]``) when the scheduler changed it during the run (``CyclicLR`` and
        ``OneCycleLR`` with ``cycle_momentum``), and is ``None`` otherwise.

    Raises:
        ValueError: a negative ``steps``; ``metrics`` for another scheduler, or fewer
            metrics than steps.
    """
    steps = _check_steps(steps)
    plateau = _is_plateau(scheduler)
    if metrics is not None:
        if not plateau:
            raise ValueError("metrics are only used by ReduceLROnPlateau, not by "
                             f"{type(scheduler).__name__}")
        metrics = [float(m) for m in metrics]
        if len(metrics) < steps:
            raise ValueError(f"got {len(metrics)} metrics for {steps} steps")
    elif plateau:
        metrics = [default_metric(i) for i in range(steps)]
    optimizer = scheduler.optimizer
    groups = optimizer.param_groups
    lrs: list[list[float]] = [[] for _ in groups]
    momenta: list[list[float | None]] = [[] for _ in groups]
    for i in range(steps):
        for g, group in enumerate(groups):
            lrs[g].append(float(group["lr"]))
            momenta[g].append(_momentum(group))
        optimizer.step()
        if plateau:
            scheduler.step(metrics[i])
        else:
            scheduler.step()
    varies = any(m is not None and len(set(m)) > 1 for m in momenta)
    return {"lr": lrs, "momentum": momenta if varies else None}


def _check_steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    return steps


def _is_plateau(scheduler: Any) -> bool:
    # by name, so the same code runs portopt's and torch's schedulers
    return any(cls.__name__ == "ReduceLROnPlateau" for cls in type(scheduler).__mro__)


def _momentum(group: dict[str, Any]) -> float | None:
    if "betas" in group:
        return float(group["betas"][0])
    if "momentum" in group:
        return float(group["momentum"])
    return None


def _momentum_label(group: dict[str, Any]) -> str:
    return "beta1" if "betas" in group else "momentum"


# --- building a scheduler by name ----------------------------------------------------


@dataclass(frozen=True)
class _Library:
    """Where the optimizer and scheduler classes come from.

    Always portopt's in this module; kept apart so that the building code names no
    package, and any library with torch.optim's classes and signatures can drive it.
    """

    optim: Any  # has SGD and Adam
    lr_scheduler: Any
    swa_utils: Any
    new_param: Callable[[], Any]  # a one-element parameter with a zero gradient


def _portopt() -> _Library:
    import numpy as np

    from . import Parameter, optim
    from .optim import lr_scheduler, swa_utils

    def new_param() -> Any:
        p = Parameter(np.zeros(1))
        p.grad = np.zeros(1)
        return p

    return _Library(optim, lr_scheduler, swa_utils, new_param)


def make_scheduler(name: str, *, lrs: Sequence[float] = (0.1,), optimizer: str = "SGD",
                   **kwargs: Any) -> Any:
    """Build the scheduler ``name`` on a fresh portopt optimizer, ready to plot.

    The optimizer has one one-element parameter group per entry of ``lrs``, each with a
    zero gradient. ``"SGD"`` gets ``momentum=0.9`` so that ``CyclicLR`` and
    ``OneCycleLR`` can cycle it; ``"Adam"`` keeps its defaults (they cycle ``betas[0]``).

    Arguments that hold schedulers or functions may be given as text, so that a
    schedule can be written on a command line:

    * ``schedulers`` (``SequentialLR``, ``ChainedScheduler``): a list of spec strings
      such as ``"LinearLR(start_factor=0.1, total_iters=10)"``: a call of a known
      scheduler with literal keyword arguments, without the optimizer. They are
      parsed with :mod:`ast`, never evaluated. A ``(name, kwargs)`` pair also works.
    * ``lr_lambda`` (``LambdaLR``, ``MultiplicativeLR``; one, or a list with one per
      group) and ``scale_fn`` (``CyclicLR``): a string such as
      ``"lambda epoch: 0.95 ** epoch"``. It is checked with :mod:`ast` before it is
      evaluated: a single lambda whose body uses only arithmetic, comparisons,
      conditional expressions, numbers, its own arguments, ``math.<name>`` and
      ``min``/``max``/``abs``. Python callables are used as they are.

    Args:
        name: one of :data:`SCHEDULERS`, e.g. ``"OneCycleLR"`` or ``"SWALR"``.
        lrs: the initial learning rate of each param group (one number: one group).
        optimizer: ``"SGD"`` or ``"Adam"``.
        **kwargs: the scheduler's own arguments, with torch's names
            (``step_size=30``, ``max_lr=0.1``, ...), without the optimizer.

    Returns:
        The scheduler; its optimizer is ``scheduler.optimizer``.

    Raises:
        ValueError: an unknown scheduler or optimizer name, a malformed spec string
            or an unsafe function string.
        TypeError, ValueError: whatever the scheduler's constructor raises for its
            arguments.
    """
    return _make(_portopt(), name, lrs, optimizer, kwargs)


def _make(lib: _Library, name: str, lrs: Sequence[float], optimizer: str,
          kwargs: dict[str, Any]) -> Any:
    _check_name(name)
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of "
                         + ", ".join(_OPTIMIZERS))
    lrs = [lrs] if isinstance(lrs, (int, float)) else list(lrs)
    if not lrs:
        raise ValueError("lrs must hold at least one learning rate")
    groups = [{"params": [lib.new_param()], "lr": float(lr)} for lr in lrs]
    extra = {"momentum": 0.9} if optimizer == "SGD" else {}
    opt = getattr(lib.optim, optimizer)(groups, **extra)
    return _construct(lib, name, opt, dict(kwargs))


def _check_name(name: Any) -> None:
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; known: " + ", ".join(SCHEDULERS))


def _construct(lib: _Library, name: str, opt: Any, kwargs: dict[str, Any]) -> Any:
    _check_name(name)
    if name in _FUNCTION_ARGS and isinstance(kwargs.get(_FUNCTION_ARGS[name]),
                                             (str, list, tuple)):
        key = _FUNCTION_ARGS[name]
        value = kwargs[key]
        kwargs[key] = (_safe_lambda(value) if isinstance(value, str)
                       else [_safe_lambda(v) if isinstance(v, str) else v for v in value])
    if name in _COMPOSITES and "schedulers" in kwargs:
        kwargs["schedulers"] = [_child(lib, spec, opt) for spec in kwargs["schedulers"]]
    if name == "SWALR":
        return lib.swa_utils.SWALR(opt, **kwargs)
    cls = getattr(lib.lr_scheduler, name)
    if name == "ChainedScheduler":  # torch's one signature with the optimizer second
        return cls(optimizer=opt, **kwargs)
    return cls(opt, **kwargs)


def _child(lib: _Library, spec: Any, opt: Any) -> Any:
    if isinstance(spec, str):
        name, kwargs = _parse_spec(spec)
    elif isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[1], dict):
        name, kwargs = spec[0], dict(spec[1])
    else:
        raise ValueError("schedulers must be spec strings such as "
                         f"'LinearLR(start_factor=0.1, total_iters=10)', got {spec!r}")
    return _construct(lib, name, opt, kwargs)


def _parse_spec(text: str) -> tuple[str, dict[str, Any]]:
    """Parse ``"Name(arg=literal, ...)"`` into ``(name, kwargs)`` without evaluating it.

    A ``lambda`` given as a keyword value is kept as its source text, for
    ``_safe_lambda`` to check later.

    Raises:
        ValueError: anything but a call of a known scheduler with literal keyword
            arguments.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"scheduler spec {text!r} is not valid Python: {exc.msg}") from None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
        raise ValueError(f"scheduler spec {text!r} must look like "
                         "'LinearLR(start_factor=0.1, total_iters=10)'")
    _check_name(call.func.id)
    if call.args:
        raise ValueError(f"scheduler spec {text!r}: give arguments by keyword "
                         "(the optimizer is supplied)")
    kwargs: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise ValueError(f"scheduler spec {text!r}: ** is not allowed")
        if isinstance(kw.value, ast.Lambda):
            kwargs[kw.arg] = ast.unparse(kw.value)
            continue
        try:
            kwargs[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            raise ValueError(f"scheduler spec {text!r}: {kw.arg}= must be a literal "
                             f"(number, string, list, ...), got {ast.unparse(kw.value)!r}"
                             ) from None
    return call.func.id, kwargs


# --- lambda strings ------------------------------------------------------------------

_CALLABLE_NAMES = {"min": min, "max": max, "abs": abs}
_PLAIN_NODES = (ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.operator,
                ast.unaryop, ast.boolop, ast.cmpop, ast.Load)


def _safe_lambda(text: str) -> Callable[..., Any]:
    """Turn ``"lambda epoch: 0.95 ** epoch"`` into a function, after checking it.

    The text must be one ``lambda`` with plain positional arguments, whose body uses
    only arithmetic, comparisons, ``and``/``or``/``not``, conditional expressions,
    numbers, the lambda's own arguments, ``math.<name>`` (``math.pi``,
    ``math.cos(...)``) and calls of ``min``, ``max`` and ``abs``. It is evaluated with
    no builtins besides those. This keeps out names, attributes and calls that reach
    further (``__import__``, ``open``, ``().__class__``); it does not bound run time,
    so ``10 ** 10 ** 10`` is still yours to avoid.

    Raises:
        ValueError: anything else, naming the construct that is not allowed.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"function {text!r} is not valid Python: {exc.msg}") from None
    lam = tree.body
    if not isinstance(lam, ast.Lambda):
        raise ValueError(f"function {text!r} must be a single lambda, "
                         "e.g. 'lambda epoch: 0.95 ** epoch'")
    a = lam.args
    if a.vararg or a.kwarg or a.kwonlyargs or a.defaults or a.posonlyargs:
        raise ValueError(f"function {text!r}: only plain arguments are allowed "
                         "(no defaults, *args, **kwargs or keyword-only ones)")
    names = {arg.arg for arg in a.args}
    problem = _unsafe(lam.body, names)
    if problem:
        raise ValueError(f"function {text!r} is not allowed: {problem}. Use arithmetic, "
                         "comparisons, conditional expressions, numbers, the lambda's "
                         "arguments, math.<name> and min/max/abs")
    env = {"__builtins__": {}, "math": math, **_CALLABLE_NAMES}
    return eval(compile(tree, "<lr function>", "eval"), env)  # checked above


def _unsafe(node: ast.AST, names: set[str]) -> str | None:
    """What makes ``node`` unsafe, or ``None`` when it is allowed."""
    if isinstance(node, ast.Constant):
        return None if isinstance(node.value, (int, float)) else f"the constant {node.value!r}"
    if isinstance(node, ast.Name):
        return None if node.id in names else f"the name {node.id!r}"
    if isinstance(node, ast.Attribute):
        return None if _is_math(node) else f"the attribute {ast.unparse(node)!r}"
    if isinstance(node, ast.Call):
        func = node.func
        known = (isinstance(func, ast.Name) and func.id in _CALLABLE_NAMES
                 and func.id not in names) or _is_math(func)
        if not known:
            return f"the call of {ast.unparse(func)!r}"
        if node.keywords:
            return "keyword arguments"
        children: list[ast.AST] = list(node.args)
    elif isinstance(node, _PLAIN_NODES):
        children = list(ast.iter_child_nodes(node))
    else:
        return f"{type(node).__name__} ({ast.unparse(node)!r})"
    for child in children:
        problem = _unsafe(child, names)
        if problem:
            return problem
    return None


def _is_math(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "math" and not node.attr.startswith("_")
            and hasattr(math, node.attr))


# --- plotting ------------------------------------------------------------------------


def plot_lr(scheduler_or_name: Any, steps: int, *, output: Any = None,
            title: str | None = None, metrics: Sequence[float] | None = None,
            **kwargs: Any) -> Any:
    """Plot a schedule: learning rate per param group against the step.

    When the scheduler cycles the momentum (``CyclicLR``, ``OneCycleLR``), a second
    panel shows it (``momentum`` for SGD, ``beta1`` for Adam).

    Args:
        scheduler_or_name: a scheduler (stepped in place, see :func:`lr_trajectory`),
            or a name from :data:`SCHEDULERS`, built with :func:`make_scheduler`.
        steps: how many steps to draw.
        output: write the figure there as a PNG (100 dpi) when given.
        title: the figure title; by default the scheduler's name and arguments.
        metrics: for ``ReduceLROnPlateau``, see :func:`lr_trajectory`.
        **kwargs: passed to :func:`make_scheduler` (``lrs``, ``optimizer`` and the
            scheduler's arguments); only with a name.

    Returns:
        The :class:`matplotlib.figure.Figure`, drawn on the Agg (non-interactive)
        canvas; pyplot's global state is not touched.

    Raises:
        ImportError: matplotlib is not installed.
        TypeError: ``kwargs`` together with a scheduler object.
    """
    Figure, FigureCanvasAgg = _matplotlib()
    if isinstance(scheduler_or_name, str):
        name = scheduler_or_name
        scheduler = make_scheduler(name, **kwargs)
        sched_args = {k: v for k, v in kwargs.items() if k not in ("lrs", "optimizer")}
        default_title = f"{name}({', '.join(f'{k}={_show(v)}' for k, v in sched_args.items())})"
    else:
        if kwargs:
            raise TypeError("plot_lr takes scheduler arguments only with a scheduler "
                            f"name, got a {type(scheduler_or_name).__name__} and "
                            + ", ".join(kwargs))
        scheduler = scheduler_or_name
        default_title = type(scheduler).__name__
    curve = lr_trajectory(scheduler, steps, metrics=metrics)
    groups = scheduler.optimizer.param_groups
    x = list(range(steps))
    panels = 2 if curve["momentum"] is not None else 1
    fig = Figure(figsize=(6, 3.5 if panels == 1 else 5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    series = [(axes[0], curve["lr"], "learning rate")]
    if panels == 2:
        series.append((axes[1], curve["momentum"], _momentum_label(groups[0])))
    for ax, values, label in series:
        # a value holds for its whole step: draw piecewise-constant schedules (StepLR,
        # ReduceLROnPlateau) as stairs with vertical cuts, and the rest as lines
        stairs = all(_median_run(ys) >= 2 for ys in values)
        style = "steps-post" if stairs else "default"
        for g, ys in enumerate(values):
            ax.plot(x, ys, drawstyle=style, label=f"group {g}")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if len(values) > 1:
            ax.legend()
    axes[-1].set_xlabel("step")
    fig.suptitle(textwrap.fill(title or default_title, 80), fontsize=10)
    if output is not None:
        # no "Software" stamp: keeps the matplotlib version out of committed images
        fig.savefig(output, format="png", dpi=100, metadata={"Software": None})
    return fig


def _median_run(values: list[float]) -> float:
    """The median length of the runs of equal values (0 for no values)."""
    runs: list[int] = []
    for i, v in enumerate(values):
        if i and v == values[i - 1]:
            runs[-1] += 1
        else:
            runs.append(1)
    runs.sort()
    return runs[len(runs) // 2] if runs else 0


def _matplotlib() -> tuple[Any, Any]:
    try:
        import matplotlib  # noqa: F401  (imported first: a missing package fails here)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(_MISSING_MATPLOTLIB) from exc
    return Figure, FigureCanvasAgg


def _show(value: Any) -> str:
    if callable(value):
        return getattr(value, "__name__", type(value).__name__)
    return repr(value)
