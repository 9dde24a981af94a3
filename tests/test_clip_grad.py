"""portopt.utils: gradient clipping against numbers worked out by hand, on every backend.

Norms are chosen to come out round (3-4-5, 5-12-13, 6 as the cube root of 216), so the
expected totals and coefficients follow from ``min(max_norm / (total + 1e-6), 1)``
directly. The comparison with torch.nn.utils side by side is
conformance/test_clip_grad_torch.py.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from helpers import raises

from portopt import Parameter, SparseGrad
from portopt.utils import (
    clip_grad_norm,
    clip_grad_norm_,
    clip_grad_value_,
    clip_grads_with_norm_,
    get_total_norm,
)

INF = math.inf
NONFINITE = ("The total norm of order {} for gradients from `parameters` is non-finite, so it "
             "cannot be clipped. To disable this error and scale the gradients by the "
             "non-finite norm anyway, set `error_if_nonfinite=False`")


def _params(lib, grads, dtype="float64"):
    """Parameters of ``lib`` with the given gradients (``None`` for no gradient)."""
    out = []
    for g in grads:
        if g is None:
            out.append(lib.param(np.zeros(2), dtype))
            continue
        g = np.asarray(g, dtype=dtype)
        p = lib.param(np.zeros(g.shape), dtype)
        p.grad = lib.asarray(g, dtype)
        out.append(p)
    return out


def _grads(lib, params):
    return [None if p.grad is None else lib.numpy(p.grad) for p in params]


def _backend_array(lib, x):
    """``x`` is a 0-d array of ``lib``'s own array type."""
    assert type(x) is type(lib.asarray(np.zeros(()))), type(x)
    assert tuple(x.shape) == ()


# -- the total norm ------------------------------------------------------------------------


TOTALS = [
    # (gradients, norm_type, total, id)
    ([[3.0, -4.0], [12.0]], 2.0, 13.0, "2"),         # sqrt(9 + 16 + 144)
    ([[3.0, -4.0], [12.0]], 1, 19.0, "1"),           # 3 + 4 + 12
    ([[3.0, -4.0], [12.0]], INF, 12.0, "inf"),       # the largest magnitude
    ([[3.0, -4.0], [12.0]], "inf", 12.0, "inf-str"),  # read with float(), as torch does
    ([[3.0, -4.0], 5.0], 3.0, 6.0, "3"),             # (27 + 64 + 125)^(1/3), a 0-d grad
    ([[1.0, -4.0], [9.0, 0.0]], 0.5, 36.0, "0.5"),   # (1 + 2)^2 = 9 each, (3 + 3)^2 both
    ([[3.0, 0.0], [0.0, 0.0], [1.0, -2.0]], 0, 2.0, "0"),  # counts 1, 0, 2: two nonzero
    ([[3.0, -1.0], [2.0]], -INF, 1.0, "-inf"),       # the smallest magnitude
    ([[3.0, -1.0], [2.0]], -1, 6 / 11, "-1"),        # 1/(1/3 + 1) = 3/4, 1/(4/3 + 1/2)
]


@pytest.mark.parametrize("grads, norm_type, total", [t[:3] for t in TOTALS],
                         ids=[t[3] for t in TOTALS])
def test_total_norm_by_hand(lib, grads, norm_type, total):
    params = _params(lib, grads)
    before = _grads(lib, params)
    out = clip_grad_norm_(params, max_norm=1e9, norm_type=norm_type)
    _backend_array(lib, out)
    assert lib.numpy(out).dtype == np.float64
    np.testing.assert_allclose(lib.numpy(out), total, rtol=1e-14)
    # a max_norm above the total leaves every gradient as it was, to the bit
    for g, b in zip(_grads(lib, params), before):
        np.testing.assert_array_equal(g, b)


