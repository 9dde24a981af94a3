"""Averaged SGD (Polyak-Ruppert averaging with a decaying step size), torch's ``ASGD``."""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

import array_api_compat
from array_api_compat import array_namespace

from ..backends import get_backend
from . import _fast
from ._checks import check_capturable_devices, check_one_element, is_array, to_scalar
from ._math import (
    add_scaled,
    addcmul,
    as_arrays,
    host,
    is_complex,
    spow,
    view_as_complex,
    view_as_real,
)
from ._params import data_of
from .optimizer import Optimizer

__all__ = ["ASGD", "ASGDState", "asgd", "asgd_init"]


class ASGDState(NamedTuple):
    """State of one parameter; field names are torch's state keys.

    torch keeps ``step``, ``eta`` and ``mu`` as 0-d tensors on the parameter's device
    (not on the host, as other optimizers keep ``step``).
    """

    step: Any  # number of steps taken
    eta: Any  # 0-d array: the step size the next step uses
    mu: Any  # 0-d array: the averaging weight the next step uses (1 means "copy")
    ax: Any  # the running average of the parameter


def asgd_init(param: Any, *, lr: Any, dtype: Any = None) -> ASGDState:
    """The state before the first step: ``eta = lr``, ``mu = 1``, ``ax = 0``, ``step = 0``.

    Args:
        param: the parameter's values.
        lr: the learning rate, the first step's ``eta``.
        dtype: dtype of ``eta`` and ``mu`` (default: float32, torch's scalar dtype);
            they live on ``param``'s device.
    """
    xp = array_namespace(param)
    device = array_api_compat.device(param)
    dtype = xp.float32 if dtype is None else dtype
    if array_api_compat.is_torch_array(lr):
        lr = lr.detach()  # torch's initial eta is a detached copy of lr
    return ASGDState(0, xp.asarray(float(lr), dtype=dtype, device=device),
                     xp.asarray(1.0, dtype=dtype, device=device), xp.zeros_like(param))


def asgd(param: Any, grad: Any, state: ASGDState, *, lr: Any, lambd: float, alpha: float,
         t0: float, weight_decay: float = 0.0, maximize: bool = False,
         capturable: bool = False) -> tuple[Any, ASGDState]:
    r"""One ASGD step. Pure: returns ``(new_param, new_state)`` and mutates nothing.

    .. math::
        \begin{align*}
        t &\leftarrow t + 1, \qquad g \leftarrow \pm\nabla + \lambda_{wd}\,\theta \\
        \theta &\leftarrow \theta\,(1 - \lambda\,\eta) - \eta\, g \\
        \bar\theta &\leftarrow \begin{cases} \theta & \mu = 1 \\
            \bar\theta + \mu\,(\theta - \bar\theta) & \text{otherwise} \end{cases} \\
        \eta &\leftarrow \frac{\gamma}{(1 + \lambda\,\gamma\, t)^{\alpha}}, \qquad
        \mu \leftarrow \frac{1}{\max(1,\ t - t_0)}
        \end{align*}

    Step :math:`t` uses the :math:`\eta` and :math:`\mu` computed at the end of step
    :math:`t-1` (initially :math:`\gamma` and 1), as in torch. Without ``capturable``
    torch reads ``eta``, ``mu`` and ``step`` to the host and computes the new ``eta``
    and ``mu`` in double precision; they are stored rounded to torch's default float
    (float32), then to the dtype of the stored ``eta``/``mu``. With ``capturable`` the
    whole step stays in arrays (torch tensors). Complex parameters are stepped as pairs
    of reals (torch's ``view_as_real``), weight decay included.

    Args:
        param: the parameter's values.
        grad: its gradient, same shape and dtype.
        state: an :class:`ASGDState`.
        lr: learning rate, a number or a 0-d array.
        lambd: decay term.
        alpha: power of the ``eta`` schedule.
        t0: the step after which averaging starts.
        weight_decay: L2 penalty folded into the gradient.
        maximize: ascend instead of descend.
        capturable: torch's graph-safe form (``eta``, ``mu`` and ``step`` never leave
            the device; torch tensors).

    Returns:
        ``(new_param, new_state)``.
    """
    xp = array_namespace(param, grad)
    if maximize:
        grad = -grad
    complex_param = is_complex(param)
    ax = state.ax
    if complex_param:
        grad, param, ax = map(view_as_real, (grad, param, ax))
    step_t = state.step + 1
    eta, mu = state.eta, state.mu
    if weight_decay != 0:
        grad = add_scaled(grad, param, host(weight_decay))

    if capturable:
        # param.mul_(1 - lambd * eta).addcmul_(grad, eta, value=-1); in place, so a 0-d
        # parameter keeps its dtype even when eta's is wider
        param = _as_dtype(param * (1 - lambd * eta), param.dtype)
        param = _as_dtype(addcmul(param, grad, eta, -1), param.dtype)
    else:
        eta_value = float(eta)
        param = param * host(1 - lambd * eta_value)
        param = add_scaled(param, grad, -eta_value)

    if capturable or float(mu) != 1:
        # ax.add_(param.sub(ax).mul_(mu))
        ax = _as_dtype(ax + _mul_in_place(param - ax, mu, capturable), ax.dtype)
    else:
        ax = _copy(param)

    if capturable:
        new_eta = lr / ((1 + lambd * lr * step_t) ** alpha)
        new_mu = 1 / xp.maximum(step_t - t0, xp.ones_like(step_t))
    else:
        step = float(step_t)
        new_eta = lr / spow(1 + lambd * lr * step, alpha)
        new_mu = 1 / max(1, step - t0)
    eta, mu = _copy_into(eta, new_eta), _copy_into(mu, new_mu)

    if complex_param:
        param, ax = view_as_complex(param), view_as_complex(ax)
    param, ax = as_arrays(xp, param, ax)
    return param, ASGDState(step_t, eta, mu, ax)


