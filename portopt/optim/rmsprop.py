"""RMSprop, optionally centered and with momentum: torch's ``RMSprop``."""

from __future__ import annotations

from typing import Any, NamedTuple

from array_api_compat import array_namespace

from . import _fast
from ._checks import check_capturable_devices, check_one_element, hyper, requires_grad, to_scalar
from ._math import (
    add_scaled,
    addcmul,
    as_arrays,
    host,
    is_complex,
    lerp,
    view_as_complex,
    view_as_real,
)
from .optimizer import Optimizer

__all__ = ["RMSprop", "RMSpropState", "rmsprop", "rmsprop_init"]


class RMSpropState(NamedTuple):
    """State of one parameter; field names are torch's state keys."""

    step: Any  # number of steps taken; the optimizer keeps it as a 0-d float32 host scalar
    square_avg: Any  # running average of the squared gradient
    momentum_buffer: Any = None  # only when momentum > 0
    grad_avg: Any = None  # running average of the gradient, only when centered


def rmsprop_init(param: Any, *, momentum: Any = 0.0, centered: bool = False) -> RMSpropState:
    """The state before the first step: zero averages (and buffer) and ``step = 0``."""
    xp = array_namespace(param)
    return RMSpropState(0, xp.zeros_like(param),
                        xp.zeros_like(param) if momentum > 0 else None,
                        xp.zeros_like(param) if centered else None)


def rmsprop(param: Any, grad: Any, state: RMSpropState, *, lr: Any, alpha: Any, eps: Any,
            weight_decay: Any = 0.0, momentum: Any = 0.0, centered: bool = False,
            maximize: bool = False) -> tuple[Any, RMSpropState]:
    r"""One RMSprop step. Pure: returns ``(new_param, new_state)`` and mutates nothing.

    .. math::
        \begin{align*}
        t &\leftarrow t + 1, \qquad g \leftarrow \pm\nabla + \lambda\,\theta \\
        v &\leftarrow \alpha\, v + (1-\alpha)\, g^2 \\
        \bar g &\leftarrow \bar g + (1-\alpha)(g - \bar g)
            \quad\text{(centered only)} \\
        d &\leftarrow \sqrt{v - \bar g^2} + \epsilon \text{ (centered)}
            \quad\text{or}\quad \sqrt{v} + \epsilon \\
        b &\leftarrow \mu\, b + g / d, \quad \theta \leftarrow \theta - \gamma\, b
            \quad\text{if } \mu > 0, \text{ else} \quad
            \theta \leftarrow \theta - \gamma\, g / d
        \end{align*}

    with learning rate :math:`\gamma`, smoothing constant :math:`\alpha`, momentum
    :math:`\mu` and (coupled) weight decay :math:`\lambda`. ``eps`` is added after the
    square root. The operations follow torch's single-tensor order (``mul_`` +
    ``addcmul_``, ``lerp_``, ``addcdiv_``), so float32 results match torch up to its
    square root, which is not correctly rounded on CPU. Complex parameters are stepped
    as pairs of reals (torch's ``view_as_real``), after the weight decay, which torch
    applies in complex arithmetic.

    Args:
        param: the parameter's values.
        grad: its gradient, same shape and dtype.
        state: an :class:`RMSpropState`; ``step`` may be a number or a 0-d array;
            ``momentum_buffer`` is needed when ``momentum > 0``, ``grad_avg`` when
            ``centered``.
        lr: learning rate, a number or a 0-d array.
        alpha: smoothing constant of the averages.
        eps: added to the denominator, after the square root.
        weight_decay: L2 penalty added to the gradient.
        momentum: momentum factor; 0 for none.
        centered: divide by an estimate of the gradient's variance instead of its
            second moment.
        maximize: ascend instead of descend.

    Returns:
        ``(new_param, new_state)``.
    """
    xp = array_namespace(param, grad)
    step = state.step + 1
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = add_scaled(grad, param, host(weight_decay))

    square_avg, buf, grad_avg = state.square_avg, state.momentum_buffer, state.grad_avg
    complex_param = is_complex(param)
    if complex_param:
        param, grad, square_avg = map(view_as_real, (param, grad, square_avg))
        buf = None if buf is None else view_as_real(buf)
        grad_avg = None if grad_avg is None else view_as_real(grad_avg)

    # torch computes `1 - alpha` before making it a number: in alpha's own dtype when
    # alpha is a 0-d array
    one_minus_alpha = host(1 - alpha)
    # square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
    square_avg = addcmul(square_avg * host(alpha), grad, grad, one_minus_alpha)
    if centered:
        grad_avg = lerp(grad_avg, grad, one_minus_alpha)
        # square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
        avg = xp.sqrt(addcmul(square_avg, grad_avg, grad_avg, -1))
    else:
        avg = xp.sqrt(square_avg)
    avg = avg + host(eps)

    # torch updates buf and param in place, so they keep their dtype even where a 0-d
    # float64 tensor (momentum, or eps through avg) promotes a 0-d float32 one
    dtype = param.dtype
    if momentum > 0:
        # buf.mul_(momentum).addcdiv_(grad, avg); param.add_(buf, alpha=-lr)
        buf = _astype(xp, _astype(xp, buf * host(momentum), dtype) + grad / avg, dtype)
        param = add_scaled(param, buf, host(-lr))
    else:
        # param.addcdiv_(grad, avg, value=-lr): (value * grad) / avg, not fused
        param = _astype(xp, param + (host(-lr) * grad) / avg, dtype)

    if complex_param:
        param, square_avg = view_as_complex(param), view_as_complex(square_avg)
        buf = None if buf is None else view_as_complex(buf)
        grad_avg = None if grad_avg is None else view_as_complex(grad_avg)
    param, square_avg, buf, grad_avg = as_arrays(xp, param, square_avg, buf, grad_avg)
    return param, RMSpropState(step, square_avg, buf, grad_avg)


