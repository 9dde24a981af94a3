"""portopt.utils against torch.nn.utils, side by side on the same gradients.

Each case builds one list of gradients (shapes from 0-d to 3-d, an empty one, some
parameters without a gradient), clips a copy with torch and a copy with portopt on each
backend, and compares the total norm and every gradient. Errors must match in class and
message, and leave the gradients as they were on both sides.

Bit-exact where the same operations run in the same order: everything on torch tensors
(portopt calls the same torch ops), the infinity and zero norms on every backend (a
maximum and a count), ``clip_grad_value_``, and ``clip_grads_with_norm_`` given torch's
total (the coefficient's reciprocal, product and clamp are the same IEEE steps). Other
norms are sums, whose order differs between libraries: those stay within the suite's
tolerance table.
"""

from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.utils as tnu

from portopt import SparseGrad, utils
from portopt.backends import get_backend
from portopt.testing import TestBackend, measure, tolerance_for

INF = math.inf
SHAPES = [(3, 4), (), (0,), (17,), (2, 1, 3), (5,)]
NORM_TYPES = [0.5, 1.0, 2.0, 3.0, INF, 0.0]
EXACT_NORMS = (INF, 0.0)
BACKENDS = [b for b in TestBackend]


@pytest.fixture(params=BACKENDS, ids=lambda b: b.value)
def backend(request):
    b = request.param
    if b.unavailable():
        pytest.skip(b.unavailable())
    return b


def _numpy(x):
    return np.asarray(get_backend(x).to_numpy(x))


def _outcome(fn, *args, **kwargs):
    """``(None, result)`` or ``((exception class, message), None)``."""
    try:
        return None, fn(*args, **kwargs)
    except Exception as exc:  # the class and message are what is compared
        return (type(exc), str(exc)), None


def _gradients(seed, dtype, shapes=SHAPES, none_at=None):
    """One list of gradients (NumPy) with magnitudes across six decades; ``None`` marks
    a parameter without a gradient."""
    rng = np.random.default_rng(seed)
    grads = [np.asarray(rng.standard_normal(s) * 10 ** rng.uniform(-3, 3), dtype=dtype)
             for s in shapes]
    if none_at is None:
        none_at = int(rng.integers(len(shapes)))
    grads[none_at] = None
    return grads


def _torch_params(grads, dtypes=None):
    params = []
    for g in grads:
        p = torch.zeros(() if g is None else g.shape, requires_grad=True,
                        dtype=torch.float64 if g is None else torch.from_numpy(g).dtype)
        if g is not None:
            p.grad = torch.from_numpy(np.array(g, copy=True))
        params.append(p)
    return params


def _our_params(backend, grads):
    params = []
    for g in grads:
        p = backend.param(np.zeros(() if g is None else g.shape,
                                   dtype=np.float64 if g is None else g.dtype))
        if g is not None:
            p.grad = backend.array(g)
        params.append(p)
    return params


def _grads_of(params):
    return [None if p.grad is None else _numpy(p.grad) for p in params]


def _same(candidate, reference):
    """Bit for bit, NaN equal to NaN (whatever its sign), the sign of zero included."""
    c, r = np.asarray(candidate), np.asarray(reference)
    assert c.dtype == r.dtype and c.shape == r.shape, (c.dtype, r.dtype, c.shape, r.shape)
    assert np.array_equal(c, r, equal_nan=True), (c, r)
    if np.iscomplexobj(r):
        c, r = np.stack([c.real, c.imag]), np.stack([r.real, r.imag])
    numbers = ~np.isnan(r)
    assert np.array_equal(np.signbit(c[numbers]), np.signbit(r[numbers]))


def _close(candidate, reference, dtype):
    c, r = np.asarray(candidate), np.asarray(reference)
    assert c.dtype == r.dtype and c.shape == r.shape, (c.dtype, r.dtype, c.shape, r.shape)
    tol = tolerance_for(dtype)
    err = measure(c, r, tol)
    assert err.rel <= tol.rtol, f"relative error {err.rel:.3g} (ULP {err.ulp:.3g})"


