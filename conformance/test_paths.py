"""Every case of the optimizers that have a fused NumPy kernel, also on the generic path
(``foreach=False``): the default NumPy path of those cases is the fused kernel (numba
installed), so both paths are checked against torch.optim."""

from __future__ import annotations

import dataclasses

import pytest

import portopt.optim
from portopt.optim import Optimizer
from portopt.testing import OPTIM_CASES, TestBackend, run_case

FUSED = [name for name in portopt.optim.__all__ if name != "Optimizer"
         and getattr(portopt.optim, name)._launch is not Optimizer._launch]
CASES = [dataclasses.replace(case, kwargs={**case.kwargs, "foreach": False},
                             desc=f"{case.desc}-generic")
         for case in OPTIM_CASES if case.name in FUSED and case.backends is None]


def test_fused_kernels_exist():
    assert set(FUSED) == {"Adam", "AdamW", "RMSprop", "SGD"}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_generic_path(case, dtype):
    result = run_case(case, TestBackend.NUMPY, dtype)
    assert result.passed, result.message
