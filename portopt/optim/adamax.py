"""Adamax: Adam with the infinity norm in place of the second moment, torch's ``Adamax``."""

from __future__ import annotations

from typing import Any, NamedTuple

from array_api_compat import array_namespace

from ..backends import get_backend
from . import _fast
from ._checks import (
    check_adam_family,
    check_capturable_devices,
    is_array,
    to_scalar,
)
from ._math import (
    add_scaled,
    as_arrays,
    host,
    is_complex,
    lerp,
    rdiv,
    spow,
    view_as_complex,
    view_as_real,
)
from .optimizer import Optimizer

__all__ = ["Adamax", "AdamaxState", "adamax", "adamax_init"]


class AdamaxState(NamedTuple):
    """State of one parameter; field names are torch's state keys."""

    step: Any  # number of steps taken; the optimizer keeps it as a 0-d float32 host scalar
    exp_avg: Any  # first moment
    exp_inf: Any  # exponentially weighted infinity norm (per real component if complex)


def adamax_init(param: Any) -> AdamaxState:
    """The state before the first step: zero moment, zero norm and ``step = 0``."""
    xp = array_namespace(param)
    return AdamaxState(0, xp.zeros_like(param), xp.zeros_like(param))


def adamax(param: Any, grad: Any, state: AdamaxState, *, lr: Any, beta1: Any, beta2: Any,
           eps: float, weight_decay: float = 0.0, maximize: bool = False,
           differentiable: bool = False, capturable: bool = False) -> tuple[Any, AdamaxState]:
    r"""One Adamax step. Pure: returns ``(new_param, new_state)`` and mutates nothing.

    .. math::
        \begin{align*}
        t &\leftarrow t + 1, \qquad g \leftarrow \pm\nabla + \lambda\,\theta \\
        m &\leftarrow m + (1-\beta_1)(g - m) \\
        u &\leftarrow \max(\beta_2\, u,\ |g| + \epsilon) \\
        \theta &\leftarrow \theta - \frac{\gamma}{1-\beta_1^t}\,\frac{m}{u}
        \end{align*}

    ``eps`` sits inside the maximum, as in torch. The operations follow torch's
    single-tensor order (``lerp_``, ``mul_``, ``maximum``, ``addcdiv_``); the bias
    correction and ``clr = lr / (1 - beta1**t)`` are host scalars computed from
    ``step``, as torch computes them. Complex parameters are stepped as pairs of reals
    (torch's ``view_as_real``) after the weight decay.

    Args:
        param: the parameter's values.
        grad: its gradient, same shape and dtype.
        state: an :class:`AdamaxState`; ``step`` may be a number or a 0-d array.
        lr: learning rate, a number or a 0-d array.
        beta1, beta2: decay of the first moment and of the norm, numbers or 0-d arrays.
        eps: added to ``|g|`` inside the maximum.
        weight_decay: L2 penalty folded into the gradient.
        maximize: ascend instead of descend.
        differentiable: take the maximum as torch's differentiable form does
            (``amax`` over the two stacked candidates: the same values, and the
            gradient of ``amax`` for autograd).
        capturable: torch's graph-safe form, which keeps ``step`` and the bias
            correction as arrays on the parameter's device (torch tensors).

    Returns:
        ``(new_param, new_state)``.
    """
    xp = array_namespace(param, grad)
    if maximize:
        grad = -grad
    step_t = state.step + 1
    if weight_decay != 0:
        grad = add_scaled(grad, param, host(weight_decay))

    complex_param = is_complex(param)
    exp_avg, exp_inf = state.exp_avg, state.exp_inf
    if complex_param:
        param, grad, exp_avg, exp_inf = map(view_as_real, (param, grad, exp_avg, exp_inf))

    weight = 1 - beta1
    # exp_avg.lerp_(grad, 1 - beta1); exp_inf.mul_(beta2)
    exp_avg = _in_place(lambda m, g: lerp(m, g, host(weight)), weight, exp_avg, grad)
    scaled = _in_place(lambda u: u * host(beta2), beta2, exp_inf)
    bound = xp.abs(grad) + host(eps)
    if differentiable:
        exp_inf = xp.max(xp.stack([scaled, bound]), axis=0)
    else:
        exp_inf = xp.maximum(scaled, bound)

    if capturable:
        # torch's graph-safe form: a negated bias correction over lr, kept on the device
        neg_bias_correction = beta1 ** step_t - 1
        # div_(lr) is in place: the quotient keeps the correction's dtype
        neg_bias_correction = xp.astype(neg_bias_correction / lr, neg_bias_correction.dtype)
        # param.addcdiv_(exp_avg, exp_inf * neg_bias_correction), in the param's dtype
        updated = param + exp_avg / (exp_inf * neg_bias_correction)
        param = updated if updated.dtype == param.dtype else xp.astype(updated, param.dtype)
    else:
        clr = rdiv(lr, 1 - spow(beta1, float(step_t)))
        # addcdiv_(exp_avg, exp_inf, value=-clr): (value * exp_avg) / exp_inf
        param = param + (host(-clr) * exp_avg) / exp_inf

    if complex_param:
        param, exp_avg, exp_inf = map(view_as_complex, (param, exp_avg, exp_inf))
    param, exp_avg, exp_inf = as_arrays(xp, param, exp_avg, exp_inf)
    return param, AdamaxState(step_t, exp_avg, exp_inf)


