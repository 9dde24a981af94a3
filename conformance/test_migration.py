"""Runs moved between torch.optim and portopt mid-way carry on where torch carries on."""

from __future__ import annotations

import pytest
from case_matrix import case_params

from portopt.testing import MIGRATION_CASES, run_migration_case


@pytest.mark.parametrize("case, backend, dtype", list(case_params(MIGRATION_CASES)))
def test_migration(case, backend, dtype):
    result = run_migration_case(case, backend, dtype)
    if result.skipped:
        pytest.skip(result.skipped)
    assert result.passed, result.message
    assert result.steps == case.steps
