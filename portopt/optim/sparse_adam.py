"""Adam restricted to the rows a sparse gradient stores: torch's ``SparseAdam``."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from array_api_compat import array_namespace

from ..backends import get_backend
from ._checks import check_one_element, to_scalar
from ._math import as_arrays, host, rdiv, spow
from ._params import data_of, is_sparse
from ._sparse import add_rows, is_torch_sparse, sparse_rows, take_rows
from .optimizer import Optimizer

__all__ = ["SparseAdam", "SparseAdamState", "sparse_adam", "sparse_adam_init"]


class SparseAdamState(NamedTuple):
    """State of one parameter; field names are torch's state keys."""

    step: Any  # steps taken, a Python int (torch keeps no tensor here)
    exp_avg: Any  # first moment, dense; only the rows of past gradients ever move
    exp_avg_sq: Any  # second moment, dense


def sparse_adam_init(param: Any) -> SparseAdamState:
    """The state before the first step: zero moments and ``step = 0``."""
    xp = array_namespace(param)
    return SparseAdamState(0, xp.zeros_like(param), xp.zeros_like(param))


def sparse_adam(param: Any, grad: Any, state: SparseAdamState, *, lr: Any, beta1: Any,
                beta2: Any, eps: float, maximize: bool = False
                ) -> tuple[Any, SparseAdamState]:
    r"""One SparseAdam step. Pure: returns ``(new_param, new_state)`` and mutates nothing.

    Only the rows :math:`r` stored in the coalesced gradient (repeated entries summed)
    change; every other row of the parameter and of both moments stays as it was:

    .. math::
        \begin{align*}
        t &\leftarrow t + 1, \qquad g_r \leftarrow \pm\nabla_r \\
        m_r &\leftarrow m_r + (1-\beta_1)(g_r - m_r) \\
        v_r &\leftarrow v_r + (1-\beta_2)(g_r^2 - v_r) \\
        \theta_r &\leftarrow \theta_r - \gamma\,\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,
            \frac{m_r}{\sqrt{v_r} + \epsilon}
        \end{align*}

    Unlike dense Adam, ``eps`` is added to :math:`\sqrt{v_r}` before any bias
    correction, which sits in the step size (a Python float, as torch computes it).
    The rounding follows torch: each moment moves by ``(new - old) * (1 - beta)``,
    and the rows it divides are ``update + old``, not re-read from the moments. A
    gradient that stores no value still counts as a step (``t`` grows) and changes
    nothing else.

    Args:
        param: the parameter's values (dense).
        grad: its sparse gradient: a :class:`portopt.SparseGrad`, or a torch sparse
            COO tensor for a torch parameter; same shape and dtype as ``param``.
        state: a :class:`SparseAdamState`; ``step`` is a Python int.
        lr: learning rate, a number or a 0-d array.
        beta1, beta2: moment coefficients, numbers or 0-d arrays.
        eps: added to the square root of the second moment.
        maximize: ascend instead of descend.

    Returns:
        ``(new_param, new_state)``.

    Raises:
        TypeError: for a dense gradient.
    """
    if not is_sparse(grad):
        raise TypeError("sparse_adam needs a sparse gradient (portopt.SparseGrad or a torch "
                        f"sparse COO tensor), got {type(grad).__name__}")
    step = state.step + 1
    # nothing stored (torch asks after coalescing, which never empties or fills values)
    if math.prod((grad._values() if is_torch_sparse(grad) else grad.values).shape) == 0:
        return param, state._replace(step=step)
    sp = sparse_rows(grad, coalesce=True)  # the update is not linear: rows must be unique
    xp = array_namespace(param, sp.values)
    values = -sp.values if maximize else sp.values

    # m += sparse((g - m_r) * (1 - beta1)); v likewise with g^2
    old_exp_avg = take_rows(state.exp_avg, sp)
    exp_avg_update = (values - old_exp_avg) * host(1 - beta1)
    exp_avg = add_rows(state.exp_avg, sp, exp_avg_update)
    old_exp_avg_sq = take_rows(state.exp_avg_sq, sp)
    exp_avg_sq_update = (values * values - old_exp_avg_sq) * host(1 - beta2)
    exp_avg_sq = add_rows(state.exp_avg_sq, sp, exp_avg_sq_update)

    # torch divides `update + old`, the new rows recomputed rather than gathered again
    numer = exp_avg_update + old_exp_avg
    denom = xp.sqrt(exp_avg_sq_update + old_exp_avg_sq) + host(eps)

    # Python floats for float hyper-parameters; 0-d arrays keep their own dtype, as
    # torch's tensor arithmetic does, until the step size meets the rows
    bias_correction1 = 1 - spow(beta1, step)
    bias_correction2 = 1 - spow(beta2, step)
    step_size = rdiv(lr * math.sqrt(bias_correction2), bias_correction1)
    param = add_rows(param, sp, host(-step_size) * (numer / denom))

    param, exp_avg, exp_avg_sq = as_arrays(xp, param, exp_avg, exp_avg_sq)
    return param, SparseAdamState(step, exp_avg, exp_avg_sq)


