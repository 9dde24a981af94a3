"""portopt.plotting and ``portopt plot-lr``: schedules as torch.optim runs them, drawn."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from portopt import cli, plotting
from portopt.plotting import default_metric, lr_trajectory, make_scheduler, plot_lr

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STEP_LR_ARGV = ["plot-lr", "StepLR", "step_size=30", "gamma=0.1", "--steps", "100"]


@pytest.fixture
def mpl():
    return pytest.importorskip("matplotlib")


def torch_loop(torch, name, steps, *, lrs=(0.1,), optimizer="SGD", metrics=None,
               children=(), **kwargs):
    """The oracle: the loop torch users plot with, run on torch.optim itself."""
    schedulers = torch.optim.lr_scheduler
    groups = []
    for lr in lrs:
        p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
        p.grad = torch.zeros_like(p)
        groups.append({"params": [p], "lr": lr})
    extra = {"momentum": 0.9} if optimizer == "SGD" else {}
    opt = getattr(torch.optim, optimizer)(groups, **extra)
    if children:
        kwargs["schedulers"] = [getattr(schedulers, n)(opt, **kw) for n, kw in children]
    if name == "ChainedScheduler":
        kwargs["optimizer"] = opt
    sched = getattr(schedulers, name)(**kwargs) if name == "ChainedScheduler" else getattr(
        schedulers, name)(opt, **kwargs)
    lr, momentum = [[] for _ in lrs], [[] for _ in lrs]
    for i in range(steps):
        for g, group in enumerate(opt.param_groups):
            lr[g].append(group["lr"])
            momentum[g].append(group["betas"][0] if "betas" in group else group["momentum"])
        opt.step()
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[i])
    return lr, momentum


# name, make_scheduler's arguments, the torch oracle's extra arguments
CASES = {
    "StepLR": ("StepLR", {"step_size": 30, "gamma": 0.1}, {}),
    "OneCycleLR-SGD": ("OneCycleLR", {"max_lr": 0.1, "total_steps": 100}, {}),
    "OneCycleLR-Adam-linear": ("OneCycleLR", {"max_lr": [0.1, 0.02], "total_steps": 100,
                                              "anneal_strategy": "linear", "lrs": (0.1, 0.05),
                                              "optimizer": "Adam"}, {}),
    "CyclicLR-triangular2": ("CyclicLR", {"base_lr": [0.01, 0.001], "max_lr": [0.1, 0.05],
                                          "step_size_up": 10, "mode": "triangular2",
                                          "lrs": (0.1, 0.05)}, {}),
    "CyclicLR-scale_fn": ("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 7,
                                       "scale_fn": "lambda x: 0.9 ** x"},
                          {"scale_fn": lambda x: 0.9 ** x}),
    "LambdaLR-two-groups": ("LambdaLR", {"lrs": (0.1, 0.05), "lr_lambda": [
        "lambda e: min(1.0, (e + 1) / 10)", "lambda e: math.cos(math.pi * e / 200)"]},
        {"lr_lambda": [lambda e: min(1.0, (e + 1) / 10),
                       lambda e: __import__("math").cos(__import__("math").pi * e / 200)]}),
    "SequentialLR-spec": ("SequentialLR", {
        "schedulers": ["LinearLR(start_factor=0.1, total_iters=10)",
                       "CosineAnnealingLR(T_max=90, eta_min=0.001)"], "milestones": [10]},
        {"children": [("LinearLR", {"start_factor": 0.1, "total_iters": 10}),
                      ("CosineAnnealingLR", {"T_max": 90, "eta_min": 0.001})]}),
    "ChainedScheduler-spec": ("ChainedScheduler", {
        "schedulers": ["ConstantLR(factor=0.1, total_iters=20)", "ExponentialLR(gamma=0.97)"]},
        {"children": [("ConstantLR", {"factor": 0.1, "total_iters": 20}),
                      ("ExponentialLR", {"gamma": 0.97})]}),
}


@pytest.mark.filterwarnings("error")  # includes "lr_scheduler.step() before optimizer.step()"
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_trajectory_is_torchs_schedule(case, torch):
    name, kwargs, oracle = case
    curve = lr_trajectory(make_scheduler(name, **kwargs), 100)
    torch_kwargs = {**kwargs, **oracle}
    lr, momentum = torch_loop(torch, name, 100, **torch_kwargs)
    assert curve["lr"] == lr
    cycles = name in ("OneCycleLR", "CyclicLR")
    assert (curve["momentum"] is not None) == cycles
    if cycles:
        assert curve["momentum"] == momentum


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("metrics", [None, [1.0, 0.5] + [0.6] * 10 + [0.4, 0.39] + [0.5] * 26])
def test_plateau_trajectory_is_torchs(metrics, torch):
    kwargs = {"factor": 0.5, "patience": 3, "cooldown": 2}
    curve = lr_trajectory(make_scheduler("ReduceLROnPlateau", **kwargs), 40, metrics=metrics)
    oracle = metrics or [default_metric(i) for i in range(40)]
    assert curve["lr"] == torch_loop(torch, "ReduceLROnPlateau", 40, metrics=oracle, **kwargs)[0]
    assert len(set(curve["lr"][0])) > 2 and curve["momentum"] is None


def test_default_metric_falls_then_plateaus():
    values = [default_metric(i) for i in range(60)]
    assert values[0] == 1.0 and all(a > b for a, b in zip(values[:21], values[1:21]))
    assert set(values[21:]) == {0.25} and values[20] > 0.25


def test_trajectory_rejects_bad_steps_and_metrics():
    with pytest.raises(ValueError, match="non-negative integer"):
        lr_trajectory(make_scheduler("StepLR", step_size=3), -1)
    with pytest.raises(ValueError, match="only used by ReduceLROnPlateau"):
        lr_trajectory(make_scheduler("StepLR", step_size=3), 3, metrics=[1, 2, 3])
    with pytest.raises(ValueError, match="got 2 metrics for 3 steps"):
        lr_trajectory(make_scheduler("ReduceLROnPlateau"), 3, metrics=[1, 2])
    assert lr_trajectory(make_scheduler("StepLR", step_size=3), 0)["lr"] == [[]]


def test_make_scheduler_builds_one_group_per_lr_on_a_portopt_optimizer():
    from portopt.optim import SGD, Adam
    from portopt.optim.swa_utils import SWALR

    sched = make_scheduler("SWALR", lrs=(0.2, 0.1), swa_lr=0.05)
    assert isinstance(sched, SWALR) and isinstance(sched.optimizer, SGD)
    assert [g["lr"] for g in sched.optimizer.param_groups] == [0.2, 0.1]
    assert sched.optimizer.param_groups[0]["momentum"] == 0.9
    assert isinstance(make_scheduler("ExponentialLR", optimizer="Adam", gamma=0.9).optimizer,
                      Adam)
    with pytest.raises(ValueError, match="unknown optimizer 'RMSprop'"):
        make_scheduler("StepLR", optimizer="RMSprop", step_size=3)
    with pytest.raises(ValueError, match="unknown scheduler 'StepRL'; known: LambdaLR"):
        make_scheduler("StepRL", step_size=3)


@pytest.mark.parametrize("text, at_3", [
    ("lambda epoch: 0.95 ** epoch", 0.95 ** 3),
    ("lambda e: 1.0 if e < 2 else -abs(e - 5) / 2", -1.0),
    ("lambda e: max(0.1, math.cos(math.pi * e / 12) ** 2) + (e >= 3 and not e > 4)", 1.5),
])
def test_safe_lambda_strings_compute(text, at_3):
    assert plotting._safe_lambda(text)(3) == pytest.approx(at_3)


@pytest.mark.parametrize("text, why", [
    ("lambda e: __import__('os')", "the call of '__import__'"),
    ("lambda e: __import__('os').system('true')", "the call of \"__import__('os').system\""),
    ("lambda e: e.__class__", "the attribute 'e.__class__'"),
    ("lambda e: math.__loader__", "the attribute 'math.__loader__'"),
    ("lambda e: open('x')", "the call of 'open'"),
    ("lambda e: [c for c in ()]", "ListComp"),
    ("lambda e: 'text'", "the constant 'text'"),
    ("lambda e: (lambda: 1)()", "the call of 'lambda: 1'"),
    ("lambda e: min(e, key=abs)", "keyword arguments"),
    ("lambda e, f=print: f(e)", "only plain arguments"),
    ("0.95 ** 3", "must be a single lambda"),
    ("lambda e: ", "not valid Python"),
])
def test_unsafe_lambda_strings_are_rejected(text, why):
    with pytest.raises(ValueError) as info:
        make_scheduler("LambdaLR", lr_lambda=text)
    assert why in str(info.value)


@pytest.mark.parametrize("spec, why", [
    ("LinearLR(0.1)", "give arguments by keyword"),
    ("LinearLR(start_factor=__import__('os'))", "start_factor= must be a literal"),
    ("os.system('true')", "must look like"),
    ("Linear(start_factor=0.1)", "unknown scheduler 'Linear'"),
    ("LinearLR(**{'a': 1})", "** is not allowed"),
])
def test_bad_specs_are_rejected(spec, why):
    with pytest.raises(ValueError) as info:
        make_scheduler("SequentialLR", schedulers=[spec], milestones=[])
    assert why in str(info.value)


def test_figure_plots_the_staircase(mpl):
    fig = plot_lr("StepLR", 100, step_size=30, gamma=0.1)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "learning rate"
    assert fig._suptitle.get_text() == "StepLR(step_size=30, gamma=0.1)"
    (line,) = ax.get_lines()
    expected = [0.1 * 0.1 ** (i // 30) for i in range(100)]
    assert list(line.get_xdata()) == list(range(100))
    assert list(line.get_ydata()) == pytest.approx(expected, rel=1e-12)
    assert ax.get_legend() is None


def test_figure_shows_groups_and_cycling_beta1(mpl):
    fig = plot_lr("OneCycleLR", 50, lrs=(0.1, 0.05), optimizer="Adam", max_lr=0.1,
                  total_steps=50, title="one cycle")
    lr_ax, beta_ax = fig.axes
    assert beta_ax.get_ylabel() == "beta1" and beta_ax.get_xlabel() == "step"
    assert [t.get_text() for t in lr_ax.get_legend().get_texts()] == ["group 0", "group 1"]
    betas = beta_ax.get_lines()[0].get_ydata()
    assert betas[0] == 0.95 and min(betas) == pytest.approx(0.85)
    assert fig._suptitle.get_text() == "one cycle"
    assert plot_lr("CyclicLR", 30, base_lr=0.01, max_lr=0.1,
                   step_size_up=5).axes[1].get_ylabel() == "momentum"


def test_cli_writes_the_step_lr_png(tmp_path, capsys, monkeypatch, mpl):
    figures = []
    real = plotting.plot_lr
    monkeypatch.setattr(plotting, "plot_lr", lambda *a, **k: figures.append(real(*a, **k)))
    out = tmp_path / "step.png"
    assert cli.main([*STEP_LR_ARGV, "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
    image = mpl.image.imread(out)
    assert image.shape[:2] == (350, 600) and len(np.unique(image.reshape(-1, 4), axis=0)) > 10
    ys = figures[0].axes[0].get_lines()[0].get_ydata()
    assert list(ys) == pytest.approx([0.1 * 0.1 ** (i // 30) for i in range(100)], rel=1e-12)


def test_cli_passes_groups_optimizer_and_metrics(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(plotting, "plot_lr", lambda name, steps, **kw: seen.update(
        name=name, steps=steps, **kw))
    assert cli.main(["plot-lr", "ReduceLROnPlateau", "patience=2", "mode=max",
                     "min_lr=None", "--lr", "0.1", "--lr", "0.05", "--optimizer", "Adam",
                     "--metrics", "1,0.8, 0.7", "-n", "3", "-o", str(tmp_path / "p.png")]) == 0
    assert seen == {"name": "ReduceLROnPlateau", "steps": 3, "output": str(tmp_path / "p.png"),
                    "title": None, "metrics": [1.0, 0.8, 0.7], "lrs": [0.1, 0.05],
                    "optimizer": "Adam", "patience": 2, "mode": "max", "min_lr": None}


@pytest.mark.parametrize("args, message", [
    (["NoSuchLR"], "unknown scheduler 'NoSuchLR'; known: LambdaLR"),
    (["StepLR", "step_size"], "malformed argument 'step_size': expected NAME=VALUE"),
    (["StepLR", "30=step_size"], "malformed argument '30=step_size'"),
    (["StepLR", "step_size=3", "step_size=4"], "argument 'step_size' is given twice"),
    (["StepLR"], "StepLR: TypeError:"),
    (["OneCycleLR", "max_lr=0.1"], "You must define either total_steps"),
    (["LambdaLR", "lr_lambda=lambda e: __import__('os')"], "the call of '__import__'"),
    (["StepLR", "step_size=3", "--metrics", "1,x"], "--metrics must be numbers"),
    (["StepLR", "step_size=3", "--metrics", "1,2,3"], "only used by ReduceLROnPlateau"),
    (["StepLR", "step_size=3", "--steps", "0"], "--steps must be at least 1"),
])
def test_cli_errors_are_clear(args, message, tmp_path, capsys, mpl):
    steps = [] if "--steps" in args else ["--steps", "3"]
    assert cli.main(["plot-lr", *args, *steps, "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("portopt plot-lr: error: ") and message in err
    assert "Traceback" not in err and not (tmp_path / "x.png").exists()


def test_missing_matplotlib_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    with pytest.raises(ImportError, match=r'plotting needs matplotlib: pip install "portopt\[plot\]"'):
        plot_lr("StepLR", 10, step_size=3)
    assert cli.main([*STEP_LR_ARGV, "-o", str(tmp_path / "step.png")]) == 2
    err = capsys.readouterr().err
    assert 'plotting needs matplotlib: pip install "portopt[plot]"' in err
    assert not (tmp_path / "step.png").exists()


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["plot-lr", "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert "portopt plot-lr StepLR step_size=30 gamma=0.1 --steps 100 -o step.png" in out
    assert all(name in out for name in plotting.SCHEDULERS)