def _compare(ours, theirs, dtype, exact):
    (our_err, our_total), (their_err, their_total) = ours[0], theirs[0]
    assert our_err == their_err
    check = _same if exact else (lambda c, r: _close(c, r, dtype))
    if their_err is None:
        check(_numpy(our_total), their_total.numpy())
    for c, r in zip(ours[1], theirs[1]):
        assert (c is None) == (r is None)
        if r is not None:
            check(c, r)


@pytest.mark.parametrize("name", utils.__all__)
def test_same_signature_as_torch(name):
    def shape(fn):
        return [(p.name, p.default, p.kind) for p in inspect.signature(fn).parameters.values()]

    assert shape(getattr(utils, name)) == shape(getattr(tnu, name))


# -- clip_grad_norm_ -----------------------------------------------------------------------


@pytest.mark.parametrize("factor", [0.3, 3.0], ids=["clips", "keeps"])
@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=lambda n: f"p{n:g}")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clip_grad_norm(backend, seed, dtype, norm_type, factor):
    # max and min have no identity: torch refuses an empty gradient under the inf norm
    shapes = [s for s in SHAPES if s != (0,)] if norm_type == INF else SHAPES
    grads = _gradients(seed, dtype, shapes)
    reference_total = float(tnu.get_total_norm([torch.from_numpy(g) for g in grads
                                                if g is not None], norm_type))
    max_norm = factor * reference_total
    theirs_p, ours_p = _torch_params(grads), _our_params(backend, grads)
    theirs = _outcome(tnu.clip_grad_norm_, theirs_p, max_norm, norm_type)
    ours = _outcome(utils.clip_grad_norm_, ours_p, max_norm, norm_type)
    exact = backend is TestBackend.TORCH or norm_type in EXACT_NORMS
    _compare((ours, _grads_of(ours_p)), (theirs, _grads_of(theirs_p)), dtype, exact)


@pytest.mark.parametrize("foreach", [None, False])
@pytest.mark.parametrize("norm_type", [INF, -INF, -1.0, -2.5])
def test_empty_gradient_errors_match(backend, norm_type, foreach):
    grads = _gradients(0, "float64", none_at=1)  # keeps the empty one
    theirs_p, ours_p = _torch_params(grads), _our_params(backend, grads)
    theirs = _outcome(tnu.clip_grad_norm_, theirs_p, 1.0, norm_type, foreach=foreach)
    ours = _outcome(utils.clip_grad_norm_, ours_p, 1.0, norm_type, foreach=foreach)
    assert theirs[0] is not None and ours[0] == theirs[0]
    for c, r in zip(_grads_of(ours_p), grads):
        if r is not None:
            _same(c, r)


@pytest.mark.parametrize("error_if_nonfinite", [False, True])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("norm_type", [2.0, INF, 1.0])
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # NumPy's inf * 0
def test_non_finite_gradients(backend, norm_type, bad, error_if_nonfinite):
    shapes = [(3, 4), (), (5,)]
    grads = _gradients(3, "float32", shapes, none_at=1)
    grads[2][1] = bad
    theirs_p, ours_p = _torch_params(grads), _our_params(backend, grads)
    theirs = _outcome(tnu.clip_grad_norm_, theirs_p, 1.0, norm_type,
                      error_if_nonfinite=error_if_nonfinite)
    ours = _outcome(utils.clip_grad_norm_, ours_p, 1.0, norm_type,
                    error_if_nonfinite=error_if_nonfinite)
    # the coefficient is 0 (an infinite norm) or NaN: the same values on every backend
    _compare((ours, _grads_of(ours_p)), (theirs, _grads_of(theirs_p)), "float32", exact=True)
    if error_if_nonfinite:
        assert ours[0] is not None
        for c, r in zip(_grads_of(ours_p), grads):
            if r is not None:
                _same(c, r)


