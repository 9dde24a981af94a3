"""The fused Adagrad kernel (dense gradients)."""

from __future__ import annotations

import numba

from ._common import JIT, chunk, fma, sqrt


@numba.njit(inline="always")
def _adagrad_element(param, grad, state_sum, i, l2, sign, weight_decay, eps, neg_clr,
                     single):  # noqa: ANN001, ANN202
    g = -grad[i] if sign < 0 else grad[i]  # a negation (a NaN's sign flips), as -grad
    p = param[i]
    if l2:
        g = fma(weight_decay, p, g, single)
    s = fma(g, g, state_sum[i], single)
    state_sum[i] = s
    param[i] = p + (neg_clr * g) / (sqrt(s) + eps)


@numba.njit(inline="always")
def _adagrad_loops(param, grad, state_sum, sign, weight_decay, eps, neg_clr):  # noqa: ANN001, ANN201
    """One Adagrad step (see ``portopt.optim.adagrad.adagrad``) with a dense gradient over
    flat arrays, in place.

    ``state_sum`` is the running sum of squared gradients (the state's ``sum``);
    ``sign`` is -1 to maximize (an exact negation), else 1; ``weight_decay`` the L2
    coefficient; ``neg_clr`` minus the decayed learning rate ``lr / (1 + (t - 1) *
    lr_decay)`` of this step ``t``; all rounded to the dtype, as the generic kernel meets
    them. Whether there is weight decay picks one of two branch-free loops.
    """
    single = param.itemsize == 4
    if weight_decay != 0:
        for i in range(param.size):
            _adagrad_element(param, grad, state_sum, i, True, sign, weight_decay, eps, neg_clr,
                             single)
    else:
        for i in range(param.size):
            _adagrad_element(param, grad, state_sum, i, False, sign, weight_decay, eps,
                             neg_clr, single)


@numba.njit(**JIT)
def adagrad_step(table, state_sum, sign, weight_decay, eps, neg_clr):  # noqa: ANN001, ANN201
    """One step over a chunk table (see ``_common``), in place, chunks in parallel; the
    other arguments are :func:`_adagrad_loops`'s, with the state buffers whole."""
    for c in numba.prange(table.shape[0]):
        param, grad, start, n = chunk(table, c, state_sum)
        _adagrad_loops(param, grad, state_sum[start:start + n], sign, weight_decay, eps,
                       neg_clr)
