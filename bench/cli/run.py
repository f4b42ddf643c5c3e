"""`serbench run`: the benchmark matrix (pytest-benchmark), and with --scale the checkpoints at scale."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli import resumable
from bench.cli.options import add_preset_options, add_run_options, add_selection_options, add_workload_options
from bench.cli.runs import run_config, run_directory, timed_run
from bench.errors import UsageError

MATRIX_ONLY = (
    ("--resume", "resume"),
    ("--frameworks", "frameworks"),
    ("--formats", "formats"),
    ("--kinds", "kinds"),
    ("--sizes", "sizes"),
    ("--threads", "threads"),
    ("--processes", "processes"),
    ("--extra-load-processes", "extra_load_processes"),
    ("--no-peak-memory", "no_peak_memory"),
    ("--cases", "cases"),
    ("--budget", "budget"),
)
"""`run` options of the benchmark matrix that `run --scale` has no use for: refused there, not ignored."""
SCALE_ONLY = (("--llm", "llm"), ("--scale-data", "scale_data"))


def llm_names() -> list[str]:
    from bench.scale_workloads import TRANSFORMERS

    return list(TRANSFORMERS)


def add_run(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("run", help="run the benchmark matrix (pytest-benchmark) and write results")
    preset = add_preset_options(parser)
    preset.add_argument(
        "--scale",
        action="store_true",
        help="checkpoints at scale: an LLM-shaped state dict (one file and shards) with every loader, the "
        "distributed checkpoint engines across ranks, and the scaling sweep with fitted costs (about 12 minutes here)",
    )
    add_selection_options(parser)
    parser.add_argument(
        "--llm",
        choices=llm_names(),
        help="with --scale: the LLM-shaped workload (default: the largest whose payload fits a sixth of the memory)",
    )
    parser.add_argument(
        "--scale-data",
        type=Path,
        help="with --scale: where its checkpoints are written once and kept for later runs (default .scale-data)",
    )
    add_workload_options(parser)
    add_run_options(parser)
    parser.add_argument(
        "--cases",
        type=Path,
        metavar="FILE",
        help="time only the cases of the selection whose ids this JSON list names (compare's re-timing uses it)",
    )
    parser.add_argument(
        "--extra-load-processes",
        type=int,
        help="more processes that re-time only the 64 MiB+ loads (quick 0, full 2): less noise, more time",
    )
    parser.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from bench.reporting.report import console_summary, load_run, write_report
    from bench.timing.rundir import RunDir

    if args.scale:
        return cmd_run_scale(args)
    given = [flag for flag, dest in SCALE_ONLY if getattr(args, dest) is not None]
    if given:
        raise UsageError(f"{', '.join(given)} apply only to the scale run: add --scale, or leave them out")
    preset = "full" if args.full else "quick"
    out = run_directory(args, preset)
    if args.resume and RunDir(out).is_checkpoint_run():  # its cases are the checkpoints' workloads
        raise UsageError(
            f"{out} is a `serbench bench` run (it holds {RunDir(out).checkpoints.name}): resume it with "
            f"`serbench bench CHECKPOINT... --resume --out {out}`"
        )
    out = timed_run(args, run_config(args, preset, out, open_cases=_open_advice))
    print(console_summary(load_run(out)[0]))
    print(f"results: {out}\nreport: {write_report(out)}")
    return 0


def _open_advice(frame: object) -> set[str]:
    """The cases of the report's speed advice not decided yet (what `run --budget` times again)."""
    from bench.reporting.decisions import open_cases
    from bench.reporting.report import speed_answers

    return open_cases(speed_answers(frame))


def cmd_run_scale(args: argparse.Namespace) -> int:
    """`serbench run --scale`: the LLM-shaped checkpoints, the distributed engine and the scaling sweep."""
    from bench.reporting.scale import write_scale_report
    from bench.scale.runner import ScaleConfig, run

    ignored = [flag for flag, dest in MATRIX_ONLY if getattr(args, dest, None) not in (None, False)]
    if ignored:
        raise UsageError(
            f"--scale takes none of {', '.join(ignored)}: they apply to the matrix run; the scale run's loaders, "
            "formats and rounds are its recipes'"
        )
    out = run_directory(args, "scale")
    config = ScaleConfig(
        out=out,
        data=args.scale_data or Path(".scale-data"),
        llm=args.llm,
        devices=args.devices,
        pause_page_reporting=args.pause_page_reporting,
    )
    with resumable(args, f"{out} is incomplete (the checkpoints in {config.data} are kept)"):
        run(config)
    print(f"results: {out}\nreport: {write_scale_report(out)}")
    return 0
