"""Every optimizer case x backend x dtype against torch.optim, compared after every step."""

from __future__ import annotations

import pytest
from case_matrix import case_params

from portopt.testing import OPTIM_CASES, TestBackend, run_case


@pytest.mark.parametrize("case, backend, dtype", list(case_params(OPTIM_CASES)))
def test_trajectory(case, backend, dtype):
    result = run_case(case, backend, dtype)
    assert result.passed, result.message
    assert result.steps == case.steps


TRAJECTORIES = [c for c in OPTIM_CASES if c.scenario == "trajectory"]


@pytest.mark.parametrize("case", TRAJECTORIES, ids=[c.id for c in TRAJECTORIES])
def test_resync_mode_agrees(case):
    """With the reference copied back after every step each step is checked on its own;
    the same cases pass."""
    dtypes = case.run_dtypes()
    backend = TestBackend.TORCH if case.backends == ("torch",) else TestBackend.NUMPY
    result = run_case(case, backend, "float64" if "float64" in dtypes else dtypes[0],
                      resync=True)
    assert result.passed, result.message


COMPLEX64 = [c for c in OPTIM_CASES if c.scenario == "trajectory" and c.backends is None
             and "complex128" in c.run_dtypes()
             and c.desc in ("momentum", "nesterov", "amsgrad", "mixed", "decoupled")]


@pytest.mark.parametrize("backend", [TestBackend.NUMPY, TestBackend.TORCH,
                                     TestBackend.ARRAY_API_STRICT], ids=lambda b: b.value)
@pytest.mark.parametrize("case", COMPLEX64, ids=[c.id for c in COMPLEX64])
def test_complex64(case, backend):
    """complex64 is not in the default matrix; a sample of configurations covers it."""
    if backend.unavailable():
        pytest.skip(backend.unavailable())
    result = run_case(case, backend, "complex64")
    assert result.passed, result.message
