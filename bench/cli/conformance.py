"""`serbench support-table`, `recipes` and `roundtrip`: what each adapter declares it holds, and checks of it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import frameworks
from bench.cli import EXIT_REGRESSION
from bench.cli.options import SIZE_LIST, add_frameworks_option, add_update_option, rewrite_block

ROUNDTRIP_TIMEOUT_S = 1800


def add_support_table(commands: argparse._SubParsersAction) -> None:
    table = commands.add_parser("support-table", help="print the framework x format x kind support table")
    add_update_option(table, "docs/support.md")
    table.set_defaults(func=cmd_support_table)


def cmd_support_table(args: argparse.Namespace) -> int:
    from bench.conformance.support import replace_block, support_markdown

    table = support_markdown()
    if args.update_readme:
        rewrite_block(args.update_readme, lambda text: replace_block(text, table))
    else:
        sys.stdout.write(table)
    return 0


def add_recipes(commands: argparse._SubParsersAction) -> None:
    recipes = commands.add_parser(
        "recipes",
        help="the d2l File I/O and seed tutorials' recipes in every framework: one line each, exit 1 on a change",
        description="Run the Dive into Deep Learning 'File I/O' recipes (a tensor, a list, a dict, the MLP loaded "
        "into a clone with clone(X) == net(X), a training checkpoint) and the seed tutorials' (PyTorch whole model "
        "and weights_only, map_location, transfer learning; bit-exact resume; BatchNorm buffers) in every "
        "framework, and print one line each: ok when the outcome is the expected one (exact, or the recorded "
        "drift), FAIL otherwise. Exit status 1 if any recipe failed.",
    )
    add_frameworks_option(recipes)
    recipes.set_defaults(func=cmd_recipes)


def cmd_recipes(args: argparse.Namespace) -> int:
    """The d2l File I/O and seed tutorials' recipes, one line each; exit 1 on any unexpected outcome."""
    import tempfile

    from bench.conformance.recipes import run_recipes

    with tempfile.TemporaryDirectory(prefix="serbench-recipes-") as scratch:
        print("running the recipes (about a minute per framework) ...", file=sys.stderr)
        outcomes, status, tail = run_recipes(args.frameworks, Path(scratch) / "outcomes.jsonl")
    for outcome in outcomes:
        print(outcome.line())
    counts = {kind: sum(o.outcome == kind for o in outcomes) for kind in ("passed", "failed", "skipped")}
    if not outcomes or status not in (0, 1):
        raise RuntimeError(f"the recipe checks could not run (pytest exit status {status}): {tail}")
    print(
        f"{len(outcomes)} recipes: {counts['passed']} as expected, {counts['failed']} FAILED, "
        f"{counts['skipped']} skipped here (a missing framework or GPU)"
    )
    return EXIT_REGRESSION if counts["failed"] else 0


def add_roundtrip(commands: argparse._SubParsersAction) -> None:
    matrix = commands.add_parser("roundtrip", help="run the round-trip matrix and print each outcome")
    add_frameworks_option(matrix)
    matrix.add_argument(
        "--sizes",
        type=SIZE_LIST,
        help="comma-separated workload sizes: small (KiB), medium (up to 64 MiB), large (553 MB); default small",
    )
    matrix.set_defaults(func=cmd_roundtrip)


def cmd_roundtrip(args: argparse.Namespace) -> int:
    """Run the round-trip matrix now: one line per cell a format holds, whether it is what the suite
    expects, and one line per framework naming the cells its formats cannot hold. Exit 1 on a surprise.
    A framework of another environment (MXNet's) runs there, in a child, as `run` starts it."""
    surprises = 0
    for name in args.frameworks or frameworks.names():
        if frameworks.runs_here(name):
            lines, found = _roundtrip_here(name, args.sizes or ("small",))
        else:
            lines, found = _roundtrip_there(name, args.sizes or ("small",))
        for line in lines:
            print(line, flush=True)
        surprises += found
    print(f"unexpected outcomes: {surprises}" if surprises else "every outcome is the one the suite expects")
    return 1 if surprises else 0


def _roundtrip_here(name: str, sizes: tuple[str, ...]) -> tuple[list[str], int]:
    from bench import workloads
    from bench.conformance.expectations import expected, meets
    from bench.conformance.roundtrip import roundtrip

    try:
        adapter = frameworks.get_adapter(name)
    except ImportError as error:
        return [f"{name:11} unavailable: {error}"], 1
    lines, surprises, not_held = [], 0, {}
    for fmt in adapter.formats:
        for workload in workloads.select(tuple(sizes)):
            want = expected(name, fmt, workload)
            outcome = roundtrip(adapter, fmt, workload.name)
            if want.status == "unsupported" and outcome.status == "unsupported":
                not_held.setdefault(fmt, []).append(workload.name)
                continue
            verdict = "as expected" if meets(outcome, want) else f"UNEXPECTED (expected {want.status})"
            surprises += verdict != "as expected"
            lines.append(f"{name:11} {fmt:14} {workload.name:28} {outcome.summary()}  [{verdict}]")
    if not_held:
        listed = "; ".join(
            f"{fmt}: {len(names)} ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})"
            for fmt, names in not_held.items()
        )
        lines.append(f"{name:11} cannot hold, as expected: {listed}")
    return lines, surprises


def _roundtrip_there(name: str, sizes: tuple[str, ...]) -> tuple[list[str], int]:
    """`serbench roundtrip --frameworks NAME` in NAME's environment: its lines, and its surprises (each
    UNEXPECTED line, or 1 where the child could not run)."""
    import subprocess

    arguments = ["-m", "bench.cli", "roundtrip", "--frameworks", name, "--sizes", ",".join(sizes)]
    try:
        child = frameworks.run_child(name, arguments, ROUNDTRIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return [f"{name:11} unavailable: its round trips did not finish in {ROUNDTRIP_TIMEOUT_S} s"], 1
    lines = child.stdout.splitlines()[:-1]  # the child's own summary line is replaced by the total
    if child.returncode not in (0, 1) or not lines:
        why = (child.stderr.strip().splitlines() or [f"exit {child.returncode}"])[-1]
        return [f"{name:11} unavailable in {frameworks.python_for(name)}: {why}"], 1
    return lines, sum("UNEXPECTED" in line or " unavailable: " in line for line in lines)
