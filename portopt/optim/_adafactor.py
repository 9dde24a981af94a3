"""Adafactor, with factored second moments for matrices: torch's ``Adafactor``."""

from __future__ import annotations

import math
import sys
from typing import Any, NamedTuple

import array_api_compat
from array_api_compat import array_namespace

from ._checks import check_one_element, to_scalar
from ._math import add_scaled, as_arrays, host, lerp, rdiv
from .optimizer import Optimizer

__all__ = ["Adafactor", "AdafactorState", "adafactor", "adafactor_init"]


class AdafactorState(NamedTuple):
    """State of one parameter; field names are torch's state keys.

    A parameter of two or more dimensions keeps the row and column factors of its
    second moment over the last two axes; a vector or a 0-d parameter keeps the full
    second moment in ``variance``.
    """

    step: Any  # number of steps taken; the optimizer keeps it as a 0-d float32 host scalar
    row_var: Any = None  # shape (..., R, 1): running mean of g^2 over each row
    col_var: Any = None  # shape (..., 1, C): running mean of g^2 over each column
    variance: Any = None  # shape of the parameter: running g^2, when ndim <= 1


def adafactor_init(param: Any) -> AdafactorState:
    """The state before the first step: ``step = 0`` and zero second-moment factors."""
    xp = array_namespace(param)
    shape = tuple(param.shape)
    if len(shape) > 1:
        return AdafactorState(0, row_var=xp.zeros((*shape[:-1], 1), dtype=param.dtype),
                              col_var=xp.zeros((*shape[:-2], 1, shape[-1]), dtype=param.dtype))
    return AdafactorState(0, variance=xp.zeros_like(param))


