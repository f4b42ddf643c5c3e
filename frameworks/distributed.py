"""Distributed checkpoints on a framework's own engine, as real processes: N ranks save, M ranks load.

`launch` starts one process per rank the way torchrun does (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT; one intra-op thread per rank when there are several, torchrun's default), each running
`python -m frameworks.distributed JOB.json`, which calls the framework's scale recipe
(`distributed_save` / `distributed_load`). Every rank times its own operation from a barrier to its
return; the launch is timed end to end (start of the first process to exit of the last, so process start,
imports and the process group's rendezvous are in it). MLPerf Storage reports the slowest rank: so does
`max_rank_s`. A load checks every rank's rows byte for byte against the source checkpoint.

Across hosts the same recipe runs unchanged under torchrun (`--nnodes`, `--rdzv-endpoint`): the
environment this launcher sets is what torchrun sets on each node.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import frameworks
from frameworks import scale, stored
from frameworks.errors import SerbenchError


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(
    framework: str,
    op: str,
    world: int,
    source: list[Path],
    directory: Path,
    device: str = "cpu",
    timeout_s: float = 900,
    *,
    trusted: bool = False,
) -> dict[str, object]:
    """Run `op` ("save" or "load") with `world` ranks; the ranks' records, the slowest rank, the launch's time.
    A load with an engine that unpickles its metadata (DCP) needs `trusted=True`: only for checkpoints you made.

    All ranks are watched together: the first to fail stops the launch (the others would wait for it in a
    collective until their timeout), and its error is the one reported; every rank is killed and reaped
    whatever happens, so none is left writing into `directory`."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="serbench-ranks-") as scratch:
        job = Path(scratch) / "job.json"
        job.write_text(
            json.dumps(
                {
                    "framework": framework,
                    "op": op,
                    "source": [str(path) for path in source],
                    "directory": str(directory),
                    "device": device,
                    "trusted": trusted,
                }
            )
        )
        base = frameworks.child_environment(framework)
        if world > 1:
            base.update(frameworks.adapter_class(framework).thread_env("1"))
        processes, logs = [], []
        start = time.perf_counter()
        try:
            for rank in range(world):
                environment = {
                    **{key: value for key, value in base.items() if value is not None},
                    "RANK": str(rank),
                    "LOCAL_RANK": str(rank),
                    "WORLD_SIZE": str(world),
                    "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": str(port),
                }
                out, err = Path(scratch) / f"rank{rank}.out", Path(scratch) / f"rank{rank}.err"
                logs.append((out, err))
                with open(out, "w") as stdout, open(err, "w") as stderr:
                    processes.append(
                        subprocess.Popen(
                            [frameworks.python_for(framework), "-m", "frameworks.distributed", str(job)],
                            env=environment,
                            stdout=stdout,
                            stderr=stderr,
                        )
                    )
            failed = _wait_all(processes, logs, start + timeout_s, f"{op} with {world} ranks")
            end_to_end = time.perf_counter() - start
            outputs = [_record(out) for out, _ in logs] if not failed else []
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                process.wait()
    if failed:
        raise RuntimeError(f"{op} with {world} ranks failed: {failed}")
    return {
        "op": op,
        "world": world,
        "end_to_end_s": end_to_end,
        "max_rank_s": max(record["seconds"] for record in outputs),
        "ranks": outputs,
        "bytes": sum(record["bytes"] for record in outputs),
        "wrong": sorted({name for record in outputs for name in record.get("wrong", [])}),
    }


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _wait_all(processes: list[subprocess.Popen], logs: list[tuple[Path, Path]], deadline: float, what: str) -> str:
    """Wait for every rank; the first failure (a non-zero exit, or the deadline) as one line, else ""."""
    while True:
        for rank, process in enumerate(processes):
            code = process.poll()
            if code not in (None, 0):
                return f"rank {rank} exited {code}: {_last_line(logs[rank][1])}"
        if all(process.poll() == 0 for process in processes):
            return ""
        if time.perf_counter() > deadline:
            waiting = [rank for rank, process in enumerate(processes) if process.poll() is None]
            raise TimeoutError(f"{what}: ranks {waiting} did not finish in time") from None
        time.sleep(0.05)


def _record(out: Path) -> dict[str, Any]:
    lines = [line for line in out.read_text().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"a rank exited without its record ({out.name})")
    return json.loads(lines[-1])


def job_schema() -> stored.Object:
    """A rank's job file: exact types, trust a JSON boolean (the string "false" is refused, not read as true)."""
    return stored.Object(
        required={
            "framework": stored.OneOf(*scale.with_scale_recipes()),
            "op": stored.OneOf("save", "load"),
            "source": stored.ListOf(str),
            "directory": str,
            "device": stored.OneOf("cpu", "cuda"),
            "trusted": bool,
        }
    )


def main() -> int:
    if len(sys.argv) != 2:
        raise stored.StoredFileError("usage: python -m frameworks.distributed JOB.json (started by the launcher)")
    job = stored.read_json(sys.argv[1], what="distributed job", schema=job_schema(), cap=1 << 20)
    missing = [name for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise stored.StoredFileError(f"{', '.join(missing)} not set: a rank is started by the launcher (or torchrun)")
    recipe = scale.scale_recipe(job["framework"])
    source = [Path(path) for path in job["source"]]
    directory = Path(job["directory"])
    if job["op"] == "save" and os.path.lexists(directory):
        raise stored.StoredFileError(
            f"{sys.argv[1]}: a distributed save writes a new directory, and {directory} exists (it may hold your "
            "files, or be a link): choose a new one"
        )
    if not job["source"]:
        raise stored.StoredFileError(f"{sys.argv[1]}: the job names no source file")
    if job["op"] == "save":
        record = recipe.distributed_save(source, directory, job["device"])
    else:
        record = recipe.distributed_load(source, directory, job["device"], trusted=job["trusted"])
    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        sys.exit(main())
    except (SerbenchError, FileNotFoundError) as error:  # a missing file is named in one line too
        print(f"frameworks.distributed: {' '.join(str(error).split())[:500]}", file=sys.stderr)
        sys.exit(2)
