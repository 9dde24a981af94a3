"""RAdam: Adam with a rectified adaptive learning rate, torch's ``RAdam``."""

from __future__ import annotations

from typing import Any, NamedTuple

import array_api_compat
from array_api_compat import array_namespace

from . import _fast
from ._checks import (
    check_adam_family,
    check_capturable_devices,
    check_number_arguments,
    hyper,
    is_array,
)
from ._math import (
    add_scaled,
    addcmul,
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

__all__ = ["RAdam", "RAdamState", "radam", "radam_init"]


class RAdamState(NamedTuple):
    """State of one parameter; field names are torch's state keys."""

    step: Any  # number of steps taken; the optimizer keeps it as a 0-d float32 host scalar
    exp_avg: Any  # first moment
    exp_avg_sq: Any  # second moment (per real component for complex parameters)


def radam_init(param: Any) -> RAdamState:
    """The state before the first step: zero moments and ``step = 0``."""
    xp = array_namespace(param)
    return RAdamState(0, xp.zeros_like(param), xp.zeros_like(param))


def radam(param: Any, grad: Any, state: RAdamState, *, lr: Any, beta1: Any, beta2: Any,
          eps: Any, weight_decay: Any = 0.0, maximize: bool = False,
          decoupled_weight_decay: bool = False,
          capturable: bool = False) -> tuple[Any, RAdamState]:
    r"""One RAdam step. Pure: returns ``(new_param, new_state)`` and mutates nothing.

    .. math::
        \begin{align*}
        t &\leftarrow t + 1, \qquad g \leftarrow \pm\nabla \\
        \theta &\leftarrow \theta\,(1 - \gamma\lambda) \text{ (decoupled)}
            \quad\text{or}\quad g \leftarrow g + \lambda\theta \text{ (L2)} \\
        m &\leftarrow m + (1-\beta_1)(g - m), \qquad
            v \leftarrow \beta_2 v + (1-\beta_2)\, g^2, \qquad
            \hat m = m / (1-\beta_1^t) \\
        \rho_\infty &= \frac{2}{1-\beta_2} - 1, \qquad
            \rho_t = \rho_\infty - \frac{2t\beta_2^t}{1-\beta_2^t} \\
        \theta &\leftarrow \begin{cases}
            \theta - \gamma\,\hat m\,\dfrac{\sqrt{1-\beta_2^t}}{\sqrt v + \epsilon}\, r_t,
            \quad r_t = \sqrt{\dfrac{(\rho_t-4)(\rho_t-2)\rho_\infty}
                                   {(\rho_\infty-4)(\rho_\infty-2)\rho_t}}
                & \rho_t > 5 \\
            \theta - \gamma\,\hat m & \text{otherwise}
            \end{cases}
        \end{align*}

    The operations follow torch's single-tensor order, including the order of the
    products in the rectified update (``m_hat * lr * adaptive * rect``); ``rho_t`` and
    the rectification term are Python floats computed from ``step``, as torch computes
    them. Complex parameters are stepped as pairs of reals (torch's ``view_as_real``).

    Args:
        param: the parameter's values.
        grad: its gradient, same shape and dtype.
        state: a :class:`RAdamState`; ``step`` may be a number or a 0-d array.
        lr: learning rate, a number or a 0-d array.
        beta1, beta2: moment coefficients, numbers or 0-d arrays.
        eps: added to the denominator.
        weight_decay: decay coefficient.
        maximize: ascend instead of descend.
        decoupled_weight_decay: shrink the weights (RAdamW) instead of adding
            ``weight_decay * param`` to the gradient.
        capturable: keep ``step`` and every scalar derived from it as arrays and choose
            the branch elementwise (torch's graph-safe form, which never reads a value
            to the host).

    Returns:
        ``(new_param, new_state)``.
    """
    xp = array_namespace(param, grad)
    if maximize:
        grad = -grad
    exp_avg, exp_avg_sq = state.exp_avg, state.exp_avg_sq
    complex_param = is_complex(param)
    if complex_param:
        param, grad, exp_avg, exp_avg_sq = map(view_as_real, (param, grad, exp_avg, exp_avg_sq))
    # graph-safe scalars must stay on the device: never read them back to the host
    scalar = _as_is if capturable else host

    step_t = state.step + 1
    step = step_t if capturable else float(step_t)
    if weight_decay != 0:
        if decoupled_weight_decay:
            param = param * host(1 - lr * weight_decay)
        else:
            grad = add_scaled(grad, param, host(weight_decay))

    exp_avg = lerp(exp_avg, grad, host(1 - beta1))
    # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    exp_avg_sq = addcmul(exp_avg_sq * host(beta2), grad, grad, host(1 - beta2))

    bias_correction1 = 1 - spow(beta1, step)
    bias_correction2 = 1 - spow(beta2, step)
    bias_corrected_exp_avg = exp_avg / scalar(bias_correction1)
    rho_inf = rdiv(2, 1 - beta2) - 1
    rho_t = rho_inf - 2 * step * spow(beta2, step) / bias_correction2

    def rect() -> Any:
        return spow((rho_t - 4) * (rho_t - 2) * rho_inf
                    / ((rho_inf - 4) * (rho_inf - 2) * rho_t), 0.5)

    def adaptive_lr() -> Any:
        return _scalar_over(spow(bias_correction2, 0.5), xp.sqrt(exp_avg_sq) + host(eps))

    if capturable:
        # both branches computed, one chosen without reading rho_t on the host
        update = xp.where(rho_t > 5.0, rect() * adaptive_lr(), 1.0)
        param = param - bias_corrected_exp_avg * lr * update
    elif rho_t > 5.0:
        # param.add_(m_hat * lr * adaptive * rect, alpha=-1): a plain subtraction
        param = param - bias_corrected_exp_avg * host(lr) * adaptive_lr() * host(rect())
    else:
        param = param - bias_corrected_exp_avg * host(lr)

    if complex_param:
        param, exp_avg, exp_avg_sq = map(view_as_complex, (param, exp_avg, exp_avg_sq))
    param, exp_avg, exp_avg_sq = as_arrays(xp, param, exp_avg, exp_avg_sq)
    return param, RAdamState(step_t, exp_avg, exp_avg_sq)


def _as_is(x: Any) -> Any:
    return x


def _scalar_over(numerator: Any, denominator: Any) -> Any:
    """A scalar divided by an array, rounded as torch rounds it.

    A Python number goes through torch's ``reciprocal(t) * number``; a 0-d array is a
    true division after casting it to the array's dtype (torch's rule for a 0-d
    operand, which NumPy would instead promote).
    """
    if not is_array(numerator):
        return rdiv(numerator, denominator)
    if array_api_compat.is_torch_array(denominator):
        return numerator / denominator
    return host(numerator) / denominator



class RAdam(Optimizer):
    """RAdam, as ``torch.optim.RAdam`` (RAdamW with ``decoupled_weight_decay=True``).

    See :func:`portopt.functional.radam` for the update rule.

    Args:
        params: parameters or param groups to optimize.
        lr: learning rate, a number or a 1-element array (default: 1e-3).
        betas: coefficients of the running averages of the gradient and its square
            (default: (0.9, 0.999)).
        eps: added to the denominator (default: 1e-8).
        weight_decay: weight decay coefficient (default: 0).
        decoupled_weight_decay: decay the weights directly, as AdamW (default: False).
        foreach: accepted for compatibility; portopt chooses its own paths.
        maximize: maximize the objective instead of minimizing it.
        capturable: torch's CUDA-graph-safe form (torch tensors on a capture device).
        differentiable: let torch autograd see through the step (torch tensors only).

    Differences from torch.optim:
        * ``capturable=True`` and ``differentiable=True`` raise on non-torch backends.
        * Betas given as 1-element arrays of any shape are read as scalars; torch
          accepts only 0-d tensors there (a ``(1,)`` tensor fails at its first step).
        * With ``differentiable=True`` autograd can go back through several steps
          with respect to ``beta1`` too; torch's in-place moments break that.
    """

    _state_type = RAdamState
    _elementwise = True
    _setstate_defaults = {"foreach": None, "maximize": False, "differentiable": False,
                          "decoupled_weight_decay": False, "capturable": False}

    def __init__(self, params: Any, lr: Any = 1e-3, betas: tuple[Any, Any] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0,
                 decoupled_weight_decay: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False) -> None:
        check_adam_family(lr, eps, betas, weight_decay)
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "maximize": maximize, "foreach": foreach, "capturable": capturable,
                    "decoupled_weight_decay": decoupled_weight_decay,
                    "differentiable": differentiable}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any], work: list[Any]) -> None:
        # torch's foreach path refuses autograd; its device list there leaves out xla
        foreach = bool(group["foreach"])
        if foreach and group["differentiable"]:
            raise AssertionError("_foreach ops don't support autograd")
        check_capturable_devices(group, work, lambda item: (self._current_step(item, group),),
                                 xla=not foreach)
        if group["differentiable"]:
            check_number_arguments(group)

    def _init_state(self, data: Any, group: dict[str, Any]) -> RAdamState:
        return radam_init(data)

    # -- the fused NumPy kernel (portopt/backends/_numba/) ----------------------------

    _fused_numbers = ("lr", "betas", "eps", "weight_decay")

    def _launch(self, plan: Any, group: dict[str, Any]) -> None:
        dtype = plan.grads.dtype
        cast = _fast.cast
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
        decoupled = group["decoupled_weight_decay"]
        w1 = cast(1 - beta1, dtype)
        step = float(plan.step + 1)  # counted in float32, as the generic kernel counts
        # the host scalars of the generic kernel, in its float arithmetic
        bias_correction2 = 1 - beta2 ** step
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * beta2 ** step / bias_correction2
        rectified = rho_t > 5.0
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5 if rectified else 1.0
        buffers = plan.state_buffers
        plan.launch(
            _fast.kernels().radam_step, buffers["exp_avg"], buffers["exp_avg_sq"],
            group["maximize"], cast(0.0 if decoupled else wd, dtype),
            cast(1 - lr * wd if decoupled and wd != 0 else 1.0, dtype),
            w1, cast(float(w1) - 1, dtype), cast(1 - float(w1), dtype), cast(beta2, dtype),
            cast(1 - beta2, dtype), cast(1 - beta1 ** step, dtype),
            cast(bias_correction2 ** 0.5, dtype), cast(group["eps"], dtype), cast(lr, dtype),
            rectified, cast(rect, dtype))
        plan.finish()

    def _update(self, data: Any, grad: Any, state: RAdamState,
                group: dict[str, Any]) -> tuple[Any, RAdamState]:
        diff = group["differentiable"]
        beta1, beta2 = (hyper(b, data, diff) for b in group["betas"])
        scalars = {k: hyper(group[k], data, diff) for k in ("lr", "eps", "weight_decay")}
        return radam(data, grad, state, beta1=beta1, beta2=beta2, **scalars,
                     maximize=group["maximize"],
                     decoupled_weight_decay=group["decoupled_weight_decay"],
                     capturable=group["capturable"])
