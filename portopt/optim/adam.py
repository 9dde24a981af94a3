"""Adam, with AMSGrad and decoupled weight decay (AdamW) as flags: torch's ``Adam``."""

from __future__ import annotations

from typing import Any, NamedTuple

import array_api_compat
from array_api_compat import array_namespace

from . import _fast
from ._checks import (
    check_adam_family,
    check_capturable_devices,
    check_fused_available,
    check_fused_flags,
    check_one_element,
    is_array,
    requires_grad,
    to_scalar,
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

__all__ = ["Adam", "AdamState", "adam", "adam_init"]


class AdamState(NamedTuple):
    """State of one parameter; field names are torch's state keys."""

    step: Any  # number of steps taken; the optimizer keeps it as a 0-d float32 host scalar
    exp_avg: Any  # first moment
    exp_avg_sq: Any  # second moment (per real component for complex parameters)
    max_exp_avg_sq: Any = None  # running maximum of exp_avg_sq, only with amsgrad


def adam_init(param: Any, *, amsgrad: bool = False) -> AdamState:
    """The state before the first step: zero moments and ``step = 0``."""
    xp = array_namespace(param)
    return AdamState(0, xp.zeros_like(param), xp.zeros_like(param),
                     xp.zeros_like(param) if amsgrad else None)


def adam(param: Any, grad: Any, state: AdamState, *, lr: Any, beta1: Any, beta2: Any,
         eps: float, weight_decay: float = 0.0, amsgrad: bool = False,
         maximize: bool = False, decoupled_weight_decay: bool = False,
         capturable: bool = False) -> tuple[Any, AdamState]:
    r"""One Adam step. Pure: returns ``(new_param, new_state)`` and mutates nothing.

    .. math::
        \begin{align*}
        t &\leftarrow t + 1, \qquad g \leftarrow \pm\nabla \\
        \theta &\leftarrow \theta\,(1 - \gamma\lambda) \text{ (decoupled)}
            \quad\text{or}\quad g \leftarrow g + \lambda\theta \text{ (L2)} \\
        m &\leftarrow m + (1-\beta_1)(g - m) \\
        v &\leftarrow \beta_2 v + (1-\beta_2)\, g^2, \qquad
            \hat v = \max(\hat v_{\text{prev}}, v) \text{ with AMSGrad, else } v \\
        \theta &\leftarrow \theta - \frac{\gamma}{1-\beta_1^t}\,
            \frac{m}{\sqrt{\hat v}/\sqrt{1-\beta_2^t} + \epsilon}
        \end{align*}

    The operations follow torch's single-tensor order (``lerp_``, ``mul_`` +
    ``addcmul_``, ``addcdiv_``) and ``eps`` is added after the bias correction. Bias
    corrections are Python floats computed from ``step``, as torch computes them.
    Complex parameters are stepped as pairs of reals (torch's ``view_as_real``), so
    ``exp_avg_sq`` holds re² and im² separately.

    Args:
        param: the parameter's values.
        grad: its gradient, same shape and dtype.
        state: an :class:`AdamState`; ``step`` may be a number or a 0-d array.
        lr: learning rate, a number or a 0-d array.
        beta1, beta2: moment coefficients, numbers or 0-d arrays.
        eps: added to the denominator.
        weight_decay: decay coefficient.
        amsgrad: keep the running maximum of ``exp_avg_sq`` and divide by it.
        maximize: ascend instead of descend.
        decoupled_weight_decay: shrink the weights (AdamW) instead of adding
            ``weight_decay * param`` to the gradient.
        capturable: keep ``step`` and the bias corrections as arrays (torch's
            capturable/differentiable form, which never reads a value to the host).

    Returns:
        ``(new_param, new_state)``.
    """
    xp = array_namespace(param, grad)
    step_t = state.step + 1
    if maximize:
        grad = -grad
    if weight_decay != 0:
        if decoupled_weight_decay:
            param = param * host(1 - lr * weight_decay)
        else:
            grad = add_scaled(grad, param, host(weight_decay))

    complex_param = is_complex(param)
    exp_avg, exp_avg_sq, max_sq = state.exp_avg, state.exp_avg_sq, state.max_exp_avg_sq
    if complex_param:
        param, grad, exp_avg, exp_avg_sq = map(view_as_real, (param, grad, exp_avg, exp_avg_sq))
        if amsgrad:
            max_sq = view_as_real(max_sq)

    exp_avg = lerp(exp_avg, grad, _one_minus_in(beta1, param))
    # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    exp_avg_sq = addcmul(exp_avg_sq * host(beta2), grad, grad, host(1 - beta2))
    if amsgrad:
        max_sq = xp.maximum(max_sq, exp_avg_sq)
    second = max_sq if amsgrad else exp_avg_sq

    if capturable:
        # torch's graph-safe form: the scalars stay 0-d arrays next to `step`
        step_size_neg = -(lr / (1 - beta1 ** step_t))
        bias_correction2_sqrt = xp.sqrt(1 - beta2 ** step_t)
        denom = xp.sqrt(second) / (bias_correction2_sqrt * step_size_neg) + eps / step_size_neg
        param = param + exp_avg / denom
    else:
        step = float(step_t)
        step_size = rdiv(lr, 1 - spow(beta1, step))
        bias_correction2_sqrt = spow(1 - spow(beta2, step), 0.5)
        denom = xp.sqrt(second) / host(bias_correction2_sqrt) + host(eps)
        # addcdiv_(exp_avg, denom, value=-step_size): (value * exp_avg) / denom
        param = param + (host(-step_size) * exp_avg) / denom

    if complex_param:
        param, exp_avg, exp_avg_sq = map(view_as_complex, (param, exp_avg, exp_avg_sq))
        if amsgrad:
            max_sq = view_as_complex(max_sq)
    param, exp_avg, exp_avg_sq, max_sq = as_arrays(
        xp, param, exp_avg, exp_avg_sq, max_sq if amsgrad else None)
    return param, AdamState(step_t, exp_avg, exp_avg_sq, max_sq)


def _one_minus_in(beta: Any, like: Any) -> Any:
    """``1 - beta`` as torch's ``lerp_`` weight: a Python float, or for an array beta,
    computed after casting beta to the parameter's dtype (torch's ``device_beta1``)."""
    if not is_array(beta):
        return 1 - beta
    if array_api_compat.is_torch_array(beta) and array_api_compat.is_torch_array(like):
        return 1 - beta.to(device=like.device, dtype=like.dtype)  # keeps autograd
    xp = array_namespace(like)
    return host(1 - xp.asarray(float(beta), dtype=like.dtype))


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (AMSGrad and decoupled weight decay included).

    See :func:`portopt.functional.adam` for the update rule.

    Args:
        params: parameters or param groups to optimize.
        lr: learning rate, a number or a 1-element array (default: 1e-3).
        betas: coefficients of the running averages of the gradient and its square,
            both numbers or both 1-element arrays (default: (0.9, 0.999)).
        eps: added to the denominator (default: 1e-8).
        weight_decay: weight decay coefficient (default: 0).
        amsgrad: use the AMSGrad variant (default: False).
        foreach: accepted for compatibility; portopt chooses its own paths.
        maximize: maximize the objective instead of minimizing it.
        capturable: torch's CUDA-graph-safe form (torch tensors on a capture device).
        differentiable: let torch autograd see through the step (torch tensors only).
        fused: ask for a fused kernel; an error where the backend has none.
        decoupled_weight_decay: decay the weights directly, as AdamW.

    Differences from torch.optim:
        * ``fused=True`` raises at the first step on backends without a fused Adam
          kernel (torch has one on CPU and CUDA).
        * ``capturable=True`` and ``differentiable=True`` raise on non-torch backends.
    """

    _state_type = AdamState
    _elementwise = True
    _setstate_defaults = {"amsgrad": False, "maximize": False, "foreach": None,
                          "capturable": False, "differentiable": False,
                          "decoupled_weight_decay": False, "fused": None}

    def __init__(self, params: Any, lr: Any = 1e-3, betas: tuple[Any, Any] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False,
                 capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, decoupled_weight_decay: bool = False) -> None:
        if is_array(lr):
            if foreach and not capturable:
                raise ValueError(
                    "lr as a Tensor is not supported for capturable=False and foreach=True"
                )
            check_one_element(lr, "lr")
        check_adam_family(lr, eps, betas, weight_decay)
        if not ((isinstance(betas[0], float) and isinstance(betas[1], float))
                or (is_array(betas[0]) and is_array(betas[1]))):
            raise ValueError("betas must be either both floats or both Tensors")
        for i in (0, 1):
            if is_array(betas[i]):
                if not capturable and foreach:
                    raise ValueError(
                        f"betas[{i}] as a Tensor is not supported for capturable=False "
                        "and foreach=True"
                    )
                check_one_element(betas[i], f"betas[{i}]")
        betas = tuple(to_scalar(b) for b in betas)
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad, "maximize": maximize, "foreach": foreach,
                    "capturable": capturable, "differentiable": differentiable,
                    "fused": fused, "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)
        check_fused_flags(fused, foreach, differentiable)

    def _check_group(self, group: dict[str, Any], work: list[Any]) -> None:
        check_fused_available("Adam", group, work[0].backend)
        if group["amsgrad"] and any(self.state.get(item.param) and "max_exp_avg_sq" not in
                                    self.state[item.param] for item in work):
            # torch reads the slot from existing state: amsgrad switched on after the
            # first step is a KeyError there
            raise KeyError("max_exp_avg_sq")
        steps = {id(item.param): self._current_step(item, group) for item in work}
        # torch's foreach path leaves xla out of its device list
        check_capturable_devices(group, work, lambda item: (steps[id(item.param)],),
                                 xla=not group["foreach"])
        if group["differentiable"] and any(requires_grad(s) for s in steps.values()):
            raise RuntimeError("`requires_grad` is not supported for `step` in differentiable mode")
        if group["foreach"] and is_array(group["lr"]) and not group["capturable"]:
            raise RuntimeError(
                "lr as a Tensor is not supported for capturable=False and foreach=True"
            )
        if group["foreach"] and group["differentiable"]:
            raise AssertionError("_foreach ops don't support autograd")

    def _sparse_grad_message(self) -> str:
        return "Adam does not support sparse gradients, please consider SparseAdam instead"

    def _init_state(self, data: Any, group: dict[str, Any]) -> AdamState:
        return adam_init(data, amsgrad=group["amsgrad"])

    # -- the fused NumPy kernel (portopt/backends/_numba/) ----------------------------

    _fused_numbers = ("lr", "betas", "eps", "weight_decay")

    def _launch(self, plan: Any, group: dict[str, Any]) -> None:
        dtype = plan.grads.dtype
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
        decoupled = group["decoupled_weight_decay"]
        w1 = _fast.cast(1 - beta1, dtype)
        step = float(plan.step + 1)  # counted in float32, as the generic kernel counts
        buffers = plan.state_buffers
        plan.launch(
            _fast.kernels().adam_step, buffers["exp_avg"], buffers["exp_avg_sq"],
            buffers.get("max_exp_avg_sq", buffers["exp_avg"]),
            _fast.cast(-1.0 if group["maximize"] else 1.0, dtype),
            _fast.cast(0.0 if decoupled else wd, dtype),
            _fast.cast(1 - lr * wd if decoupled and wd != 0 else 1.0, dtype),
            w1, _fast.cast(float(w1) - 1, dtype), _fast.cast(1 - float(w1), dtype),
            _fast.cast(beta2, dtype), _fast.cast(1 - beta2, dtype), group["amsgrad"],
            _fast.cast((1 - beta2 ** step) ** 0.5, dtype), _fast.cast(group["eps"], dtype),
            _fast.cast(-(lr / (1 - beta1 ** step)), dtype))
        plan.finish()

    def _update(self, data: Any, grad: Any, state: AdamState,
                group: dict[str, Any]) -> tuple[Any, AdamState]:
        beta1, beta2 = group["betas"]
        return adam(data, grad, state, lr=to_scalar(group["lr"]), beta1=to_scalar(beta1),
                    beta2=to_scalar(beta2), eps=group["eps"],
                    weight_decay=group["weight_decay"], amsgrad=group["amsgrad"],
                    maximize=group["maximize"],
                    decoupled_weight_decay=group["decoupled_weight_decay"],
                    capturable=group["capturable"] or group["differentiable"])
