"""Peak memory added by one load, measured in a fresh process: `python -m bench.timing.peak_memory ...`.

The child imports the framework, builds the clone (for the MLP), settles, hands the allocator's free pages
back to the kernel (`malloc_trim`), records its RSS, resets the kernel's peak-RSS mark
(`/proc/self/clear_refs`), loads, touches every page of the result, and reports VmHWM - baseline: the most
memory the load needed at any moment, not just what it kept. Without the trim a small load reused pages
the import had freed but kept resident, and came out below its own payload (28 KiB for a 31 KiB MLP).
Mapped file pages count once touched (RSS includes them), so a memory-mapped load shows about 1x.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
from pathlib import Path

RESET = "VmHWM after clear_refs"
NOT_RESET = "ru_maxrss (peak RSS could not be reset: an underestimate if import peaked higher)"


def status_bytes(field: str) -> int:
    """A field of /proc/self/status (VmRSS, VmHWM, RssFile, ...), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def settle() -> None:
    """Collect garbage and hand glibc's free heap pages back to the kernel (`malloc_trim(0)`: glibc keeps freed
    blocks below its mmap threshold), so that the RSS baseline holds what is live and what a load allocates next is
    faulted in and counted, not reused from memory already resident; the trim is a no-op on a C library without it."""
    import ctypes

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak() -> str:
    """Reset the kernel's peak-RSS mark; returns how `peak_rss` will read the peak (RESET or NOT_RESET)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return NOT_RESET
    return RESET


def peak_rss(method: str) -> int:
    """The process's peak RSS since `reset_peak` (since start where it could not reset), in bytes."""
    if method == RESET:
        return status_bytes("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(framework: str, format: str, workload: str, path: Path) -> dict[str, object]:
    import frameworks
    from bench import kinds
    from bench.timing.materialize import materialize

    adapter = frameworks.get_adapter(framework)
    kind = kinds.kind_of(workload)
    subject = kind.load_only(adapter, workload)
    settle()
    baseline = status_bytes("VmRSS")
    method = reset_peak()
    loaded = kind.load(adapter, subject, path, format)
    if kind.returns_tree:
        # Touch, never copy: a lazy loader's tensors are the mapped file, resident once touched; the
        # copy that the timing makes to read every byte is the harness's, not the loader's, memory.
        materialize(adapter, loaded, lazy=False)
    peak = peak_rss(method)
    return {"peak_rss_bytes": max(0, peak - baseline), "baseline_rss_bytes": baseline, "method": method}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("framework")
    parser.add_argument("format")
    parser.add_argument("workload")
    parser.add_argument("path", type=Path)
    args = parser.parse_args()
    print(json.dumps(measure(args.framework, args.format, args.workload, args.path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
