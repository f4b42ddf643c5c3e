"""`serbench compare`: two runs compared, the undecided cases re-timed; an exit status CI can gate on."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.cli.options import fraction, seconds
from bench.errors import NotComparableError


def add_compare(commands: argparse._SubParsersAction) -> None:
    diff = commands.add_parser(
        "compare",
        help="compare two runs: exit 1 on a regression or missing cases, 2 on bad input, 4 if not comparable",
    )
    diff.add_argument("base", type=Path, help="run directory or pytest-benchmark JSON")
    diff.add_argument("new", type=Path, help="run directory or pytest-benchmark JSON")
    diff.add_argument(
        "--threshold",
        type=fraction,
        default=0.10,
        help="the least change worth a verdict: slower means the whole interval is above 1 + this (default 0.10)",
    )
    diff.add_argument("--confidence", type=fraction, default=0.95, help="of each ratio's interval (default 0.95)")
    diff.add_argument(
        "--budget",
        type=seconds,
        metavar="SECONDS",
        help="the most time re-timing may take (default: as long as the two runs took together, at least 2 min)",
    )
    diff.add_argument("--all", action="store_true", help="show unchanged rows too")
    diff.add_argument(
        "--no-confirm",
        action="store_true",
        help="decide from the stored runs alone (default: the suspect cases, decided slower between the runs or "
        "undecided and slower by their estimates, are re-timed, base and new code alternately on this machine, "
        "until decided; without it they stay undecided)",
    )
    diff.add_argument("--json", action="store_true", help="print a machine-readable summary instead of the table")
    diff.add_argument(
        "--pause-page-reporting",
        action="store_true",
        help="re-time with the VM balloon's free page reporting paused, as make bench runs (needs root)",
    )
    diff.add_argument(
        "--allow-different",
        action="store_true",
        help="compare runs from different machines or package versions (a warning, not a refusal)",
    )
    diff.set_defaults(func=cmd_compare, reads_stored_runs=True)


def cmd_compare(args: argparse.Namespace) -> int:
    """Exit 0 when clean, 1 on a regression or a case of the base missing from the new run, 2 on bad input,
    4 when the runs come from different machines or package versions (unless --allow-different), 5 when a case
    could not be decided (re-timing impossible here, or its budget spent)."""

    from bench.reporting.compare import (
        about_releases,
        compare,
        env_of,
        evidence,
        load_any,
        machine_differences,
        machine_of,
        releases_under_test,
        render,
        settle,
        summary,
        to_retime,
    )

    base, new = load_any(args.base), load_any(args.new)
    base_env, new_env = env_of(args.base), env_of(args.new)
    releases = releases_under_test(base_env, new_env)
    differences = [
        difference
        for difference in machine_differences(machine_of(args.base), machine_of(args.new))
        if not about_releases(difference, releases)  # the releases compared are the point, not a difference
    ]
    if differences and not args.allow_different:
        raise NotComparableError(
            "the runs were measured on different machines or package versions ("
            + "; ".join(differences)
            + "), so their times say nothing about the code; --allow-different compares them anyway"
        )
    table = compare(base, new, threshold=args.threshold, confidence=args.confidence, interleaved=bool(releases))
    reason = ""
    if len(to_retime(table)) and not releases and not args.no_confirm:  # releases: timed as re-timing would be
        table, reason = _retimed(args, table, bool(differences), (base_env, new_env))
    table = settle(table, args.threshold)
    strength = evidence(base_env, new_env)
    result = summary(table, differences, strength, reason)
    print(json.dumps(result, indent=1, default=str) if args.json else render(table, show_all=args.all))
    print(f"serbench compare: evidence: {strength}", file=sys.stderr)
    for difference in differences:
        print(f"serbench compare: WARNING: not the same machine or versions: {difference}", file=sys.stderr)
    if result["missing"]:
        print(
            f"serbench compare: {len(result['missing'])} cases of the base are missing from the new run",
            file=sys.stderr,
        )
    if result["regressions"]:
        print(f"serbench compare: {len(result['regressions'])} regressions found", file=sys.stderr)
    if result["unsettled"]:
        print(
            f"serbench compare: {len(result['unsettled'])} cases undecided but not slower by their estimates "
            f"(within {args.threshold:.0%}; not a regression; --all shows them)",
            file=sys.stderr,
        )
    if result["undecided"]:
        why = f": {reason}" if reason else " (a longer --budget, or a quieter machine, would decide them)"
        print(f"serbench compare: cannot decide {len(result['undecided'])} cases{why}", file=sys.stderr)
    return int(result["exit_status"])


MIN_BUDGET_S = 120.0
"""The least default budget: below it, a re-timing run's fixed cost (`retime.FIXED_PRIOR_S`) leaves one case."""


def default_budget(envs: tuple[dict, dict]) -> float:
    """As long as the two runs took together (each env.json's `machine.seconds`; 300 s for one without), and
    at least MIN_BUDGET_S."""
    return max(MIN_BUDGET_S, sum(float((env.get("machine") or {}).get("seconds") or 300.0) for env in envs))


def _retimed(args: argparse.Namespace, table: object, runs_differ: bool, envs: tuple[dict, dict]) -> tuple[object, str]:
    """Re-time the cases decided slower or not decided, base and new code alternately on this machine, until
    decided (`bench.timing.retime`); where that cannot be done they stay undecided, with the reason."""
    from bench.live import duration
    from bench.reporting.compare import (
        apply_retiming,
        family_size,
        machine_differences,
        machine_of,
        this_machine,
        to_retime,
    )
    from bench.timing.retime import Unconfirmable, retime

    flagged = to_retime(table)
    try:
        if not (args.base.is_dir() and args.new.is_dir()):
            raise Unconfirmable("re-timing needs two run directories, not pytest-benchmark files")
        if runs_differ:
            raise Unconfirmable("the runs come from different machines or versions")
        if elsewhere := machine_differences(machine_of(args.new), this_machine()):
            raise Unconfirmable(f"this machine differs from the runs' ({'; '.join(elsewhere)[:300]})")
        budget = args.budget or default_budget(envs)
        print(
            f"serbench compare: {len(flagged)} suspect cases (decided slower between the runs, or undecided and "
            "slower by their estimates); re-timing them, the strongest evidence of a slowdown first, base and new "
            f"code alternately, for at most {duration(budget)} ...",
            file=sys.stderr,
        )
        found, left_out = retime(
            args.base,
            args.new,
            flagged,
            budget_s=budget,
            threshold=args.threshold,
            confidence=args.confidence,
            comparisons=family_size(table),
            progress=lambda text: print(f"serbench compare: {text}", file=sys.stderr),
            pause_page_reporting=args.pause_page_reporting,
        )
    except Unconfirmable as reason:
        return apply_retiming(table, {}, str(reason)), str(reason)
    return apply_retiming(table, found, left_out), left_out
