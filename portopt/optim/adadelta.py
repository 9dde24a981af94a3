"""Adadelta: a per-coordinate step size from running averages of g² and Δx², torch's
``Adadelta``."""

from __future__ import annotations

from typing import Any, NamedTuple

from array_api_compat import array_namespace

from . import _fast
from ._checks import check_capturable_devices, check_one_element, to_scalar
from ._math import add_scaled, addcmul, as_arrays, host, is_complex, view_as_complex, view_as_real
from .optimizer import Optimizer

__all__ = ["Adadelta", "AdadeltaState", "adadelta", "adadelta_init"]


class AdadeltaState(NamedTuple):
    """State of one parameter; field names are torch's state keys."""

    step: Any  # number of steps taken; the optimizer keeps it as a 0-d float32 host scalar
    square_avg: Any  # running average of the squared gradient
    acc_delta: Any  # running average of the squared update


def adadelta_init(param: Any) -> AdadeltaState:
    """The state before the first step: zero averages and ``step = 0``."""
    xp = array_namespace(param)
    return AdadeltaState(0, xp.zeros_like(param), xp.zeros_like(param))


def adadelta(param: Any, grad: Any, state: AdadeltaState, *, lr: Any, rho: Any, eps: float,
             weight_decay: float = 0.0, maximize: bool = False) -> tuple[Any, AdadeltaState]:
    r"""One Adadelta step. Pure: returns ``(new_param, new_state)`` and mutates nothing.

    .. math::
        \begin{align*}
        t &\leftarrow t + 1, \qquad g \leftarrow \pm\nabla + \lambda\,\theta \\
        v &\leftarrow \rho\, v + (1-\rho)\, g^2 \\
        \Delta &\leftarrow \frac{\sqrt{u + \epsilon}}{\sqrt{v + \epsilon}}\, g \\
        u &\leftarrow \rho\, u + (1-\rho)\, \Delta^2 \\
        \theta &\leftarrow \theta - \gamma\, \Delta
        \end{align*}

    with ``square_avg`` :math:`v`, ``acc_delta`` :math:`u`, learning rate
    :math:`\gamma` and (coupled) weight decay :math:`\lambda`. The operations follow
    torch's single-tensor order (``mul_`` + ``addcmul_`` for both averages, the
    update as ``add_(delta, alpha=-lr)``). For complex parameters the averages are
    kept per real component (torch's ``view_as_real``) while the weight decay and the
    final update are complex operations, as in torch.

    Args:
        param: the parameter's values.
        grad: its gradient, same shape and dtype.
        state: an :class:`AdadeltaState`; ``step`` may be a number or a 0-d array.
        lr: learning rate, a number or a 0-d array.
        rho: decay of both running averages.
        eps: added inside both square roots.
        weight_decay: L2 penalty folded into the gradient.
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

    complex_param = is_complex(param)
    square_avg, acc_delta = state.square_avg, state.acc_delta
    if complex_param:
        square_avg, acc_delta, grad = map(view_as_real, (square_avg, acc_delta, grad))

    # square_avg.mul_(rho).addcmul_(grad, grad, value=1 - rho)
    square_avg = addcmul(square_avg * host(rho), grad, grad, host(1 - rho))
    std = xp.sqrt(square_avg + host(eps))
    # delta = sqrt(acc_delta + eps), then div_(std).mul_(grad): two roundings, in this order
    delta = (xp.sqrt(acc_delta + host(eps)) / std) * grad
    acc_delta = addcmul(acc_delta * host(rho), delta, delta, host(1 - rho))

    if complex_param:
        square_avg, acc_delta, delta = map(view_as_complex, (square_avg, acc_delta, delta))
    param = add_scaled(param, delta, host(-lr))
    param, square_avg, acc_delta = as_arrays(xp, param, square_avg, acc_delta)
    return param, AdadeltaState(step, square_avg, acc_delta)



class Adadelta(Optimizer):
    """Adadelta, as ``torch.optim.Adadelta``.

    See :func:`portopt.functional.adadelta` for the update rule.

    Args:
        params: parameters or param groups to optimize.
        lr: scale of the update, a number or a 1-element array (default: 1.0).
        rho: decay of the running averages, in [0, 1] (default: 0.9).
        eps: added inside the square roots (default: 1e-6).
        weight_decay: L2 penalty (default: 0).
        foreach: accepted for compatibility; portopt chooses its own paths.
        capturable: keep ``step`` on the parameter's device for CUDA graph capture
            (torch tensors on a capture device; torch raises its AssertionError elsewhere).
        maximize: maximize the objective instead of minimizing it.
        differentiable: let torch autograd see through the step (torch tensors only).

    Differences from torch.optim:
        * ``capturable=True`` and ``differentiable=True`` raise on non-torch backends.
        * With ``differentiable=True``, an ``lr`` tensor that requires grad raises
          torch's TypeError before anything changes (torch raises it from ``add_``
          after earlier parameters were updated).
    """

    _state_type = AdadeltaState
    _elementwise = True
    _fused_numbers = ("lr", "rho", "eps", "weight_decay")
    _setstate_defaults = {"foreach": None, "maximize": False, "differentiable": False,
                          "capturable": False}

    def __init__(self, params: Any, lr: Any = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0, foreach: bool | None = None, *,
                 capturable: bool = False, maximize: bool = False,
                 differentiable: bool = False) -> None:
        check_one_element(lr)
        if not 0.0 <= to_scalar(lr):
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay,
                    "maximize": maximize, "capturable": capturable, "foreach": foreach,
                    "differentiable": differentiable}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any], work: list[Any]) -> None:
        if group["foreach"] and group["differentiable"]:
            raise AssertionError("_foreach ops don't support autograd")
        # Adadelta asks torch for its device list without XLA
        check_capturable_devices(group, work, lambda item: (self._current_step(item, group),),
                                 xla=False)
        lr = group["lr"]
        if group["differentiable"] and getattr(lr, "requires_grad", False):
            raise TypeError("add_(): argument 'alpha' must be Number, not Tensor")

    def _init_state(self, data: Any, group: dict[str, Any]) -> AdadeltaState:
        return adadelta_init(data)

    # -- the fused NumPy kernel (portopt/backends/_numba/) ----------------------------

    def _launch(self, plan: Any, group: dict[str, Any]) -> None:
        dtype = plan.grads.dtype
        buffers = plan.state_buffers
        rho = group["rho"]
        plan.launch(
            _fast.kernels().adadelta_step, buffers["square_avg"], buffers["acc_delta"],
            _fast.cast(-1.0 if group["maximize"] else 1.0, dtype),
            _fast.cast(group["weight_decay"], dtype), _fast.cast(rho, dtype),
            _fast.cast(1 - rho, dtype), _fast.cast(group["eps"], dtype),
            _fast.cast(-group["lr"], dtype))
        plan.finish()

    def _update(self, data: Any, grad: Any, state: AdadeltaState,
                group: dict[str, Any]) -> tuple[Any, AdadeltaState]:
        return adadelta(data, grad, state, lr=to_scalar(group["lr"]), rho=group["rho"],
                        eps=group["eps"], weight_decay=group["weight_decay"],
                        maximize=group["maximize"])
