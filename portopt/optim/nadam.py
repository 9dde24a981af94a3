"""NAdam: Adam with Nesterov momentum and a decaying momentum schedule, torch's ``NAdam``."""

from __future__ import annotations

from typing import Any, NamedTuple

from array_api_compat import array_namespace

from ..backends import get_backend
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
from ._params import data_of
from .optimizer import Optimizer

__all__ = ["NAdam", "NAdamState", "nadam", "nadam_init"]


class NAdamState(NamedTuple):
    """State of one parameter; field names are torch's state keys."""

    step: Any  # number of steps taken; the optimizer keeps it as a 0-d float32 host scalar
    mu_product: Any  # product of the momentum coefficients so far, a 0-d float32 host scalar
    exp_avg: Any  # first moment
    exp_avg_sq: Any  # second moment (per real component for complex parameters)


def nadam_init(param: Any) -> NAdamState:
    """The state before the first step: ``step = 0``, ``mu_product = 1``, zero moments.

    ``mu_product`` is a 0-d float32 scalar on the host (float64 when torch's default
    dtype is float64), as torch keeps it, so that the product rounds as torch's does.
    """
    xp = array_namespace(param)
    return NAdamState(0, get_backend(param).step_scalar(1.0), xp.zeros_like(param),
                      xp.zeros_like(param))


