"""Stochastic gradient descent, optionally with (Nesterov) momentum: torch's ``SGD``."""

from __future__ import annotations

from typing import Any, NamedTuple

from array_api_compat import array_namespace

from ..parameter import SparseGrad
from . import _fast
from ._checks import check_fused_available, check_fused_flags, check_one_element, to_scalar
from ._math import as_arrays, detached_copy, host
from ._params import is_sparse
from ._sparse import SPARSE_PLUS_DENSE, copy_sparse, negative, scale, tensor_add
from .optimizer import Optimizer

__all__ = ["SGD", "SGDState", "sgd", "sgd_init"]


class SGDState(NamedTuple):
    """State of one parameter; torch keeps no ``step`` for SGD."""

    # created on the first step when momentum != 0; sparse (a SparseGrad, or a torch
    # sparse tensor) while the gradients are sparse, as torch keeps it
    momentum_buffer: Any = None


def sgd_init(param: Any) -> SGDState:
    """The state before the first step: no momentum buffer yet."""
    return SGDState()


def sgd(param: Any, grad: Any, state: SGDState, *, lr: Any, momentum: float = 0.0,
        dampening: float = 0.0, weight_decay: Any = 0.0, nesterov: bool = False,
        maximize: bool = False) -> tuple[Any, SGDState]:
    r"""One SGD step. Pure: returns ``(new_param, new_state)`` and mutates nothing.

    .. math::
        \begin{align*}
        g &\leftarrow \pm\nabla + \lambda\,\theta \\
        b &\leftarrow \begin{cases} g & \text{first step} \\
                                    \mu\, b + (1-\tau)\, g & \text{after} \end{cases} \\
        g &\leftarrow \begin{cases} g + \mu\, b & \text{nesterov} \\ b & \text{otherwise}
                      \end{cases} \quad (\text{when } \mu \neq 0)\\
        \theta &\leftarrow \theta - \gamma\, g
        \end{align*}

    with learning rate :math:`\gamma`, momentum :math:`\mu`, dampening :math:`\tau`
    (not applied on the first step, as in torch) and weight decay :math:`\lambda`.
    Complex parameters are stepped in complex arithmetic, as torch does for SGD.

    A sparse gradient (:class:`portopt.SparseGrad`, or a torch sparse tensor) is
    handled as torch's single-tensor path handles it: the momentum buffer stays sparse,
    sums of sparse terms follow torch's (``_sparse.tensor_add``), and only the stored rows of the
    parameter change. Weight decay cannot be combined with a sparse gradient (torch
    raises), nor can a sparse buffer meet a dense gradient.

    Args:
        param: the parameter's values.
        grad: its gradient, same shape and dtype; dense or sparse.
        state: an :class:`SGDState`.
        lr: learning rate, a Python number or a 0-d array.
        momentum, dampening, weight_decay: as in ``torch.optim.SGD``.
        nesterov: use Nesterov momentum.
        maximize: ascend instead of descend.

    Returns:
        ``(new_param, new_state)``.

    Raises:
        RuntimeError: torch's ``add(sparse, dense)`` error, for the combinations above.
    """
    # one namespace for param and grad, or a TypeError naming them
    xp = array_namespace(param, grad.values if isinstance(grad, SparseGrad) else grad)
    if maximize:
        grad = negative(grad)
    if weight_decay != 0:
        grad = tensor_add(grad, param, host(weight_decay))
    buf = state.momentum_buffer
    if momentum != 0:
        if buf is None:
            # a copy, so the buffer never aliases the caller's array; torch also detaches it
            buf = copy_sparse(grad) if isinstance(grad, SparseGrad) else detached_copy(grad)
        else:
            # buf.mul_(momentum).add_(grad, alpha=1 - dampening)
            buf = tensor_add(scale(buf, host(momentum)), grad, host(1 - dampening))
        grad = tensor_add(grad, buf, host(momentum)) if nesterov else buf
    param, buf = as_arrays(xp, tensor_add(param, grad, host(-lr)), buf)
    return param, SGDState(buf)


