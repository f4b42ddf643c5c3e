"""Per-round evidence: what the process and the machine did while one round was timed.

Read just before the timer starts (the end of pytest-benchmark's `setup`) and just after it stops
(its `teardown`), so reading them costs nothing inside the timed region. For each round:

- minor/major page faults and voluntary/involuntary context switches (`getrusage`, all threads);
- run-queue delay: nanoseconds this process's threads were runnable but waited for a CPU
  (`/proc/self/task/*/schedstat`, second field);
- CPU steal: time the hypervisor ran something else on this VM's vCPUs (`/proc/stat`, in ticks).

A round is marked `waited` when its threads waited for a CPU, or the VM was robbed of it, for more
than WAIT_FRACTION of the round: it measured the machine's other work, not the loader.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

WAIT_FRACTION = 0.10
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


@dataclass(frozen=True)
class Counters:
    clock: float
    minflt: int
    majflt: int
    nvcsw: int
    nivcsw: int
    runqueue_s: float
    steal_s: float


def _runqueue_seconds() -> float:
    total = 0
    try:
        for task in os.scandir("/proc/self/task"):
            try:
                fields = Path(task.path, "schedstat").read_text().split()
            except OSError:
                continue  # a thread that ended between the listing and the read
            total += int(fields[1])
    except OSError:
        return float("nan")
    return total / 1e9


def steal_seconds() -> float:
    """Steal time of all CPUs since boot (NaN where /proc/stat has no steal field)."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = handle.readline().split()
        return int(fields[8]) * _TICK_S
    except (OSError, IndexError, ValueError):
        return float("nan")


def sample() -> Counters:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return Counters(
        clock=time.perf_counter(),
        minflt=usage.ru_minflt,
        majflt=usage.ru_majflt,
        nvcsw=usage.ru_nvcsw,
        nivcsw=usage.ru_nivcsw,
        runqueue_s=_runqueue_seconds(),
        steal_s=steal_seconds(),
    )


def round_record(before: Counters, after: Counters, seconds: float) -> dict[str, object]:
    """The evidence of one round, `seconds` being the time pytest-benchmark measured for it."""
    runqueue = after.runqueue_s - before.runqueue_s
    steal = after.steal_s - before.steal_s
    waited = seconds > 0 and (runqueue > WAIT_FRACTION * seconds or steal > WAIT_FRACTION * seconds)
    return {
        "seconds": seconds,
        "minflt": after.minflt - before.minflt,
        "majflt": after.majflt - before.majflt,
        "nvcsw": after.nvcsw - before.nvcsw,
        "nivcsw": after.nivcsw - before.nivcsw,
        "runqueue_s": runqueue,
        "steal_s": steal,
        "waited": bool(waited),
    }
