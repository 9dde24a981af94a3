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