def test_get_total_norm_takes_arrays(lib):
    a, b = lib.asarray([3.0, 4.0]), lib.asarray([12.0])
    np.testing.assert_allclose(lib.numpy(get_total_norm([a, b])), 13.0, rtol=1e-15)
    np.testing.assert_allclose(lib.numpy(get_total_norm(a)), 5.0, rtol=1e-15)  # one array
    np.testing.assert_allclose(lib.numpy(get_total_norm(b, norm_type=1)), 12.0)
    _backend_array(lib, get_total_norm(a))


def test_complex_gradients_have_a_real_norm(lib):
    p = lib.param(np.zeros(2, dtype=np.complex128))
    p.grad = lib.asarray(np.array([3 + 4j, 0j]))
    out = clip_grad_norm_([p], 1.0)
    assert lib.numpy(out).dtype == np.float64
    np.testing.assert_allclose(lib.numpy(out), 5.0, rtol=1e-15)
    coef = 1.0 / (5.0 + 1e-6)
    np.testing.assert_allclose(lib.numpy(p.grad), [3 * coef + 4j * coef, 0], rtol=1e-15)


def test_mixed_dtypes_promote_the_total(lib):
    params = _params(lib, [[3.0, 4.0]], "float32") + _params(lib, [[12.0]], "float64")
    out = clip_grad_norm_(params, 1e9)
    assert lib.numpy(out).dtype == np.float64
    assert float(lib.numpy(out)) == 13.0


# -- clipping ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_clip_by_hand_float_arithmetic(lib, dtype):
    """The coefficient is 1 / (5 + 1e-6) * max_norm in the norm's dtype, then applied in
    the gradient's: the same rounding steps written out with NumPy scalars."""
    f = np.dtype(dtype).type
    params = _params(lib, [[3.0, -4.0], None, [0.0]], dtype)
    out = clip_grad_norm_(params, 0.5)
    assert float(lib.numpy(out)) == 5.0
    coef = min(f(1) / (f(5) + f(1e-6)) * f(0.5), f(1))
    g = _grads(lib, params)
    np.testing.assert_array_equal(g[0], np.array([f(3) * coef, f(-4) * coef], dtype=dtype))
    assert g[0].dtype == np.dtype(dtype)
    assert g[1] is None
    np.testing.assert_array_equal(g[2], [0.0])


def test_gradients_change_in_place(lib):
    p, q = _params(lib, [[3.0, 4.0], [0.0, 0.0]])
    held = p.grad
    clip_grad_norm_([p, q], 1.0)
    assert p.grad is held
    np.testing.assert_allclose(lib.numpy(held), [0.6, 0.8], rtol=1e-6)
    clip_grad_value_([p], 0.7)
    assert p.grad is held
    np.testing.assert_allclose(lib.numpy(held), [0.6, 0.7], rtol=1e-6)


def test_a_single_parameter_is_not_iterated(lib):
    (p,) = _params(lib, [[[3.0, 0.0], [0.0, 4.0]]])
    out = clip_grad_norm_(p, 1.0)
    assert float(lib.numpy(out)) == 5.0
    np.testing.assert_allclose(lib.numpy(p.grad), [[0.6, 0.0], [0.0, 0.8]], rtol=1e-6)
    clip_grad_value_(p, 0.7)
    np.testing.assert_allclose(lib.numpy(p.grad), [[0.6, 0.0], [0.0, 0.7]], rtol=1e-6)
    clip_grads_with_norm_(p, 0.5, lib.asarray(1.0))
    np.testing.assert_allclose(lib.numpy(p.grad), [[0.3, 0.0], [0.0, 0.35]], rtol=2e-6)


def test_a_generator_is_read_once_and_an_empty_one_warns(lib):
    params = _params(lib, [[3.0, 4.0]])
    out = clip_grad_norm_((p for p in params), 1.0)
    assert float(lib.numpy(out)) == 5.0
    np.testing.assert_allclose(lib.numpy(params[0].grad), [0.6, 0.8], rtol=1e-6)
    with pytest.warns(UserWarning, match=r"^`parameters` is an empty generator, no gradient "
                                         r"clipping will occur\.$"):
        out = clip_grad_norm_((p for p in []), 1.0)
    assert float(out) == 0.0


