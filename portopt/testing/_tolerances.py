"""The one tolerance table of the conformance suite, and the error measures it reports.

An element passes when ``|candidate - reference| <= rtol * |reference| + atol``. The
reported *relative error* of an array is ``max |c - r| / (|r| + atol / rtol)``: the
plain relative error wherever ``|r|`` is well above ``atol / rtol``, and an error
measured against that floor near zero (where cancellation, not the algorithm, decides
the last digits). An array passes exactly when its relative error is ``<= rtol``.
For float32 the worst error is also given in ULPs of the reference value (of the floor,
for values below it).

Why these numbers: portopt reproduces torch's fused multiply-adds (exactly in float32,
see ``optim/_math.py``), so sqrt-free float32 trajectories such as SGD's are bit-exact.
What remains is torch's CPU ``sqrt``, which is not correctly rounded (an ULP on a
fraction of elements), the FMA of float64 off torch, and 0-d corner cases of torch's
type promotion; over the suite's 16 steps the worst measured float32 error is 5 ULP and
the worst float64 error 6e-15. The float32 bound allows about 5 ULP per step, the
float64 bound is the one the project promises.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float


TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(rtol=5e-6, atol=5e-7),
    "complex64": Tolerance(rtol=5e-6, atol=5e-7),
    "float64": Tolerance(rtol=1e-12, atol=1e-13),
    "complex128": Tolerance(rtol=1e-12, atol=1e-13),
}


#: Entries for one optimizer, where its algorithm cannot reach the table above; each
#: with the reason and what was measured (suite seed 0, 16 steps, numpy and strict;
#: on torch tensors both are exact).
OPTIMIZER_TOLERANCES: dict[str, dict[str, Tolerance]] = {
    # RMSprop with momentum: the buffer grows to 20-30, then cancels towards 0, keeping
    # an absolute error of about one ULP of its peak from torch's 1-ULP sqrt: an error
    # the relative floor of 0.1 counts as large. The floor goes to 1 (worst seen 1.4e-6).
    "RMSprop": {"float32": Tolerance(rtol=5e-6, atol=5e-6)},
    # LBFGS sums dot products in BLAS order (torch: MKL), and its history (ro, al, y
    # near convergence) is dominated by rounding noise that the two-loop recursion and
    # line search amplify. torch against itself from parameters 1 ULP apart diverges
    # likewise: up to 29 (relative, with an n_iter flip) in float32 and 4e-9 in float64
    # over the suite's LBFGS cases. Measured here: float32 2.9e-2, float64 1.1e-9,
    # complex128 2.3e-8 (other seeds reach 5e-8 in float64 and flip branches in float32).
    "LBFGS": {"float32": Tolerance(rtol=1e-1, atol=1e-2),
              "float64": Tolerance(rtol=1e-7, atol=1e-8),
              "complex128": Tolerance(rtol=1e-6, atol=1e-7)},
}


def tolerance_for(dtype: str, optimizer: str | None = None) -> Tolerance:
    """The tolerance of ``dtype``, or ``optimizer``'s own entry where it has one."""
    return OPTIMIZER_TOLERANCES.get(optimizer or "", {}).get(dtype) or TOLERANCES[dtype]


@dataclass
class ErrorMeasure:
    """Worst errors seen so far in one comparison run."""

    rel: float = 0.0
    ulp: float = 0.0

    def update(self, other: ErrorMeasure) -> None:
        """Keep the worse of this measure and ``other``, field by field."""
        self.rel = max(self.rel, other.rel)
        self.ulp = max(self.ulp, other.ulp)


def measure(candidate: np.ndarray, reference: np.ndarray, tol: Tolerance) -> ErrorMeasure:
    """Relative error (floored as described above) and ULP error of two arrays.

    Complex arrays are compared per real component, as torch steps them. Equal
    non-finite values (same infinities, NaN in both) count as no error.
    """
    c = np.asarray(candidate)
    r = np.asarray(reference)
    if np.iscomplexobj(c) or np.iscomplexobj(r):
        c = np.stack([c.real, c.imag], axis=-1)
        r = np.stack([r.real, r.imag], axis=-1)
    if c.size == 0:
        return ErrorMeasure()
    c64 = c.astype(np.float64)
    r64 = r.astype(np.float64)
    same = (c64 == r64) | (np.isnan(c64) & np.isnan(r64))
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(same, 0.0, np.abs(c64 - r64))
    diff = np.where(np.isnan(diff), np.inf, diff)
    rel = float(np.max(diff / (np.abs(np.where(np.isfinite(r64), r64, 0.0)) + tol.atol / tol.rtol)))
    ulp = 0.0
    if r.dtype == np.float32:
        floor = np.float32(tol.atol / tol.rtol)
        scale = np.maximum(np.abs(np.where(np.isfinite(r), r, 0)), floor).astype(np.float32)
        ulp = float(np.max(diff / np.spacing(scale).astype(np.float64)))
    return ErrorMeasure(rel, ulp)
