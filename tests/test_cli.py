"""The ``portopt`` command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import portopt
from portopt import cli


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"portopt {portopt.__version__}"
    assert cli.main([]) == 2
    assert "conformance" in capsys.readouterr().out


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "portopt", "conformance", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--report FILE" in out and "--resync" in out


def test_conformance_lists_cases(capsys, torch):
    assert cli.main(["conformance", "--list", "-o", "adamw"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out and all(line.startswith("AdamW-") for line in out)


def test_conformance_runs_a_filtered_matrix_and_writes_reports(tmp_path, capsys, torch):
    report = tmp_path / "report.json"
    code = cli.main(["conformance", "-o", "SGD", "-b", "numpy", "-d", "float64",
                     "-s", "trajectory", "--report", str(report)])
    out = capsys.readouterr().out
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("pass")]
    data = json.loads(report.read_text())
    assert len(rows) == len(data["results"]) == data["summary"]["total"]
    assert all(r["backend"] == "numpy" and r["dtype"] == "float64" for r in data["results"])
    assert data["summary"]["failed"] == 0 and "passed, 0 failed" in out
    md = tmp_path / "report.md"
    assert cli.main(["conformance", "-o", "SGD", "-b", "numpy", "-d", "float32", "-s",
                     "trajectory", "-q", "--report", str(md)]) == 0
    text = md.read_text()
    assert text.startswith("# portopt conformance report") and "| pass | SGD-default |" in text


def test_conformance_exits_non_zero_on_a_failure(monkeypatch, capsys, torch):
    from portopt.testing import _matrix

    def failing(case, backend, dtype, resync=False):
        from portopt.testing import CaseResult
        return CaseResult(case.id, backend.value, dtype, False, 3, 1.0, None,
                          message="step 2: param 0 is off")

    monkeypatch.setattr(_matrix, "run_case", failing)
    assert cli.main(["conformance", "-o", "SGD", "-b", "numpy", "-d", "float64", "-s",
                     "trajectory"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "step 2: param 0 is off" in out


def test_conformance_rejects_unknown_filters(capsys, torch):
    assert cli.main(["conformance", "-o", "NoSuchOptimizer"]) == 2
    with pytest.raises(SystemExit):
        cli.main(["conformance", "-b", "jax"])
