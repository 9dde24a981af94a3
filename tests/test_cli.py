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
    assert "--report FILE" in out and "--resync" in out and "--progress" in out
    top = subprocess.run([sys.executable, "-m", "portopt", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert all(command in top for command in ("conformance", "plot-lr", "bench", "--version",
                                              "portopt COMMAND --help"))


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
    rows = [line for line in out.splitlines() if "] pass  SGD-" in line]
    data = json.loads(report.read_text())
    assert len(rows) == len(data["results"]) == data["summary"]["total"]
    # not a terminal: each row numbered out of the planned total
    assert rows[0].startswith(f"[ 1/{len(rows)}]") or rows[0].startswith(f"[1/{len(rows)}]")
    assert rows[-1].startswith(f"[{len(rows)}/{len(rows)}]")
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


def test_quiet_runs_print_a_line_at_every_tenth(capsys, torch):
    assert cli.main(["conformance", "-o", "Rprop", "-b", "numpy", "-d", "float64",
                     "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    counts = [line for line in lines if "% done" in line]
    percents = [int(line.split("] ")[1].split("%")[0]) for line in counts]
    # one line as each tenth is passed (25 jobs: 3/25 is the first past 10%)
    assert len(percents) == 10 and percents[-1] == 100
    assert [p // 10 for p in percents] == list(range(1, 11))
    assert not any(" pass  " in line for line in lines)


def test_a_progress_bar_is_drawn_in_place_on_request(capsys, torch):
    assert cli.main(["conformance", "-o", "Rprop", "-b", "numpy", "-d", "float64", "-s",
                     "roundtrip", "--progress"]) == 0
    out = capsys.readouterr().out
    assert "\r\033[K[" in out and "2/2, 0 failed" in out
    assert "#" * 30 in out  # full at the end
    assert out.count("pass  Rprop-") == 2  # the rows above the bar


def test_html_report(tmp_path, capsys, torch, monkeypatch):
    from portopt.testing import CaseResult, _matrix

    def one_fails(case, backend, dtype, resync=False):
        ok = case.desc != "mixed"
        return CaseResult(case.id, backend.value, dtype, ok, 3, 0.0 if ok else 1.0, None,
                          message="" if ok else "step 2: <param 0> is off")

    monkeypatch.setattr(_matrix, "run_case", one_fails)
    page = tmp_path / "report.html"
    assert cli.main(["conformance", "-o", "Rprop", "-b", "numpy", "-d", "float64", "-s",
                     "roundtrip", "--report", str(page)]) == 1
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "1/2 passed, 1 failed" in html
    # failures first, messages escaped
    assert html.index('class="fail"') < html.index('class="pass"')
    assert "step 2: &lt;param 0&gt; is off" in html and "<param 0>" not in html
