"""The pure kernels on every backend: purity, types, and numbers derived by hand.

Hand-derived values use powers of two wherever possible, so that every intermediate is
exact and the expected results are exact too.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import check_result

from portopt import functional as F

DTYPES = ["float32", "float64"]


# -- SGD ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_plain_step(lib, dtype):
    p, g = lib.asarray([1.0, -2.0], dtype), lib.asarray([0.5, 0.25], dtype)
    new, state = F.sgd(p, g, F.sgd_init(p), lr=0.25)
    check_result(new, p)
    np.testing.assert_array_equal(lib.numpy(new), [1.0 - 0.125, -2.0 - 0.0625])
    assert state.momentum_buffer is None
    np.testing.assert_array_equal(lib.numpy(p), [1.0, -2.0])  # inputs untouched


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_momentum_and_dampening_by_hand(lib, dtype):
    p = lib.asarray([1.0], dtype)
    g1, g2 = lib.asarray([0.5], dtype), lib.asarray([0.25], dtype)
    kw = dict(lr=0.5, momentum=0.5, dampening=0.5)
    p1, s1 = F.sgd(p, g1, F.sgd_init(p), **kw)
    # first step: buf = g (no dampening), p -= lr * buf
    np.testing.assert_array_equal(lib.numpy(s1.momentum_buffer), [0.5])
    np.testing.assert_array_equal(lib.numpy(p1), [0.75])
    p2, s2 = F.sgd(p1, g2, s1, **kw)
    # buf = 0.5 * 0.5 + (1 - 0.5) * 0.25 = 0.375; p = 0.75 - 0.5 * 0.375
    np.testing.assert_array_equal(lib.numpy(s2.momentum_buffer), [0.375])
    np.testing.assert_array_equal(lib.numpy(p2), [0.5625])
    np.testing.assert_array_equal(lib.numpy(s1.momentum_buffer), [0.5])  # old state untouched


def test_sgd_nesterov_weight_decay_maximize_by_hand(lib):
    p = lib.asarray([2.0], "float64")
    g = lib.asarray([0.5], "float64")
    # maximize: g = -0.5; wd: g = -0.5 + 0.25 * 2 = 0; first buf = 0; nesterov g = 0
    new, st = F.sgd(p, g, F.sgd_init(p), lr=0.5, momentum=0.5, weight_decay=0.25,
                    nesterov=True, maximize=True)
    np.testing.assert_array_equal(lib.numpy(new), [2.0])
    g2 = lib.asarray([1.0], "float64")
    # g = 1 + 0.25 * 2 = 1.5; buf = 0.5 * 0 + 1 * 1.5 = 1.5; nesterov g = 1.5 + 0.5 * 1.5
    new2, st2 = F.sgd(new, g2, st, lr=0.5, momentum=0.5, weight_decay=0.25, nesterov=True)
    np.testing.assert_array_equal(lib.numpy(st2.momentum_buffer), [1.5])
    np.testing.assert_array_equal(lib.numpy(new2), [2.0 - 0.5 * 2.25])


def test_sgd_first_buffer_is_a_copy_not_the_gradient(lib):
    p, g = lib.asarray([1.0]), lib.asarray([0.5])
    _, st = F.sgd(p, g, F.sgd_init(p), lr=0.1, momentum=0.9)
    assert st.momentum_buffer is not g


def test_sgd_complex_steps_both_parts(lib):
    if lib.name == "array_api_strict":
        pass  # complex arithmetic is part of the standard
    p = lib.asarray([1 + 2j, -1j], "complex128")
    g = lib.asarray([0.5 - 0.25j, 1 + 1j], "complex128")
    new, _ = F.sgd(p, g, F.sgd_init(p), lr=0.5)
    np.testing.assert_array_equal(lib.numpy(new), [0.75 + 2.125j, -0.5 - 1.5j])


def test_sgd_array_lr_equals_float_lr(lib):
    p, g = lib.asarray([1.0, 3.0]), lib.asarray([0.3, -0.7])
    a, _ = F.sgd(p, g, F.sgd_init(p), lr=0.1)
    b, _ = F.sgd(p, g, F.sgd_init(p), lr=lib.asarray(0.1, "float64"))
    np.testing.assert_array_equal(lib.numpy(a), lib.numpy(b))


# -- Adam -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_first_step_moves_each_weight_by_lr(lib, dtype):
    # After one step m_hat = g and v_hat = g^2, so with eps = 0 the update is lr * sign(g).
    p = lib.asarray([1.0, -2.0, 0.5], dtype)
    g = lib.asarray([4.0, -0.25, 1e-3], dtype)
    new, st = F.adam(p, g, F.adam_init(p), lr=0.125, beta1=0.9, beta2=0.999, eps=0.0)
    check_result(new, p)
    tol = 1e-6 if dtype == "float32" else 1e-15
    np.testing.assert_allclose(lib.numpy(new), [0.875, -1.875, 0.375], rtol=tol)
    assert st.step == 1 and F.adam_init(p).step == 0
    np.testing.assert_allclose(lib.numpy(st.exp_avg), [0.4, -0.025, 1e-4], rtol=tol)
    np.testing.assert_allclose(lib.numpy(st.exp_avg_sq), [0.016, 0.0000625, 1e-9], rtol=tol * 10)
    np.testing.assert_array_equal(lib.numpy(p), [1.0, -2.0, 0.5])  # inputs untouched


def test_adam_two_steps_by_hand(lib):
    b1, b2, lr, eps = 0.5, 0.75, 0.25, 1e-8
    p = lib.asarray([1.0], "float64")
    g1, g2 = lib.asarray([2.0], "float64"), lib.asarray([-1.0], "float64")
    p1, s1 = F.adam(p, g1, F.adam_init(p), lr=lr, beta1=b1, beta2=b2, eps=eps)
    p2, s2 = F.adam(p1, g2, s1, lr=lr, beta1=b1, beta2=b2, eps=eps)
    m = (1 - b1) * 2.0
    v = (1 - b2) * 4.0
    m = b1 * m + (1 - b1) * -1.0
    v = b2 * v + (1 - b2) * 1.0
    p1_hand = 1.0 - lr * 1.0 * 2.0 / (2.0 + eps)
    p2_hand = p1_hand - lr / (1 - b1**2) * m / (np.sqrt(v) / np.sqrt(1 - b2**2) + eps)
    np.testing.assert_allclose(lib.numpy(p2), [p2_hand], rtol=1e-15)
    np.testing.assert_allclose(lib.numpy(s2.exp_avg), [m], rtol=1e-15)
    np.testing.assert_allclose(lib.numpy(s2.exp_avg_sq), [v], rtol=1e-15)
    assert s2.step == 2


def test_adam_amsgrad_keeps_the_maximum(lib):
    p = lib.asarray([0.0, 0.0], "float64")
    st = F.adam_init(p, amsgrad=True)
    _, st = F.adam(p, lib.asarray([4.0, 0.0]), st, lr=0.1, beta1=0.0, beta2=0.5, eps=1e-8,
                   amsgrad=True)
    _, st = F.adam(p, lib.asarray([0.0, 2.0]), st, lr=0.1, beta1=0.0, beta2=0.5, eps=1e-8,
                   amsgrad=True)
    # v = [0.5 * 8, 0.5 * 4] = [4, 2]; the max of [8, 0] and [4, 2] is [8, 2]
    np.testing.assert_array_equal(lib.numpy(st.exp_avg_sq), [4.0, 2.0])
    np.testing.assert_array_equal(lib.numpy(st.max_exp_avg_sq), [8.0, 2.0])


def test_adam_decoupled_decay_shrinks_weights_first(lib):
    p = lib.asarray([2.0], "float64")
    zero = lib.asarray([0.0], "float64")
    # zero gradient: only the decay acts, p * (1 - lr * wd)
    new, _ = F.adam(p, zero, F.adam_init(p), lr=0.5, beta1=0.9, beta2=0.999, eps=1e-8,
                    weight_decay=0.5, decoupled_weight_decay=True)
    np.testing.assert_array_equal(lib.numpy(new), [1.5])
    # coupled: the decay becomes a gradient of wd * p = 1, a full lr step after one step
    new, _ = F.adam(p, zero, F.adam_init(p), lr=0.5, beta1=0.9, beta2=0.999, eps=0.0,
                    weight_decay=0.5)
    np.testing.assert_allclose(lib.numpy(new), [1.5], rtol=1e-15)


def test_adam_maximize_ascends(lib):
    p, g = lib.asarray([1.0]), lib.asarray([3.0])
    new, _ = F.adam(p, g, F.adam_init(p), lr=0.5, beta1=0.9, beta2=0.999, eps=0.0,
                    maximize=True)
    np.testing.assert_allclose(lib.numpy(new), [1.5], rtol=1e-15)


def test_adam_complex_is_adam_on_real_and_imaginary_parts(lib):
    # torch steps complex parameters through view_as_real; the oracle is the real kernel
    # run on the (re, im) pairs.
    rng = np.random.default_rng(3)
    pc = rng.standard_normal((3, 2)) + 1j * rng.standard_normal((3, 2))
    pr = np.stack([pc.real, pc.imag], axis=-1)
    cplx, real = lib.asarray(pc), lib.asarray(pr)
    sc, sr = F.adam_init(cplx, amsgrad=True), F.adam_init(real, amsgrad=True)
    for _ in range(3):
        gc = rng.standard_normal((3, 2)) + 1j * rng.standard_normal((3, 2))
        gr = np.stack([gc.real, gc.imag], axis=-1)
        kw = dict(lr=0.1, beta1=0.8, beta2=0.9, eps=1e-8, amsgrad=True, weight_decay=0.0)
        cplx, sc = F.adam(cplx, lib.asarray(gc), sc, **kw)
        real, sr = F.adam(real, lib.asarray(gr), sr, **kw)
    out = lib.numpy(cplx)
    assert out.dtype == np.complex128
    np.testing.assert_array_equal(np.stack([out.real, out.imag], -1), lib.numpy(real))
    v = lib.numpy(sc.exp_avg_sq)
    np.testing.assert_array_equal(np.stack([v.real, v.imag], -1), lib.numpy(sr.exp_avg_sq))


@pytest.mark.parametrize("kernel", ["sgd", "adam"])
def test_empty_and_zero_dim_parameters(lib, kernel):
    for shape in [(1, 0, 2), ()]:
        p = lib.asarray(np.ones(shape), "float32")
        g = lib.asarray(np.ones(shape), "float32")
        init = getattr(F, kernel + "_init")(p)
        new, _ = getattr(F, kernel)(p, g, init, lr=0.1, **(
            dict(beta1=0.9, beta2=0.999, eps=1e-8) if kernel == "adam" else {}))
        check_result(new, p)


def test_mixing_namespaces_is_a_type_error(torch):
    p = np.zeros(2)
    g = torch.zeros(2, dtype=torch.float64)
    with pytest.raises(TypeError, match="Multiple namespaces"):
        F.sgd(p, g, F.sgd_init(p), lr=0.1)