def test_no_gradients(lib):
    out = clip_grad_norm_(_params(lib, [None, None]), 1.0)
    _backend_array(lib, out)
    assert float(lib.numpy(out)) == 0.0 and lib.numpy(out).dtype == np.float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a list, not a generator: no warning
        out = clip_grad_norm_([], 1.0)
    assert isinstance(out, np.ndarray) and out.shape == () and out.dtype == np.float32
    assert float(get_total_norm([])) == 0.0
    assert clip_grad_value_(_params(lib, [None]), 1.0) is None
    assert clip_grads_with_norm_([], 1.0, 5.0) is None


def test_max_norm_and_norm_type_are_read_with_float(lib):
    (p,) = _params(lib, [[3.0, 4.0]])
    raises(ValueError, "could not convert string to float: 'abc'",
           clip_grad_norm_, [p], 1.0, norm_type="abc")
    with pytest.raises(TypeError):
        clip_grad_norm_([p], None)
    np.testing.assert_array_equal(lib.numpy(p.grad), [3.0, 4.0])
    clip_grad_norm_([p], "1.0")
    np.testing.assert_allclose(lib.numpy(p.grad), [0.6, 0.8], rtol=1e-6)


def test_a_negative_max_norm_flips_the_gradients(lib):
    (p,) = _params(lib, [[3.0, 4.0]])
    clip_grad_norm_([p], -5.0)
    np.testing.assert_allclose(lib.numpy(p.grad), [-3.0, -4.0], rtol=1e-6)


def test_clip_grads_with_norm_uses_the_given_total(lib):
    p, q = _params(lib, [[3.0, 4.0], [1.0]])
    clip_grads_with_norm_([p, q], 2.0, lib.asarray(8.0))  # coefficient 2 / (8 + 1e-6)
    coef = 1.0 / (8.0 + 1e-6) * 2.0
    np.testing.assert_array_equal(lib.numpy(p.grad), [3.0 * coef, 4.0 * coef])
    np.testing.assert_array_equal(lib.numpy(q.grad), [1.0 * coef])
    clip_grads_with_norm_([p], 100.0, lib.asarray(8.0))  # never scaled up
    np.testing.assert_array_equal(lib.numpy(p.grad), [3.0 * coef, 4.0 * coef])


def test_clip_grads_with_norm_wants_an_array_total(lib):
    (p,) = _params(lib, [[3.0, 4.0]])
    raises(TypeError, "clip_grads_with_norm_ expects total_norm to be a 0-d array of the "
                      "gradients' backend (as get_total_norm returns it), got float",
           clip_grads_with_norm_, [p], 1.0, 5.0)
    np.testing.assert_array_equal(lib.numpy(p.grad), [3.0, 4.0])


def test_clip_grad_value_by_hand(lib):
    p, q, r = _params(lib, [[3.0, -4.0, 0.5, np.nan], None, 7.0])
    assert clip_grad_value_([p, q, r], 1.0) is None
    np.testing.assert_array_equal(lib.numpy(p.grad), [1.0, -1.0, 0.5, np.nan])
    assert q.grad is None
    assert float(lib.numpy(r.grad)) == 1.0
    # a negative bound: raising to -c then lowering to c leaves c (and NaN) everywhere
    clip_grad_value_([p], -0.25)
    np.testing.assert_array_equal(lib.numpy(p.grad), [-0.25, -0.25, -0.25, np.nan])


def test_clip_grad_value_rounds_the_bound_to_the_gradient_dtype(lib):
    (p,) = _params(lib, [[0.1, 2.0]], "float32")
    clip_grad_value_([p], 0.1)
    np.testing.assert_array_equal(lib.numpy(p.grad), np.array([0.1, 0.1], dtype=np.float32))


