"""The ``portopt`` command (also ``python -m portopt``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import portopt


def _conformance(args: argparse.Namespace) -> int:
    from .testing import TestBackend
    from .testing._matrix import (
        format_row,
        format_summary,
        run_matrix,
        select_cases,
        summarize,
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

    def show(result):
        if args.quiet and result.passed:
            return
        print(format_row(result), flush=True)

    results = run_matrix(cases, backends, args.dtype, resync=args.resync, on_result=show)
    summary = summarize(results)
    print(format_summary(summary))
    if args.report:
        text = to_json(results) if args.report.endswith(".json") else to_markdown(results)
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"report written to {args.report}")
    return 1 if summary["failed"] else 0


def build_parser() -> argparse.ArgumentParser:
    from .testing._cases import SCENARIOS

    parser = argparse.ArgumentParser(
        prog="portopt",
        description="torch.optim on NumPy, CuPy and torch arrays, checked against torch.optim.",
    )
    parser.add_argument("--version", action="version", version=f"portopt {portopt.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    conf = sub.add_parser(
        "conformance",
        help="run the conformance matrix against torch.optim",
        description=(
            "Run every conformance case on every available backend and dtype against "
            "torch.optim (CPU, single-tensor path), comparing parameters and state after "
            "every step. Prints one row per case x backend x dtype and a summary; exits "
            "with 1 if any case fails."
        ),
    )
    conf.add_argument("--optimizer", "-o", action="append", metavar="NAME",
                      help="only this optimizer (repeatable), e.g. -o Adam")
    conf.add_argument("--backend", "-b", action="append", metavar="NAME",
                      choices=["numpy", "array_api_strict", "torch", "cupy"],
                      help="only this backend (repeatable): numpy, array_api_strict, torch, cupy")
    conf.add_argument("--dtype", "-d", action="append", metavar="DTYPE",
                      choices=["float32", "float64", "complex128"],
                      help="only this dtype (repeatable): float32, float64, complex128")
    conf.add_argument("--scenario", "-s", action="append", metavar="NAME", choices=SCENARIOS,
                      help="only this scenario (repeatable): " + ", ".join(SCENARIOS))
    conf.add_argument("--resync", action="store_true",
                      help="copy torch's state into the candidate after every step, so a "
                           "failure names the step that caused it")
    conf.add_argument("--report", metavar="FILE",
                      help="also write the results to FILE: JSON if it ends in .json, "
                           "Markdown otherwise")
    conf.add_argument("--list", action="store_true", help="list the selected cases and exit")
    conf.add_argument("--quiet", "-q", action="store_true",
                      help="print failing rows and the summary only")
    conf.set_defaults(func=_conformance)
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
