"""LR schedulers: hand-derived schedules, torch's warnings and messages, state_dicts,
array lrs, and the guarantee that a failing call changes nothing. (The step-by-step
comparison with torch is conformance/test_schedulers.py.)"""

from __future__ import annotations

import gc
import math
import warnings
import weakref

import numpy as np
import pytest
from helpers import raises

import portopt
from portopt.optim import SGD, Adagrad, Adam, lr_scheduler, swa_utils
from portopt.optim import _schedules as schedules


def _opt(lrs=(0.05, 0.5), cls=SGD, **kwargs):
    groups = [{"params": [portopt.Parameter(np.zeros(2))], "lr": lr} for lr in lrs]
    return cls(groups, lr=lrs[0], **kwargs)


def _run(opt, sched, steps, **step_kwargs):
    """The lr of group 0 at every step, as a training loop sees them."""
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = np.zeros(2)
        opt.step()
        sched.step(**step_kwargs)
    return out


# -- hand-derived schedules --------------------------------------------------------------


def test_step_lr_staircase():
    opt = _opt((1.0,))
    lrs = _run(opt, lr_scheduler.StepLR(opt, step_size=3, gamma=0.5), 8)
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_multi_step_lr_repeated_milestone_counts_twice():
    opt = _opt((1.0,))
    lrs = _run(opt, lr_scheduler.MultiStepLR(opt, milestones=[2, 2, 4], gamma=0.5), 6)
    assert lrs == [1.0, 1.0, 0.25, 0.25, 0.125, 0.125]


def test_linear_and_constant_warmups():
    opt = _opt((1.0,))
    lrs = _run(opt, lr_scheduler.LinearLR(opt, start_factor=0.25, total_iters=3), 5)
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0], rel=1e-15)
    opt = _opt((1.0,))
    lrs = _run(opt, lr_scheduler.ConstantLR(opt, factor=0.5, total_iters=2), 4)
    assert lrs == [0.5, 0.5, 1.0, 1.0]


def test_cosine_annealing_reaches_eta_min_and_comes_back():
    opt = _opt((1.0,))
    lrs = _run(opt, lr_scheduler.CosineAnnealingLR(opt, T_max=4, eta_min=0.2), 9)
    expected = [0.2 + 0.8 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(9)]
    assert lrs == pytest.approx(expected, rel=1e-14)
    assert lrs[4] == pytest.approx(0.2) and lrs[8] == pytest.approx(1.0)


def test_one_cycle_rises_then_falls_with_inverse_momentum():
    opt = _opt((0.1,), momentum=0.9)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10, pct_start=0.5,
                                    anneal_strategy="linear")
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0 / 25)
    assert opt.param_groups[0]["momentum"] == 0.95
    lrs = _run(opt, sched, 10)
    assert max(lrs) == pytest.approx(1.0) and lrs.index(max(lrs)) == 4
    assert lrs[-1] == pytest.approx(1.0 / 25 / 1e4)


def test_cyclic_triangle_and_adam_beta1():
    opt = _opt((0.5,), cls=Adam, betas=(0.9, 0.99))
    sched = lr_scheduler.CyclicLR(opt, base_lr=0.1, max_lr=0.5, step_size_up=2)
    lrs, beta1 = [], []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        beta1.append(opt.param_groups[0]["betas"][0])
        opt.param_groups[0]["params"][0].grad = np.zeros(2)
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1, 0.3, 0.5, 0.3, 0.1])
    assert beta1 == pytest.approx([0.9, 0.85, 0.8, 0.85, 0.9])
    assert opt.param_groups[0]["betas"][1] == 0.99


def test_closed_forms_match_the_recursion():
    opt = _opt((1.0,))
    lrs = _run(opt, lr_scheduler.PolynomialLR(opt, total_iters=4, power=2.0), 6)
    closed = [schedules.polynomial_lr(t, base_lr=1.0, total_iters=4, power=2.0) for t in range(6)]
    assert lrs == pytest.approx(closed, rel=1e-14, abs=1e-300)
    assert closed == [1.0, 0.5625, 0.25, 0.0625, 0.0, 0.0]


