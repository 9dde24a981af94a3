"""Fused single-pass kernels for NumPy arrays, compiled by numba (the ``fast`` extra).

One kernel per algorithm; the variants (maximize, weight-decay mode, AMSGrad, Nesterov)
are arguments, never separate kernels. Each reads every element once and writes the
parameter and its state in place, in parallel over the elements. The arithmetic is the
generic kernel's, operation for operation, so a fused step lands on the same bits:

* torch's fused multiply-adds (``add(alpha=)``, ``lerp``, ``addcmul``) are rounded once,
  through float64 for float32 arrays, as ``portopt/optim/_math.py`` emulates them, and
  as two operations for float64 arrays, as the generic kernel computes them there;
* host scalars (bias corrections, ``1 - beta``) are computed in Python by the caller and
  arrive already rounded to the array's dtype (``cast``), as NumPy rounds a Python float
  before it meets a float32 array.

The kernels work on flat arrays: a param group's gradients are gathered into one (one C
loop over the arrays), its state lives in flat buffers whose views are the per-parameter
state, and its parameters are either views of one buffer already (created with
``portopt.flat_parameters``) or gathered into one (``np.concatenate``) and scattered
back after the step by :func:`scatter`, through a table of the arrays' addresses built
once per group.
No Python code runs per parameter.

numba's own cache keeps the compiled kernels on disk between processes.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

# error_model="numpy": IEEE division (inf and NaN, as NumPy and torch give them) and no
# zero check inside the loops, which would keep them from being vectorized
_JIT = {"parallel": True, "cache": True, "nogil": True, "error_model": "numpy"}


@intrinsic
def _pointer(typingctx, address, like):  # noqa: ANN001, ANN202
    """The int64 ``address`` as a pointer to ``like``'s dtype (for ``numba.carray``)."""
    target = types.CPointer(like.dtype)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.inttoptr(args[0], context.get_value_type(target))

    return target(address, like), codegen


@intrinsic
def _sqrt(typingctx, x):  # noqa: ANN001, ANN202
    """LLVM's ``sqrt``, correctly rounded in ``x``'s own dtype and vectorizable (NumPy's
    ``sqrt`` compiles to a libm call that stops the loop from being vectorized)."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        fn = builder.module.declare_intrinsic("llvm.sqrt", [args[0].type])
        return builder.call(fn, args)

    return x(x), codegen


@numba.njit(inline="always")
def _tensor(addresses, sizes, k, like):  # noqa: ANN001, ANN202
    """Tensor ``k`` of an address table, as a flat array."""
    return numba.carray(_pointer(addresses[k], like), (sizes[k],))


@numba.njit(inline="always", error_model="numpy")
def _fma(a, b, c, single):  # noqa: ANN001, ANN202 - numba infers the types
    """``a * b + c`` rounded once for float32 (exact through float64), twice for float64."""
    if single:
        return np.float32(np.float64(a) * np.float64(b) + np.float64(c))
    return a * b + c


@numba.njit(inline="always")
def _lerp(start, end, w, w_minus_1, one_minus_w, single):  # noqa: ANN001, ANN202
    """torch's ``lerp``: ``start + w*(end - start)`` below ``|w| = 0.5``, else
    ``end + (w - 1)*(end - start)`` (for float64 as the generic kernel writes it,
    ``end - (end - start)*(1 - w)``). The scalars arrive in the array's dtype, so that no
    operation widens a float32 computation."""
    diff = end - start
    if abs(w) < 0.5:
        if single:
            return _fma(w, diff, start, True)
        return start + w * diff
    if single:
        return _fma(w_minus_1, diff, end, True)
    return end - diff * one_minus_w


@numba.njit(inline="always")
def _maximum(a, b):  # noqa: ANN001, ANN202
    """NumPy's ``maximum``: NaN if either is NaN."""
    if math.isnan(a) or math.isnan(b):
        return a + b
    return a if a > b else b




