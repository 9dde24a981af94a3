"""The benchmark (benchmarks/bench.py) and ``portopt bench``: it runs, and its report has
the rows and columns it promises. No timing is asserted."""

from __future__ import annotations

import importlib.util
import io
import math
import subprocess
import sys

import pytest

from portopt import cli

SCRIPT = cli.bench_script()


@pytest.fixture(scope="module")
def bench():
    if not SCRIPT.is_file():
        pytest.skip(f"no benchmark script at {SCRIPT} (not a source checkout)")
    spec = importlib.util.spec_from_file_location("portopt_bench_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def table(markdown: str, heading: str) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of the first table after ``heading``."""
    lines = markdown.splitlines()
    start = lines.index(heading)
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    header, rule, *body = rows
    assert set("".join(rule)) == {"-"}
    return header, body


def test_bytes_per_element(bench):
    assert bench.BYTES_PER_ELEMENT == {"Adam": 28, "AdamW": 28, "SGD": 20, "RMSprop": 20,
                                       "Adagrad": 20}
    for reads, writes in bench.TRAFFIC.values():
        assert "grad" in reads and "grad" not in writes
        assert set(writes) <= set(reads)  # every array written is one read: no write-allocate


def test_parse_workload(bench):
    assert bench.parse_workload("1x16M") == (1, 16_777_216)
    assert bench.parse_workload("1000x4096") == (1000, 4096)
    assert bench.parse_workload("10000x64") == (10000, 64)
    assert bench.parse_workload("2Kx1k") == (2048, 1024)
    for bad in ("16M", "0x5", "axb", "3x"):
        with pytest.raises(ValueError):
            bench.parse_workload(bad)


def test_quick_run_writes_the_table(bench, tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "bench.md"
    assert bench.main(["--quick", "-o", "Adam", "-w", "4x256", "--markdown", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    text = out.read_text()
    assert text.startswith("# portopt vs torch.optim")
    for needle in ("- CPU: ", "torch ", "NumPy ", "numba ", "portopt ", "- date: ",
                   "- memory bandwidth: **", "- caches: before every timed step"):
        assert needle in text

    header, rows = table(text, "## All rows")
    assert tuple(header) == bench.MARKDOWN_COLUMNS
    col = {name: i for i, name in enumerate(header)}
    assert len(rows) == len(bench.GRAD_MODES) * len(bench.CONTENDERS)
    assert {(r[col["grads"]], r[col["contender"]]) for r in rows} == {
        (g, c) for g in bench.GRAD_MODES for c in bench.CONTENDERS}
    for r in rows:
        assert r[col["optimizer"]] == "Adam" and r[col["workload"]] == "4x256"
        assert r[col["vs"]] == "fused"
        assert int(r[col["steps"]]) >= 1
        for name in ("median ms", "ratio", "roofline"):
            value = float(r[col[name]])
            assert math.isfinite(value) and value > 0, (name, r)
        if r[col["contender"]] == "torch fused":
            assert float(r[col["ratio"]]) == 1
        assert r[col["extra memory"]] == "n/a" or "params)" in r[col["extra memory"]]

    header, summary = table(text, "## portopt's default step against torch's best")
    assert header == ["optimizer", "workload", "best torch, ms", "default, roofline, target",
                      "flat, target", "no numba, target", "flat, no numba, target"]
    assert [r[:2] for r in summary] == [["Adam", "4x256"]]
    assert summary[0][2].startswith("fused, ")
    ratios = {(r[col["grads"]], r[col["contender"]]): r[col["ratio"]] for r in rows}
    for cell, setting in zip(summary[0][3:], ("portopt", "portopt flat", "portopt no numba",
                                              "portopt flat, no numba")):
        new, inplace = cell.split(",")[0].split(" / ")
        assert (new, inplace) == (ratios["new", setting], ratios["in-place", setting])
        assert cell.endswith(", -")  # 4x256 is not one of issue 6's workloads

    header, traffic = table(text, "## Bytes each step must move per float32 element")
    assert traffic == [["Adam", "param, grad, exp_avg, exp_avg_sq", "param, exp_avg, exp_avg_sq",
                        "28"]]


def test_rmsprop_is_compared_with_torch_foreach(bench):
    pytest.importorskip("torch")
    report = bench.run(["RMSprop"], ["2x64"], ["new"], quick=True, out=io.StringIO())
    rows = {r.contender: r for r in report.rows}
    assert rows["torch fused"].skipped and "fused" in rows["torch fused"].skipped
    ran = [r for r in report.rows if not r.skipped]
    assert {r.contender for r in ran} == set(bench.CONTENDERS) - {"torch fused"}
    assert all(r.baseline == "torch foreach" for r in ran)
    assert rows["torch foreach"].ratio == 1
    assert all(math.isfinite(r.ratio) and r.ratio > 0 for r in ran)
    assert "| RMSprop | 2x64 | new | torch foreach |" in report.markdown
    assert "- torch fused for RMSprop: torch.optim.RMSprop has no `fused`" in report.markdown


def test_cuda_mode_skips_cleanly_without_a_gpu(bench, capsys):
    pytest.importorskip("torch")
    if bench.cuda_unavailable() is None:
        pytest.skip("a GPU is here: the CUDA mode would run")
    assert bench.main(["--device", "cuda", "--quick"]) == 0
    assert "--device cuda skipped: " in capsys.readouterr().err


def test_bad_options_are_refused(bench):
    for argv in (["-o", "LBFGS"], ["-w", "16M"], ["--steps", "0"], ["--budget", "-1"]):
        with pytest.raises(SystemExit) as info:
            bench.main(argv)
        assert info.value.code == 2


def test_portopt_bench_help():
    out = subprocess.run([sys.executable, "-m", "portopt", "bench", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("usage: portopt bench")
    for option in ("--optimizer", "--workload", "--grads", "--steps", "--min-steps",
                   "--warmup", "--budget", "--threads", "--device", "--wait-quiet", "--warm-cache",
                   "--quick",
                   "--markdown"):
        assert option in out


def test_portopt_bench_has_every_option_of_the_script(bench):
    script_options = {s for a in bench.build_parser()._actions for s in a.option_strings}
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    cli_options = {s for a in sub.choices["bench"]._actions for s in a.option_strings}
    assert script_options == cli_options


def test_portopt_bench_forwards_the_options(tmp_path, capsys):
    pytest.importorskip("torch")
    if not SCRIPT.is_file():
        pytest.skip("not a source checkout")
    out = tmp_path / "cli.md"
    assert cli.main(["bench", "--quick", "-o", "sgd", "-w", "2x64", "-g", "in-place",
                     "--steps", "2", "--warmup", "1", "--threads", "1", "--warm-cache",
                     "--markdown", str(out)]) == 0
    text = out.read_text()
    assert "- command: `portopt bench " in text and "1 thread used" in text
    assert "- caches: kept warm" in text
    _, rows = table(text, "## All rows")
    assert {(r[0], r[1], r[2]) for r in rows} == {("SGD", "2x64", "in-place")}
    assert all(int(r[4]) <= 2 for r in rows)
    assert "SGD" in capsys.readouterr().out


def test_portopt_bench_without_the_script(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "bench_script", lambda: tmp_path / "benchmarks" / "bench.py")
    assert cli.main(["bench", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "portopt bench: error: the benchmark script is not at" in err
