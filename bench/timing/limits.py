"""The machine's own limits, measured in the same run as the figures compared with them.

- memcpy: copying a large, already-faulted buffer (the ceiling of a copy; no loader reaches it, since a
  loader must return new memory);
- fresh_copy: copying into newly mapped memory, each round a new anonymous mapping of the payload's
  size faulted in by the copy itself, under the machine's page policy (recorded): what a loader that
  returns new memory can reach, and the limit warm CPU loads are read against;
- disk read, warm and cold: `readinto` a pre-faulted buffer from a file of the same size class,
  cold after a checked eviction (the ceiling for a load from disk);
- disk write: write + fsync (the ceiling for a durable save);
- host-to-device: pinned and pageable copies, timed by a framework whose adapter can, when an
  accelerator exists; otherwise each says `unavailable` and why.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.timing import pagecache


@dataclass(frozen=True)
class Limit:
    name: str
    gbps: float | None
    bytes: int
    rounds: int
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _best_gbps(nbytes: int, seconds: list[float]) -> float:
    """A limit is a ceiling: the best round, not the typical one."""
    return nbytes / min(seconds) / 1e9


def measure_memcpy(nbytes: int, rounds: int = 7) -> Limit:
    source = np.ones(nbytes, dtype=np.uint8)
    target = np.zeros_like(source)
    np.copyto(target, source)  # fault in every page first
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        np.copyto(target, source)
        times.append(time.perf_counter() - start)
    return Limit("memcpy", _best_gbps(nbytes, times), nbytes, rounds, "np.copyto of a pre-faulted buffer")


def page_policy() -> str:
    """The transparent-huge-page mode a fresh mapping gets here (no madvise: a loader's allocations ask for
    nothing unless its allocator does)."""
    from bench.environment import transparent_huge_pages

    modes = transparent_huge_pages()
    return f"THP enabled={modes.get('enabled', 'unknown')}, defrag={modes.get('defrag', 'unknown')}"


def fresh_copy_rounds(nbytes: int) -> int:
    """7 rounds up to 256 MiB, 3 above (a scale run's probe is gigabytes, and each round faults it all)."""
    return 7 if nbytes <= 256 << 20 else 3


def measure_fresh_copy(nbytes: int, rounds: int | None = None) -> Limit:
    """Copy a faulted buffer into a new anonymous mapping each round, the faults inside the timer: the
    mapping is made, filled and unmapped per round, so no round reuses pages the previous one faulted.
    The rounds alternate the two page policies a loader's allocation can get here, the default and
    `MADV_HUGEPAGE` (huge pages where THP allows them; on this project's VM 2.1 against 7.5 GB/s in one
    sample, 0.2-0.45 in another hour): a ceiling is the best of both, and the note names each one's best."""
    rounds = fresh_copy_rounds(nbytes) if rounds is None else rounds
    source = np.ones(nbytes, dtype=np.uint8)
    best: dict[str, float] = {}
    huge = getattr(mmap, "MADV_HUGEPAGE", None)
    policies = ["default", "MADV_HUGEPAGE"] if huge is not None else ["default"]
    for index in range(rounds * len(policies)):
        policy = policies[index % len(policies)]
        start = time.perf_counter()
        mapping = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if policy == "MADV_HUGEPAGE":
            mapping.madvise(huge)
        target = np.frombuffer(mapping, dtype=np.uint8)
        np.copyto(target, source)
        seconds = time.perf_counter() - start
        best[policy] = min(best.get(policy, seconds), seconds)
        del target
        mapping.close()
    fastest = min(best, key=best.__getitem__)
    each = ", ".join(f"{policy} {nbytes / value / 1e9:.2f} GB/s" for policy, value in best.items())
    note = (
        f"np.copyto into a new anonymous mapping per round, faults included; best: {fastest} ({each}; {page_policy()})"
    )
    return Limit("fresh_copy", nbytes / best[fastest] / 1e9, nbytes, rounds * len(policies), note)


def best_of(first: dict[str, dict], second: dict[str, dict]) -> dict[str, dict]:
    """Two measurements of the same limits (the run's start and its end) as one: each limit's best, its
    rounds added, so a ceiling taken on a busy minute is raised by a quieter one."""
    merged = dict(first)
    for name, later in second.items():
        earlier = first.get(name)
        if earlier is None or earlier.get("gbps") is None:
            merged[name] = later
        elif later.get("gbps") is not None:
            best = later if later["gbps"] > earlier["gbps"] else earlier
            merged[name] = {**best, "rounds": int(earlier.get("rounds", 0)) + int(later.get("rounds", 0))}
            merged[name]["note"] = f"{best.get('note', '')}; best of the run's start and end".lstrip("; ")
    return merged


def _read_all(path: Path, buffer: bytearray) -> int:
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb", buffering=0) as handle:
        return handle.readinto(buffer) or 0


def _write_all(handle: Any, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        view = view[handle.write(view) :]


def measure_disk(directory: Path, nbytes: int, rounds: int = 3) -> list[Limit]:
    """Sequential write+fsync, warm read and cold read of one `nbytes` file in `directory`.

    The probe is a new file of a name no one else holds (created exclusively: a user's file, a planted link or
    another run's probe in `directory` is never written, and two runs probing one directory do not meet), and
    what is removed at the end is that file only (checked by its inode)."""
    payload = np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8).tobytes()
    buffer = bytearray(nbytes)
    writes, warm, cold, residency = [], [], [], []
    descriptor, name = tempfile.mkstemp(prefix=".serbench-limit-probe-", suffix=".bin", dir=directory)
    path = Path(name)
    with os.fdopen(descriptor, "r+b", buffering=0) as handle:
        try:
            for _ in range(rounds):
                start = time.perf_counter()
                handle.seek(0)
                handle.truncate(0)
                _write_all(handle, payload)
                os.fsync(handle.fileno())
                writes.append(time.perf_counter() - start)
            _read_all(path, buffer)
            for _ in range(rounds):
                start = time.perf_counter()
                _read_all(path, buffer)
                warm.append(time.perf_counter() - start)
            for _ in range(rounds):
                pagecache.evict(path)
                residency.append(pagecache.resident_fraction(path))
                start = time.perf_counter()
                _read_all(path, buffer)
                cold.append(time.perf_counter() - start)
        finally:
            with contextlib.suppress(FileNotFoundError):
                if os.lstat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                    path.unlink()
    evicted = max(residency) < 0.01
    cold_note = (
        "after fadvise(DONTNEED), checked with mincore"
        if evicted
        else (f"eviction did not work here (up to {max(residency):.0%} still cached): this is not a cold figure")
    )
    return [
        Limit("disk_write", _best_gbps(nbytes, writes), nbytes, rounds, "write + fsync"),
        Limit("disk_read_warm", _best_gbps(nbytes, warm), nbytes, rounds, "readinto from the page cache"),
        Limit("disk_read_cold", _best_gbps(nbytes, cold), nbytes, rounds, cold_note),
    ]


def measure_host_to_device(nbytes: int, rounds: int = 5) -> list[Limit]:
    """Pinned and pageable host-to-accelerator copy bandwidth, timed by the first framework whose
    adapter can (`Adapter.host_to_device_seconds`), or `unavailable` with every framework's reason."""
    import frameworks

    reasons = []
    timers = [name for name in frameworks.names() if frameworks.adapter_class(name).times_host_to_device]
    for framework in timers:
        try:
            adapter = frameworks.get_adapter(framework)
            limits = []
            for name, pinned in (("h2d_pinned", True), ("h2d_pageable", False)):
                seconds, device = adapter.host_to_device_seconds(nbytes, rounds, pinned)
                limits.append(Limit(name, _best_gbps(nbytes, seconds), nbytes, rounds, f"{device}, by {framework}"))
            return limits
        except (ImportError, frameworks.DeviceUnavailableError) as error:
            reasons.append(str(error).splitlines()[0])
    reason = "unavailable: " + ("; ".join(reasons) or "no registered framework times host-to-device copies")
    return [Limit(name, None, nbytes, 0, reason) for name in ("h2d_pinned", "h2d_pageable")]


def measure_all(directory: Path, nbytes: int) -> dict[str, Limit]:
    limits = [
        measure_memcpy(nbytes),
        measure_fresh_copy(nbytes),
        *measure_disk(directory, nbytes),
        *measure_host_to_device(nbytes),
    ]
    return {limit.name: limit for limit in limits}
