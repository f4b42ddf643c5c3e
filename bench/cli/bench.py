"""`serbench bench`: the user's own checkpoints, timed in every framework and format that can hold them."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bench.cli.options import add_run_options, add_selection_options
from bench.cli.runs import run_config, run_directory, timed_run
from frameworks.errors import SerbenchError

if TYPE_CHECKING:
    from bench.timing.rundir import RunDir

BENCH_BUDGET_S = 120.0
"""`bench`'s default --budget: a user's question deserves a decided answer more than `run`'s matrix does."""


def add_bench(commands: argparse._SubParsersAction) -> None:
    mine = commands.add_parser(
        "bench",
        help="benchmark your own checkpoint: every framework and format that can hold its tensors",
        description="Read each checkpoint once (a torch file, safetensors, npz, npy, a Keras .weights.h5, a Gluon "
        ".params or NDArray file, a TensorFlow checkpoint directory, or a directory of shards with a "
        "*.index.json), then time saving and loading its tensors in every framework and format that can hold "
        "them (warm and cold, cpu and cuda), with file size, peak memory and whether it comes back exactly, "
        "and answer: fastest exact load, smallest file, lowest memory, safe for untrusted files.",
    )
    mine.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="a checkpoint file or a shard directory")
    mine.add_argument(
        "--trusted",
        action="store_true",
        help="read pickle-based files (torch .pt/.bin, pickled npy): only for files you or a source you trust made",
    )
    add_selection_options(mine)
    add_run_options(mine)
    mine.set_defaults(func=cmd_bench)


def _open_answers(names: tuple[str, ...], frame: object) -> set[str]:
    """The cases of `bench`'s speed answers for these workloads not decided yet."""
    from bench.reporting.answer import answers
    from bench.reporting.decisions import open_cases

    return open_cases(answer for name in names for answer in answers(frame, name))


def _remove_what_this_command_made(run_dir: RunDir, created: bool) -> None:
    """A refused checkpoint's run leaves nothing behind: the run directory if this command made it, else the
    scratch directory and lock it put in the user's own. Runs while the lock is held; a refusal to remove (no
    marker) is said on stderr, so that the error that stopped the command is the one raised."""
    from frameworks.files import LOCK_NAME, remove_marked

    try:
        if created:
            remove_marked(run_dir.root, "the run directory this command made")
        else:
            remove_marked(run_dir.scratch, "the scratch directory this command made")
            (run_dir.root / LOCK_NAME).unlink(missing_ok=True)
    except SerbenchError as refusal:
        print(f"serbench: left in place: {' '.join(str(refusal).split())}", file=sys.stderr)


def cmd_bench(args: argparse.Namespace) -> int:
    """Benchmark the user's own checkpoints: read each once (in a child, behind the trust gate), then time
    every framework and format that can hold it, and answer which to use."""

    from bench import workloads
    from bench.checkpoints import prepare
    from bench.reporting.answer import checkpoint_answer
    from bench.reporting.report import load_run, write_report
    from bench.reporting.trust import verdicts
    from bench.timing.rundir import RunDir
    from frameworks.files import write_bytes_atomic

    out = run_directory(args, "checkpoint")
    run_dir = RunDir(out)
    created = not out.exists()
    run_dir.prepare()
    # the lock first: a command refused because another holds the directory has written nothing and cleans
    # nothing (cleaning there removed a running run's scratch/ and its lock)
    with run_dir.locked():
        try:
            entries = prepare(args.paths, run_dir.own_scratch(run_dir.checkpoint_store.name), args.trusted)
            write_bytes_atomic(run_dir.checkpoints, json.dumps({"checkpoints": entries}, indent=1).encode())
            os.environ[workloads.CHECKPOINTS_VARIABLE] = str(run_dir.checkpoints.resolve())  # for every child
            names = tuple(workload.name for workload in workloads.register_checkpoints(run_dir.checkpoints))
            for entry in entries:
                dropped = f"; dropped {len(entry['dropped'])} values that are not tensors" if entry["dropped"] else ""
                print(
                    f"{entry['source']}: {entry['tensor_count']} tensors, {entry['payload_bytes'] / 2**20:.1f} MiB "
                    f"({', '.join(entry['dtypes'])}), {entry['reader']}{dropped}; timed as {entry['name']}",
                    file=sys.stderr,
                )
            config = run_config(
                args,
                "checkpoint",
                out,
                workloads=names,
                budget_s=BENCH_BUDGET_S if args.budget is None else args.budget,
                open_cases=functools.partial(_open_answers, names),
            )
            out = timed_run(args, config)
        except BaseException:  # cleaning up, not handling: it is raised again
            if not run_dir.checkpoints.exists():  # a refused checkpoint leaves nothing behind
                _remove_what_this_command_made(run_dir, created)
            raise
    report = write_report(out)
    frame = load_run(out)[0]
    trust = verdicts(out)
    for entry in entries:
        print(f"\nFor {entry['source']} on this machine:")
        for line in checkpoint_answer(frame, entry["name"], trust):
            print(f"  {line}")
    print(f"\nresults: {out}\nreport: {report}")
    return 0
