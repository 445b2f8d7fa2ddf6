"""The ``rlvr report`` subcommand, registered on the main parser by :func:`add_report_command`.

The report's notes (what was read, what was skipped) go to stderr; the path of report.html is
the one line on stdout, so ``open "$(rlvr report runs/x)"`` works.
"""

import argparse
import sys


def add_report_command(commands) -> None:
    """Register ``report`` on an argparse subparsers object (``parser.add_subparsers()``)."""
    report = commands.add_parser("report", help="plots, scaling fits and an HTML report of one or more runs")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (written by rlvr train)")
    report.add_argument("--out", default=None, help="output directory (default: <first RUN_DIR>/report)")
    report.add_argument(
        "--fit-metrics",
        default=None,
        help="comma-separated metrics to fit against step "
        "(default: train/accuracy,train/response_length,eval/accuracy and any tool metric)",
    )
    report.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    report.set_defaults(handler=cmd_report)


def cmd_report(args) -> int:
    from rlvr.report import build_report

    metrics = None
    if args.fit_metrics is not None:
        metrics = [m.strip() for m in args.fit_metrics.split(",") if m.strip()]
    path = build_report(args.run_dirs, args.out, metrics, log=lambda line: print(line, file=sys.stderr))
    print(path)
    return 0
