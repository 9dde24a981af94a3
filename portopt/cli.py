"""The ``portopt`` command (also ``python -m portopt``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import portopt


def _conformance(args: argparse.Namespace) -> int:
    from .testing import TestBackend
    from .testing._matrix import (
        format_summary,
        plan_matrix,
        run_jobs,
        select_cases,
        summarize,
        to_html,
        to_json,
        to_markdown,
    )

    try:
        import torch  # noqa: F401  (the oracle)
    except ImportError:
        print("portopt conformance needs torch, the reference: "
              'pip install torch==2.13.0 -e ".[test]"', file=sys.stderr)
        return 2

    cases = select_cases(args.optimizer, args.scenario)
    if not cases:
        print(f"no case matches optimizer={args.optimizer} scenario={args.scenario}",
              file=sys.stderr)
        return 2
    if args.list:
        for case in cases:
            print(f"{case.id:<40} {case.name:<8} {case.scenario:<11} {dict(case.kwargs)}")
        return 0

    backends = []
    for name in args.backend or [b.value for b in TestBackend]:
        backend = TestBackend(name)
        reason = backend.unavailable()
        if reason is None:
            backends.append(backend)
        else:
            print(f"skip  {backend.value}: {reason}")
    if not backends:
        print("no backend is available", file=sys.stderr)
        return 2

    jobs = plan_matrix(cases, backends, args.dtype)
    progress = _Progress(len(jobs), quiet=args.quiet,
                         bar=sys.stdout.isatty() if args.progress is None else args.progress)
    results = run_jobs(jobs, resync=args.resync, on_result=progress.update)
    progress.close()
    summary = summarize(results)
    print(format_summary(summary))
    if args.report:
        if args.report.endswith(".json"):
            text = to_json(results)
        elif args.report.endswith((".html", ".htm")):
            text = to_html(results)
        else:
            text = to_markdown(results)
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"report written to {args.report}")
    return 1 if summary["failed"] else 0


class _Progress:
    """How far a conformance run is. On a terminal, a bar redrawn in place under the
    rows; otherwise plain lines: each row with its count, or with ``quiet`` a count line
    at every tenth of the run (failures are always printed in full)."""

    WIDTH = 30

    def __init__(self, total: int, *, quiet: bool, bar: bool) -> None:
        self.total, self.quiet, self.bar = total, quiet, bar
        self.done = self.failed = 0
        self.began = time.perf_counter()
        self.tenth = 0

    def update(self, result: Any) -> None:
        from .testing._matrix import format_row

        self.done += 1
        self.failed += not result.passed
        show = not result.skipped and (not self.quiet or not result.passed)
        if self.bar:
            if show:
                sys.stdout.write("\r\033[K" + format_row(result) + "\n")
            self._draw()
            return
        count = f"[{self.done:>{len(str(self.total))}}/{self.total}]"
        if show:
            print(f"{count} {format_row(result)}", flush=True)
        elif self.quiet and self.total and self.done * 10 // self.total > self.tenth:
            self.tenth = self.done * 10 // self.total
            print(f"{count} {100 * self.done // self.total}% done, {self.failed} failed, "
                  f"{time.perf_counter() - self.began:.0f}s", flush=True)

    def _draw(self) -> None:
        filled = self.WIDTH * self.done // max(self.total, 1)
        elapsed = time.perf_counter() - self.began
        left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        sys.stdout.write(f"\r\033[K[{'#' * filled}{'.' * (self.WIDTH - filled)}] "
                         f"{self.done}/{self.total}, {self.failed} failed, "
                         f"{elapsed:.0f}s (about {left:.0f}s left)")
        sys.stdout.flush()

    def close(self) -> None:
        if self.bar:
            sys.stdout.write("\r\033[K")
            sys.stdout.flush()


def _plot_lr(args: argparse.Namespace) -> int:
    import ast

    from . import plotting

    def fail(message: str) -> int:
        print(f"portopt plot-lr: error: {message}", file=sys.stderr)
        return 2

    if args.name not in plotting.SCHEDULERS:
        return fail(f"unknown scheduler {args.name!r}; known: " + ", ".join(plotting.SCHEDULERS))
    kwargs = {}
    for item in args.args:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            return fail(f"malformed argument {item!r}: expected NAME=VALUE, e.g. step_size=30")
        if key in kwargs:
            return fail(f"argument {key!r} is given twice")
        if key in ("lrs", "optimizer"):
            return fail(f"set {key} with --lr/--optimizer, not {key}=")
        try:
            kwargs[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            kwargs[key] = text  # mode=triangular2, lr_lambda=lambda e: ...
    if args.steps < 1:
        return fail(f"--steps must be at least 1, got {args.steps}")
    metrics = None
    if args.metrics is not None:
        try:
            metrics = [float(m) for m in args.metrics.replace(",", " ").split()]
        except ValueError:
            return fail(f"--metrics must be numbers separated by commas, got {args.metrics!r}")
    try:
        plotting.plot_lr(args.name, args.steps, output=args.output, title=args.title,
                         metrics=metrics, lrs=args.lr or (0.1,), optimizer=args.optimizer,
                         **kwargs)
    except ImportError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot write {args.output}: {exc.strerror or exc}")
    except Exception as exc:  # the scheduler's own complaint about its arguments
        return fail(f"{args.name}: {type(exc).__name__}: {exc}")
    print(f"wrote {args.output}")
    return 0


def bench_script() -> Path:
    """Where ``portopt bench`` looks for the benchmark: ``benchmarks/bench.py`` at the root
    of the source tree portopt is imported from (it is not part of the package)."""
    return Path(portopt.__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def _bench(args: argparse.Namespace) -> int:
    import importlib.util

    script = bench_script()
    if not script.is_file():
        print(f"portopt bench: error: the benchmark script is not at {script}: it lives in "
              "benchmarks/ of portopt's source tree and is not installed with the package; "
              "run it from a checkout (pip install -e . there)", file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location("portopt_bench", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[spec.name]
        raise
    argv: list[str] = []
    for flag, dest in (("--optimizer", "optimizer"), ("--workload", "workload"),
                       ("--grads", "grads")):
        for value in getattr(args, dest) or ():
            argv += [flag, value]
    for flag, dest in (("--steps", "steps"), ("--min-steps", "min_steps"),
                       ("--warmup", "warmup"), ("--budget", "budget"),
                       ("--threads", "threads"), ("--device", "device"),
                       ("--wait-quiet", "wait_quiet"), ("--markdown", "markdown")):
        value = getattr(args, dest)
        if value is not None:
            argv += [flag, str(value)]
    for flag, dest in (("--quick", "quick"), ("--warm-cache", "warm_cache")):
        if getattr(args, dest):
            argv.append(flag)
    return module.main(argv, prog="portopt bench")


def build_parser() -> argparse.ArgumentParser:
    from .testing._cases import SCENARIOS
    from .testing._schedulers import SCHEDULER_SCENARIOS

    parser = argparse.ArgumentParser(
        prog="portopt",
        description="torch.optim on NumPy, CuPy and torch arrays, checked against torch.optim.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Each command has its own help: portopt COMMAND --help.\n\n"
            "examples:\n"
            "  portopt conformance -q --report report.html\n"
            "  portopt conformance -o Adam -b numpy -d float32 --resync\n"
            "  portopt plot-lr OneCycleLR max_lr=0.1 total_steps=100 -o onecycle.png\n"
            "  portopt bench --quick\n\n"
            "Python API: import portopt; portopt.optim, portopt.optim.lr_scheduler,\n"
            "portopt.optim.swa_utils, portopt.utils, portopt.save / portopt.load,\n"
            "portopt.testing (the conformance harness). Docs: the README."
        ),
    )
    parser.add_argument("--version", action="version", version=f"portopt {portopt.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    conf = sub.add_parser(
        "conformance",
        help="run the conformance matrix against torch.optim",
        description=(
            "Run every conformance case on every available backend and dtype against "
            "torch.optim (CPU, single-tensor path), comparing parameters and state after "
            "every step; and every scheduler case against torch.optim.lr_scheduler, "
            "comparing each group's lr and momentum after every step; and AveragedModel and "
            "update_bn against torch.optim.swa_utils; and runs moved mid-way between "
            "torch.optim and portopt (both ways, optimizer and scheduler state) that must "
            "carry on where torch carries on. Prints one row per "
            "case x backend x dtype and a summary; exits with 1 if any case fails "
            "(2 if torch is missing or no case or backend matches the filters)."
        ),
        epilog=(
            "examples: portopt conformance -q --report report.html | "
            "portopt conformance -o Adam -o OneCycleLR -b numpy | "
            "portopt conformance -s migration -d float64 | "
            "portopt conformance --list -o SGD"
        ),
    )
    conf.add_argument("--optimizer", "-o", action="append", metavar="NAME",
                      help="only this optimizer, scheduler, AveragedModel or update_bn "
                           "(repeatable), e.g. -o Adam -o OneCycleLR")
    conf.add_argument("--backend", "-b", action="append", metavar="NAME",
                      choices=["numpy", "array_api_strict", "torch", "cupy"],
                      help="only this backend (repeatable): numpy, array_api_strict, torch, cupy")
    conf.add_argument("--dtype", "-d", action="append", metavar="DTYPE",
                      choices=["float32", "float64", "complex128"],
                      help="only this dtype (repeatable): float32, float64, complex128")
    scenarios = list(dict.fromkeys(SCENARIOS + SCHEDULER_SCENARIOS + ("swa", "migration")))
    conf.add_argument("--scenario", "-s", action="append", metavar="NAME", choices=scenarios,
                      help="only this scenario (repeatable): " + ", ".join(scenarios))
    conf.add_argument("--resync", action="store_true",
                      help="copy torch's state into the candidate after every step, so a "
                           "failure names the step that caused it")
    conf.add_argument("--report", metavar="FILE",
                      help="also write the results to FILE: JSON if it ends in .json, an "
                           "HTML page if it ends in .html, Markdown otherwise")
    conf.add_argument("--list", action="store_true", help="list the selected cases and exit")
    conf.add_argument("--quiet", "-q", action="store_true",
                      help="print failing rows, the progress and the summary only")
    conf.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                      help="a progress bar redrawn in place (default: when the output is a "
                           "terminal; otherwise each row is numbered, and with --quiet a "
                           "line is printed at every tenth of the run)")
    conf.set_defaults(func=_conformance)

    import textwrap

    from .plotting import SCHEDULERS  # no matplotlib import: that waits for a plot

    plot = sub.add_parser(
        "plot-lr",
        help="plot a learning-rate schedule to a PNG (needs matplotlib)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="\n\n".join(textwrap.fill(p, 79) for p in (
            "Build a portopt scheduler on a throwaway optimizer (SGD with momentum=0.9, "
            "or Adam), step it --steps times the way a training loop does, and plot the "
            "learning rate of each param group against the step; when the scheduler "
            "cycles the momentum (CyclicLR, OneCycleLR) a second panel shows it.",
            "Scheduler arguments are ARG=VALUE with torch's names. VALUE is read as a "
            "Python literal (30, 0.1, [30, 80], True, None) and otherwise kept as text "
            "(mode=triangular2). Functions (lr_lambda, scale_fn) are lambda strings, "
            "checked before use: arithmetic, comparisons, if/else, numbers, math.<name> "
            "and min/max/abs only. SequentialLR and ChainedScheduler take schedulers as a "
            "list of spec strings. ReduceLROnPlateau sees --metrics, or a synthetic loss "
            "that falls, then plateaus from step 21.",
            "schedulers: " + ", ".join(SCHEDULERS),
        )),
        epilog=(
            "examples:\n"
            "  portopt plot-lr StepLR step_size=30 gamma=0.1 --steps 100 -o step.png\n"
            "  portopt plot-lr OneCycleLR max_lr=0.1 total_steps=100 --steps 100 -o 1cycle.png\n"
            "  portopt plot-lr CyclicLR base_lr=0.01 max_lr=0.1 step_size_up=20 "
            "mode=triangular2 --steps 120 -o cyclic.png\n"
            "  portopt plot-lr MultiStepLR 'milestones=[30, 80]' --lr 0.1 --lr 0.05 "
            "--steps 100 -o multistep.png\n"
            "  portopt plot-lr LambdaLR 'lr_lambda=lambda epoch: 0.95 ** epoch' "
            "--steps 50 -o lambda.png\n"
            "  portopt plot-lr SequentialLR \"schedulers=['LinearLR(start_factor=0.1, "
            "total_iters=10)', 'CosineAnnealingLR(T_max=90)']\" 'milestones=[10]' "
            "--steps 100 -o warmup_cosine.png\n"
            "  portopt plot-lr ReduceLROnPlateau patience=2 --metrics 1,0.8,0.7,0.7,0.7,0.7 "
            "--steps 6 -o plateau.png\n"
            "  portopt plot-lr SWALR swa_lr=0.05 anneal_epochs=20 --steps 50 -o swa.png"
        ),
    )
    plot.add_argument("name", metavar="NAME", help="the scheduler's class name, e.g. StepLR")
    plot.add_argument("args", nargs="*", metavar="ARG=VALUE",
                      help="a scheduler argument, e.g. step_size=30 (without the optimizer)")
    plot.add_argument("--steps", "-n", type=int, default=100,
                      help="how many steps to plot (default: 100)")
    plot.add_argument("--output", "-o", required=True, metavar="FILE.png",
                      help="where to write the PNG")
    plot.add_argument("--lr", action="append", type=float, metavar="LR",
                      help="initial learning rate of one param group; repeat for more "
                           "groups (default: one group at 0.1)")
    plot.add_argument("--optimizer", choices=["SGD", "Adam"], default="SGD",
                      help="SGD (momentum=0.9) or Adam (its betas[0] is the momentum); "
                           "default: SGD")
    plot.add_argument("--metrics", metavar="M0,M1,...",
                      help="ReduceLROnPlateau only: the metric at each step, at least "
                           "--steps of them")
    plot.add_argument("--title", help="figure title (default: the name and arguments)")
    plot.set_defaults(func=_plot_lr)

    bench = sub.add_parser(
        "bench",
        help="time optimizer steps against torch.optim (runs benchmarks/bench.py)",
        description=textwrap.fill(
            "Run benchmarks/bench.py from portopt's source tree: time opt.step() of portopt "
            "(its default path, and foreach=False) against torch.optim (foreach=False, "
            "foreach=True, fused=True) in one process, interleaved, for Adam, AdamW, SGD "
            "(momentum=0.9), RMSprop and Adagrad on float32 workloads, with gradients new "
            "every step and written in place. Reports the median step time, the ratio to "
            "torch fused (or foreach where torch has no fused kernel), the fraction of the "
            "memory roofline at the bandwidth measured in the same process, and the extra "
            "memory of a step. Needs torch; --device cuda needs CuPy and torch with CUDA.",
            79,
        ),
        epilog=(
            "examples:\n"
            "  portopt bench --quick                      # a smoke run, seconds\n"
            "  portopt bench --markdown RESULTS.md        # the full run, a few minutes\n"
            "  portopt bench -o Adam -w 1x16M -g new --steps 200\n"
            "  portopt bench --device cuda --markdown gpu.md"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("--optimizer", "-o", action="append", metavar="NAME",
                       help="only this optimizer (repeatable): Adam, AdamW, SGD, RMSprop, "
                            "Adagrad (default: all)")
    bench.add_argument("--workload", "-w", action="append", metavar="CxS",
                       help="COUNT tensors of SIZE float32 elements (repeatable), K and M "
                            "suffixes allowed (default: 1x16M, 1000x4096, 10000x64; with "
                            "--quick: 1x64K, 16x1K, 256x64)")
    bench.add_argument("--grads", "-g", action="append", choices=["new", "in-place"],
                       help="gradients new arrays every step, or written in place into the "
                            "existing .grad (repeatable; default: both)")
    bench.add_argument("--steps", "-n", type=int, metavar="N",
                       help="at most N timed steps per contender and cell (default: 100; "
                            "with --quick: 5)")
    bench.add_argument("--min-steps", type=int, metavar="N",
                       help="at least N timed steps per contender, whatever the budget "
                            "(default: 5; with --quick: 3)")
    bench.add_argument("--warmup", type=int, metavar="N",
                       help="untimed steps per contender before timing, the first of which "
                            "allocates the state (default: 3)")
    bench.add_argument("--budget", type=float, metavar="SECONDS",
                       help="seconds per cell (optimizer x workload x grads) after warm-up, "
                            "shared by its contenders, untimed preparation of each step "
                            "included (default: 2; with --quick: 0.2)")
    bench.add_argument("--threads", type=int, metavar="N",
                       help="torch and numba threads, and threads of the bandwidth "
                            "measurement (default: 2)")
    bench.add_argument("--device", choices=["cpu", "cuda"],
                       help="cpu: portopt on NumPy vs torch on CPU (default); cuda: portopt "
                            "on CuPy vs torch on CUDA, skipped when either is missing")
    bench.add_argument("--warm-cache", action="store_true",
                       help="do not evict the caches before each timed step (by default an "
                            "untimed pass over a buffer twice the last-level cache does)")
    bench.add_argument("--wait-quiet", type=float, metavar="SECONDS",
                       help="before each cell, wait up to SECONDS for other processes to "
                            "leave the CPUs alone, and run a cell that still ran beside other "
                            "work once more (default: 0, no waiting)")
    bench.add_argument("--quick", action="store_true",
                       help="small workloads and few steps: a smoke run, not a measurement")
    bench.add_argument("--markdown", metavar="FILE",
                       help="write the Markdown report (machine, bandwidth, tables) to FILE")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except BrokenPipeError:  # `portopt conformance | head`: stop quietly
        sys.stderr.close()
        return 1


if __name__ == "__main__":
    sys.exit(main())
