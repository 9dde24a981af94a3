"""Adagrad, dense and sparse: torch's ``Adagrad``."""

from __future__ import annotations

import mmap
from typing import Any, NamedTuple

import numpy as np
from array_api_compat import array_namespace

from ..backends import get_backend
from . import _fast
from ._checks import (
    check_fused_available,
    check_fused_flags,
    check_one_element,
    is_array,
    to_scalar,
)
from ._math import add_scaled, addcmul, as_arrays, host, is_complex, view_as_complex, view_as_real
from ._params import data_of, is_sparse
from ._sparse import add_rows, negative, sparse_rows, take_rows
from .optimizer import Optimizer

__all__ = ["Adagrad", "AdagradState", "adagrad", "adagrad_init"]

SPARSE_WEIGHT_DECAY = "weight_decay option is not compatible with sparse gradients"


class AdagradState(NamedTuple):
    """State of one parameter; field names are torch's state keys."""

    step: Any  # number of steps taken; the optimizer keeps it as a 0-d float32 host scalar
    sum: Any  # running sum of squared gradients (per real component for complex params)


def adagrad_init(param: Any, *, initial_accumulator_value: float = 0.0) -> AdagradState:
    """The state before the first step: ``step = 0`` and ``sum`` filled with
    ``initial_accumulator_value`` (``v + vj`` for complex parameters, as torch fills it)."""
    xp = array_namespace(param)
    v = initial_accumulator_value
    fill = complex(v, v) if is_complex(param) else float(v)
    return AdagradState(0, xp.full_like(param, fill))


def adagrad(param: Any, grad: Any, state: AdagradState, *, lr: Any, lr_decay: float = 0.0,
            weight_decay: float = 0.0, eps: float = 1e-10,
            maximize: bool = False) -> tuple[Any, AdagradState]:
    r"""One Adagrad step. Pure: returns ``(new_param, new_state)`` and mutates nothing.

    .. math::
        \begin{align*}
        t &\leftarrow t + 1, \qquad g \leftarrow \pm\nabla + \lambda\theta \\
        \tilde\gamma &= \frac{\gamma}{1 + (t - 1)\,\eta} \\
        s &\leftarrow s + g^2 \\
        \theta &\leftarrow \theta - \tilde\gamma\, \frac{g}{\sqrt{s} + \epsilon}
        \end{align*}

    with learning rate :math:`\gamma`, learning-rate decay :math:`\eta` and weight decay
    :math:`\lambda`. The operations follow torch's single-tensor order (``addcmul_``,
    ``sqrt().add_(eps)``, ``addcdiv_``); :math:`\tilde\gamma` is a host scalar computed
    from ``step`` as torch computes it. Complex parameters are stepped as pairs of reals
    (torch's ``view_as_real``), so ``sum`` holds re² and im² separately.

    A sparse gradient (:class:`portopt.SparseGrad` or a torch sparse tensor) is
    coalesced first; ``sum`` and the parameter change only at its stored rows, and
    complex values are then squared and divided in complex arithmetic, as in torch.

    Args:
        param: the parameter's values.
        grad: its gradient, same shape and dtype; dense or sparse.
        state: an :class:`AdagradState`; ``step`` may be a number or a 0-d array.
        lr: learning rate, a number or a 0-d array.
        lr_decay: learning-rate decay per step.
        weight_decay: L2 penalty; must be 0 with a sparse gradient.
        eps: added to the denominator.
        maximize: ascend instead of descend.

    Returns:
        ``(new_param, new_state)``.

    Raises:
        RuntimeError: ``weight_decay != 0`` with a sparse gradient (torch's message).
    """
    step_t = state.step + 1
    step = float(step_t)
    sparse = is_sparse(grad)
    if weight_decay != 0 and sparse:
        raise RuntimeError(SPARSE_WEIGHT_DECAY)
    if maximize:
        grad = negative(grad)
    if weight_decay != 0:
        grad = add_scaled(grad, param, host(weight_decay))
    # a 0-d array lr gives a 0-d clr, rounded in lr's dtype as torch's tensor division
    neg_clr = -(lr / (1 + (step - 1) * lr_decay))

    if sparse:
        sp = sparse_rows(grad, coalesce=True)  # the update is not linear: unique rows
        xp = array_namespace(param, sp.values)
        g = sp.values
        # sum.add_(sparse(g ** 2)); std = sqrt(sum at those rows) + eps
        total = add_rows(state.sum, sp, g * g)
        std = xp.sqrt(take_rows(total, sp)) + host(eps)
        # param.add_(sparse(g / std), alpha=-clr)
        param = add_rows(param, sp, g / std, _number(neg_clr, "add_", "alpha"))
    else:
        xp = array_namespace(param, grad)
        complex_param = is_complex(param)
        total = state.sum
        if complex_param:
            param, grad, total = map(view_as_real, (param, grad, total))
        total = addcmul(total, grad, grad, 1.0)
        std = xp.sqrt(total) + host(eps)
        # addcdiv_(grad, std, value=-clr): (value * grad) / std, unfused
        param = param + (_number(neg_clr, "addcdiv_", "value") * grad) / std
        if complex_param:
            param, total = map(view_as_complex, (param, total))
    param, total = as_arrays(xp, param, total)
    return param, AdagradState(step_t, total)