def test_warm_restart_position_by_hand():
    # periods 2, 4, 8 start at epochs 0, 2, 6
    assert schedules.warm_restart_position(1.5, T_0=2, T_mult=2) == (1.5, 2)
    assert schedules.warm_restart_position(3.0, T_0=2, T_mult=2) == (1.0, 4)
    assert schedules.warm_restart_position(7.0, T_0=2, T_mult=2) == (1.0, 8)
    assert schedules.warm_restart_position(7.0, T_0=3, T_mult=1) == (1.0, 3)


def test_swalr_anneals_to_swa_lr():
    opt = _opt((1.0,))
    sched = swa_utils.SWALR(opt, swa_lr=0.2, anneal_epochs=2, anneal_strategy="linear")
    assert opt.param_groups[0]["swa_lr"] == 0.2
    lrs = _run(opt, sched, 4)
    assert lrs == pytest.approx([1.0, 0.6, 0.2, 0.2])


def test_reduce_lr_on_plateau_by_hand():
    opt = _opt((1.0, 0.1))
    sched = lr_scheduler.ReduceLROnPlateau(opt, patience=1, factor=0.5, min_lr=[0.3, 0.0])
    for metric in (1.0, 1.0, 1.0, 1.0, 1.0, 1.0):
        sched.step(metric)
    # bad epochs 1, 2 -> cut; 1, 2 -> cut (floored at 0.3); 1 -> none
    assert [g["lr"] for g in opt.param_groups] == [0.3, 0.025]
    assert sched.get_last_lr() == [0.3, 0.025]


# -- torch's warnings ----------------------------------------------------------------------


def test_stepping_in_the_right_order_is_silent():
    opt = _opt()
    sched = lr_scheduler.ExponentialLR(opt, gamma=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run(opt, sched, 3)


def test_scheduler_before_optimizer_warns():
    opt = _opt()
    sched = lr_scheduler.ExponentialLR(opt, gamma=0.9)
    with pytest.warns(UserWarning, match="Detected call of `lr_scheduler.step\\(\\)` before"):
        sched.step()


def test_overridden_optimizer_step_warns():
    opt = _opt()
    sched = lr_scheduler.ExponentialLR(opt, gamma=0.9)
    opt.step = lambda closure=None: None
    with pytest.warns(UserWarning, match="`optimizer.step\\(\\)` has been overridden"):
        sched.step()


def test_epoch_argument_and_get_lr_warn():
    opt = _opt()
    sched = lr_scheduler.StepLR(opt, step_size=2)
    _run(opt, sched, 1)
    with pytest.warns(UserWarning, match="The epoch parameter in `scheduler.step\\(\\)`"):
        sched.step(4)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * 0.01)
    with pytest.warns(UserWarning, match="please use `get_last_lr\\(\\)`"):
        sched.get_lr()


# -- state_dict ------------------------------------------------------------------------


class _Factor:
    def __init__(self, rate):
        self.rate = rate

    def __call__(self, epoch):
        return self.rate**epoch


def test_lambda_state_keeps_object_dicts_never_functions():
    opt = _opt()
    sched = lr_scheduler.LambdaLR(opt, lr_lambda=[lambda e: 1.0, _Factor(0.5)])
    state = sched.state_dict()
    assert state["lr_lambdas"] == [None, {"rate": 0.5}]
    assert "optimizer" not in state
    other = lr_scheduler.LambdaLR(_opt(), lr_lambda=[lambda e: 2.0, _Factor(0.9)])
    other.load_state_dict(state)
    assert other.lr_lambdas[1].rate == 0.5
    assert state["lr_lambdas"] == [None, {"rate": 0.5}]  # the caller's dict is untouched