def _in_place(op: Any, operand: Any, x: Any, *others: Any) -> Any:
    """``op(x, *others)`` rounded as torch's in-place ``x.op_(..., operand)``.

    A number or a 0-d tensor ``operand`` does not promote a tensor with dimensions (a
    float64 ``beta2`` scales a float32 ``exp_inf`` in float32), but two 0-d tensors
    promote each other: for a 0-d float32 parameter and a float64 tensor beta, torch
    computes in float64 and rounds the result back to float32.
    """
    if not is_array(operand) or x.ndim > 0:
        return op(x, *others)
    xp = array_namespace(x)
    # by dtype name: a state_dict loaded from torch can leave torch tensors in the group
    wide = xp.result_type(x.dtype, getattr(xp, get_backend(operand).dtype_name(operand.dtype)))
    if wide == x.dtype:
        return op(x, *others)
    return xp.astype(op(*(xp.astype(a, wide) for a in (x, *others))), x.dtype)


class Adamax(Optimizer):
    """Adamax, as ``torch.optim.Adamax``.

    See :func:`portopt.functional.adamax` for the update rule.

    Args:
        params: parameters or param groups to optimize.
        lr: learning rate, a number or a 1-element array (default: 2e-3).
        betas: decay of the first moment and of the infinity norm (default: (0.9, 0.999)).
        eps: added to ``|g|`` inside the maximum (default: 1e-8).
        weight_decay: L2 penalty (default: 0).
        foreach: accepted for compatibility; portopt chooses its own paths.
        maximize: maximize the objective instead of minimizing it.
        differentiable: let torch autograd see through the step (torch tensors only).
        capturable: torch's CUDA-graph-safe form (torch tensors on a capture device;
            torch raises its AssertionError elsewhere).

    Differences from torch.optim:
        * ``capturable=True`` and ``differentiable=True`` raise on non-torch backends.
        * With ``differentiable=True`` (and without ``capturable``), an ``lr`` tensor
          that requires grad raises torch's TypeError before anything changes; torch
          raises it from ``addcdiv_`` after earlier parameters were updated.
        * With ``differentiable=True`` the kernel never overwrites a tensor autograd
          saved, so a backward pass through several steps works; torch's in-place
          ``lerp_`` makes it fail.
    """

    _state_type = AdamaxState
    _elementwise = True
    _setstate_defaults = {"foreach": None, "maximize": False, "differentiable": False,
                          "capturable": False}

    def __init__(self, params: Any, lr: Any = 2e-3, betas: tuple[Any, Any] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False,
                 capturable: bool = False) -> None:
        check_adam_family(lr, eps, betas, weight_decay)
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "foreach": foreach, "maximize": maximize,
                    "differentiable": differentiable, "capturable": capturable}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any], work: list[Any]) -> None:
        if group["foreach"] and group["differentiable"]:
            raise AssertionError("_foreach ops don't support autograd")
        # torch's foreach path leaves xla out of its device list
        check_capturable_devices(group, work, lambda item: (self._current_step(item, group),),
                                 xla=not group["foreach"])
        lr = group["lr"]
        if (group["differentiable"] and not group["capturable"]
                and getattr(lr, "requires_grad", False)):
            raise TypeError("addcdiv_(): argument 'value' must be Number, not Tensor")

    def _init_state(self, data: Any, group: dict[str, Any]) -> AdamaxState:
        return adamax_init(data)

    # -- the fused NumPy kernel (portopt/backends/_numba/) ----------------------------

    _fused_numbers = ("lr", "betas", "eps", "weight_decay")

    def _launch(self, plan: Any, group: dict[str, Any]) -> None:
        dtype = plan.grads.dtype
        cast = _fast.cast
        lr, (beta1, beta2) = group["lr"], group["betas"]
        w1 = cast(1 - beta1, dtype)
        step = float(plan.step + 1)  # counted in float32, as the generic kernel counts
        buffers = plan.state_buffers
        plan.launch(
            _fast.kernels().adamax_step, buffers["exp_avg"], buffers["exp_inf"],
            group["maximize"], cast(group["weight_decay"], dtype),
            w1, cast(float(w1) - 1, dtype), cast(1 - float(w1), dtype), cast(beta2, dtype),
            cast(group["eps"], dtype), cast(-(lr / (1 - beta1 ** step)), dtype))
        plan.finish()

    def _update(self, data: Any, grad: Any, state: AdamaxState,
                group: dict[str, Any]) -> tuple[Any, AdamaxState]:
        beta1, beta2 = group["betas"]
        return adamax(data, grad, state, lr=to_scalar(group["lr"]), beta1=to_scalar(beta1),
                      beta2=to_scalar(beta2), eps=group["eps"],
                      weight_decay=group["weight_decay"], maximize=group["maximize"],
                      differentiable=group["differentiable"],
                      capturable=group["capturable"])