def nadam(param: Any, grad: Any, state: NAdamState, *, lr: Any, beta1: Any, beta2: Any,
          eps: Any, weight_decay: Any = 0.0, momentum_decay: Any = 4e-3,
          maximize: bool = False, decoupled_weight_decay: bool = False,
          capturable: bool = False, differentiable: bool = False) -> tuple[Any, NAdamState]:
    r"""One NAdam step. Pure: returns ``(new_param, new_state)`` and mutates nothing.

    .. math::
        \begin{align*}
        t &\leftarrow t + 1, \qquad g \leftarrow \pm\nabla \\
        \theta &\leftarrow \theta\,(1 - \gamma\lambda) \text{ (decoupled)}
            \quad\text{or}\quad g \leftarrow g + \lambda\theta \text{ (L2)} \\
        \mu_t &= \beta_1\bigl(1 - \tfrac12\, 0.96^{t\psi}\bigr), \qquad
            \mu_{t+1} = \beta_1\bigl(1 - \tfrac12\, 0.96^{(t+1)\psi}\bigr), \qquad
            \Pi \leftarrow \Pi\,\mu_t \\
        m &\leftarrow m + (1-\beta_1)(g - m), \qquad
            v \leftarrow \beta_2 v + (1-\beta_2)\, g^2 \\
        d &= \sqrt{v / (1-\beta_2^t)} + \epsilon \\
        \theta &\leftarrow \theta - \frac{\gamma(1-\mu_t)}{1-\Pi}\,\frac{g}{d}
            - \frac{\gamma\,\mu_{t+1}}{1-\Pi\,\mu_{t+1}}\,\frac{m}{d}
        \end{align*}

    with momentum decay :math:`\psi` and :math:`\Pi` the state's ``mu_product``. The
    operations follow torch's single-tensor order: the coefficients of the two
    ``addcdiv`` terms are Python floats computed from ``mu_product``'s value, and
    ``mu_product`` itself is multiplied in its own dtype (float32, as torch keeps it).
    Complex parameters are stepped as pairs of reals (torch's ``view_as_real``).

    Args:
        param: the parameter's values.
        grad: its gradient, same shape and dtype.
        state: a :class:`NAdamState`; ``step`` may be a number or a 0-d array.
        lr: learning rate, a number or a 0-d array.
        beta1, beta2: moment coefficients, numbers or 0-d arrays.
        eps: added to the denominator.
        weight_decay: decay coefficient.
        momentum_decay: :math:`\psi`, how fast the momentum coefficient approaches
            ``beta1``.
        maximize: ascend instead of descend.
        decoupled_weight_decay: shrink the weights (NAdamW) instead of adding
            ``weight_decay * param`` to the gradient.
        capturable: keep ``step`` and every scalar derived from it as arrays (torch's
            graph-safe form, which never reads a value to the host).
        differentiable: scale the gradient and the first moment by 0-d arrays before
            dividing, as torch does so that autograd sees the coefficients (implied by
            ``capturable``).

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
    bias_correction2 = 1 - spow(beta2, step)
    if weight_decay != 0:
        if decoupled_weight_decay:
            param = param * host(1 - lr * weight_decay)
        else:
            grad = add_scaled(grad, param, host(weight_decay))

    mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
    mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
    mu_product = _times_in_place(state.mu_product, mu)

    exp_avg = lerp(exp_avg, grad, host(1 - beta1))
    # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    exp_avg_sq = addcmul(exp_avg_sq * host(beta2), grad, grad, host(1 - beta2))
    denom = xp.sqrt(exp_avg_sq / scalar(bias_correction2)) + host(eps)

    if differentiable or capturable:
        # torch scales grad and exp_avg by 0-d arrays, then adds grad / denom twice
        mu_product_next = mu_product * mu_next
        grad = grad * scalar(rdiv(-lr * (1.0 - mu), 1.0 - mu_product))
        scaled_avg = exp_avg * scalar(rdiv(-lr * mu_next, 1.0 - mu_product_next))
        param = param + grad / denom
        param = param + scaled_avg / denom
    else:
        # two addcdiv_ with Python-float values: param + (value * t) / denom
        mu_product_next = float(mu_product) * mu_next
        value_grad = -lr * (1.0 - mu) / (1.0 - float(mu_product))
        value_avg = (-lr * mu_next) / (1.0 - mu_product_next)
        param = param + (host(value_grad) * grad) / denom
        param = param + (host(value_avg) * exp_avg) / denom

    if complex_param:
        param, exp_avg, exp_avg_sq = map(view_as_complex, (param, exp_avg, exp_avg_sq))
    param, exp_avg, exp_avg_sq = as_arrays(xp, param, exp_avg, exp_avg_sq)
    return param, NAdamState(step_t, mu_product, exp_avg, exp_avg_sq)


def _as_is(x: Any) -> Any:
    return x


def _times_in_place(acc: Any, factor: Any) -> Any:
    """``acc * factor`` in ``acc``'s dtype, as torch's in-place ``acc *= factor``.

    A Python float factor is rounded to ``acc``'s dtype by the multiplication itself
    (weak scalar); a 0-d array factor may promote, so the product is cast back.
    """
    out = acc * factor
    if is_array(factor) and is_array(acc) and out.dtype != acc.dtype:
        out = array_namespace(acc).astype(out, acc.dtype)
    return out



class NAdam(Optimizer):
    """NAdam, as ``torch.optim.NAdam`` (NAdamW with ``decoupled_weight_decay=True``).

    See :func:`portopt.functional.nadam` for the update rule.

    Args:
        params: parameters or param groups to optimize.
        lr: learning rate, a number or a 1-element array (default: 2e-3).
        betas: coefficients of the running averages of the gradient and its square
            (default: (0.9, 0.999)).
        eps: added to the denominator (default: 1e-8).
        weight_decay: weight decay coefficient (default: 0).
        momentum_decay: how fast the momentum coefficient approaches ``beta1``
            (default: 4e-3).
        decoupled_weight_decay: decay the weights directly, as AdamW (default: False).
        foreach: accepted for compatibility; portopt chooses its own paths.
        maximize: maximize the objective instead of minimizing it.
        capturable: torch's CUDA-graph-safe form (torch tensors on a capture device).
        differentiable: let torch autograd see through the step (torch tensors only).

    Differences from torch.optim:
        * ``capturable=True`` and ``differentiable=True`` raise on non-torch backends.
        * Betas given as 1-element arrays of any shape are read as scalars; torch
          accepts only 0-d tensors there (a ``(1,)`` tensor fails at its first step).
        * ``mu_product`` on a non-torch backend is a 0-d float32 host scalar of that
          library (NumPy: ``numpy.float32``), the counterpart of torch's CPU tensor.
        * With ``differentiable=True`` autograd can go back through several steps;
          torch's in-place state allows one.

    As in torch, ``load_state_dict`` casts ``mu_product`` to a real floating
    parameter's dtype, so a float64 run resumed from a state_dict accumulates it in
    float64 from then on (and leaves the uninterrupted run by about 1e-10).
    """

    _state_type = NAdamState
    _elementwise = True
    _fused_numbers = ("lr", "betas", "eps", "weight_decay", "momentum_decay")
    _scalar_state = ("mu_product",)
    _setstate_defaults = {"maximize": False, "foreach": None, "capturable": False,
                          "differentiable": False, "decoupled_weight_decay": False}

    def __init__(self, params: Any, lr: Any = 2e-3, betas: tuple[Any, Any] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False) -> None:
        check_adam_family(lr, eps, betas, weight_decay)
        if not 0.0 <= momentum_decay:
            raise ValueError(f"Invalid momentum_decay value: {momentum_decay}")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "momentum_decay": momentum_decay,
                    "decoupled_weight_decay": decoupled_weight_decay, "maximize": maximize,
                    "foreach": foreach, "capturable": capturable,
                    "differentiable": differentiable}
        super().__init__(params, defaults)

    def _setstate_group(self, group: dict[str, Any]) -> None:
        # torch turns a `mu_product` saved as a plain number back into its tensor form
        # (and needs one in every non-empty state)
        for p in group["params"]:
            st = self.state.get(p)
            if st and not is_array(st["mu_product"]):
                st["mu_product"] = self._new_step(data_of(p), group, st["mu_product"])

    def _check_group(self, group: dict[str, Any], work: list[Any]) -> None:
        # torch's foreach path refuses autograd; its device list there leaves out xla
        foreach = bool(group["foreach"])
        if foreach and group["differentiable"]:
            raise AssertionError("_foreach ops don't support autograd")
        def scalars(item: Any) -> tuple[Any, Any]:
            saved = self.state.get(item.param) or {}
            fresh = self._new_step(item.data, group, 0.0)
            return saved.get("mu_product", fresh), saved.get("step", fresh)

        check_capturable_devices(
            group, work, scalars, xla=not foreach,
            names="params, mu_products" + (", and" if foreach else " and") + " state_steps")
        if group["differentiable"]:
            check_number_arguments(group)

    def _init_state(self, data: Any, group: dict[str, Any]) -> NAdamState:
        return nadam_init(data)._replace(mu_product=self._new_step(data, group, 1.0))

    # -- the fused NumPy kernel (portopt/backends/_numba/) ----------------------------

    def _launch(self, plan: Any, group: dict[str, Any]) -> None:
        dtype = plan.grads.dtype
        cast = _fast.cast
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
        decoupled = group["decoupled_weight_decay"]
        step = float(plan.step + 1)
        momentum_decay = group["momentum_decay"]
        # the host scalars as the generic kernel computes them (see `nadam`)
        mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
        mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
        mu_product = _times_in_place(plan.scalars["mu_product"], mu)
        mu_product_next = float(mu_product) * mu_next
        w1 = cast(1 - beta1, dtype)
        buffers = plan.state_buffers
        plan.launch(
            _fast.kernels().nadam_step, buffers["exp_avg"], buffers["exp_avg_sq"],
            cast(-1.0 if group["maximize"] else 1.0, dtype),
            cast(0.0 if decoupled else wd, dtype),
            cast(1 - lr * wd if decoupled and wd != 0 else 1.0, dtype),
            w1, cast(float(w1) - 1, dtype), cast(1 - float(w1), dtype), cast(beta2, dtype),
            cast(1 - beta2, dtype), cast(1 - beta2 ** step, dtype), cast(group["eps"], dtype),
            cast(-lr * (1.0 - mu) / (1.0 - float(mu_product)), dtype),
            cast((-lr * mu_next) / (1.0 - mu_product_next), dtype))
        plan.finish(mu_product=mu_product)

    def _update(self, data: Any, grad: Any, state: NAdamState,
                group: dict[str, Any]) -> tuple[Any, NAdamState]:
        diff = group["differentiable"]
        beta1, beta2 = (hyper(b, data, diff) for b in group["betas"])
        scalars = {k: hyper(group[k], data, diff)
                 for k in ("lr", "eps", "weight_decay", "momentum_decay")}
        return nadam(data, grad, state, beta1=beta1, beta2=beta2, **scalars,
                     maximize=group["maximize"],
                     decoupled_weight_decay=group["decoupled_weight_decay"],
                     capturable=group["capturable"], differentiable=group["differentiable"])
