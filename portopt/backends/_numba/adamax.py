"""The fused Adamax kernel."""

from __future__ import annotations

import numba

from ._common import JIT, chunk, fma, lerp, maximum


@numba.njit(inline="always")
def _adamax_element(param, grad, exp_avg, exp_inf, i, l2, maximize, weight_decay, w1,
                    w1_minus_1, one_minus_w1, beta2, eps, neg_clr, single):  # noqa: ANN001, ANN202
    g = -grad[i] if maximize else grad[i]
    p = param[i]
    if l2:
        g = fma(weight_decay, p, g, single)
    m = lerp(exp_avg[i], g, w1, w1_minus_1, one_minus_w1, single)
    u = maximum(exp_inf[i] * beta2, abs(g) + eps)
    exp_avg[i] = m
    exp_inf[i] = u
    param[i] = p + (neg_clr * m) / u


@numba.njit(inline="always")
def _adamax_loops(param, grad, exp_avg, exp_inf, maximize, weight_decay, w1, w1_minus_1,
                  one_minus_w1, beta2, eps, neg_clr):  # noqa: ANN001, ANN201
    """One Adamax step (see ``portopt.optim.adamax.adamax``) over flat arrays, in place.

    ``maximize`` negates the gradient (a select on a loop-invariant flag, which keeps
    the loop vectorizable, and a true negation, so that a NaN's sign flips as NumPy's
    ``-grad`` flips it); ``weight_decay`` is the L2 coefficient; ``w1 = 1 - beta1`` the
    ``lerp`` weight of the first moment, with ``w1 - 1`` and ``1 - w1`` for lerp's upper
    form; ``neg_clr`` is ``-lr / (1 - beta1**t)``; all rounded to the dtype, as the
    generic kernel meets them. Weight decay picks one of two loops, so that no branch is
    left inside a loop to stop it from being vectorized.
    """
    single = param.itemsize == 4
    if weight_decay != 0:
        for i in range(param.size):
            _adamax_element(param, grad, exp_avg, exp_inf, i, True, maximize, weight_decay, w1,
                            w1_minus_1, one_minus_w1, beta2, eps, neg_clr, single)
    else:
        for i in range(param.size):
            _adamax_element(param, grad, exp_avg, exp_inf, i, False, maximize, weight_decay,
                            w1, w1_minus_1, one_minus_w1, beta2, eps, neg_clr, single)


@numba.njit(**JIT)
def adamax_step(table, exp_avg, exp_inf, maximize, weight_decay, w1, w1_minus_1, one_minus_w1,
                beta2, eps, neg_clr):  # noqa: ANN001, ANN201
    """One step over a chunk table (see ``_common``), in place, chunks in parallel; the
    other arguments are :func:`_adamax_loops`'s, with the state buffers whole."""
    for c in numba.prange(table.shape[0]):
        param, grad, start, n = chunk(table, c, exp_avg)
        _adamax_loops(param, grad, exp_avg[start:start + n], exp_inf[start:start + n], maximize,
                      weight_decay, w1, w1_minus_1, one_minus_w1, beta2, eps, neg_clr)