@numba.njit(inline="always")
def _adam_element(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, i, amsgrad, l2, sign,
                  weight_decay, decay_factor, w1, w1_minus_1, one_minus_w1, beta2,
                  one_minus_beta2, bias_correction2_sqrt, eps, neg_step_size, single):  # noqa: ANN001, ANN202
    g = grad[i] * sign
    p = param[i]
    if l2:
        g = _fma(weight_decay, p, g, single)
    p = p * decay_factor
    m = _lerp(exp_avg[i], g, w1, w1_minus_1, one_minus_w1, single)
    v = _fma(one_minus_beta2 * g, g, exp_avg_sq[i] * beta2, single)
    exp_avg[i] = m
    exp_avg_sq[i] = v
    if amsgrad:
        v = _maximum(max_exp_avg_sq[i], v)
        max_exp_avg_sq[i] = v
    denom = _sqrt(v) / bias_correction2_sqrt + eps
    param[i] = p + (neg_step_size * m) / denom


@numba.njit(inline="always")
def _sgd_element(param, grad, momentum_buffer, i, l2, nesterov, sign, weight_decay, momentum,
                 one_minus_dampening, neg_lr, single):  # noqa: ANN001, ANN202
    g = grad[i] * sign
    p = param[i]
    if l2:
        g = _fma(weight_decay, p, g, single)
    buf = _fma(one_minus_dampening, g, momentum_buffer[i] * momentum, single)
    momentum_buffer[i] = buf
    if nesterov:
        g = _fma(momentum, buf, g, single)
    else:
        g = buf
    param[i] = _fma(neg_lr, g, p, single)


@numba.njit(**_JIT)
def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, sign, weight_decay,
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
            for i in numba.prange(param.size):
                _adam_element(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, i, True, True,
                              sign, weight_decay, decay_factor, w1, w1_minus_1, one_minus_w1,
                              beta2, one_minus_beta2, bias_correction2_sqrt, eps,
                              neg_step_size, single)
        else:
            for i in numba.prange(param.size):
                _adam_element(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, i, True, False,
                              sign, weight_decay, decay_factor, w1, w1_minus_1, one_minus_w1,
                              beta2, one_minus_beta2, bias_correction2_sqrt, eps,
                              neg_step_size, single)
    elif weight_decay != 0:
        for i in numba.prange(param.size):
            _adam_element(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, i, False, True,
                          sign, weight_decay, decay_factor, w1, w1_minus_1, one_minus_w1,
                          beta2, one_minus_beta2, bias_correction2_sqrt, eps, neg_step_size,
                          single)
    else:
        for i in numba.prange(param.size):
            _adam_element(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, i, False, False,
                          sign, weight_decay, decay_factor, w1, w1_minus_1, one_minus_w1,
                          beta2, one_minus_beta2, bias_correction2_sqrt, eps, neg_step_size,
                          single)


@numba.njit(**_JIT)
def sgd_step(param, grad, momentum_buffer, sign, weight_decay, momentum, one_minus_dampening,
             nesterov, neg_lr):  # noqa: ANN001, ANN201
    """One SGD step with a momentum buffer (see ``portopt.optim.sgd.sgd``) over flat
    arrays, in place; the buffer's first step, a copy of the gradient, stays with the
    generic kernel. ``sign`` is -1 to maximize, else 1; the flags pick one of four
    branch-free loops."""
    single = param.itemsize == 4
    if weight_decay != 0:
        if nesterov:
            for i in numba.prange(param.size):
                _sgd_element(param, grad, momentum_buffer, i, True, True, sign, weight_decay,
                             momentum, one_minus_dampening, neg_lr, single)
        else:
            for i in numba.prange(param.size):
                _sgd_element(param, grad, momentum_buffer, i, True, False, sign, weight_decay,
                             momentum, one_minus_dampening, neg_lr, single)
    elif nesterov:
        for i in numba.prange(param.size):
            _sgd_element(param, grad, momentum_buffer, i, False, True, sign, weight_decay,
                         momentum, one_minus_dampening, neg_lr, single)
    else:
        for i in numba.prange(param.size):
            _sgd_element(param, grad, momentum_buffer, i, False, False, sign, weight_decay,
                         momentum, one_minus_dampening, neg_lr, single)


