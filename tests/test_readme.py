"""The README's quickstart runs and does what it says."""

from __future__ import annotations

import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_quickstart_runs_and_fits(capsys):
    quickstart = next(b for b in _python_blocks() if "Quickstart" in b or "AdamW" in b)
    scope: dict = {}
    exec(compile(quickstart, str(README), "exec"), scope)
    np.testing.assert_allclose(scope["w"].data, [1.5, -2.0, 0.5], atol=0.02)
    np.testing.assert_allclose(scope["b"].data, 0.1, atol=0.02)


def test_readme_names_the_two_commands():
    text = README.read_text()
    assert 'pip install torch==2.13.0 -e ".[test]" && portopt conformance' in text
    assert 'pip install torch==2.13.0 -e ".[test]" && pytest' in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'pip install torch==2.13.0 -e ".[test]" && pytest' in ci


def test_checkpoint_and_clipping_blocks_run(tmp_path, monkeypatch, capsys):
    """The checkpoint and clipping snippets, run after the quickstart as a user would."""
    blocks = _python_blocks()
    quickstart = next(b for b in blocks if "AdamW" in b)
    checkpoint = next(b for b in blocks if "portopt.save(" in b)
    clipping = next(b for b in blocks if "clip_grad_norm_" in b)
    scope: dict = {}
    exec(compile(quickstart, str(README), "exec"), scope)
    exec("from portopt.optim import lr_scheduler\n"
         "sched = lr_scheduler.StepLR(opt, step_size=10)\nepoch = 3", scope)
    before = {k: np.array(v, copy=True) for k, v in scope["opt"].state_dict()["state"][0].items()}
    monkeypatch.chdir(tmp_path)
    torch_missing = False
    try:
        exec(compile(checkpoint, str(README), "exec"), scope)
    except ModuleNotFoundError as exc:  # the block also loads the file as torch tensors
        torch_missing = exc.name == "torch"
        if not torch_missing:
            raise
    assert (tmp_path / "run.ckpt").exists()
    if not torch_missing:
        assert type(scope["state"]["optimizer"]["state"][0]["exp_avg"]).__module__ == "torch"
        after = scope["opt"].state_dict()["state"][0]
        for key, value in before.items():  # loaded back from the file: the same values
            np.testing.assert_array_equal(np.asarray(after[key]), value)
    w, b = scope["w"], scope["b"]
    w.grad, b.grad = np.full(3, 3.0), np.asarray(4.0)
    exec(compile(clipping, str(README), "exec"), scope)
    # by hand: total norm sqrt(3 * 9 + 16) = sqrt(43), so everything is scaled by
    # 1 / (sqrt(43) + 1e-6): w's entries become 0.457..., b 0.610..., which the clamp to
    # [-0.5, 0.5] then cuts to 0.5
    scale = 1.0 / (np.sqrt(43.0) + 1e-6)
    np.testing.assert_allclose(w.grad, np.full(3, 3.0 * scale), rtol=1e-12)
    assert float(b.grad) == 0.5
