"""Distributed checkpoints on a framework's own engine, as real processes: N ranks save, M ranks load.

`launch` starts one process per rank the way torchrun does (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT; one intra-op thread per rank when there are several, torchrun's default), each running
`python -m bench.scale.distributed JOB.json`, which calls the framework's scale recipe
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

import frameworks
from frameworks import scale


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
) -> dict[str, object]:
    """Run `op` ("save" or "load") with `world` ranks; the ranks' records, the slowest rank, the launch's time."""
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
                }
            )
        )
        base = frameworks.child_environment(framework)
        if world > 1:
            base.update(frameworks.adapter_class(framework).thread_env("1"))
        processes = []
        start = time.perf_counter()
        for rank in range(world):
            environment = {
                **{key: value for key, value in base.items() if value is not None},
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "WORLD_SIZE": str(world),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
            }
            processes.append(
                subprocess.Popen(
                    [frameworks.python_for(framework), "-m", "bench.scale.distributed", str(job)],
                    env=environment,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        outputs, failed = [], []
        deadline = start + timeout_s
        for rank, process in enumerate(processes):
            try:
                out, err = process.communicate(timeout=max(1.0, deadline - time.perf_counter()))
            except subprocess.TimeoutExpired:
                for other in processes:
                    other.kill()
                raise TimeoutError(f"{op} with {world} ranks did not finish within {timeout_s:.0f} s") from None
            if process.returncode != 0:
                failed.append(f"rank {rank} exited {process.returncode}: {(err.strip().splitlines() or ['?'])[-1]}")
            else:
                outputs.append(json.loads(out.strip().splitlines()[-1]))
        end_to_end = time.perf_counter() - start
    if failed:
        raise RuntimeError(f"{op} with {world} ranks failed: " + "; ".join(failed))
    return {
        "op": op,
        "world": world,
        "end_to_end_s": end_to_end,
        "max_rank_s": max(record["seconds"] for record in outputs),
        "ranks": outputs,
        "bytes": sum(record["bytes"] for record in outputs),
        "wrong": sorted({name for record in outputs for name in record.get("wrong", [])}),
    }


def main() -> int:
    job = json.loads(Path(sys.argv[1]).read_text())
    recipe = scale.scale_recipe(job["framework"])
    source = [Path(path) for path in job["source"]]
    directory = Path(job["directory"])
    if job["op"] == "save":
        record = recipe.distributed_save(source, directory, job["device"])
    else:
        # only checkpoints this run saved are loaded: the engine's metadata may be a pickle (DCP's is)
        record = recipe.distributed_load(source, directory, job["device"], trusted=True)
    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
