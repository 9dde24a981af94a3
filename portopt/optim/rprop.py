"""Resilient backpropagation: torch's ``Rprop``."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import array_api_compat
from array_api_compat import array_namespace

from . import _fast
from ._checks import check_capturable_devices, check_one_element, hyper, is_array, to_scalar
from ._math import addcmul, as_arrays, host, is_complex, view_as_complex, view_as_real
from .optimizer import Optimizer

__all__ = ["Rprop", "RpropState", "rprop", "rprop_init"]


class RpropState(NamedTuple):
    """State of one parameter; field names are torch's state keys."""

    step: Any  # number of steps taken; the optimizer keeps it as a 0-d float32 host scalar
    prev: Any  # the previous step's gradient, zero where its sign flipped
    step_size: Any  # per-element step size (per real component for complex parameters)


def rprop_init(param: Any, *, lr: Any = 1e-2) -> RpropState:
    """The state before the first step: ``prev = 0``, every step size ``lr``.

    For a complex parameter each step size is ``complex(lr, lr)``, as in torch: the
    real and imaginary parts are stepped separately, each starting from ``lr``.
    """
    xp = array_namespace(param)
    lr = float(lr.detach() if hasattr(lr, "detach") else lr)
    fill = complex(lr, lr) if is_complex(param) else lr
    return RpropState(0, xp.zeros_like(param), xp.full_like(param, fill))


def rprop(param: Any, grad: Any, state: RpropState, *, etaminus: Any = 0.5,
          etaplus: Any = 1.2, step_size_min: Any = 1e-6, step_size_max: Any = 50,
          maximize: bool = False) -> tuple[Any, RpropState]:
    r"""One Rprop step. Pure: returns ``(new_param, new_state)`` and mutates nothing.

    .. math::
        \begin{align*}
        t &\leftarrow t + 1, \qquad g \leftarrow \pm\nabla \\
        s &\leftarrow \begin{cases} \eta_+ & g\, g_{\text{prev}} > 0 \\
                                    \eta_- & g\, g_{\text{prev}} < 0 \\
                                    1 & \text{otherwise} \end{cases} \\
        \Delta &\leftarrow \min(\max(\Delta\, s,\ \Delta_{\min}),\ \Delta_{\max}) \\
        g &\leftarrow 0 \quad\text{where } s = \eta_- \\
        \theta &\leftarrow \theta - \operatorname{sign}(g)\, \Delta,
            \qquad g_{\text{prev}} \leftarrow g
        \end{align*}

    elementwise, with step sizes :math:`\Delta`. Only signs enter the update, so it
    has no rounding beyond torch's own: float32 results are bit-exact. As in torch
    (on CPU), the sign of NaN is 0: a NaN gradient leaves its element in place and
    its step size unchanged. The factors are compared in the parameter's dtype, as
    torch compares them. Complex parameters are stepped as pairs of reals (torch's
    ``view_as_real``), each part with its own step size.

    Args:
        param: the parameter's values.
        grad: its gradient, same shape and dtype.
        state: an :class:`RpropState`; ``step`` may be a number or a 0-d array.
        etaminus, etaplus: factors of the step size after a sign change and after
            no sign change (``0 < etaminus < 1 < etaplus`` in the optimizer).
        step_size_min, step_size_max: bounds of the step sizes; either may be
            ``None`` (no bound). With ``min > max`` every step size becomes ``max``,
            as torch's ``clamp`` does.
        maximize: ascend instead of descend.

    Returns:
        ``(new_param, new_state)``.
    """
    xp = array_namespace(param, grad)
    step = state.step + 1
    if maximize:
        grad = -grad
    prev, step_size = state.prev, state.step_size
    complex_param = is_complex(param)
    if complex_param:
        param, grad, prev, step_size = map(view_as_real, (param, grad, prev, step_size))

    etaminus, etaplus = host(etaminus), host(etaplus)
    # torch overwrites the signs in place, in this order, each test reading the result
    # of the previous one (the factors rounded to the parameter's dtype)
    factor = _sign(xp, grad * prev)
    factor = xp.where(factor > 0, etaplus, factor)
    factor = xp.where(factor < 0, etaminus, factor)
    factor = xp.where(factor == 0, 1.0, factor)
    # step_size.mul_(factor).clamp_(step_size_min, step_size_max)
    step_size = _clamp(xp, step_size * factor, step_size_min, step_size_max)
    # no step where the sign flipped; that zero is also what the next step compares with
    grad = xp.where(factor == etaminus, 0.0, grad)
    # param.addcmul_(grad.sign(), step_size, value=-1)
    param = addcmul(param, _sign(xp, grad), step_size, -1)
    prev = grad

    if complex_param:
        param, prev, step_size = map(view_as_complex, (param, prev, step_size))
    param, prev, step_size = as_arrays(xp, param, prev, step_size)
    return param, RpropState(step, prev, step_size)


def _sign(xp: Any, x: Any) -> Any:
    """torch's CPU ``sign``: ``(x > 0) - (x < 0)``, so NaN gives 0 (the standard's
    ``sign`` gives NaN, which would poison the step size)."""
    return xp.astype(x > 0, x.dtype) - xp.astype(x < 0, x.dtype)


def _clamp(xp: Any, x: Any, low: Any, high: Any) -> Any:
    """torch's ``clamp``: ``min(max(x, low), high)``, NaN-propagating, ``high`` winning
    when ``low > high`` (the standard leaves that case open; array-api-strict raises)."""
    if array_api_compat.is_torch_array(x):
        # torch.clamp itself, and its gradients; torch's `clamp_` is in place, so a
        # 0-d float64 bound must not promote a 0-d float32 step size
        out = xp.clip(x, low, high)
        return out if out.dtype == x.dtype else xp.astype(out, x.dtype)
    if low is not None:
        x = xp.maximum(x, host(low))
    if high is not None:
        x = xp.minimum(x, host(high))
    return x


