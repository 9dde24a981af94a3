"""The fused NAdam and NAdamW kernel."""

from __future__ import annotations

import numba

from ._common import JIT, chunk, fma, lerp, sqrt


@numba.njit(inline="always")
def _nadam_element(param, grad, exp_avg, exp_avg_sq, i, l2, sign, weight_decay, decay_factor,
                   w1, w1_minus_1, one_minus_w1, beta2, one_minus_beta2, bias_correction2, eps,
                   value_grad, value_avg, single):  # noqa: ANN001, ANN202
    g = -grad[i] if sign < 0 else grad[i]  # a negation (a NaN's sign flips), as -grad
    p = param[i]
    if l2:
        g = fma(weight_decay, p, g, single)
    p = p * decay_factor
    m = lerp(exp_avg[i], g, w1, w1_minus_1, one_minus_w1, single)
    v = fma(one_minus_beta2 * g, g, exp_avg_sq[i] * beta2, single)
    exp_avg[i] = m
    exp_avg_sq[i] = v
    denom = sqrt(v / bias_correction2) + eps
    p = p + (value_grad * g) / denom
    param[i] = p + (value_avg * m) / denom


@numba.njit(inline="always")
def _nadam_loops(param, grad, exp_avg, exp_avg_sq, sign, weight_decay, decay_factor, w1,
                 w1_minus_1, one_minus_w1, beta2, one_minus_beta2, bias_correction2, eps,
                 value_grad, value_avg):  # noqa: ANN001, ANN201
    """One NAdam/NAdamW step (see ``portopt.optim.nadam.nadam``) over flat arrays, in place.

    ``sign`` is -1 to maximize (an exact negation), else 1; ``weight_decay`` the L2
    coefficient (0 when decoupled); ``decay_factor`` the decoupled shrink ``1 - lr*wd``
    (exactly 1 otherwise); ``w1 = 1 - beta1``, with ``w1 - 1`` and ``1 - w1`` for lerp's
    upper form; ``bias_correction2 = 1 - beta2**t``; ``value_grad`` and ``value_avg`` the
    coefficients of the gradient and first-moment terms, computed on the host from the
    momentum schedule and ``mu_product``; all rounded to the dtype, as the generic kernel
    meets them. The L2 flag picks one of two loops, so that no branch is left inside a
    loop to stop it from being vectorized.
    """
    single = param.itemsize == 4
    if weight_decay != 0:
        for i in range(param.size):
            _nadam_element(param, grad, exp_avg, exp_avg_sq, i, True, sign, weight_decay,
                           decay_factor, w1, w1_minus_1, one_minus_w1, beta2, one_minus_beta2,
                           bias_correction2, eps, value_grad, value_avg, single)
    else:
        for i in range(param.size):
            _nadam_element(param, grad, exp_avg, exp_avg_sq, i, False, sign, weight_decay,
                           decay_factor, w1, w1_minus_1, one_minus_w1, beta2, one_minus_beta2,
                           bias_correction2, eps, value_grad, value_avg, single)


@numba.njit(**JIT)
def nadam_step(table, exp_avg, exp_avg_sq, sign, weight_decay, decay_factor, w1, w1_minus_1,
               one_minus_w1, beta2, one_minus_beta2, bias_correction2, eps, value_grad,
               value_avg):  # noqa: ANN001, ANN201
    """One step over a chunk table (see ``_common``), in place, chunks in parallel; the
    other arguments are :func:`_nadam_loops`'s, with the state buffers whole."""
    for c in numba.prange(table.shape[0]):
        param, grad, start, n = chunk(table, c, exp_avg)
        _nadam_loops(param, grad, exp_avg[start:start + n], exp_avg_sq[start:start + n], sign,
                     weight_decay, decay_factor, w1, w1_minus_1, one_minus_w1, beta2,
                     one_minus_beta2, bias_correction2, eps, value_grad, value_avg)
