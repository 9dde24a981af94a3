"""The fused ASGD kernel."""

from __future__ import annotations

import numba

from ._common import JIT, chunk, fma


@numba.njit(inline="always")
def _asgd_element(param, grad, ax, i, l2, average, sign, weight_decay, decay_factor, neg_eta,
                  mu, single):  # noqa: ANN001, ANN202
    g = -grad[i] if sign < 0 else grad[i]  # a negation (a NaN's sign flips), as -grad
    p = param[i]
    if l2:
        g = fma(weight_decay, p, g, single)
    p = fma(neg_eta, g, p * decay_factor, single)
    param[i] = p
    if average:
        a = ax[i]
        ax[i] = a + (p - a) * mu
    else:
        ax[i] = p


@numba.njit(inline="always")
def _asgd_loops(param, grad, ax, sign, weight_decay, decay_factor, neg_eta, mu,
                average):  # noqa: ANN001, ANN201
    """One ASGD step (see ``portopt.optim.asgd.asgd``) over flat arrays, in place.

    ``sign`` is -1 to maximize (an exact negation), else 1; ``weight_decay`` the L2
    coefficient; ``decay_factor = 1 - lambd*eta`` and ``neg_eta = -eta`` from the
    step's ``eta``; ``mu`` the averaging weight, used when ``average`` is set (the
    generic kernel's ``mu != 1``), ``ax`` being a copy of the parameter otherwise; all
    rounded to the dtype, as the generic kernel meets them. The flags pick one of four
    branch-free loops.
    """
    single = param.itemsize == 4
    if weight_decay != 0:
        if average:
            for i in range(param.size):
                _asgd_element(param, grad, ax, i, True, True, sign, weight_decay,
                              decay_factor, neg_eta, mu, single)
        else:
            for i in range(param.size):
                _asgd_element(param, grad, ax, i, True, False, sign, weight_decay,
                              decay_factor, neg_eta, mu, single)
    elif average:
        for i in range(param.size):
            _asgd_element(param, grad, ax, i, False, True, sign, weight_decay, decay_factor,
                          neg_eta, mu, single)
    else:
        for i in range(param.size):
            _asgd_element(param, grad, ax, i, False, False, sign, weight_decay, decay_factor,
                          neg_eta, mu, single)


@numba.njit(**JIT)
def asgd_step(table, ax, sign, weight_decay, decay_factor, neg_eta, mu,
              average):  # noqa: ANN001, ANN201
    """One step over a chunk table (see ``_common``), in place, chunks in parallel; the
    other arguments are :func:`_asgd_loops`'s, with the state buffers whole."""
    for c in numba.prange(table.shape[0]):
        param, grad, start, n = chunk(table, c, ax)
        _asgd_loops(param, grad, ax[start:start + n], sign, weight_decay, decay_factor, neg_eta,
                    mu, average)