class Rprop(Optimizer):
    """Resilient backpropagation, as ``torch.optim.Rprop``.

    See :func:`portopt.functional.rprop` for the update rule.

    Args:
        params: parameters or param groups to optimize.
        lr: initial step size, a number or a 1-element array (default: 1e-2); it is
            read only when a parameter's state is created.
        etas: ``(etaminus, etaplus)``, the factors applied to a step size after a
            sign change and after none; ``0 < etaminus < 1 < etaplus``
            (default: (0.5, 1.2)).
        step_sizes: ``(min, max)`` bounds of the step sizes, not checked, as in torch
            (default: (1e-6, 50)).
        capturable: torch's CUDA-graph-safe form (torch tensors on a capture device).
        foreach: accepted for compatibility; portopt chooses its own paths.
        maximize: maximize the objective instead of minimizing it.
        differentiable: let torch autograd see through the step (torch tensors only).

    Differences from torch.optim:
        * ``capturable=True`` and ``differentiable=True`` raise on non-torch backends.
        * ``foreach=True`` runs the same computation as ``foreach=False`` (torch's two
          paths agree bit for bit for Rprop on CPU).
        * The sign of NaN is 0 on every backend, as torch computes it on CPU.
    """

    _state_type = RpropState
    _elementwise = True
    _setstate_defaults = {"foreach": None, "maximize": False, "differentiable": False,
                          "capturable": False}

    def __init__(self, params: Any, lr: Any = 1e-2, etas: tuple[Any, Any] = (0.5, 1.2),
                 step_sizes: tuple[Any, Any] = (1e-6, 50), *, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False) -> None:
        check_one_element(lr)
        if not 0.0 <= to_scalar(lr):
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")
        defaults = {"lr": lr, "etas": etas, "step_sizes": step_sizes, "foreach": foreach,
                    "maximize": maximize, "differentiable": differentiable,
                    "capturable": capturable}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any], work: list[Any]) -> None:
        if getattr(group["lr"], "requires_grad", False) and any(
                not self.state.get(item.param) and not item.backend.is_complex(item.data)
                for item in work):
            # torch fills the initial step sizes with `full_like(grad, lr)`, which
            # refuses a tensor that requires grad (complex parameters go through
            # Python's complex() and accept it)
            raise TypeError(
                "full_like(): argument 'fill_value' (position 2) must be Number, not Tensor"
            )
        if group["foreach"] and group["differentiable"]:
            raise AssertionError("_foreach ops don't support autograd")
        check_capturable_devices(group, work, lambda item: (self._current_step(item, group),))
        if group["step_sizes"][0] is None and group["step_sizes"][1] is None:
            raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
        if not group["capturable"]:
            for item in work:
                self._check_eta_dtypes(group, item)

    def _check_eta_dtypes(self, group: dict[str, Any], item: Any) -> None:
        """torch writes the etas into its sign tensor by masked index assignment, which
        refuses an array of another dtype when the parameter is 0-d (and casts it
        otherwise); the capturable path uses ``where`` and accepts it."""
        if len(item.data.shape) != 0 or item.backend.is_complex(item.data):
            return  # a complex 0-d parameter is stepped as a 1-d pair
        etaminus, etaplus = group["etas"]
        for eta in (etaplus, etaminus):
            if is_array(eta) and _scalar_type(eta.dtype) != _scalar_type(item.data.dtype):
                raise RuntimeError(
                    "Index put requires the source and destination dtypes match, got "
                    f"{_scalar_type(item.data.dtype)} for the destination and "
                    f"{_scalar_type(eta.dtype)} for the source."
                )

    def _init_state(self, data: Any, group: dict[str, Any]) -> RpropState:
        return rprop_init(data, lr=to_scalar(group["lr"]))

    # -- the fused NumPy kernel (portopt/backends/_numba/) ----------------------------

    _fused_numbers = ("lr", "etas", "step_sizes")

    def _launch(self, plan: Any, group: dict[str, Any]) -> None:
        dtype = plan.grads.dtype
        cast = _fast.cast
        (etaminus, etaplus), (low, high) = group["etas"], group["step_sizes"]
        buffers = plan.state_buffers
        plan.launch(
            _fast.kernels().rprop_step, buffers["prev"], buffers["step_size"],
            group["maximize"], cast(etaminus, dtype), cast(etaplus, dtype),
            cast(-math.inf if low is None else low, dtype),
            cast(math.inf if high is None else high, dtype))
        plan.finish()

    def _update(self, data: Any, grad: Any, state: RpropState,
                group: dict[str, Any]) -> tuple[Any, RpropState]:
        (etaminus, etaplus), (low, high) = group["etas"], group["step_sizes"]
        # outside differentiable mode torch reads tensor hyper-parameters as plain
        # numbers even when they require grad
        def h(x: Any) -> Any:
            return x if x is None else hyper(x, data, group["differentiable"])

        return rprop(data, grad, state, etaminus=h(etaminus), etaplus=h(etaplus),
                     step_size_min=h(low), step_size_max=h(high), maximize=group["maximize"])


def _scalar_type(dtype: Any) -> str:
    """A dtype under torch's C++ name, as its error messages write it."""
    name = str(dtype).rsplit(".", 1)[-1]
    return {"float16": "Half", "bfloat16": "BFloat16", "float32": "Float",
            "float64": "Double"}.get(name, name)