def test_deprecated_alias_warns_and_clips(lib):
    (p,) = _params(lib, [[3.0, 4.0]])
    with pytest.warns(FutureWarning, match="clip_grad_norm_"):
        out = clip_grad_norm(p, 1.0)
    assert float(lib.numpy(out)) == 5.0
    np.testing.assert_allclose(lib.numpy(p.grad), [0.6, 0.8], rtol=1e-6)


# -- non-finite norms and errors: nothing changes ------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_error_if_nonfinite_raises_before_anything_changes(lib, bad):
    params = _params(lib, [[1.0, bad], [3.0]])
    before = _grads(lib, params)
    raises(RuntimeError, NONFINITE.format("2.0"),
           clip_grad_norm_, params, 1.0, error_if_nonfinite=True)
    raises(RuntimeError, NONFINITE.format("inf"),
           clip_grad_norm_, params, 1.0, norm_type=INF, error_if_nonfinite=True)
    raises(RuntimeError, NONFINITE.format("2.0"),
           get_total_norm, [p.grad for p in params], error_if_nonfinite=True)
    for g, b in zip(_grads(lib, params), before):
        np.testing.assert_array_equal(g, b)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # NumPy's inf * 0
def test_a_non_finite_norm_scales_anyway_without_the_flag(lib):
    p, q = _params(lib, [[1.0, np.inf], [-3.0]])
    out = clip_grad_norm_([p, q], 1.0)
    assert float(lib.numpy(out)) == INF
    # the coefficient is 1 / inf = 0: inf * 0 is NaN, finite values become (signed) zeros
    np.testing.assert_array_equal(lib.numpy(p.grad), [0.0, np.nan])
    assert math.copysign(1.0, float(lib.numpy(q.grad)[0])) == -1.0
    (r,) = _params(lib, [[1.0, np.nan]])
    assert math.isnan(float(lib.numpy(clip_grad_norm_([r], 1.0))))
    assert np.isnan(lib.numpy(r.grad)).all()


@pytest.mark.parametrize("norm_type, foreach, message", [
    (INF, None, "_foreach_norm cannot compute the infinity norm on an empty tensor because "
                "the operation does not have an identity"),
    (INF, False, "linalg.vector_norm cannot compute the inf norm on an empty tensor because "
                 "the operation does not have an identity"),
    (-INF, None, "linalg.vector_norm cannot compute the -inf norm on an empty tensor because "
                 "the operation does not have an identity"),
    (-1.0, False, "linalg.vector_norm cannot compute the -1 norm on an empty tensor because "
                  "the operation does not have an identity"),
    (-0.5, None, "linalg.vector_norm cannot compute the -0.5 norm on an empty tensor because "
                 "the operation does not have an identity"),
])
def test_empty_gradient_under_a_norm_without_identity(lib, norm_type, foreach, message):
    params = _params(lib, [[3.0, 4.0], []])
    raises(RuntimeError, message, clip_grad_norm_, params, 1.0, norm_type, foreach=foreach)
    np.testing.assert_array_equal(lib.numpy(params[0].grad), [3.0, 4.0])


@pytest.mark.parametrize("norm_type, total", [(2.0, 17 ** 0.5), (0.5, 9.0), (0, 1.0)])
def test_empty_gradient_counts_for_nothing_elsewhere(lib, norm_type, total):
    # the empty gradient's norm is 0: it adds nothing to a sum, and under order 0 the
    # total counts the gradients with nonzeros (one)
    params = _params(lib, [[1.0, 4.0], []])
    np.testing.assert_allclose(lib.numpy(clip_grad_norm_(params, 1e9, norm_type)), total,
                               rtol=1e-14)