class SparseAdam(Optimizer):
    """Adam for dense parameters with sparse gradients, as ``torch.optim.SparseAdam``.

    Each step moves only the rows that the gradient stores (``nn.Embedding(sparse=True)``
    is the usual source); see :func:`portopt.functional.sparse_adam` for the update
    rule. Gradients are :class:`portopt.SparseGrad` for NumPy, CuPy and
    array-api-strict parameters, sparse COO tensors for torch ones.

    Args:
        params: parameters or param groups to optimize (dense, real).
        lr: learning rate, a positive number or a 1-element array (default: 1e-3).
        betas: coefficients of the running averages of the gradient and its square
            (default: (0.9, 0.999)).
        eps: added to the denominator, positive (default: 1e-8).
        maximize: maximize the objective instead of minimizing it.

    Raises:
        ValueError: with torch's messages, for a non-positive ``lr`` or ``eps``, a beta
            outside ``[0, 1)``, and sparse or complex parameters.
        RuntimeError: at step, for a dense gradient (torch's message).

    Differences from torch.optim:
        * A complex parameter added later with ``add_param_group`` (torch checks only
          the constructor's groups) raises at the step; torch steps it in complex
          arithmetic.
        * A dense gradient raises before anything changes; torch has already counted
          the step of the group's earlier parameters.
    """

    _state_type = SparseAdamState
    _tensor_step = False  # torch keeps a Python int
    _supports_complex = False
    _supports_sparse_grad = True

    def __init__(self, params: Any, lr: Any = 1e-3, betas: tuple[Any, Any] = (0.9, 0.999),
                 eps: float = 1e-8, maximize: bool = False) -> None:
        check_one_element(lr, "lr")
        if not 0.0 < to_scalar(lr):
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 < eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "maximize": maximize}
        super().__init__(params, defaults)

        # torch checks the groups it was built with, [group, position] for each offender
        sparse_params, complex_params = [], []
        for index, group in enumerate(self.param_groups):
            for d_index, p in enumerate(group["params"]):
                data = data_of(p)
                if is_sparse(data):
                    sparse_params.append([index, d_index])
                if get_backend(data).is_complex(data):
                    complex_params.append([index, d_index])
        if sparse_params:
            raise ValueError(f"Sparse params at indices {sparse_params}: SparseAdam requires "
                             "dense parameter tensors")
        if complex_params:
            raise ValueError(f"Complex params at indices {complex_params}: SparseAdam does not "
                             "support complex parameters")

    def _check_group(self, group: dict[str, Any], work: list[Any]) -> None:
        for item in work:
            if not is_sparse(item.grad):
                raise RuntimeError(
                    "SparseAdam does not support dense gradients, please consider Adam instead"
                )

    def _init_state(self, data: Any, group: dict[str, Any]) -> SparseAdamState:
        return sparse_adam_init(data)

    def _update(self, data: Any, grad: Any, state: SparseAdamState,
                group: dict[str, Any]) -> tuple[Any, SparseAdamState]:
        beta1, beta2 = group["betas"]
        # torch reads `maximize` with .get: a group saved without it still loads
        return sparse_adam(data, grad, state, lr=to_scalar(group["lr"]),
                           beta1=to_scalar(beta1), beta2=to_scalar(beta2), eps=group["eps"],
                           maximize=group.get("maximize", False))
