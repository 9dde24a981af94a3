"""AveragedModel and update_bn against torch.optim.swa_utils, after every update, on
every backend (a torch module on torch; its protocol mirror elsewhere)."""

from __future__ import annotations

import inspect

import pytest
import torch
from case_matrix import case_params

from portopt.optim import swa_utils
from portopt.testing import SWA_CASES, run_swa_case


@pytest.mark.parametrize("case, backend, dtype", list(case_params(SWA_CASES)))
def test_averaging(case, backend, dtype):
    result = run_swa_case(case, backend, dtype)
    assert result.passed, result.message
    assert result.steps == (2 if "swa-multi-buffers" in case.desc else case.updates)


def test_swa_utils_names_are_torchs():
    assert set(swa_utils.__all__) == set(torch.optim.swa_utils.__all__)


@pytest.mark.parametrize("name", ["AveragedModel", "update_bn", "get_ema_multi_avg_fn",
                                  "get_swa_multi_avg_fn", "get_ema_avg_fn", "get_swa_avg_fn"])
def test_signatures_are_torchs(name):
    ours, theirs = getattr(swa_utils, name), getattr(torch.optim.swa_utils, name)
    if inspect.isclass(ours):
        ours, theirs = ours.__init__, theirs.__init__
    p, q = inspect.signature(ours).parameters, inspect.signature(theirs).parameters
    assert list(p) == list(q)
    assert [v.default for v in p.values()] == [v.default for v in q.values()]


def test_cases_cover_every_rule_buffers_and_update_bn():
    assert {c.average for c in SWA_CASES} == {"swa", "swa-fn", "ema-fn", "swa-multi",
                                              "ema-multi", "custom"}
    assert any(c.use_buffers for c in SWA_CASES)
    assert {c.update_bn for c in SWA_CASES} == {None, "tuples", "arrays"}
