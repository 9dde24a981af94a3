"""The fused SGD with momentum kernel."""

from __future__ import annotations

import numba

from ._common import JIT, chunk, fma


@numba.njit(inline="always")
def _sgd_element(param, grad, momentum_buffer, i, l2, nesterov, sign, weight_decay, momentum,
                 one_minus_dampening, neg_lr, single):  # noqa: ANN001, ANN202
    g = -grad[i] if sign < 0 else grad[i]  # a negation (a NaN's sign flips), as -grad
    p = param[i]
    if l2:
        g = fma(weight_decay, p, g, single)
    buf = fma(one_minus_dampening, g, momentum_buffer[i] * momentum, single)
    momentum_buffer[i] = buf
    if nesterov:
        g = fma(momentum, buf, g, single)
    else:
        g = buf
    param[i] = fma(neg_lr, g, p, single)


@numba.njit(inline="always")
def _sgd_loops(param, grad, momentum_buffer, sign, weight_decay, momentum, one_minus_dampening,
               nesterov, neg_lr):  # noqa: ANN001, ANN201
    """One SGD step with a momentum buffer (see ``portopt.optim.sgd.sgd``) over flat
    arrays, in place; the buffer's first step, a copy of the gradient, stays with the
    generic kernel. ``sign`` is -1 to maximize, else 1; the flags pick one of four
    branch-free loops."""
    single = param.itemsize == 4
    if weight_decay != 0:
        if nesterov:
            for i in range(param.size):
                _sgd_element(param, grad, momentum_buffer, i, True, True, sign, weight_decay,
                             momentum, one_minus_dampening, neg_lr, single)
        else:
            for i in range(param.size):
                _sgd_element(param, grad, momentum_buffer, i, True, False, sign, weight_decay,
                             momentum, one_minus_dampening, neg_lr, single)
    elif nesterov:
        for i in range(param.size):
            _sgd_element(param, grad, momentum_buffer, i, False, True, sign, weight_decay,
                         momentum, one_minus_dampening, neg_lr, single)
    else:
        for i in range(param.size):
            _sgd_element(param, grad, momentum_buffer, i, False, False, sign, weight_decay,
                         momentum, one_minus_dampening, neg_lr, single)


@numba.njit(**JIT)
def sgd_step(table, momentum_buffer, sign, weight_decay, momentum, one_minus_dampening,
             nesterov, neg_lr):  # noqa: ANN001, ANN201
    """One step over a chunk table (see ``_common``), in place, chunks in parallel; the
    other arguments are :func:`_sgd_loops`'s, with the state buffers whole."""
    for c in numba.prange(table.shape[0]):
        param, grad, start, n = chunk(table, c, momentum_buffer)
        _sgd_loops(param, grad, momentum_buffer[start:start + n], sign, weight_decay, momentum,
                   one_minus_dampening, nesterov, neg_lr)
