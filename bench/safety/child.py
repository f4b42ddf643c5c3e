"""One load in a fresh (forked) process: cap the address space, load, classify, report on a pipe."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import frameworks
from bench.conformance.roundtrip import describe_changes
from bench.safety.inputs import reference
from bench.safety.modes import modes_for


def _cap_address_space(extra_bytes: int) -> None:
    """Allow `extra_bytes` of new mappings beyond what the process already has."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            current = int(line.split()[1]) * 1024
            resource.setrlimit(resource.RLIMIT_AS, (current + extra_bytes, resource.RLIM_INFINITY))
            return


def classify(loaded: Any, framework: str, fmt: str) -> tuple[str, str]:
    try:
        changes = describe_changes(reference(framework, fmt), loaded)
    except Exception as error:  # noqa: BLE001  (whatever came back is not our data)
        return "silent-wrong-data", f"returned {type(loaded).__name__} ({type(error).__name__} comparing it)"
    if changes:
        return "silent-wrong-data", "; ".join(changes)[:300]
    return "loaded-exact", ""


def run_one(framework: str, fmt: str, mode: str, path: str, cap_bytes: int, connection: Any) -> None:
    try:
        _cap_address_space(cap_bytes)
        adapter = frameworks.get_adapter(framework)
        loaded = modes_for(framework, fmt)[mode](adapter, Path(path))
        outcome, detail = classify(loaded, framework, fmt)
    except MemoryError as error:
        outcome, detail = "memory-blowup", f"MemoryError: {str(error)[:200]} (address space capped)"
    except BaseException as error:  # noqa: BLE001  (every exception is data here)
        message = str(error).strip().splitlines()[0][:240] if str(error).strip() else ""
        outcome, detail = "clear-error", f"{type(error).__name__}: {message}"
        if "bad_alloc" in message or "std::bad_alloc" in message:
            outcome = "memory-blowup"
    connection.send({"outcome": outcome, "detail": detail})
    connection.close()
