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
from bench.errors import UsageError
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


RESUMED_STORE = "checkpoints-resumed"
"""Where `bench --resume` reads the checkpoints again, to compare them with the run's, before anything of the
run's is replaced."""


def _identity(entry: dict) -> tuple:
    """What makes two reads one checkpoint: its workload name, tensors (names, dtypes, shapes), shared groups and
    what they hold (`crc32`: a fine-tuned model has the original's names and shapes)."""
    tensors = tuple((t["name"], t["dtype"], tuple(t["shape"])) for t in entry["tensors"])
    shared = tuple(map(tuple, entry.get("shared", [])))
    return entry["name"], tensors, entry["payload_bytes"], shared, entry.get("crc32")


def _read_checkpoints(args: argparse.Namespace, run_dir: RunDir) -> list[dict]:
    """The checkpoints' entries, their tensors stored in the run's scratch. A resume reads them again beside the
    run's store and goes on only if they are the checkpoints the run timed (it reused another checkpoint's
    timings for a new file of the same name); refused, it leaves the run as it was."""
    from bench import workloads
    from bench.checkpoints import prepare
    from frameworks.files import remove_marked

    if args.resume and not run_dir.checkpoints.exists() and run_dir.is_checkpoint_run():
        raise UsageError(
            f"--resume: {run_dir.root} timed checkpoints, but its {run_dir.checkpoints.name} is gone, so which ones "
            "cannot be told: choose a new --out"
        )
    if not (args.resume and run_dir.checkpoints.exists()):
        return prepare(args.paths, run_dir.own_scratch(run_dir.checkpoint_store.name), args.trusted)
    timed = workloads.read_checkpoints(run_dir.checkpoints)
    made = run_dir.scratch if not os.path.lexists(run_dir.scratch) else run_dir.scratch / RESUMED_STORE
    staging = run_dir.own_scratch(RESUMED_STORE)
    try:
        entries = prepare(args.paths, staging, args.trusted)
        if [_identity(entry) for entry in entries] != [_identity(entry) for entry in timed]:
            names = ", ".join(entry["name"] for entry in timed)
            raise UsageError(
                f"--resume: {run_dir.root} timed other checkpoints ({names}: their tensors differ from these); "
                "resume it with the same files, or choose a new --out"
            )
    except BaseException:
        remove_marked(made, "the checkpoints read again to resume")
        raise
    store = run_dir.scratch / run_dir.checkpoint_store.name  # the same tensors: this read becomes the run's store
    remove_marked(store, "the run's store of the same checkpoints")
    os.rename(staging, store)
    return [{**entry, "store": str(store / Path(entry["store"]).name)} for entry in entries]


def cmd_bench(args: argparse.Namespace) -> int:
    """Benchmark the user's own checkpoints: read each once (in a child, behind the trust gate), then time
    every framework and format that can hold it, and answer which to use."""

    from bench import workloads
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
            entries = _read_checkpoints(args, run_dir)
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
