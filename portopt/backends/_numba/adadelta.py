"""The fused Adadelta kernel."""

from __future__ import annotations

import numba

from ._common import JIT, chunk, fma, sqrt


@numba.njit(inline="always")
def _adadelta_element(param, grad, square_avg, acc_delta, i, l2, sign, weight_decay, rho,
                      one_minus_rho, eps, neg_lr, single):  # noqa: ANN001, ANN202
    g = -grad[i] if sign < 0 else grad[i]  # a negation (a NaN's sign flips), as -grad
    p = param[i]
    if l2:
        g = fma(weight_decay, p, g, single)
    v = fma(one_minus_rho * g, g, square_avg[i] * rho, single)
    square_avg[i] = v
    u = acc_delta[i]
    delta = (sqrt(u + eps) / sqrt(v + eps)) * g
    acc_delta[i] = fma(one_minus_rho * delta, delta, u * rho, single)
    param[i] = fma(neg_lr, delta, p, single)


@numba.njit(inline="always")
def _adadelta_loops(param, grad, square_avg, acc_delta, sign, weight_decay, rho, one_minus_rho,
                    eps, neg_lr):  # noqa: ANN001, ANN201
    """One Adadelta step (see ``portopt.optim.adadelta.adadelta``) over flat arrays, in
    place.

    ``sign`` is -1 to maximize (an exact negation), else 1; ``weight_decay`` the L2
    coefficient; ``rho`` and ``one_minus_rho = 1 - rho`` (computed before rounding)
    weigh both running averages; ``eps`` is added inside both square roots; ``neg_lr``
    is ``-lr``; all rounded to the dtype, as the generic kernel meets them. Whether
    there is weight decay picks one of two branch-free loops.
    """
    single = param.itemsize == 4
    if weight_decay != 0:
        for i in range(param.size):
            _adadelta_element(param, grad, square_avg, acc_delta, i, True, sign, weight_decay,
                              rho, one_minus_rho, eps, neg_lr, single)
    else:
        for i in range(param.size):
            _adadelta_element(param, grad, square_avg, acc_delta, i, False, sign, weight_decay,
                              rho, one_minus_rho, eps, neg_lr, single)


@numba.njit(**JIT)
def adadelta_step(table, square_avg, acc_delta, sign, weight_decay, rho, one_minus_rho, eps,
                  neg_lr):  # noqa: ANN001, ANN201
    """One step over a chunk table (see ``_common``), in place, chunks in parallel; the
    other arguments are :func:`_adadelta_loops`'s, with the state buffers whole."""
    for c in numba.prange(table.shape[0]):
        param, grad, start, n = chunk(table, c, square_avg)
        _adadelta_loops(param, grad, square_avg[start:start + n], acc_delta[start:start + n],
                        sign, weight_decay, rho, one_minus_rho, eps, neg_lr)
