"""Muon: bfloat16 rounding, the kernel on every backend, the class against torch.optim.Muon.

Hand-derived steps use ``ns_steps=0`` or the polynomial ``(a, b, c) = (1, 1, 0)`` and
gradients whose norms are simple, and round with :func:`_bf16` below (an independent
rounding: 8 significant bits from ``math.frexp``, ties to even).
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from helpers import check_result

import portopt
from portopt import SparseGrad
from portopt.optim._muon import Muon, MuonState, muon, muon_init, round_to_bf16

DTYPES = ["float32", "float64"]
PLAIN = {"weight_decay": 0.0, "momentum": 0.0, "nesterov": False, "ns_steps": 0}
STEP_ERRORS = [  # torch's step-time errors, in torch's words
    ({"ns_steps": 100}, ValueError,
     "Number of steps must be less than 100 for computational efficiency"),
    ({"ns_coefficients": (1.0, 2.0)}, ValueError, "Coefficients must be a tuple of exactly 3 values"),
    ({"eps": 1e39}, RuntimeError, "value cannot be converted to type c10::BFloat16 without overflow"),
]


def _bf16(v: float) -> float:
    """The bfloat16 nearest to ``v`` (normal range), by hand."""
    if v == 0 or not math.isfinite(v):
        return v
    m, e = math.frexp(v)  # v = m * 2**e with 0.5 <= |m| < 1: 8 bits are m * 256
    return round(m * 256) / 256 * 2.0 ** e


def _f32(bits: int) -> float:
    return float(np.array(bits, dtype=np.uint32).view(np.float32))


# -- rounding to bfloat16 ------------------------------------------------------------------

BF16_MAX = _f32(0x7F7F0000)
TIES = [  # (float32 value, its bfloat16 rounding), worked out by hand
    (1 + 2**-8, 1.0),                       # halfway, the even neighbour is below
    (1 + 3 * 2**-8, 1 + 2**-6),             # halfway, the even neighbour is above
    (-(1 + 2**-8), -1.0),
    (1 + 2**-8 + 2**-20, 1 + 2**-7),        # just above halfway
    (2**-126 * (1 + 2**-8), 2**-126),       # smallest normal
    (2**-134, 0.0),                         # halfway between 0 and the smallest subnormal
    (3 * 2**-134, 2**-132),                 # subnormal tie to even
    (BF16_MAX, BF16_MAX),
    (_f32(0x7F7F7FFF), BF16_MAX),           # just below the tie with infinity
    (_f32(0x7F7F8000), math.inf),           # tie: the even neighbour is infinity
    (float(np.finfo(np.float32).max), math.inf),
    (math.inf, math.inf), (-math.inf, -math.inf), (0.0, 0.0), (-0.0, -0.0),
]


def test_round_to_bf16_ties_by_hand(lib):
    values, expected = zip(*TIES)
    out = round_to_bf16(lib.asarray(values + (math.nan,), "float32"))
    check_result(out, lib.asarray(values + (math.nan,), "float32"))
    got = lib.numpy(out)
    np.testing.assert_array_equal(got[:-1], expected)
    np.testing.assert_array_equal(np.signbit(got[:-1]), np.signbit(expected))
    assert np.isnan(got[-1])


def test_round_to_bf16_matches_torch(lib, torch):
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size=100_000, dtype=np.uint64).astype(np.uint32)
    subnormal = rng.integers(0, 2**23, size=20_000, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([bits, subnormal, subnormal | np.uint32(2**31)]).view(np.float32)
    expected = torch.from_numpy(x.copy()).to(torch.bfloat16).float().numpy()
    with np.errstate(invalid="ignore"):  # signaling NaNs among the random bits
        got = lib.numpy(round_to_bf16(lib.asarray(x)))
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan], expected[~nan])
    np.testing.assert_array_equal(np.signbit(got[~nan]), np.signbit(expected[~nan]))


def test_float64_rounds_through_float32_as_torch(lib, torch):
    # 1 + 2**-8 is a bfloat16 tie; a hair above it, float64 rounds up to 1 + 2**-7, but
    # torch first rounds to float32 (landing on the tie) and then to even: 1.0
    g = [[(1 + 2**-8) * (1 + 2**-40), 1.0]]
    p = lib.asarray([[0.0, 0.0]], "float64")
    new, _ = muon(p, lib.asarray(g, "float64"), muon_init(p), lr=1.0, **PLAIN)
    n = _bf16(math.sqrt(2))  # both entries became 1.0
    np.testing.assert_array_equal(lib.numpy(new), [[-_bf16(1 / n)] * 2])
    tp = torch.zeros(1, 2, dtype=torch.float64)
    tp.grad = torch.tensor(g, dtype=torch.float64)
    torch.optim.Muon([tp], lr=1.0, **PLAIN).step()
    np.testing.assert_array_equal(lib.numpy(new), tp.numpy())


# -- the kernel, by hand ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_first_step_by_hand(lib, dtype):
    p, g = lib.asarray([[1.0, 2.0]], dtype), lib.asarray([[3.0, 4.0]], dtype)
    state = muon_init(p)
    new, st = muon(p, g, state, lr=0.5, weight_decay=0.5, momentum=0.5, nesterov=False,
                   ns_steps=0)
    check_result(new, p)
    check_result(st.momentum_buffer, p)
    # buf = g / 2 = [1.5, 2], norm 2.5: X = bf16([0.6, 0.8]) = [154/256, 205/256];
    # p * (1 - 0.5 * 0.5) - 0.5 * X  (a 1 x 2 matrix needs no lr adjustment)
    np.testing.assert_array_equal(lib.numpy(st.momentum_buffer), [[1.5, 2.0]])
    np.testing.assert_array_equal(lib.numpy(new), [[0.75 - 77 / 256, 1.5 - 205 / 512]])
    # nothing was mutated
    np.testing.assert_array_equal(lib.numpy(p), [[1.0, 2.0]])
    np.testing.assert_array_equal(lib.numpy(g), [[3.0, 4.0]])
    assert not lib.numpy(state.momentum_buffer).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_newton_schulz_step_rounds_in_bf16(lib, dtype):
    p = lib.asarray([[0.0, 0.0]], dtype)
    new, _ = muon(p, lib.asarray([[3.0, 4.0]], dtype), muon_init(p), lr=1.0,
                  **{**PLAIN, "ns_steps": 1}, ns_coefficients=(1.0, 1.0, 0.0))
    # X = [154/256, 205/256]; X X^T = 1.00312... rounds to 1.0 in bfloat16, so the
    # step X + (X X^T) X gives exactly 2 X (unrounded it would be 2.0031 X)
    np.testing.assert_array_equal(lib.numpy(new), [[-154 / 128, -205 / 128]])


@pytest.mark.parametrize("fn, scale", [(None, 2.0), ("original", 2.0),
                                       ("match_rms_adamw", 0.2 * 2.0)])
def test_tall_matrix_and_lr_adjustment_by_hand(lib, fn, scale):
    p = lib.asarray(np.zeros((4, 1)), "float64")
    g = lib.asarray([[3.0], [4.0], [0.0], [0.0]], "float64")
    new, _ = muon(p, g, muon_init(p), lr=0.5, adjust_lr_fn=fn, **PLAIN)
    # 4 x 1: transposed for the iteration and back; sqrt(4 / 1) = 2, 0.2 * sqrt(4) = 0.4
    expected = -0.5 * scale * np.array([[154 / 256], [205 / 256], [0.0], [0.0]])
    np.testing.assert_allclose(lib.numpy(new), expected, rtol=1e-15, atol=0)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_by_hand(lib, nesterov):
    p = lib.asarray([[0.0, 0.0]], "float64")
    kw = dict(lr=1.0, weight_decay=0.0, momentum=0.5, nesterov=nesterov, ns_steps=0)
    p1, s1 = muon(p, lib.asarray([[4.0, 0.0]], "float64"), muon_init(p), **kw)
    np.testing.assert_array_equal(lib.numpy(s1.momentum_buffer), [[2.0, 0.0]])
    np.testing.assert_array_equal(lib.numpy(p1), [[-1.0, 0.0]])  # any scale normalizes to 1
    p2, s2 = muon(p1, lib.asarray([[0.0, 6.0]], "float64"), s1, **kw)
    # buf = [2, 0] + 0.5 ([0, 6] - [2, 0]) = [1, 3]; nesterov: g + 0.5 (buf - g) = [0.5, 4.5]
    np.testing.assert_array_equal(lib.numpy(s2.momentum_buffer), [[1.0, 3.0]])
    u = [0.5, 4.5] if nesterov else [1.0, 3.0]
    n = _bf16(math.hypot(*u))
    np.testing.assert_array_equal(lib.numpy(p2), [[-1.0 - _bf16(u[0] / n), -_bf16(u[1] / n)]])


def test_zero_gradient_only_decays(lib):
    p = lib.asarray([[2.0, -4.0], [1.0, 0.5]], "float32")
    new, _ = muon(p, lib.asarray(np.zeros((2, 2)), "float32"), muon_init(p), lr=0.5,
                  weight_decay=0.5)
    # norm 0 is clamped to eps: the orthogonalized update is 0
    np.testing.assert_array_equal(lib.numpy(new), [[1.5, -3.0], [0.75, 0.375]])


def test_eps_bounds_the_norm(lib):
    p = lib.asarray([[0.0, 0.0]], "float64")
    new, _ = muon(p, lib.asarray([[0.03, 0.04]], "float64"), muon_init(p), lr=1.0,
                  **{**PLAIN, "eps": 1.0})
    # norm 0.05 < eps = 1: the update is bf16(g) / 1
    np.testing.assert_array_equal(lib.numpy(new), [[-_bf16(0.03), -_bf16(0.04)]])


def test_nan_gradient_spreads_to_the_whole_matrix(lib):
    p = lib.asarray(np.ones((2, 2)), "float32")
    new, _ = muon(p, lib.asarray([[math.nan, 1.0], [2.0, 3.0]], "float32"), muon_init(p),
                  lr=0.1)
    assert np.isnan(lib.numpy(new)).all()


def test_empty_matrices(lib):
    p = lib.asarray(np.zeros((0, 3)), "float32")
    new, st = muon(p, lib.asarray(np.zeros((0, 3)), "float32"), muon_init(p), lr=0.1)
    check_result(new, p)
    check_result(st.momentum_buffer, p)
    # the lr adjustment divides rows by columns: torch fails there too (checked below)
    q = lib.asarray(np.zeros((3, 0)), "float32")
    with pytest.raises(ZeroDivisionError):
        muon(q, q, muon_init(q), lr=0.1)
    new, _ = muon(q, q, muon_init(q), lr=0.1, adjust_lr_fn="match_rms_adamw")
    check_result(new, q)


def test_torch_fails_on_matrices_without_columns(torch):
    p = torch.zeros(3, 0)
    p.grad = torch.zeros(3, 0)
    with pytest.raises(ZeroDivisionError):
        torch.optim.Muon([p]).step()


@pytest.mark.parametrize("kwargs, exc, message", STEP_ERRORS)
def test_kernel_errors(lib, kwargs, exc, message):
    p = lib.asarray(np.ones((2, 2)), "float32")
    with pytest.raises(exc, match=f"^{message}$"):
        muon(p, p, muon_init(p), lr=0.1, **kwargs)


@pytest.mark.parametrize("shape", [(), (3,), (2, 2, 2)])
def test_kernel_refuses_non_matrices(lib, shape):
    p = lib.asarray(np.ones(shape), "float32")
    with pytest.raises(ValueError, match="^Param gradient must be a 2D matrix$"):
        muon(p, p, muon_init(p), lr=0.1)


# -- the kernel against torch ----------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 5), (5, 1), (4, 3), (3, 6), (8, 8), (16, 16), (10, 20)])
def test_kernel_matches_torch_bit_for_bit(lib, torch, shape):
    """Up to m*n*k = 4096 per product, the emulation rounds exactly where torch does."""
    rng = np.random.default_rng(sum(shape))
    p0 = rng.standard_normal(shape).astype(np.float32)
    grads = [rng.standard_normal(shape).astype(np.float32) * 10.0 ** k for k in (-3, 0, 2)]
    tp = torch.from_numpy(p0.copy())
    ref = torch.optim.Muon([tp], lr=0.05, weight_decay=0.1)
    p, state = lib.asarray(p0), muon_init(lib.asarray(p0))
    for g in grads:
        tp.grad = torch.from_numpy(g)
        ref.step()
        p, state = muon(p, lib.asarray(g), state, lr=0.05, weight_decay=0.1)
        np.testing.assert_array_equal(lib.numpy(p), tp.numpy())
        np.testing.assert_array_equal(lib.numpy(state.momentum_buffer),
                                      ref.state[tp]["momentum_buffer"].numpy())


def test_kernel_large_matrix_close_to_torch(lib, torch):
    """Beyond m*n*k = 4096 torch's oneDNN sums in its own blocked order: the emulation
    can differ in the last bfloat16 bit of a few elements, which the iteration spreads."""
    rng = np.random.default_rng(1)
    p0, g = (rng.standard_normal((48, 32)).astype(np.float32) for _ in range(2))
    tp = torch.from_numpy(p0.copy())
    tp.grad = torch.from_numpy(g)
    torch.optim.Muon([tp], lr=0.05).step()
    new, _ = muon(lib.asarray(p0), lib.asarray(g), muon_init(lib.asarray(p0)), lr=0.05)
    ratio = math.sqrt(48 / 32)
    np.testing.assert_allclose(lib.numpy(new), tp.numpy(), rtol=0, atol=0.05 * ratio * 2**-7)


# -- the class against torch.optim.Muon ----------------------------------------------------

def _params(kind, torch, shapes, dtype="float32"):
    """Parameters of one kind ("torch.optim", "numpy", "torch") with gradients set."""
    rng = np.random.default_rng(3)
    out = []
    for shape in shapes:
        v, g = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
        if kind == "numpy":
            p = portopt.Parameter(v)
            p.grad = g
        else:
            p = torch.from_numpy(v)
            p.grad = torch.from_numpy(g)
        out.append(p)
    return out


def _value(p):
    p = p.data if isinstance(p, portopt.Parameter) else p
    return np.array(p.detach().numpy() if hasattr(p, "detach") else p)


def _cls(kind, torch):
    return torch.optim.Muon if kind == "torch.optim" else Muon


KINDS = ["torch.optim", "numpy", "torch"]


def test_signature_and_defaults_match_torch(torch):
    def shape(cls):
        return [(q.name, q.kind, q.default)
                for q in inspect.signature(cls.__init__).parameters.values()]

    assert shape(Muon) == shape(torch.optim.Muon)
    p, tp = _params("numpy", torch, [(2, 2)])[0], _params("torch", torch, [(2, 2)])[0]
    assert Muon([p]).defaults == torch.optim.Muon([tp]).defaults
    assert Muon._supports_complex is False


@pytest.mark.parametrize("kind", KINDS)
def test_tensor_lr_must_have_one_element(torch, kind):
    lr = torch.tensor([0.1, 0.2]) if kind != "numpy" else np.array([0.1, 0.2])
    with pytest.raises(ValueError, match="^Tensor lr must be 1-element$"):
        _cls(kind, torch)(_params(kind, torch, [(2, 2)]), lr=lr)


@pytest.mark.parametrize("kind", KINDS)
def test_non_matrix_added_later_fails_at_step(torch, kind):
    opt = _cls(kind, torch)(_params(kind, torch, [(2, 2)]))
    (vector,) = _params(kind, torch, [(3,)])
    opt.add_param_group({"params": [vector]})  # torch does not check here
    before = [_value(p) for g in opt.param_groups for p in g["params"]]
    with pytest.raises(ValueError, match="^Param gradient must be a 2D matrix$"):
        opt.step()
    if kind != "torch.optim":  # portopt changes nothing when a step fails
        assert not opt.state
        for p, b in zip((p for g in opt.param_groups for p in g["params"]), before):
            np.testing.assert_array_equal(_value(p), b)


@pytest.mark.parametrize("kwargs, exc, message", STEP_ERRORS)
@pytest.mark.parametrize("kind", KINDS)
def test_step_errors_match_torch(torch, kind, kwargs, exc, message):
    params = _params(kind, torch, [(2, 2), (2, 3)])
    opt = _cls(kind, torch)(params, **kwargs)
    with pytest.raises(exc, match=f"^{message}$"):
        opt.step()


@pytest.mark.parametrize("kind", KINDS)
def test_complex_and_sparse_refused_at_step(torch, kind):
    params = _params(kind, torch, [(2, 2)], dtype="complex64")
    opt = _cls(kind, torch)(params)
    with pytest.raises(RuntimeError, match="^Muon does not support complex parameters$"):
        opt.step()
    (p,) = _params(kind, torch, [(3, 2)])
    if kind == "numpy":
        p.grad = SparseGrad(np.array([[0, 2]]), np.ones((2, 2), np.float32), (3, 2))
    else:
        p.grad = torch.sparse_coo_tensor([[0, 2]], torch.ones(2, 2), (3, 2),
                                         check_invariants=True)
    with pytest.raises(RuntimeError, match="^Muon does not support sparse gradients$"):
        _cls(kind, torch)([p]).step()


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_state_and_trajectory_match_torch(torch, kind):
    shapes = [(4, 3), (3, 5), (2, 2)]
    ref_params, params = _params("torch.optim", torch, shapes), _params(kind, torch, shapes)
    for ps in (ref_params, params):
        ps[2].grad = None  # no grad: no state, as in torch
    ref = torch.optim.Muon(ref_params, lr=0.02, nesterov=False)
    opt = Muon(params, lr=0.02, nesterov=False)
    assert not opt.state and not ref.state  # lazy
    for _ in range(3):
        ref.step()
        opt.step()
    for p, rp in zip(params, ref_params):
        np.testing.assert_array_equal(_value(p), rp.numpy())
    assert [sorted(opt.state[p]) for p in params[:2]] == [["momentum_buffer"]] * 2
    assert [sorted(ref.state[p]) for p in ref_params[:2]] == [["momentum_buffer"]] * 2
    assert params[2] not in opt.state
    for p, rp in zip(params[:2], ref_params[:2]):
        np.testing.assert_array_equal(_value(opt.state[p]["momentum_buffer"]),
                                      ref.state[rp]["momentum_buffer"].numpy())
    sd, ref_sd = opt.state_dict(), ref.state_dict()
    assert sd["param_groups"] == ref_sd["param_groups"]
    assert sorted(sd["state"]) == sorted(ref_sd["state"]) == [0, 1]


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_state_dict_round_trip_through_torch(torch, kind):
    shapes = [(4, 3), (3, 5)]
    ref_params, params = _params("torch.optim", torch, shapes), _params(kind, torch, shapes)
    ref, opt = torch.optim.Muon(ref_params, lr=0.02), Muon(params, lr=0.02)
    ref.step()
    opt.step()
    # portopt -> torch -> portopt, then both continue
    middle = torch.optim.Muon([torch.from_numpy(_value(p)) for p in params], lr=0.02)
    from portopt.checkpoint import to_torch

    middle.load_state_dict(to_torch(opt.state_dict()))
    fresh = Muon(params, lr=0.02)
    fresh.load_state_dict(middle.state_dict())
    assert isinstance(MuonState(**fresh.state[params[0]]), MuonState)
    ref.step()
    fresh.step()
    for p, rp in zip(params, ref_params):
        np.testing.assert_array_equal(_value(p), rp.numpy())