class SGD(Optimizer):
    """Stochastic gradient descent (optionally with momentum), as ``torch.optim.SGD``.

    See :func:`portopt.functional.sgd` for the update rule.

    Args:
        params: parameters or param groups to optimize.
        lr: learning rate, a number or a 1-element array (default: 1e-3).
        momentum: momentum factor (default: 0).
        dampening: dampening of the momentum (default: 0).
        weight_decay: L2 penalty, a number or a 1-element array (default: 0).
        nesterov: Nesterov momentum; needs momentum > 0 and zero dampening.
        maximize: maximize the objective instead of minimizing it.
        foreach: accepted for compatibility; portopt chooses its own paths.
        differentiable: let torch autograd see through the step (torch tensors only).
        fused: ask for a fused kernel; an error where the backend has none.

    Sparse gradients (:class:`portopt.SparseGrad`, or sparse COO torch tensors) are
    accepted as in torch: the momentum buffer is then sparse too (a ``SparseGrad``, or
    a sparse tensor for torch parameters) and holds torch's entries, uncoalesced.

    Differences from torch.optim:
        * ``fused=True`` raises at the first step on backends without a fused SGD
          kernel (torch has one on CPU and CUDA).
        * ``differentiable=True`` raises on non-torch backends.
        * The errors torch raises partway through a step with sparse gradients
          (weight decay; a sparse buffer meeting a dense gradient; Nesterov with a
          dense buffer and a sparse gradient) are raised before anything changes.
    """

    _state_type = SGDState
    _elementwise = True
    _tensor_step = False
    _supports_sparse_grad = True
    _setstate_defaults = {"nesterov": False, "maximize": False, "foreach": None,
                          "differentiable": False, "fused": False}

    def __init__(self, params: Any, lr: Any = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: Any = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False,
                 fused: bool | None = None) -> None:
        check_one_element(lr)
        if to_scalar(lr) < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize,
                    "foreach": foreach, "differentiable": differentiable, "fused": fused}
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, defaults)
        check_fused_flags(fused, foreach, differentiable)

    def _check_group(self, group: dict[str, Any], work: list[Any]) -> None:
        sparse = [is_sparse(item.grad) for item in work]
        if group["fused"] and any(sparse):
            raise RuntimeError("`_fused_sgd` does not support sparse gradients")
        check_fused_available("SGD", group, work[0].backend)
        for item, sparse_grad in zip(work, sparse):
            if sparse_grad and to_scalar(group["weight_decay"]) != 0:
                raise RuntimeError(SPARSE_PLUS_DENSE)  # grad.add(param, alpha=weight_decay)
            buf = self.state.get(item.param, {}).get("momentum_buffer")
            if group["momentum"] == 0 or buf is None:
                continue
            if is_sparse(buf) and not sparse_grad:  # buf.add_(grad)
                raise RuntimeError(SPARSE_PLUS_DENSE)
            if group["nesterov"] and sparse_grad and not is_sparse(buf):  # grad.add(buf)
                raise RuntimeError(SPARSE_PLUS_DENSE)

    def _init_state(self, data: Any, group: dict[str, Any]) -> SGDState:
        return sgd_init(data)

    # -- the fused NumPy kernel (portopt/backends/_numba/) ----------------------------

    _fused_numbers = ("lr", "momentum", "dampening", "weight_decay")

    def _launch(self, plan: Any, group: dict[str, Any]) -> None:
        dtype = plan.grads.dtype
        plan.launch(
            _fast.kernels().sgd_step, plan.state_buffers["momentum_buffer"],
            _fast.cast(-1.0 if group["maximize"] else 1.0, dtype),
            _fast.cast(group["weight_decay"], dtype), _fast.cast(group["momentum"], dtype),
            _fast.cast(1 - group["dampening"], dtype), group["nesterov"],
            _fast.cast(-group["lr"], dtype))
        plan.finish()

    def _update(self, data: Any, grad: Any, state: SGDState,
                group: dict[str, Any]) -> tuple[Any, SGDState]:
        return sgd(data, grad, state, lr=to_scalar(group["lr"]), momentum=group["momentum"],
                   dampening=group["dampening"], weight_decay=to_scalar(group["weight_decay"]),
                   nesterov=group["nesterov"], maximize=group["maximize"])