class RMSprop(Optimizer):
    """RMSprop, as ``torch.optim.RMSprop`` (centered and momentum variants included).

    See :func:`portopt.functional.rmsprop` for the update rule.

    Args:
        params: parameters or param groups to optimize.
        lr: learning rate, a number or a 1-element array (default: 1e-2).
        alpha: smoothing constant (default: 0.99).
        eps: added to the denominator after the square root (default: 1e-8).
        weight_decay: L2 penalty (default: 0).
        momentum: momentum factor (default: 0).
        centered: normalize by an estimate of the gradient's variance (default: False).
        capturable: torch's CUDA-graph-safe form (torch tensors on a capture device).
        foreach: accepted for compatibility; portopt chooses its own paths.
        maximize: maximize the objective instead of minimizing it.
        differentiable: let torch autograd see through the step (torch tensors only).

    As in torch, ``alpha`` is only checked to be non-negative: ``alpha > 1`` is accepted
    and makes the parameters NaN (the square average turns negative).

    Differences from torch.optim:
        * ``capturable=True`` and ``differentiable=True`` raise on non-torch backends.
        * ``foreach=True`` runs the same computation as ``foreach=False`` (torch's two
          paths agree bit for bit for RMSprop on CPU).
    """

    _state_type = RMSpropState
    _elementwise = True
    _setstate_defaults = {"momentum": 0, "centered": False, "foreach": None,
                          "maximize": False, "differentiable": False, "capturable": False}

    def __init__(self, params: Any, lr: Any = 1e-2, alpha: Any = 0.99, eps: Any = 1e-8,
                 weight_decay: Any = 0, momentum: Any = 0, centered: bool = False,
                 capturable: bool = False, foreach: bool | None = None,
                 maximize: bool = False, differentiable: bool = False) -> None:
        check_one_element(lr)
        if not 0.0 <= to_scalar(lr):
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        defaults = {"lr": lr, "momentum": momentum, "alpha": alpha, "eps": eps,
                    "centered": centered, "weight_decay": weight_decay,
                    "capturable": capturable, "foreach": foreach, "maximize": maximize,
                    "differentiable": differentiable}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any], work: list[Any]) -> None:
        for item in work:
            # torch reads the slots a flag needs from existing state: switching momentum
            # or centered on after the first step is a KeyError there
            saved = self.state.get(item.param)
            if saved:
                if group["momentum"] > 0 and "momentum_buffer" not in saved:
                    raise KeyError("momentum_buffer")
                if group["centered"] and "grad_avg" not in saved:
                    raise KeyError("grad_avg")
        if group["foreach"] and group["differentiable"]:
            raise AssertionError("_foreach ops don't support autograd")
        check_capturable_devices(group, work, lambda item: (self._current_step(item, group),))
        if group["differentiable"]:
            _check_number_arguments(group)

    def _init_state(self, data: Any, group: dict[str, Any]) -> RMSpropState:
        return rmsprop_init(data, momentum=group["momentum"], centered=group["centered"])

    # -- the fused NumPy kernel (portopt/backends/_numba/) ----------------------------

    _fused_numbers = ("lr", "alpha", "eps", "weight_decay", "momentum")

    def _launch(self, plan: Any, group: dict[str, Any]) -> None:
        dtype = plan.grads.dtype
        cast = _fast.cast
        buffers = plan.state_buffers
        square_avg = buffers["square_avg"]
        w = cast(1 - group["alpha"], dtype)
        plan.launch(
            _fast.kernels().rmsprop_step, square_avg,
            buffers.get("momentum_buffer", square_avg), buffers.get("grad_avg", square_avg),
            cast(-1.0 if group["maximize"] else 1.0, dtype), cast(group["weight_decay"], dtype),
            cast(group["alpha"], dtype), w, cast(float(w) - 1, dtype),
            cast(1 - (1 - group["alpha"]), dtype), cast(group["eps"], dtype),
            cast(group["momentum"], dtype), cast(-group["lr"], dtype), group["centered"],
            group["momentum"] > 0)
        plan.finish()

    def _update(self, data: Any, grad: Any, state: RMSpropState,
                group: dict[str, Any]) -> tuple[Any, RMSpropState]:
        # outside differentiable mode torch reads tensor hyper-parameters as plain
        # numbers even when they require grad
        h = {k: hyper(group[k], data, group["differentiable"])
             for k in ("lr", "alpha", "eps", "weight_decay", "momentum")}
        return rmsprop(data, grad, state, **h, centered=group["centered"],
                       maximize=group["maximize"])


def _astype(xp: Any, x: Any, dtype: Any) -> Any:
    return x if x.dtype == dtype else xp.astype(x, dtype)


def _check_number_arguments(group: dict[str, Any]) -> None:
    """torch's TypeError for a hyper-parameter that torch passes to an op as a Python
    number and that is a tensor requiring grad: with autograd on (differentiable mode)
    torch refuses to turn it into a number. ``eps`` and ``momentum`` go through tensor
    ops and stay differentiable."""
    if group["weight_decay"] != 0 and requires_grad(group["weight_decay"]):
        raise TypeError("add(): argument 'alpha' must be Number, not Tensor")
    if requires_grad(group["alpha"]):
        raise TypeError("addcmul_(): argument 'value' must be Number, not Tensor")
    if requires_grad(group["lr"]):
        if group["momentum"] > 0:
            raise TypeError("add_(): argument 'alpha' must be Number, not Tensor")
        raise TypeError("addcdiv_(): argument 'value' must be Number, not Tensor")
