"""What the commands that time a run share (`run`, `bench`, `versions`): the run directory their --out and
--resume name, the RunConfig their options make, and the timed run itself."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli import resumable
from bench.errors import UsageError


def run_directory(args: argparse.Namespace, preset: str) -> Path:
    """The run directory: --out, or a new one (then recorded in args.out, so an error about it is the user's
    input and the interrupted run's hint can name it); an existing non-empty one only with --resume."""
    from bench.timing.rundir import RunDir
    from bench.timing.runner import default_out

    if args.resume and args.out is None:
        raise UsageError("--resume needs --out, the run directory to finish")
    out = args.out or default_out(preset)
    if out.exists() and not args.resume:
        if not out.is_dir() or any(out.iterdir()):
            raise UsageError(
                f"--out {out} already exists and is not empty: add --resume to finish that run, or choose a new "
                "directory (a new run written into an old one would mix their rows)"
            )
    if args.resume and out.exists() and not RunDir(out).env.exists():
        raise UsageError(f"--resume: {out} is not a serbench run directory (no env.json)")
    args.out = out
    return out


def run_config(args: argparse.Namespace, preset: str, out: Path, **overrides: object):
    """The RunConfig of the options `options.add_run_options` (and the selection and workload options) define."""
    from bench.timing.runner import RunConfig

    options = {
        "preset": preset,
        "frameworks": args.frameworks,
        "formats": args.formats,
        "kinds": getattr(args, "kinds", None),
        "sizes": getattr(args, "sizes", None),
        "devices": args.devices,
        "out": out,
        "resume": args.resume,
        "peak_memory": not args.no_peak_memory,
        "processes": args.processes,
        "extra_load_processes": getattr(args, "extra_load_processes", None),
        "threads": args.threads,
        "pause_page_reporting": args.pause_page_reporting,
        "only_cases": _read_cases(args.cases) if getattr(args, "cases", None) else None,
        "budget_s": args.budget or 0.0,
    }
    return RunConfig(**{**options, **overrides})


def _read_cases(path: Path) -> tuple[str, ...]:
    """`--cases FILE`: a JSON list of case ids (framework|format|workload|device|cache|op|threads)."""
    from frameworks import stored

    return tuple(stored.read_json(path, what="case list", schema=stored.ListOf(str), cap=1 << 20))


def timed_run(args: argparse.Namespace, config: object) -> Path:
    """Run the benchmark `config` describes; interrupted, it says how to resume (finished frameworks are kept)."""
    from bench.timing.runner import run

    hint = (
        f"finished frameworks are kept: serbench {args.command} --resume --out {config.out} (with the same "
        "options) finishes the run"
    )
    with resumable(args, hint):
        return run(config)
