"""Every scheduler case x backend x dtype against torch.optim.lr_scheduler / swa_utils:
each group's lr, momentum and betas[0], get_last_lr(), warnings and errors, after every
step."""

from __future__ import annotations

import inspect

import pytest
import torch
from case_matrix import case_params

from portopt.optim import lr_scheduler, swa_utils
from portopt.testing import SCHEDULER_CASES, SCHEDULER_SCENARIOS, run_scheduler_case


@pytest.mark.parametrize("case, backend, dtype", list(case_params(SCHEDULER_CASES)))
def test_schedule(case, backend, dtype):
    result = run_scheduler_case(case, backend, dtype)
    assert result.passed, result.message


SCHEDULERS = [*lr_scheduler.__all__, "SWALR"]


def _torch_class(name):
    return getattr(torch.optim.lr_scheduler, name, None) or getattr(torch.optim.swa_utils, name)


def _ours(name):
    return getattr(lr_scheduler, name, None) or getattr(swa_utils, name)


def test_every_torch_scheduler_is_here():
    theirs = set(torch.optim.lr_scheduler.__all__)
    assert set(lr_scheduler.__all__) == theirs
    assert hasattr(swa_utils, "SWALR")


@pytest.mark.parametrize("name", SCHEDULERS)
def test_signature_is_torchs(name):
    ours, theirs = inspect.signature(_ours(name).__init__), inspect.signature(_torch_class(name).__init__)
    assert list(ours.parameters) == list(theirs.parameters)
    for arg, p in theirs.parameters.items():
        assert ours.parameters[arg].kind == p.kind, arg
        assert ours.parameters[arg].default == p.default, arg


@pytest.mark.parametrize("name", [n for n in SCHEDULERS if n != "LRScheduler"])
def test_every_scheduler_has_three_configurations(name):
    configs = {c.desc for c in SCHEDULER_CASES if c.name == name and c.scenario == "trajectory"}
    assert len(configs) >= 3, configs


def test_scenarios_are_all_exercised():
    assert {c.scenario for c in SCHEDULER_CASES} == set(SCHEDULER_SCENARIOS)
    resumed = {c.name for c in SCHEDULER_CASES if c.scenario == "resume"}
    # composites and the schedulers with state of their own resume through state_dicts
    assert {"SequentialLR", "ChainedScheduler", "ReduceLROnPlateau", "CyclicLR", "OneCycleLR",
            "LambdaLR", "MultiplicativeLR", "SWALR", "CosineAnnealingWarmRestarts"} <= resumed