def adafactor(param: Any, grad: Any, state: AdafactorState, *, lr: Any = 1e-2,
              beta2_decay: Any = -0.8, eps1: Any = None, eps2: Any = 1e-3, d: Any = 1.0,
              weight_decay: Any = 0.0, maximize: bool = False) -> tuple[Any, AdafactorState]:
    r"""One Adafactor step. Pure: returns ``(new_param, new_state)`` and mutates nothing.

    .. math::
        \begin{align*}
        t &\leftarrow t + 1, \qquad g \leftarrow \pm\nabla, \qquad
            \hat\beta_t = 1 - t^{\tau}, \qquad \rho_t = \min(\gamma, 1/\sqrt{t}) \\
        \alpha &= \max(\epsilon_2, \operatorname{RMS}(\theta))\,\rho_t, \qquad
            \theta \leftarrow \theta\,(1 - \gamma\lambda) \\
        R &\leftarrow \hat\beta_t R + (1-\hat\beta_t)\operatorname{mean}_{-1}(g^2), \quad
            C \leftarrow \hat\beta_t C + (1-\hat\beta_t)\operatorname{mean}_{-2}(g^2), \quad
            \hat V = \frac{R\,C}{\max(\operatorname{mean}_{-2} R,\ \epsilon_1)}
            \quad (\text{ndim} > 1) \\
        V &\leftarrow \hat\beta_t V + (1-\hat\beta_t)\, g^2, \qquad \hat V = V
            \quad (\text{ndim} \le 1) \\
        U &= g \,/\, \sqrt{\max(\hat V, \epsilon_1^2)}, \qquad
            \theta \leftarrow \theta - \frac{\alpha}{\max(1, \operatorname{RMS}(U)/d)}\, U
        \end{align*}

    with learning rate :math:`\gamma`, ``beta2_decay`` :math:`\tau`, weight decay
    :math:`\lambda` and :math:`\operatorname{RMS}(x) = \lVert x \rVert_2/\sqrt{n}`. The
    RMS of the parameter is taken before the weight decay. ``lr`` caps the relative
    step size and scales the (decoupled) weight decay, as in torch.

    The operations follow torch's single-tensor order: the row and column means are
    ``vector_norm(g)**2 / n`` (a norm squared, not a mean of squares), ``R`` and ``C``
    are updated with ``lerp``, the step sizes are Python floats (or 0-d arrays where the
    hyper-parameters are), and the last update is one fused ``add`` with
    ``alpha = -alpha / denom``. On torch tensors the result is torch's, bit for bit; other
    libraries sum the norms and means in another order, which moves the last bit now and
    then (measured against torch over 50 steps: 3e-15 relative in float64, 22 float32
    ULP; one step at a time, 6e-16 and 4 ULP).

    Args:
        param: the parameter's values (real floating point).
        grad: its gradient, same shape and dtype.
        state: an :class:`AdafactorState`; ``step`` may be a number or a 0-d array.
        lr: learning rate, a number or a 0-d array.
        beta2_decay: exponent of the second-moment decay, ``<= 0``.
        eps1: floor of the variance estimate (squared) and of the mean row factor;
            ``None`` means the machine epsilon of ``param``'s dtype.
        eps2: floor of the parameter's RMS in the step size.
        d: clipping threshold of the update's RMS.
        weight_decay: decoupled weight decay coefficient.
        maximize: ascend instead of descend.

    Returns:
        ``(new_param, new_state)``.

    Raises:
        ZeroDivisionError: for an empty parameter (its RMS divides by zero, as in torch).
    """
    xp = array_namespace(param, grad)
    if maximize:
        grad = -grad
    if eps1 is None:
        eps1 = float(xp.finfo(param.dtype).eps)
    step_t = state.step + 1
    step = float(step_t)

    one_minus_beta2_t = host(_rpow(step, beta2_decay))
    rho_t = min(lr, 1 / (step ** 0.5))
    alpha = max(eps2, float(xp.linalg.vector_norm(param)) / (_numel(param) ** 0.5)) * rho_t

    if weight_decay != 0:
        param = param * host(1 - lr * weight_decay)

    row_var, col_var, variance = state.row_var, state.col_var, state.variance
    if grad.ndim > 1:
        if row_var is None or col_var is None:
            raise AssertionError(
                "row_var and col_var should be defined when grad is multidimensional"
            )
        # torch's mean of g^2 over an axis: norm(g)^2 / n, squared after the sqrt
        row_norm = xp.linalg.vector_norm(grad, axis=-1, keepdims=True)
        row_var = lerp(row_var, (row_norm * row_norm) / grad.shape[-1], one_minus_beta2_t)
        col_norm = xp.linalg.vector_norm(grad, axis=-2, keepdims=True)
        col_var = lerp(col_var, (col_norm * col_norm) / grad.shape[-2], one_minus_beta2_t)
        row_mean = xp.clip(xp.mean(row_var, axis=-2, keepdims=True), min=host(eps1))
        var_estimate = xp.matmul(row_var, col_var) / row_mean
    else:
        if variance is None:
            raise AssertionError("variance should be defined when grad is a vector")
        variance = lerp(variance, grad * grad, one_minus_beta2_t)
        var_estimate = variance

    # eps1 is squared because the floor applies before the square root
    update = _rsqrt(xp.clip(var_estimate, min=host(eps1 * eps1))) * grad
    update_rms = rdiv(float(xp.linalg.vector_norm(update)), (_numel(update) ** 0.5) * d)
    denom = max(1.0, update_rms)
    # param.add_(update, alpha=-alpha / denom)
    param = add_scaled(param, update, host(rdiv(-alpha, denom)))

    param, row_var, col_var, variance = as_arrays(xp, param, row_var, col_var, variance)
    return param, AdafactorState(step_t, row_var, col_var, variance)


def _numel(x: Any) -> int:
    return math.prod(x.shape)


def _rpow(base: float, exponent: Any) -> Any:
    """``base ** exponent`` for a Python number and a host scalar, rounded as torch.

    For a 0-d array exponent torch computes the power in the array's dtype with the C
    library's ``pow``; a power in double precision rounded to that dtype lands on the
    same number (all but 12 of 20,000 float32 draws), where NumPy's vectorized float32
    ``pow`` is often one ULP away. torch tensors keep torch's own operator.
    """
    if not array_api_compat.is_array_api_obj(exponent) or array_api_compat.is_torch_array(exponent):
        return base ** exponent
    xp = array_namespace(exponent)
    return xp.asarray(base ** float(exponent), dtype=exponent.dtype,
                      device=array_api_compat.device(exponent))


def _rsqrt(x: Any) -> Any:
    """``1 / sqrt(x)``, rounded as torch's CPU ``rsqrt``: a correctly rounded square root
    and one division. torch's own ``sqrt`` is not correctly rounded on CPU, so torch
    tensors keep torch's ``rsqrt``."""
    if array_api_compat.is_torch_array(x):
        return sys.modules["torch"].rsqrt(x)
    return 1 / array_namespace(x).sqrt(x)