def _number(x: Any, op: str, arg: str) -> Any:
    """The Python number torch passes as ``value=``/``alpha=``: a 0-d array becomes its
    float; a torch tensor that requires grad is refused, as torch refuses it."""
    if getattr(x, "requires_grad", False):
        raise TypeError(f"{op}(): argument '{arg}' must be Number, not Tensor")
    return host(x)


class Adagrad(Optimizer):
    """Adagrad, as ``torch.optim.Adagrad`` (sparse gradients included).

    See :func:`portopt.functional.adagrad` for the update rule.

    Args:
        params: parameters or param groups to optimize.
        lr: learning rate, a number or a 1-element array (default: 1e-2).
        lr_decay: learning-rate decay (default: 0).
        weight_decay: L2 penalty (default: 0).
        initial_accumulator_value: initial value of ``sum`` (default: 0).
        eps: added to the denominator (default: 1e-10).
        foreach: accepted for compatibility; portopt chooses its own paths.
        maximize: maximize the objective instead of minimizing it.
        differentiable: let torch autograd see through the step (torch tensors only).
        fused: ask for a fused kernel; an error where the backend has none.

    As in torch, the state of every parameter given to the constructor (``step`` and
    ``sum``) is created right away; parameters of groups added later with
    :meth:`add_param_group` get theirs at their first step, filled with
    ``defaults["initial_accumulator_value"]``: a group's own
    ``initial_accumulator_value`` is never read (torch's behaviour, kept).

    Differences from torch.optim:
        * ``fused=True`` raises at the first step on backends without a fused Adagrad
          kernel (torch has one on CPU and CUDA).
        * ``differentiable=True`` raises on non-torch backends.
        * ``weight_decay`` with a sparse gradient raises before anything changes
          (torch raises partway through the step).
        * :meth:`share_memory` moves NumPy accumulators into an anonymous shared
          mapping (shared with forked processes); other non-torch backends raise.
          Shared accumulators are updated in place, as torch updates every state
          tensor; other portopt state arrays are replaced at each step.
    """

    _state_type = AdagradState
    _elementwise = True
    _fused_numbers = ("lr", "lr_decay", "weight_decay", "eps")
    _supports_sparse_grad = True
    _setstate_defaults = {"foreach": None, "maximize": False, "differentiable": False,
                          "fused": None}

    def __init__(self, params: Any, lr: Any = 1e-2, lr_decay: float = 0,
                 weight_decay: float = 0, initial_accumulator_value: float = 0,
                 eps: float = 1e-10, foreach: bool | None = None, *, maximize: bool = False,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        if is_array(lr):
            check_one_element(lr, "lr")
        if not 0.0 <= to_scalar(lr):
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= lr_decay:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= initial_accumulator_value:
            raise ValueError(
                f"Invalid initial_accumulator_value value: {initial_accumulator_value}"
            )
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        defaults = {"lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
                    "initial_accumulator_value": initial_accumulator_value,
                    "foreach": foreach, "maximize": maximize,
                    "differentiable": differentiable, "fused": fused}
        super().__init__(params, defaults)
        check_fused_flags(fused, foreach, differentiable)
        # torch creates the state of the constructor's parameters eagerly, from the
        # argument (the lazy path of later groups reads self.defaults instead)
        for group in self.param_groups:
            for p in group["params"]:
                data = data_of(p)
                init = adagrad_init(data, initial_accumulator_value=initial_accumulator_value)
                self.state[p]["step"] = self._new_step(data, group, 0.0)
                self.state[p]["sum"] = init.sum

    def _check_group(self, group: dict[str, Any], work: list[Any]) -> None:
        sparse = any(is_sparse(item.grad) for item in work)
        if group["fused"] and sparse:
            raise RuntimeError("`fused` does not support sparse grad or complex param")
        check_fused_available("Adagrad", group, work[0].backend)
        if sparse and group["weight_decay"] != 0:
            raise RuntimeError(SPARSE_WEIGHT_DECAY)
        if group["foreach"] and group["differentiable"]:
            raise AssertionError("_foreach ops don't support autograd")

    def _init_state(self, data: Any, group: dict[str, Any]) -> AdagradState:
        # torch's lazy path reads the optimizer's default, not the group's own value
        return adagrad_init(
            data, initial_accumulator_value=self.defaults["initial_accumulator_value"])

    # -- the fused NumPy kernel (portopt/backends/_numba/) ----------------------------

    def _launch(self, plan: Any, group: dict[str, Any]) -> None:
        dtype = plan.grads.dtype
        lr, lr_decay = group["lr"], group["lr_decay"]
        step = float(plan.step + 1)  # counted in float32, as the generic kernel counts it
        plan.launch(
            _fast.kernels().adagrad_step, plan.state_buffers["sum"],
            _fast.cast(-1.0 if group["maximize"] else 1.0, dtype),
            _fast.cast(group["weight_decay"], dtype), _fast.cast(group["eps"], dtype),
            _fast.cast(-(lr / (1 + (step - 1) * lr_decay)), dtype))
        plan.finish()

    def _update(self, data: Any, grad: Any, state: AdagradState,
                group: dict[str, Any]) -> tuple[Any, AdagradState]:
        return adagrad(data, grad, state, lr=to_scalar(group["lr"]), lr_decay=group["lr_decay"],
                       weight_decay=group["weight_decay"], eps=group["eps"],
                       maximize=group["maximize"])

    # -- shared memory -----------------------------------------------------------------

    def share_memory(self) -> None:
        """Move every ``sum`` into memory shared with other processes (torch's
        ``share_memory_()``), so that processes stepping the same optimizer share the
        accumulators; steps then update those arrays in place.

        torch tensors are moved by torch. A NumPy ``sum`` is copied into an anonymous
        shared memory mapping (``mmap``, ``MAP_SHARED``), which processes forked
        afterwards share; the mapping is released with the last array that views it.
        As in torch, a parameter of a group added later that has not been stepped yet
        has no ``sum``, and this raises ``KeyError``.

        Raises:
            RuntimeError: for arrays of other backends (CuPy, array-api-strict), which
                have no shared host memory to move to.
        """
        sums = [(self.state[p], self.state[p]["sum"])
                for group in self.param_groups for p in group["params"]]
        for _, total in sums:  # check every one before moving any
            be = get_backend(total)
            if be.name not in ("torch", "numpy"):
                raise RuntimeError(
                    f"share_memory() needs accumulators in shared host memory, and "
                    f"{be.name} arrays cannot be moved there; only NumPy arrays and "
                    "torch tensors can"
                )
        for state, total in sums:
            if get_backend(total).name == "torch":
                total.share_memory_()
            elif not _in_shared_mapping(total):
                shared = np.ndarray(total.shape, dtype=total.dtype,
                                    buffer=mmap.mmap(-1, max(total.nbytes, 1)))
                shared[...] = total
                state["sum"] = shared

    def _fast_path_allows(self, group: dict[str, Any]) -> bool:
        # a fast path would move the sums into flat buffers, out of the shared mapping
        return not any(_in_shared_mapping(self.state[p]["sum"]) for p in group["params"])

    def _commit(self, work: list[Any], results: list[tuple[Any, Any]]) -> None:
        # a shared `sum` must stay where other processes see it: write into it
        kept = []
        for item, (data, new) in zip(work, results):
            old = self.state.get(item.param, {}).get("sum")
            if old is not None and _in_shared_mapping(old):
                get_backend(old).assign(old, new.sum)
                new = new._replace(sum=old)
            kept.append((data, new))
        super()._commit(work, kept)


def _in_shared_mapping(x: Any) -> bool:
    """Whether ``x`` lives in memory that :meth:`Adagrad.share_memory` shares."""
    if isinstance(x, np.ndarray):
        return isinstance(x.base, mmap.mmap)
    return bool(getattr(x, "is_shared", lambda: False)()) and not x.requires_grad
