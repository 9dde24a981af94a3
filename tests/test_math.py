"""torch's fused elementwise forms, checked against exact rational arithmetic.

A fused multiply-add rounds ``a * b + c`` once. The oracle computes the exact value with
``fractions.Fraction`` and rounds it to the nearest float32 (ties to even) by hand.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from portopt.optim import _math


def _nearest_float32(x: Fraction) -> np.float32:
    """Round an exact rational to the nearest float32, ties to even."""
    guess = np.float32(float(x))
    candidates = [np.nextafter(guess, np.float32(-np.inf)), guess,
                  np.nextafter(guess, np.float32(np.inf))]
    best = min(candidates, key=lambda c: (abs(Fraction(float(c)) - x),
                                          int(np.array(c).view(np.int32)) & 1))
    return np.float32(best)


def _exact_fma32(a: float, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.array([_nearest_float32(Fraction(float(a)) * Fraction(float(bi)) + Fraction(float(ci)))
                     for bi, ci in zip(b.ravel(), c.ravel())], dtype=np.float32).reshape(b.shape)


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    return (rng.standard_normal(2000).astype(np.float32),
            rng.standard_normal(2000).astype(np.float32))


def test_nearest_float32_oracle_rounds_ties_to_even():
    one = Fraction(1)
    ulp = Fraction(2) ** -23
    assert _nearest_float32(one + ulp / 2) == np.float32(1.0)          # tie -> even (1.0)
    assert _nearest_float32(one + ulp + ulp / 2) == np.float32(1 + 2 * float(ulp))  # tie -> even
    assert _nearest_float32(one + ulp / 2 + Fraction(1, 2**60)) == np.float32(1 + float(ulp))


@pytest.mark.parametrize("alpha", [0.1, -0.01, 0.9, 3.0])
def test_add_scaled_rounds_once_in_float32(data, alpha):
    a, b = data
    out = _math.add_scaled(a, b, alpha)
    assert out.dtype == np.float32
    expected = _exact_fma32(float(np.float32(alpha)), b, a)
    np.testing.assert_array_equal(out, expected)
    # and differs from two roundings somewhere, or the test would prove nothing
    assert np.any(out != a + np.float32(alpha) * b)


@pytest.mark.parametrize("weight", [0.1, 0.001, 0.7, 0.999])
def test_lerp_follows_torchs_two_forms(data, weight):
    start, end = data
    out = _math.lerp(start, end, weight)
    w = float(np.float32(weight))
    diff = end - start  # rounded in float32, as torch does
    if w < 0.5:
        expected = _exact_fma32(w, diff, start)
    else:
        expected = _exact_fma32(float(np.float32(w - 1)), diff, end)
    np.testing.assert_array_equal(out, expected)


def test_lerp_is_exact_at_both_ends():
    start = np.array([1.0, -3.0, 1e30], dtype=np.float64)
    end = np.array([2.0, 7.0, -1e-30], dtype=np.float64)
    np.testing.assert_array_equal(_math.lerp(start, end, 0.0), start)
    np.testing.assert_array_equal(_math.lerp(start, end, 1.0), end)


@pytest.mark.parametrize("value", [0.001, 0.1, 0.3])
def test_addcmul_rounds_value_times_t1_then_fuses(data, value):
    a, t1 = data
    t2 = t1[::-1].copy()
    out = _math.addcmul(a, t1, t2, value)
    scaled = np.float32(value) * t1  # torch rounds value * t1 first
    expected = np.array([_nearest_float32(Fraction(float(s)) * Fraction(float(y)) + Fraction(float(x)))
                         for s, y, x in zip(scaled, t2, a)], dtype=np.float32)
    np.testing.assert_array_equal(out, expected)


def test_float64_and_complex_use_plain_arithmetic():
    a = np.array([1.0, 2.0])
    b = np.array([3.0, -4.0])
    np.testing.assert_array_equal(_math.add_scaled(a, b, 0.5), a + 0.5 * b)
    c = np.array([1 + 1j, 2 - 1j])
    np.testing.assert_array_equal(_math.add_scaled(c, c, 0.5), c + 0.5 * c)


def test_huge_scalars_overflow_to_infinity_like_a_cast():
    out = _math.add_scaled(np.ones(2, dtype=np.float32), np.ones(2, dtype=np.float32), 1e39)
    assert np.all(np.isinf(out))


def test_the_helpers_match_torch_bit_for_bit(torch, data):
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("torch was started without vector kernels, so it does not fuse here")
    a, b = data
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    np.testing.assert_array_equal(_math.add_scaled(a, b, -0.1), ta.add(tb, alpha=-0.1).numpy())
    np.testing.assert_array_equal(_math.lerp(a, b, 0.1), ta.lerp(tb, 0.1).numpy())
    np.testing.assert_array_equal(_math.lerp(a, b, 0.9), ta.lerp(tb, 0.9).numpy())
    np.testing.assert_array_equal(_math.addcmul(a, b, a, 0.01),
                                  ta.addcmul(tb, ta, value=0.01).numpy())


def test_torch_tensors_use_torchs_own_ops(torch):
    a = torch.randn(100, dtype=torch.float64)
    b = torch.randn(100, dtype=torch.float64)
    assert torch.equal(_math.add_scaled(a, b, 0.3), a.add(b, alpha=0.3))
    assert torch.equal(_math.lerp(a, b, 0.7), a.lerp(b, 0.7))
    assert torch.equal(_math.addcmul(a, b, b, 0.2), a.addcmul(b, b, value=0.2))


def test_spow_rounds_a_double_pow_to_the_base_dtype():
    base = np.asarray(0.9, dtype=np.float32)
    for step in range(1, 50):
        assert _math.spow(base, float(step)) == np.float32(float(np.float32(0.9)) ** step)
    assert _math.spow(0.5, 2.0) == 0.25


def test_spow_matches_torch(torch):
    for step in (3.0, 4.0, 17.0, 123.0):
        expected = (torch.tensor(0.9) ** step).item()
        assert float(_math.spow(np.asarray(0.9, dtype=np.float32), step)) == expected


def test_rdiv_is_reciprocal_times_number_for_arrays():
    d = np.asarray(0.30000001, dtype=np.float32)
    assert _math.rdiv(0.01, d) == (np.float32(1) / d) * np.float32(0.01)
    assert _math.rdiv(1.0, 4.0) == 0.25


def test_host_turns_scalars_into_python_floats():
    assert type(_math.host(np.float64(0.5))) is float
    assert type(_math.host(np.asarray(0.5, dtype=np.float32))) is float
    assert type(_math.host(2)) is float


def test_host_keeps_tensors_that_require_grad(torch):
    t = torch.tensor(0.5, requires_grad=True)
    assert _math.host(t) is t  # autograd can reach it
