"""`serbench report` and `serbench index`: reports and the index written from stored runs alone."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench.errors import UsageError


def add_report(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser("report", help="write report.md, tables and plots from a run's stored results")
    report.add_argument(
        "run_dir",
        type=Path,
        help="a run directory written by serbench run or bench (results.csv, env.json, ...), or by serbench versions",
    )
    report.set_defaults(func=cmd_report, reads_stored_runs=True)


def cmd_report(args: argparse.Namespace) -> int:
    from bench.reporting.report import write_report
    from bench.reporting.versions import RECORD, read_record, write_versions_report

    if os.path.lexists(args.run_dir / RECORD):  # a `serbench versions` run: every release's report, then theirs
        record = read_record(args.run_dir)
        for release in record["versions"]:
            if "not_installable" not in release:
                write_report(args.run_dir / release["label"])
        print(write_versions_report(args.run_dir))
        return 0
    print(write_report(args.run_dir))  # load_run refuses what is not a finished run, in one line
    return 0


def add_index(commands: argparse._SubParsersAction) -> None:
    index = commands.add_parser("index", help="write results/README.md indexing the stored runs")
    index.add_argument(
        "results", type=Path, nargs="?", default=Path("results"), help="the directory of stored runs (default results)"
    )
    index.set_defaults(func=cmd_index, reads_stored_runs=True)


def cmd_index(args: argparse.Namespace) -> int:
    from bench.reporting.index import write_index

    if not args.results.is_dir():
        raise UsageError(f"{args.results} is not a directory: give the directory of stored runs (default results)")
    print(write_index(args.results))
    return 0