def _as_dtype(x: Any, dtype: Any) -> Any:
    """``x`` in ``dtype`` (a cast only where torch's in-place op would round)."""
    return x if x.dtype == dtype else array_namespace(x).astype(x, dtype)


def _mul_in_place(x: Any, scale: Any, capturable: bool) -> Any:
    """torch's ``x.mul_(scale)`` for a 0-d array ``scale``: a 0-d tensor is cast to the
    dtype of an ``x`` with dimensions (so its value as a number rounds the same), while a
    0-d ``x`` is computed in the wider dtype of the two and rounded back."""
    if x.ndim > 0 and not capturable:  # capturable never reads a value to the host
        return x * host(scale)
    return _as_dtype(x * scale, x.dtype)


def _copy(x: Any) -> Any:
    """``x`` copied; a torch copy stays in autograd's graph, as torch's ``copy_`` does."""
    if array_api_compat.is_torch_array(x):
        return x.clone()
    return array_namespace(x).asarray(x, copy=True)


def _copy_into(ref: Any, value: Any) -> Any:
    """``ref.copy_(torch.as_tensor(value))`` as a new array: a number becomes an array
    of torch's default float dtype (float32 off torch) first, then everything takes
    ``ref``'s dtype and device."""
    if array_api_compat.is_torch_array(ref):
        return sys.modules["torch"].as_tensor(value).to(device=ref.device, dtype=ref.dtype)
    xp = array_namespace(ref)
    device = array_api_compat.device(ref)
    if not is_array(value):
        value = xp.asarray(value, dtype=xp.float32, device=device)
    value = xp.asarray(value)
    if array_api_compat.device(value) != device:
        value = array_api_compat.to_device(value, device)
    return xp.astype(value, ref.dtype)


