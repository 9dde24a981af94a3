"""Every case of the elementwise optimizers on each NumPy path besides the default one.

On NumPy a param group takes, by default, the optimizer's compiled kernel (numba
installed), or the generic kernel over flat chunks where numba is missing; ``foreach=False``
asks for the generic kernel per parameter. ``test_optimizers.py`` checks the default path
against torch.optim; this file checks the other two, so that every path is verified.
"""

from __future__ import annotations

import dataclasses

import pytest

import portopt.optim
from portopt.optim import _fast
from portopt.testing import OPTIM_CASES, TestBackend, run_case

ELEMENTWISE = sorted(name for name in portopt.optim.__all__
                     if getattr(getattr(portopt.optim, name), "_elementwise", False))
OWN = [case for case in OPTIM_CASES if case.name in ELEMENTWISE and case.backends is None]
GENERIC = [dataclasses.replace(case, kwargs={**case.kwargs, "foreach": False},
                               desc=f"{case.desc}-generic") for case in OWN]


def _numpy_params(cases, suffix=""):
    return [pytest.param(case, dtype, id=f"{dtype}-{case.id}{suffix}")
            for case in cases for dtype in case.run_dtypes()]


def test_elementwise_optimizers_have_compiled_kernels():
    assert ELEMENTWISE == ["ASGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "NAdam",
                           "RAdam", "RMSprop", "Rprop", "SGD"]
    for name in ELEMENTWISE:
        assert getattr(portopt.optim, name)._launch is not portopt.optim.Optimizer._launch


@pytest.mark.parametrize("case, dtype", _numpy_params(GENERIC))
def test_generic_path(case, dtype):
    result = run_case(case, TestBackend.NUMPY, dtype)
    assert result.passed, result.message


@pytest.mark.parametrize("case, dtype", _numpy_params(OWN, "-flat-chunks"))
def test_flat_chunks_without_numba(case, dtype, monkeypatch):
    monkeypatch.setattr(_fast, "kernels", lambda: None)
    monkeypatch.setattr(_fast, "CHUNK", 5)  # chunks that split the parameters
    result = run_case(case, TestBackend.NUMPY, dtype)
    assert result.passed, result.message
