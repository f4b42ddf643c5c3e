"""Run one framework's safety matrix: `python -m bench.safety.host FRAMEWORK WORKDIR OUT.jsonl`.

Inputs are generated in a child (`--stage generate` stops there, so that a caller can count every
framework's loads before any runs: `planned_loads`); every (format, mode, input) load then runs in
its own process, forked from a server that has imported the framework, with a timeout, an address-space cap, and
an RSS watchdog in this process. A marker file left behind proves code ran, whatever else happened.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from bench.live import append_event
from frameworks.gate import BUDGET_VARIABLE

if TYPE_CHECKING:
    from bench.safety.inputs import SafetyInput

TIMEOUT_S = 60.0
FIFO_TIMEOUT_S = 5.0
"""A load blocked on a FIFO never returns; five seconds tell that apart from a slow load."""
MEMORY_CAP_BYTES = 4 << 30
SAFETY_LOAD_BUDGET = 1 << 30
"""serbench's load budget (frameworks.gate) in the children: bombs declare more than this."""


def _generate(framework: str, workdir: str, manifest: str) -> None:
    from bench.safety.inputs import generate, write_manifest

    write_manifest(generate(framework, Path(workdir)), Path(manifest))


def watch(process: multiprocessing.Process, receiver: object, timeout_s: float, cap_bytes: int) -> dict[str, str]:
    """Wait for the child's report; turn silence into hang, crash or memory-blowup."""
    deadline = time.monotonic() + timeout_s
    while True:
        if receiver.poll(0.05):
            try:
                report = receiver.recv()
            except EOFError:
                report = None
            process.join(10)
            if report is not None:
                return report
            break
        if not process.is_alive():
            process.join()
            break
        try:
            rss = psutil.Process(process.pid).memory_info().rss
        except psutil.NoSuchProcess:
            rss = 0
        if rss > cap_bytes:
            process.kill()
            process.join()
            return {"outcome": "memory-blowup", "detail": f"RSS passed {cap_bytes >> 20} MiB; killed"}
        if time.monotonic() > deadline:
            process.kill()
            process.join()
            return {"outcome": "hang", "detail": f"no result after {timeout_s:.0f} s; killed"}
    code = process.exitcode
    if code is not None and code < 0:
        return {"outcome": "crash", "detail": f"killed by {signal.Signals(-code).name}"}
    return {"outcome": "crash", "detail": f"exited with status {code} without a result"}


def manifest_of(workdir: Path) -> Path:
    return workdir / "manifest.json"


def planned_loads(framework: str, workdir: Path) -> list[tuple[SafetyInput, str]]:
    """Every (input, mode) the load stage runs, in order, from the generated manifest."""
    from bench.safety.inputs import read_manifest
    from bench.safety.modes import modes_for

    return [(item, mode) for item in read_manifest(manifest_of(workdir)) for mode in modes_for(framework, item.format)]


def load_name(framework: str, item: SafetyInput, mode: str) -> str:
    """How progress names one load."""
    return f"{framework} / {item.format} / {mode} / {item.name}"


def _context() -> multiprocessing.context.BaseContext:
    os.environ[BUDGET_VARIABLE] = str(SAFETY_LOAD_BUDGET)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["bench.safety.preload"])
    return context


def generate_inputs(framework: str, workdir: Path) -> None:
    os.environ["SERBENCH_SAFETY_FRAMEWORK"] = framework
    generator = _context().Process(target=_generate, args=(framework, str(workdir), str(manifest_of(workdir))))
    generator.start()
    generator.join(600)
    if generator.exitcode != 0:
        raise RuntimeError(f"generating {framework} safety inputs failed (exit {generator.exitcode})")


def run_framework(
    framework: str, workdir: Path, out: Path, timeout_s: float = TIMEOUT_S, events: Path | None = None
) -> None:
    """Every load of the generated inputs, each in its own process; one JSON line per load in `out`."""
    from bench.safety.child import run_one
    from bench.safety.modes import startup_s

    os.environ["SERBENCH_SAFETY_FRAMEWORK"] = framework
    context = _context()
    with open(out, "a", encoding="utf-8") as results:
        for item, mode in planned_loads(framework, workdir):
            append_event(events, start=load_name(framework, item, mode))
            if item.marker:
                Path(item.marker).unlink(missing_ok=True)
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(
                target=run_one, args=(framework, item.format, mode, item.path, MEMORY_CAP_BYTES, sender)
            )
            process.start()
            sender.close()
            limit_s = (FIFO_TIMEOUT_S if item.name.startswith("fifo") else timeout_s) + startup_s(mode)
            report = watch(process, receiver, limit_s, MEMORY_CAP_BYTES)
            if item.marker and Path(item.marker).exists():
                report = {
                    "outcome": "code-executed",
                    "detail": f"marker file created; the load then gave: {report['outcome']}",
                }
            record = {
                "framework": framework,
                "format": item.format,
                "mode": mode,
                "input": item.name,
                "group": item.group,
                **report,
            }
            results.write(json.dumps(record) + "\n")
            results.flush()
            append_event(events, done=load_name(framework, item, mode))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("framework")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds before a load counts as a hang")
    parser.add_argument(
        "--stage",
        choices=("all", "generate", "load"),
        default="all",
        help="generate the inputs, load the generated inputs, or both (default)",
    )
    parser.add_argument("--events", type=Path, help="JSON-lines file to append each load's start and end to")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.stage in ("all", "generate"):
        generate_inputs(args.framework, args.workdir)
    if args.stage in ("all", "load"):
        run_framework(args.framework, args.workdir, args.out, args.timeout, args.events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
