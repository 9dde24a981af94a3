"""The fused RAdam and RAdamW kernel."""

from __future__ import annotations

import numba

from ._common import JIT, chunk, fma, lerp, sqrt


@numba.njit(inline="always")
def _radam_element(param, grad, exp_avg, exp_avg_sq, i, l2, rectified, maximize,
                   weight_decay, decay_factor, w1, w1_minus_1, one_minus_w1, beta2,
                   one_minus_beta2, bias_correction1, bias_correction2_sqrt, eps, lr, rect,
                   single):  # noqa: ANN001, ANN202
    g = -grad[i] if maximize else grad[i]
    p = param[i]
    if l2:
        g = fma(weight_decay, p, g, single)
    p = p * decay_factor
    m = lerp(exp_avg[i], g, w1, w1_minus_1, one_minus_w1, single)
    v = fma(one_minus_beta2 * g, g, exp_avg_sq[i] * beta2, single)
    exp_avg[i] = m
    exp_avg_sq[i] = v
    m_hat = m / bias_correction1
    if rectified:
        # the generic kernel's scalar-over-array division: a reciprocal, then the product
        adaptive = (param.dtype.type(1) / (sqrt(v) + eps)) * bias_correction2_sqrt
        param[i] = p - ((m_hat * lr) * adaptive) * rect
    else:
        param[i] = p - m_hat * lr


@numba.njit(inline="always")
def _radam_loops(param, grad, exp_avg, exp_avg_sq, maximize, weight_decay, decay_factor, w1,
                 w1_minus_1, one_minus_w1, beta2, one_minus_beta2, bias_correction1,
                 bias_correction2_sqrt, eps, lr, rectified, rect):  # noqa: ANN001, ANN201
    """One RAdam/RAdamW step (see ``portopt.optim.radam.radam``) over flat arrays, in place.

    ``maximize`` negates the gradient (a select on a loop-invariant flag, and a true
    negation, so that a NaN's sign flips as NumPy's ``-grad`` flips it);
    ``weight_decay`` is the L2 coefficient (0 when decoupled); ``decay_factor`` the
    decoupled shrink ``1 - lr*wd`` (exactly 1 otherwise); ``w1 = 1 - beta1``, with
    ``w1 - 1`` and ``1 - w1`` for lerp's upper form; ``bias_correction1 = 1 - beta1**t``
    and ``bias_correction2_sqrt = sqrt(1 - beta2**t)``; all rounded to the dtype, as the
    generic kernel meets them. ``rectified`` (``rho_t > 5``, which depends on the step
    count alone and is decided by the caller) picks the rectified update, scaled by the
    rectification term ``rect`` (ignored otherwise), over the plain ``lr * m_hat`` step.
    The flags pick one of four loops, so that no branch is left inside a loop to stop it
    from being vectorized.
    """
    single = param.itemsize == 4
    if rectified:
        if weight_decay != 0:
            for i in range(param.size):
                _radam_element(param, grad, exp_avg, exp_avg_sq, i, True, True, maximize,
                               weight_decay, decay_factor, w1, w1_minus_1, one_minus_w1, beta2,
                               one_minus_beta2, bias_correction1, bias_correction2_sqrt, eps,
                               lr, rect, single)
        else:
            for i in range(param.size):
                _radam_element(param, grad, exp_avg, exp_avg_sq, i, False, True, maximize,
                               weight_decay, decay_factor, w1, w1_minus_1, one_minus_w1, beta2,
                               one_minus_beta2, bias_correction1, bias_correction2_sqrt, eps,
                               lr, rect, single)
    elif weight_decay != 0:
        for i in range(param.size):
            _radam_element(param, grad, exp_avg, exp_avg_sq, i, True, False, maximize,
                           weight_decay, decay_factor, w1, w1_minus_1, one_minus_w1, beta2,
                           one_minus_beta2, bias_correction1, bias_correction2_sqrt, eps, lr,
                           rect, single)
    else:
        for i in range(param.size):
            _radam_element(param, grad, exp_avg, exp_avg_sq, i, False, False, maximize,
                           weight_decay, decay_factor, w1, w1_minus_1, one_minus_w1, beta2,
                           one_minus_beta2, bias_correction1, bias_correction2_sqrt, eps, lr,
                           rect, single)


@numba.njit(**JIT)
def radam_step(table, exp_avg, exp_avg_sq, maximize, weight_decay, decay_factor, w1, w1_minus_1,
               one_minus_w1, beta2, one_minus_beta2, bias_correction1, bias_correction2_sqrt,
               eps, lr, rectified, rect):  # noqa: ANN001, ANN201
    """One step over a chunk table (see ``_common``), in place, chunks in parallel; the
    other arguments are :func:`_radam_loops`'s, with the state buffers whole."""
    for c in numba.prange(table.shape[0]):
        param, grad, start, n = chunk(table, c, exp_avg)
        _radam_loops(param, grad, exp_avg[start:start + n], exp_avg_sq[start:start + n],
                     maximize, weight_decay, decay_factor, w1, w1_minus_1, one_minus_w1, beta2,
                     one_minus_beta2, bias_correction1, bias_correction2_sqrt, eps, lr,
                     rectified, rect)