def test_cyclic_state_dict_loads_twice():
    """torch's CyclicLR pops _scale_fn_custom from the dict it loads; portopt does not."""
    opt = _opt()
    state = lr_scheduler.CyclicLR(opt, base_lr=0.01, max_lr=0.1, scale_fn=_Factor(0.9)).state_dict()
    assert state["_scale_fn_custom"] == {"rate": 0.9} and "_scale_fn_ref" not in state
    other = lr_scheduler.CyclicLR(_opt(), base_lr=0.01, max_lr=0.1, scale_fn=_Factor(0.1))
    other.load_state_dict(state)
    other.load_state_dict(state)
    assert other._scale_fn_custom.rate == 0.9


def test_scheduler_and_optimizer_form_no_reference_cycle():
    gc.collect()
    gc.disable()
    try:
        opt = _opt()
        sched = lr_scheduler.StepLR(opt, step_size=2)
        ref = weakref.ref(opt)
        del opt, sched
        assert ref() is None
    finally:
        gc.enable()


# -- array lrs ---------------------------------------------------------------------------


def test_array_lr_is_filled_in_place(xp):
    lr = xp.asarray(0.5, dtype=xp.float32)
    p = portopt.Parameter(xp.zeros(2))
    opt = SGD([p], lr=lr)
    sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    p.grad = xp.zeros(2)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] is lr
    assert float(lr) == 0.25 and lr.dtype == xp.float32
    last = sched.get_last_lr()[0]
    assert last is not lr and float(last) == 0.25
    assert opt.param_groups[0]["initial_lr"] is not lr and float(opt.param_groups[0]["initial_lr"]) == 0.5


# -- a failing call changes nothing ----------------------------------------------------------


def _snapshot(opt, sched):
    return ([dict((k, v) for k, v in g.items() if k != "params") for g in opt.param_groups],
            dict(sched.state_dict()) if sched is not None else None)


def test_one_cycle_past_its_end_raises_and_changes_nothing():
    opt = _opt(momentum=0.9)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=3)
    _run(opt, sched, 3)
    before = _snapshot(opt, sched)
    raises(ValueError, "Tried to step 4 times. The specified number of total steps is 3",
           sched.step)
    assert _snapshot(opt, sched) == before


def test_failed_constructors_leave_the_groups_alone():
    opt = _opt(cls=Adagrad)
    before = _snapshot(opt, None)
    no_momentum = "optimizer must support momentum or beta1 with `cycle_momentum` option enabled"
    raises(ValueError, no_momentum, lr_scheduler.OneCycleLR, opt, max_lr=0.1, total_steps=10)
    raises(ValueError, no_momentum, lr_scheduler.CyclicLR, opt, base_lr=0.01, max_lr=0.1)
    raises(ValueError, "anneal_strategy must be one of 'cos' or 'linear', instead got exp",
           swa_utils.SWALR, opt, swa_lr=0.1, anneal_strategy="exp")
    raises(TypeError, "'float' object is not callable", lr_scheduler.LambdaLR, opt, lr_lambda=0.5)
    assert _snapshot(opt, None) == before


def test_sequential_lr_keeps_the_initial_lr():
    opt = _opt((1.0,))
    members = [lr_scheduler.ConstantLR(opt, factor=0.5, total_iters=2),
               lr_scheduler.ExponentialLR(opt, gamma=0.9)]
    sched = lr_scheduler.SequentialLR(opt, members, milestones=[2])
    assert _run(opt, sched, 4) == pytest.approx([0.5, 0.5, 1.0, 0.9])


# -- a plateau scheduler after the optimizer changed ------------------------------------


def test_plateau_after_a_group_was_added_with_per_group_min_lr():
    opt = _opt()
    sched = lr_scheduler.ReduceLROnPlateau(opt, patience=0, min_lr=[0.0, 0.0])
    opt.add_param_group({"params": [portopt.Parameter(np.zeros(1))]})
    sched.step(1.0)
    with pytest.raises(RuntimeError, match=r"The number of param groups in the `optimizer` \(3\) "
                       r"differs from when `ReduceLROnPlateau` was initialized \(2\)"):
        sched.step(2.0)