def test_complex_gradients_cannot_be_clamped(lib):
    p = lib.param(np.zeros(2, dtype=np.complex128))
    p.grad = lib.asarray(np.array([3 + 4j, 0j]))
    (q,) = _params(lib, [[5.0, -5.0]], "float64")
    raises(NotImplementedError, "clamp is not supported for complex types",
           clip_grad_value_, [q, p], 1.0)
    np.testing.assert_array_equal(lib.numpy(q.grad), [5.0, -5.0])  # the first is untouched


def test_arrays_need_a_parameter(lib):
    if lib.name.startswith("torch"):
        pytest.skip("a torch tensor is its own parameter")
    raises(AttributeError, f"'{type(lib.asarray([1.0])).__name__}' object has no attribute "
                           "'grad': give an array a gradient by wrapping it in portopt.Parameter",
           clip_grad_norm_, [lib.asarray([1.0])], 1.0)


# -- backends, devices, sparse and immutable gradients -------------------------------------


def test_mixing_backends_is_a_type_error_before_anything_changes():
    xs = pytest.importorskip("array_api_strict")
    a = Parameter(np.zeros(2))
    a.grad = np.array([3.0, 4.0])
    b = Parameter(xs.zeros(1, dtype=xs.float64))
    b.grad = xs.asarray([12.0], dtype=xs.float64)
    message = ("{} needs arrays of one backend, but got numpy and array_api_strict arrays in "
               "one call")
    raises(TypeError, message.format("clip_grad_norm_"), clip_grad_norm_, [a, b], 1.0)
    raises(TypeError, message.format("clip_grad_value_"), clip_grad_value_, [a, b], 1.0)
    raises(TypeError, message.format("get_total_norm"), get_total_norm, [a.grad, b.grad])
    raises(TypeError, message.format("clip_grads_with_norm_"),
           clip_grads_with_norm_, [a], 1.0, xs.asarray(5.0))
    np.testing.assert_array_equal(a.grad, [3.0, 4.0])
    assert float(b.grad[0]) == 12.0


def test_mixing_torch_and_numpy_is_a_type_error(torch):
    a = Parameter(np.zeros(2))
    a.grad = np.array([3.0, 4.0])
    t = torch.zeros(1, requires_grad=True)
    t.grad = torch.tensor([12.0])
    raises(TypeError, "clip_grad_norm_ needs arrays of one backend, but got numpy and torch "
                      "arrays in one call", clip_grad_norm_, [a, t], 1.0)
    assert t.grad.tolist() == [12.0] and a.grad.tolist() == [3.0, 4.0]


def test_gradients_on_two_devices_are_gathered_on_the_first():
    xs = pytest.importorskip("array_api_strict")
    other = xs.Device("device1")
    a = Parameter(xs.zeros(2, dtype=xs.float64, device=other))
    a.grad = xs.asarray([3.0, 4.0], dtype=xs.float64, device=other)
    b = Parameter(xs.zeros(1, dtype=xs.float64))
    b.grad = xs.asarray([12.0], dtype=xs.float64)
    out = clip_grad_norm_([a, b], 1.0)
    assert out.device == other and float(out) == 13.0
    assert a.grad.device == other and b.grad.device == xs.Device("CPU_DEVICE")
    coef = 1.0 / (13.0 + 1e-6)
    np.testing.assert_array_equal(np.asarray(a.grad.to_device(xs.Device("CPU_DEVICE"))),
                                  [3.0 * coef, 4.0 * coef])
    assert float(b.grad[0]) == 12.0 * coef


def _sparse(lib):
    p = lib.param(np.zeros((3, 2)))
    if lib.name.startswith("torch"):
        p.grad = lib.mod.sparse_coo_tensor(lib.mod.tensor([[0, 2, 0]]),
                                           lib.asarray([[3.0, 0.0], [0.0, 4.0], [1.0, 1.0]]),
                                           (3, 2), check_invariants=True)
    else:
        p.grad = SparseGrad(lib.asarray([[0, 2, 0]]),
                            lib.asarray([[3.0, 0.0], [0.0, 4.0], [1.0, 1.0]]), (3, 2))
    return p