@pytest.mark.parametrize("norm_type", [1.0, 2.0, INF])
def test_mixed_dtypes(backend, norm_type):
    """float32 and float64 gradients in one call: the total is float64. torch sums the
    norms grouped by dtype, portopt in list order, so the float32 bound applies."""
    g32 = _gradients(4, "float32", [(3, 4), (7,), ()], none_at=2)
    g64 = _gradients(5, "float64", [(5,), (2, 3), ()], none_at=2)
    grads = [g32[0], g64[0], g32[1], g64[1]]
    total = float(tnu.get_total_norm([torch.from_numpy(g) for g in grads], norm_type))
    theirs_p, ours_p = _torch_params(grads), _our_params(backend, grads)
    theirs = _outcome(tnu.clip_grad_norm_, theirs_p, 0.5 * total, norm_type)
    ours = _outcome(utils.clip_grad_norm_, ours_p, 0.5 * total, norm_type)
    _compare((ours, _grads_of(ours_p)), (theirs, _grads_of(theirs_p)), "float32",
             exact=norm_type == INF)


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_complex_gradients(backend, dtype):
    rng = np.random.default_rng(6)
    grads = [np.asarray(rng.standard_normal(s) + 1j * rng.standard_normal(s), dtype=dtype)
             for s in [(4, 3), (), (6,)]]
    theirs_p, ours_p = _torch_params(grads), _our_params(backend, grads)
    theirs = _outcome(tnu.clip_grad_norm_, theirs_p, 0.5)
    ours = _outcome(utils.clip_grad_norm_, ours_p, 0.5)
    _compare((ours, _grads_of(ours_p)), (theirs, _grads_of(theirs_p)), dtype,
             exact=backend is TestBackend.TORCH)
    theirs = _outcome(tnu.clip_grad_value_, theirs_p, 0.5)
    ours = _outcome(utils.clip_grad_value_, ours_p, 0.5)
    assert ours[0] == theirs[0] and ours[0] is not None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_torch_tensors(dtype):
    grads = [torch.from_numpy(g).to(dtype) for g in _gradients(7, "float32", none_at=2)
             if g is not None]
    theirs_p = [torch.zeros_like(g, requires_grad=True) for g in grads]
    ours_p = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for t, o, g in zip(theirs_p, ours_p, grads):
        t.grad, o.grad = g.clone(), g.clone()
    theirs = tnu.clip_grad_norm_(theirs_p, 0.1)
    ours = utils.clip_grad_norm_(ours_p, 0.1)
    assert torch.equal(ours, theirs) and ours.dtype == theirs.dtype
    for o, t in zip(ours_p, theirs_p):
        assert torch.equal(o.grad, t.grad)


def test_no_gradients(backend):
    theirs = tnu.clip_grad_norm_(_torch_params([None, None]), 1.0)
    ours = utils.clip_grad_norm_(_our_params(backend, [None, None]), 1.0)
    _same(_numpy(ours), theirs.numpy())
    _same(np.asarray(utils.clip_grad_norm_([], 1.0)), tnu.clip_grad_norm_([], 1.0).numpy())
    _same(np.asarray(utils.get_total_norm([])), tnu.get_total_norm([]).numpy())


def test_the_empty_generator_warning_matches(backend):
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        tnu.clip_grad_norm_((p for p in []), 1.0)
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        utils.clip_grad_norm_((p for p in []), 1.0)
    assert [(w.category, str(w.message)) for w in ours] == \
           [(w.category, str(w.message)) for w in theirs]
    assert ours[0].filename == __file__  # points at the caller, as torch's does