@numba.njit(**_JIT)
def scatter(flat, addresses, sizes, offsets):  # noqa: ANN001, ANN201
    """Copy the flat array ``flat`` back into the tensors of an address table."""
    for k in numba.prange(addresses.size):
        dst = _tensor(addresses, sizes, k, flat)
        start = offsets[k]
        for i in range(sizes[k]):
            dst[i] = flat[start + i]


@numba.njit(inline="always")
def _rmsprop_element(param, grad, square_avg, momentum_buffer, grad_avg, i, l2, centered,
                     with_momentum, sign, weight_decay, alpha, w, w_minus_1, one_minus_w, eps,
                     momentum, neg_lr, single):  # noqa: ANN001, ANN202
    g = grad[i] * sign
    p = param[i]
    if l2:
        g = _fma(weight_decay, p, g, single)
    sq = _fma(w * g, g, square_avg[i] * alpha, single)
    square_avg[i] = sq
    if centered:
        ga = _lerp(grad_avg[i], g, w, w_minus_1, one_minus_w, single)
        grad_avg[i] = ga
        avg = _sqrt(_fma(-ga, ga, sq, single))
    else:
        avg = _sqrt(sq)
    avg = avg + eps
    if with_momentum:
        buf = momentum_buffer[i] * momentum + g / avg
        momentum_buffer[i] = buf
        param[i] = _fma(neg_lr, buf, p, single)
    else:
        param[i] = p + (neg_lr * g) / avg


@numba.njit(**_JIT)
def rmsprop_step(param, grad, square_avg, momentum_buffer, grad_avg, sign, weight_decay, alpha,
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
            for i in numba.prange(n):
                _rmsprop_element(param, grad, square_avg, momentum_buffer, grad_avg, i, True,
                                 True, True, sign, weight_decay, alpha, w,
                             w_minus_1, one_minus_w, eps, momentum, neg_lr, single)
        elif centered:
            for i in numba.prange(n):
                _rmsprop_element(param, grad, square_avg, momentum_buffer, grad_avg, i, True,
                                 True, False, sign, weight_decay, alpha, w,
                             w_minus_1, one_minus_w, eps, momentum, neg_lr, single)
        elif with_momentum:
            for i in numba.prange(n):
                _rmsprop_element(param, grad, square_avg, momentum_buffer, grad_avg, i, True,
                                 False, True, sign, weight_decay, alpha, w,
                             w_minus_1, one_minus_w, eps, momentum, neg_lr, single)
        else:
            for i in numba.prange(n):
                _rmsprop_element(param, grad, square_avg, momentum_buffer, grad_avg, i, True,
                                 False, False, sign, weight_decay, alpha, w,
                             w_minus_1, one_minus_w, eps, momentum, neg_lr, single)
    elif centered and with_momentum:
        for i in numba.prange(n):
            _rmsprop_element(param, grad, square_avg, momentum_buffer, grad_avg, i, False,
                             True, True, sign, weight_decay, alpha, w,
                             w_minus_1, one_minus_w, eps, momentum, neg_lr, single)
    elif centered:
        for i in numba.prange(n):
            _rmsprop_element(param, grad, square_avg, momentum_buffer, grad_avg, i, False,
                             True, False, sign, weight_decay, alpha, w,
                             w_minus_1, one_minus_w, eps, momentum, neg_lr, single)
    elif with_momentum:
        for i in numba.prange(n):
            _rmsprop_element(param, grad, square_avg, momentum_buffer, grad_avg, i, False,
                             False, True, sign, weight_decay, alpha, w,
                             w_minus_1, one_minus_w, eps, momentum, neg_lr, single)
    else:
        for i in numba.prange(n):
            _rmsprop_element(param, grad, square_avg, momentum_buffer, grad_avg, i, False,
                             False, False, sign, weight_decay, alpha, w,
                             w_minus_1, one_minus_w, eps, momentum, neg_lr, single)