def _sparse_values(lib, grad):
    return lib.numpy(grad._values() if lib.name.startswith("torch") else grad.values)


def test_sparse_gradients_have_no_norm_and_no_clamp(lib):
    p = _sparse(lib)
    (q,) = _params(lib, [[5.0, -5.0]])
    for fn, name, args in [(clip_grad_norm_, "clip_grad_norm_", (1.0,)),
                           (clip_grad_value_, "clip_grad_value_", (1.0,))]:
        raises(NotImplementedError, f"{name} does not support sparse gradients: torch has no "
                                    "sparse kernel for it either (densify the gradient first)",
               fn, [q, p], *args)
    with pytest.raises(NotImplementedError):
        get_total_norm([p.grad])
    np.testing.assert_array_equal(lib.numpy(q.grad), [5.0, -5.0])
    np.testing.assert_array_equal(_sparse_values(lib, p.grad), [[3, 0], [0, 4], [1, 1]])


def test_sparse_gradients_are_scaled_by_a_given_total(lib):
    p = _sparse(lib)
    clip_grads_with_norm_([p], 1.0, lib.asarray(2.0))
    coef = 1.0 / (2.0 + 1e-6)
    np.testing.assert_array_equal(_sparse_values(lib, p.grad),
                                  np.array([[3, 0], [0, 4], [1, 1]]) * coef)


def test_immutable_gradients_are_rebound(frozen):
    p = Parameter(np.zeros(2).view(frozen))
    held = np.array([3.0, 4.0]).view(frozen)
    p.grad = held
    clip_grad_norm_([p], 1.0)
    assert p.grad is not held
    np.testing.assert_array_equal(np.asarray(held), [3.0, 4.0])
    np.testing.assert_allclose(np.asarray(p.grad), [0.6, 0.8], rtol=1e-6)


def test_read_only_gradients_are_rebound():
    p = Parameter(np.zeros(2, dtype=np.float32))
    held = np.array([3.0, 4.0], dtype=np.float32)
    held.flags.writeable = False
    p.grad = held
    clip_grad_norm_([p], 1.0)
    assert p.grad is not held and p.grad.dtype == np.float32
    np.testing.assert_array_equal(held, [3.0, 4.0])
    np.testing.assert_allclose(p.grad, [0.6, 0.8], rtol=1e-6)
    held = p.grad
    held.flags.writeable = False
    clip_grad_value_([p], 0.7)
    assert p.grad is not held
    np.testing.assert_allclose(held, [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(p.grad, [0.6, 0.7], rtol=1e-6)


def test_a_0d_float32_gradient_keeps_its_dtype_when_the_total_is_float64():
    # the total promotes to float64; the 0-d float32 gradient is multiplied in float64
    # and rounded back, the float64 one stays float64
    a, b = Parameter(np.zeros((), dtype=np.float32)), Parameter(np.zeros(1))
    a.grad, b.grad = np.asarray(3.0, dtype=np.float32), np.array([4.0])
    out = clip_grad_norm_([a, b], 1.0)
    assert out.dtype == np.float64 and float(out) == 5.0
    coef = 1.0 / (5.0 + 1e-6)
    assert a.grad.dtype == np.float32 and a.grad == np.float32(3.0 * coef)
    assert b.grad[0] == 4.0 * coef


def test_torch_tensors_get_no_autograd_history(torch):
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.tensor([3.0, 4.0])
    total = get_total_norm([p])  # the parameters themselves, which require grad
    assert total.grad_fn is None and not total.requires_grad
    assert clip_grad_norm_([p], 1.0).grad_fn is None


def test_integer_arrays_have_no_norm(lib):
    raises(RuntimeError, "linalg.vector_norm: Expected a floating point or complex tensor as "
                         "input. Got int64",
           get_total_norm, [lib.asarray([1.0]), lib.asarray([1, 2], "int64")])
