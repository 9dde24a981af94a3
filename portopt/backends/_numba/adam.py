"""The fused Adam and AdamW kernel."""

from __future__ import annotations

import numba

from ._common import JIT, chunk, fma, lerp, maximum, sqrt


@numba.njit(inline="always")
def _adam_element(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, i, amsgrad, l2, sign,
                  weight_decay, decay_factor, w1, w1_minus_1, one_minus_w1, beta2,
                  one_minus_beta2, bias_correction2_sqrt, eps, neg_step_size, single):  # noqa: ANN001, ANN202
    g = -grad[i] if sign < 0 else grad[i]  # a negation (a NaN's sign flips), as -grad
    p = param[i]
    if l2:
        g = fma(weight_decay, p, g, single)
    p = p * decay_factor
    m = lerp(exp_avg[i], g, w1, w1_minus_1, one_minus_w1, single)
    v = fma(one_minus_beta2 * g, g, exp_avg_sq[i] * beta2, single)
    exp_avg[i] = m
    exp_avg_sq[i] = v
    if amsgrad:
        v = maximum(max_exp_avg_sq[i], v)
        max_exp_avg_sq[i] = v
    denom = sqrt(v) / bias_correction2_sqrt + eps
    param[i] = p + (neg_step_size * m) / denom


@numba.njit(inline="always")
def _adam_loops(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, sign, weight_decay,
                decay_factor, w1, w1_minus_1, one_minus_w1, beta2, one_minus_beta2, amsgrad,
                bias_correction2_sqrt, eps, neg_step_size):  # noqa: ANN001, ANN201
    """One Adam/AdamW step (see ``portopt.optim.adam.adam``) over flat arrays, in place.

    ``sign`` is -1 to maximize (an exact negation), else 1; ``weight_decay`` the L2
    coefficient (0 when decoupled); ``decay_factor`` the decoupled shrink ``1 - lr*wd``
    (exactly 1 otherwise); ``w1 = 1 - beta1``, with ``w1 - 1`` and ``1 - w1`` for lerp's
    upper form; the others as in the generic kernel; all rounded to the dtype, as the
    generic kernel meets them. ``max_exp_avg_sq`` is ignored without ``amsgrad``. The
    flags pick one of four loops, so that no branch is left inside a loop to stop it from
    being vectorized.
    """
    single = param.itemsize == 4
    if amsgrad:
        if weight_decay != 0:
            for i in range(param.size):
                _adam_element(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, i, True, True,
                              sign, weight_decay, decay_factor, w1, w1_minus_1, one_minus_w1,
                              beta2, one_minus_beta2, bias_correction2_sqrt, eps,
                              neg_step_size, single)
        else:
            for i in range(param.size):
                _adam_element(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, i, True, False,
                              sign, weight_decay, decay_factor, w1, w1_minus_1, one_minus_w1,
                              beta2, one_minus_beta2, bias_correction2_sqrt, eps,
                              neg_step_size, single)
    elif weight_decay != 0:
        for i in range(param.size):
            _adam_element(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, i, False, True,
                          sign, weight_decay, decay_factor, w1, w1_minus_1, one_minus_w1,
                          beta2, one_minus_beta2, bias_correction2_sqrt, eps, neg_step_size,
                          single)
    else:
        for i in range(param.size):
            _adam_element(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, i, False, False,
                          sign, weight_decay, decay_factor, w1, w1_minus_1, one_minus_w1,
                          beta2, one_minus_beta2, bias_correction2_sqrt, eps, neg_step_size,
                          single)


@numba.njit(**JIT)
def adam_step(table, exp_avg, exp_avg_sq, max_exp_avg_sq, sign, weight_decay, decay_factor, w1,
              w1_minus_1, one_minus_w1, beta2, one_minus_beta2, amsgrad, bias_correction2_sqrt,
              eps, neg_step_size):  # noqa: ANN001, ANN201
    """One step over a chunk table (see ``_common``), in place, chunks in parallel; the
    other arguments are :func:`_adam_loops`'s, with the state buffers whole."""
    for c in numba.prange(table.shape[0]):
        param, grad, start, n = chunk(table, c, exp_avg)
        _adam_loops(param, grad, exp_avg[start:start + n], exp_avg_sq[start:start + n],
                    max_exp_avg_sq[start:start + n], sign, weight_decay, decay_factor, w1,
                    w1_minus_1, one_minus_w1, beta2, one_minus_beta2, amsgrad,
                    bias_correction2_sqrt, eps, neg_step_size)
