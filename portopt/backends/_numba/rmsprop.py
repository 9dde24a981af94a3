"""The fused RMSprop kernel."""

from __future__ import annotations

import numba

from ._common import JIT, chunk, fma, lerp, sqrt


@numba.njit(inline="always")
def _rmsprop_element(param, grad, square_avg, momentum_buffer, grad_avg, i, l2, centered,
                     with_momentum, sign, weight_decay, alpha, w, w_minus_1, one_minus_w, eps,
                     momentum, neg_lr, single):  # noqa: ANN001, ANN202
    g = -grad[i] if sign < 0 else grad[i]  # a negation (a NaN's sign flips), as -grad
    p = param[i]
    if l2:
        g = fma(weight_decay, p, g, single)
    sq = fma(w * g, g, square_avg[i] * alpha, single)
    square_avg[i] = sq
    if centered:
        ga = lerp(grad_avg[i], g, w, w_minus_1, one_minus_w, single)
        grad_avg[i] = ga
        avg = sqrt(fma(-ga, ga, sq, single))
    else:
        avg = sqrt(sq)
    avg = avg + eps
    if with_momentum:
        buf = momentum_buffer[i] * momentum + g / avg
        momentum_buffer[i] = buf
        param[i] = fma(neg_lr, buf, p, single)
    else:
        param[i] = p + (neg_lr * g) / avg


@numba.njit(inline="always")
def _rmsprop_loops(param, grad, square_avg, momentum_buffer, grad_avg, sign, weight_decay, alpha,
                   w, w_minus_1, one_minus_w, eps, momentum, neg_lr, centered,
                   with_momentum):  # noqa: ANN001, ANN201
    """One RMSprop step (see ``portopt.optim.rmsprop.rmsprop``) over flat arrays, in place.

    ``w = 1 - alpha`` weighs the new squared gradient and is the ``lerp`` weight of the
    centered average, with ``w - 1`` and ``1 - w`` for lerp's upper form; arrays that the
    flags leave unused may be any array of the dtype. The flags pick one of eight loops.
    """
    single = param.itemsize == 4
    n = param.size
    if weight_decay != 0:
        if centered and with_momentum:
            for i in range(n):
                _rmsprop_element(param, grad, square_avg, momentum_buffer, grad_avg, i, True,
                                 True, True, sign, weight_decay, alpha, w,
                             w_minus_1, one_minus_w, eps, momentum, neg_lr, single)
        elif centered:
            for i in range(n):
                _rmsprop_element(param, grad, square_avg, momentum_buffer, grad_avg, i, True,
                                 True, False, sign, weight_decay, alpha, w,
                             w_minus_1, one_minus_w, eps, momentum, neg_lr, single)
        elif with_momentum:
            for i in range(n):
                _rmsprop_element(param, grad, square_avg, momentum_buffer, grad_avg, i, True,
                                 False, True, sign, weight_decay, alpha, w,
                             w_minus_1, one_minus_w, eps, momentum, neg_lr, single)
        else:
            for i in range(n):
                _rmsprop_element(param, grad, square_avg, momentum_buffer, grad_avg, i, True,
                                 False, False, sign, weight_decay, alpha, w,
                             w_minus_1, one_minus_w, eps, momentum, neg_lr, single)
    elif centered and with_momentum:
        for i in range(n):
            _rmsprop_element(param, grad, square_avg, momentum_buffer, grad_avg, i, False,
                             True, True, sign, weight_decay, alpha, w,
                             w_minus_1, one_minus_w, eps, momentum, neg_lr, single)
    elif centered:
        for i in range(n):
            _rmsprop_element(param, grad, square_avg, momentum_buffer, grad_avg, i, False,
                             True, False, sign, weight_decay, alpha, w,
                             w_minus_1, one_minus_w, eps, momentum, neg_lr, single)
    elif with_momentum:
        for i in range(n):
            _rmsprop_element(param, grad, square_avg, momentum_buffer, grad_avg, i, False,
                             False, True, sign, weight_decay, alpha, w,
                             w_minus_1, one_minus_w, eps, momentum, neg_lr, single)
    else:
        for i in range(n):
            _rmsprop_element(param, grad, square_avg, momentum_buffer, grad_avg, i, False,
                             False, False, sign, weight_decay, alpha, w,
                             w_minus_1, one_minus_w, eps, momentum, neg_lr, single)


@numba.njit(**JIT)
def rmsprop_step(table, square_avg, momentum_buffer, grad_avg, sign, weight_decay, alpha, w,
                 w_minus_1, one_minus_w, eps, momentum, neg_lr, centered,
                 with_momentum):  # noqa: ANN001, ANN201
    """One step over a chunk table (see ``_common``), in place, chunks in parallel; the
    other arguments are :func:`_rmsprop_loops`'s, with the state buffers whole."""
    for c in numba.prange(table.shape[0]):
        param, grad, start, n = chunk(table, c, square_avg)
        _rmsprop_loops(param, grad, square_avg[start:start + n],
                       momentum_buffer[start:start + n], grad_avg[start:start + n], sign,
                       weight_decay, alpha, w, w_minus_1, one_minus_w, eps, momentum, neg_lr,
                       centered, with_momentum)