class ASGD(Optimizer):
    """Averaged stochastic gradient descent, as ``torch.optim.ASGD``.

    See :func:`portopt.functional.asgd` for the update rule. The average of the
    parameter is ``optimizer.state[p]["ax"]``.

    Args:
        params: parameters or param groups to optimize.
        lr: learning rate, a number or a 1-element array (default: 1e-2).
        lambd: decay term (default: 1e-4).
        alpha: power of the step-size schedule (default: 0.75).
        t0: the step after which averaging starts (default: 1e6).
        weight_decay: L2 penalty (default: 0).
        foreach: accepted for compatibility; portopt chooses its own paths.
        maximize: maximize the objective instead of minimizing it.
        differentiable: let torch autograd see through the step (torch tensors only).
        capturable: torch's CUDA-graph-safe form (torch tensors on a capture device;
            torch raises its AssertionError elsewhere).

    Differences from torch.optim:
        * ``step``, ``eta`` and ``mu`` live on the parameter's device, as in torch; on
          NumPy ``step`` is an ``np.float32`` host scalar (portopt's form of torch's
          float32 step) and ``eta``/``mu`` are 0-d float32 arrays. Loading a state_dict
          casts ``eta``/``mu`` to a real parameter's dtype, as torch does.
        * torch's ``foreach`` path rounds differently from its for-loop; portopt
          follows the for-loop whatever ``foreach`` says.
        * ``capturable=True`` and ``differentiable=True`` raise on non-torch backends.
        * With ``differentiable=True`` the kernel never overwrites a tensor autograd
          saved, so backward works once averaging has started (``mu < 1``); torch's
          ``mu.copy_`` overwrites the ``mu`` its ``mul_`` saved, and backward fails.
    """

    _state_type = ASGDState
    _elementwise = True
    _fused_numbers = ("lr", "lambd", "alpha", "t0", "weight_decay")
    _scalar_state = ("eta", "mu")
    _setstate_defaults = {"foreach": None, "maximize": False, "differentiable": False,
                          "capturable": False}

    def __init__(self, params: Any, lr: Any = 1e-2, lambd: float = 1e-4, alpha: float = 0.75,
                 t0: float = 1e6, weight_decay: float = 0, foreach: bool | None = None,
                 maximize: bool = False, differentiable: bool = False,
                 capturable: bool = False) -> None:
        check_one_element(lr)
        if not 0.0 <= to_scalar(lr):
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = {"lr": lr, "lambd": lambd, "alpha": alpha, "t0": t0,
                    "weight_decay": weight_decay, "foreach": foreach, "maximize": maximize,
                    "differentiable": differentiable, "capturable": capturable}
        super().__init__(params, defaults)

    @staticmethod
    def _scalar_dtype(data: Any) -> Any:
        """torch's scalar dtype for ``step``/``eta``/``mu`` (float32 off torch)."""
        return get_backend(data).step_scalar(0.0).dtype

    def _new_step(self, data: Any, group: dict[str, Any], value: float) -> Any:
        be = get_backend(data)
        if be.name == "numpy":  # the host is NumPy's only device
            return be.step_scalar(value)
        return be.xp.asarray(value, dtype=self._scalar_dtype(data), device=be.device(data))

    def _setstate_group(self, group: dict[str, Any]) -> None:
        # torch turns a plain-number eta/mu of an old checkpoint into 0-d tensors
        for p in group["params"]:
            st = self.state.get(p)
            if not st:
                continue
            for key in ("eta", "mu"):
                if not is_array(st[key]):
                    data = data_of(p)
                    be = get_backend(data)
                    st[key] = be.xp.asarray(float(st[key]), dtype=self._scalar_dtype(data),
                                            device=be.device(data))

    def _check_group(self, group: dict[str, Any], work: list[Any]) -> None:
        def scalars(item: Any) -> list[Any]:
            saved = self.state.get(item.param)
            return [saved[k] for k in ("mu", "eta", "step")] if saved else []

        if group["foreach"] and group["differentiable"]:
            raise AssertionError("_foreach ops don't support autograd")
        # torch's foreach path leaves xla out of its device list
        check_capturable_devices(group, work, scalars, xla=not group["foreach"],
                                 names="params, mus, etas, and state_steps")

    def _init_state(self, data: Any, group: dict[str, Any]) -> ASGDState:
        return asgd_init(data, lr=to_scalar(group["lr"]), dtype=self._scalar_dtype(data))

    # -- the fused NumPy kernel (portopt/backends/_numba/) ----------------------------

    def _launch(self, plan: Any, group: dict[str, Any]) -> None:
        dtype = plan.grads.dtype
        cast = _fast.cast
        lr, lambd = to_scalar(group["lr"]), group["lambd"]
        eta, mu = plan.scalars["eta"], plan.scalars["mu"]
        eta_value = float(eta)
        plan.launch(
            _fast.kernels().asgd_step, plan.state_buffers["ax"],
            cast(-1.0 if group["maximize"] else 1.0, dtype), cast(group["weight_decay"], dtype),
            cast(1 - lambd * eta_value, dtype), cast(-eta_value, dtype), cast(float(mu), dtype),
            float(mu) != 1)
        # the next step's eta and mu, as the generic kernel computes and stores them
        step = float(plan.step + 1)
        plan.finish(eta=_copy_into(eta, lr / spow(1 + lambd * lr * step, group["alpha"])),
                    mu=_copy_into(mu, 1 / max(1, step - group["t0"])))

    def _update(self, data: Any, grad: Any, state: ASGDState,
                group: dict[str, Any]) -> tuple[Any, ASGDState]:
        return asgd(data, grad, state, lr=to_scalar(group["lr"]), lambd=group["lambd"],
                    alpha=group["alpha"], t0=group["t0"], weight_decay=group["weight_decay"],
                    maximize=group["maximize"], capturable=group["capturable"])