# -- the two halves ------------------------------------------------------------------------


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("mixed", [False, True], ids=["one-dtype", "mixed-dtypes"])
def test_clip_grads_with_norm_is_bit_exact_given_the_total(backend, norm_type, mixed):
    grads = _gradients(8, "float32", none_at=0)
    if mixed:  # float64 gradients next to float32 ones, and a 0-d one of each
        grads[1] = np.asarray(grads[1], dtype=np.float64)
        grads[3] = np.asarray(grads[3], dtype=np.float64)
    present = [torch.from_numpy(g) for g in grads if g is not None]
    total = tnu.get_total_norm(present, norm_type)
    for fraction in (0.01, 0.7, 1.5):
        theirs_p, ours_p = _torch_params(grads), _our_params(backend, grads)
        tnu.clip_grads_with_norm_(theirs_p, fraction * float(total), total)
        utils.clip_grads_with_norm_(ours_p, fraction * float(total),
                                    backend.array(total.numpy()))
        for c, r in zip(_grads_of(ours_p), _grads_of(theirs_p)):
            if r is not None:
                _same(c, r)


@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=lambda n: f"p{n:g}")
def test_get_total_norm(backend, norm_type):
    shapes = [s for s in SHAPES if s != (0,)] if norm_type == INF else SHAPES
    grads = [g for g in _gradients(9, "float64", shapes) if g is not None]
    theirs = tnu.get_total_norm([torch.from_numpy(g) for g in grads], norm_type)
    ours = utils.get_total_norm([backend.array(g) for g in grads], norm_type)
    if backend is TestBackend.TORCH or norm_type in EXACT_NORMS:
        _same(_numpy(ours), theirs.numpy())
    else:
        _close(_numpy(ours), theirs.numpy(), "float64")


def test_integer_arrays_have_no_norm(backend):
    ints = np.array([1, 2], dtype=np.int64)
    theirs = _outcome(tnu.get_total_norm, [torch.from_numpy(ints)])
    ours = _outcome(utils.get_total_norm, [backend.array(ints)])
    assert theirs[0][0] is ours[0][0] is RuntimeError
    # torch names the dtype its own way (Long); the rest of the message is the same
    assert ours[0][1].rsplit(" ", 1)[0] == theirs[0][1].rsplit(" ", 1)[0]


def test_sparse_gradients(backend):
    indices = np.array([[0, 3, 0, 1]])
    values = np.random.default_rng(10).standard_normal((4, 2)).astype(np.float32)
    theirs_p = torch.zeros(4, 2, requires_grad=True)
    theirs_p.grad = torch.sparse_coo_tensor(torch.from_numpy(indices), torch.from_numpy(values),
                                            (4, 2), check_invariants=True)
    ours_p = backend.param(np.zeros((4, 2), dtype=np.float32))
    if backend is TestBackend.TORCH:
        ours_p.grad = theirs_p.grad.clone()
    else:
        ours_p.grad = SparseGrad(backend.array(indices), backend.array(values), (4, 2))
    for fn, args in [("clip_grad_norm_", (1.0,)), ("clip_grad_value_", (1.0,))]:
        theirs = _outcome(getattr(tnu, fn), [theirs_p], *args)
        ours = _outcome(getattr(utils, fn), [ours_p], *args)
        assert theirs[0][0] is NotImplementedError and ours[0][0] is NotImplementedError
    total = torch.tensor(3.5)
    tnu.clip_grads_with_norm_([theirs_p], 1.0, total)
    utils.clip_grads_with_norm_([ours_p], 1.0, backend.array(total.numpy()))
    ours_values = ours_p.grad._values() if backend is TestBackend.TORCH else ours_p.grad.values
    _same(_numpy(ours_values), theirs_p.grad._values().numpy())


# -- clip_grad_value_ ----------------------------------------------------------------------


@pytest.mark.parametrize("clip_value", [0.1, 1.0, 0.0, -0.5, 1e30, np.nan])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_clip_grad_value(backend, dtype, clip_value):
    grads = _gradients(11, dtype)
    grads[0][0, 1], grads[0][2, 3] = np.nan, -np.inf
    theirs_p, ours_p = _torch_params(grads), _our_params(backend, grads)
    tnu.clip_grad_value_(theirs_p, clip_value)
    assert utils.clip_grad_value_(ours_p, clip_value) is None
    for c, r in zip(_grads_of(ours_p), _grads_of(theirs_p)):
        assert (c is None) == (r is None)
        if r is not None:
            _same(c, r)