class Adafactor(Optimizer):
    """Adafactor, as ``torch.optim.Adafactor``.

    Matrices (and stacks of matrices) keep only row and column factors of the second
    moment over their last two axes; vectors and 0-d parameters keep it whole. See
    :func:`portopt.functional.adafactor` for the update rule.

    As in torch, ``eps1 = None`` takes the machine epsilon of the first parameter with a
    gradient in the group and uses it for the whole group, so a float64 parameter after
    a float32 one is floored at float32's epsilon.

    Args:
        params: parameters or param groups to optimize.
        lr: caps the relative step size and scales the weight decay, a number or a
            1-element array (default: 1e-2).
        beta2_decay: decay exponent of the second-moment coefficient, ``<= 0``
            (default: -0.8).
        eps: ``(eps1, eps2)``: the floor of the variance estimate (``None``: the
            machine epsilon of the first parameter's dtype in the group) and the floor
            of the parameter's RMS in the step size (default: (None, 1e-3)).
        d: clipping threshold of the update's RMS, ``>= 1`` (default: 1.0).
        weight_decay: decoupled weight decay coefficient (default: 0).
        foreach: accepted for compatibility; portopt chooses its own paths.
        maximize: maximize the objective instead of minimizing it.

    Raises:
        ValueError: with torch's messages, for a negative ``lr``, ``eps`` or
            ``weight_decay``, a positive ``beta2_decay`` or ``d < 1``.
        RuntimeError: at step, for complex parameters or sparse gradients.
        ZeroDivisionError: at step, for an empty parameter with a gradient (torch
            divides by its size); nothing is changed.

    Differences from torch.optim:
        * ``foreach=True`` runs the single-tensor algebra; torch's multi-tensor path
          rounds the last update differently (a multiply, then an add) and resolves
          ``eps1 = None`` per dtype instead of per group.
        * A failing step changes nothing: an empty parameter raises torch's
          ``ZeroDivisionError`` before any state exists (torch has already counted the
          step and created state by then).
    """

    _state_type = AdafactorState
    _setstate_defaults = {"foreach": None}
    _supports_complex = False

    def __init__(self, params: Any, lr: Any = 1e-2, beta2_decay: float = -0.8,
                 eps: tuple[float | None, float] = (None, 1e-3), d: float = 1.0,
                 weight_decay: float = 0.0, *, foreach: bool | None = None,
                 maximize: bool = False) -> None:
        check_one_element(lr)
        if not 0.0 <= to_scalar(lr):
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 >= beta2_decay:
            raise ValueError(f"beta2_decay should be <= 0 but is: {beta2_decay}")
        if eps[0] is not None and not 0.0 <= eps[0]:
            raise ValueError(f"epsilon1 should be >= 0 but is: {eps[0]}")
        if not 0.0 <= eps[1]:
            raise ValueError(f"epsilon2 should be >= 0 but is: {eps[1]}")
        if not 1.0 <= d:
            raise ValueError(f"Clipping threshold d should be >= 1 but is: {d}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight_decay should be >= 0 but is: {weight_decay}")
        defaults = {"lr": lr, "beta2_decay": beta2_decay, "eps": eps, "d": d,
                    "weight_decay": weight_decay, "foreach": foreach, "maximize": maximize}
        super().__init__(params, defaults)

    def _compute_group(self, group: dict[str, Any], work: list[Any]) -> list[tuple[Any, Any]]:
        eps1, eps2 = group["eps"]
        if eps1 is None and work:
            # torch fills in eps1 from the first parameter it steps, then keeps that
            # value for the rest of the group in this step
            eps1 = float(work[0].backend.xp.finfo(work[0].data.dtype).eps)
        return super()._compute_group({**group, "eps": (eps1, eps2)}, work)

    def _init_state(self, data: Any, group: dict[str, Any]) -> AdafactorState:
        return adafactor_init(data)

    def _update(self, data: Any, grad: Any, state: AdafactorState,
                group: dict[str, Any]) -> tuple[Any, AdafactorState]:
        eps1, eps2 = group["eps"]
        return adafactor(data, grad, state, lr=to_scalar(group["lr"]),
                         beta2_decay=group["beta2_decay"], eps1=eps1, eps2=eps2,
                         d=group["d"], weight_decay=group["weight_decay"],
                         maximize=group["maximize"])
