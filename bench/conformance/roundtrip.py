"""Round-trip checks: save a workload, load it back, and describe exactly what changed.

Comparison is by raw bytes of the logical values (C order), so NaN payloads and -0.0 count;
memory layout (strides, Fortran order) is not part of the contract. Containers must keep their
type, length, keys and key order.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frameworks import Adapter, UnsupportedError
from frameworks.trees import is_container

STATUSES = ("exact", "drift", "unsupported", "error")


@dataclass(frozen=True)
class Outcome:
    """exact (nothing changed), drift (`changes` says what), unsupported or error (`detail`)."""

    status: str
    changes: tuple[str, ...] = ()
    detail: str = ""

    def summary(self) -> str:
        if self.status == "drift":
            return "drift: " + "; ".join(self.changes)
        if self.status in ("unsupported", "error"):
            return f"{self.status}: {self.detail}"
        return self.status


def _type_name(obj: Any) -> str:
    if isinstance(obj, dict):
        return "dict"
    if isinstance(obj, list | tuple):
        return "list"
    return "tensor"


def _tensor_changes(where: str, expected: np.ndarray, actual: np.ndarray) -> list[str]:
    changes = []
    if expected.dtype != actual.dtype:
        changes.append(f"{where}: dtype {expected.dtype} -> {actual.dtype}")
    if expected.shape != actual.shape:
        changes.append(f"{where}: shape {expected.shape} -> {actual.shape}")
    if changes:
        return changes
    want = np.ascontiguousarray(expected).view(np.uint8).reshape(expected.size, -1) if expected.size else None
    got = np.ascontiguousarray(actual).view(np.uint8).reshape(actual.size, -1) if actual.size else None
    if want is not None and got is not None and not np.array_equal(want, got):
        differing = int(np.any(want != got, axis=1).sum())
        changes.append(f"{where}: bits differ in {differing} of {expected.size} elements")
    return changes


def describe_changes(expected: Any, actual: Any, where: str = "root") -> list[str]:
    """Every difference between two NumPy trees, as short stable sentences."""
    expected_type, actual_type = _type_name(expected), _type_name(actual)
    if expected_type != actual_type:
        found = actual_type
        if isinstance(actual, dict):
            found += f" with keys {list(actual)[:4]}"
        elif actual_type == "tensor":
            found += f" {np.asarray(actual).dtype}{np.asarray(actual).shape}"
        else:
            found += f" of {len(actual)}"
        return [f"{where}: {expected_type} -> {found}"]
    if isinstance(expected, dict):
        changes = []
        if list(expected) != list(actual):
            if set(expected) == set(actual):
                changes.append(f"{where}: key order changed")
            else:
                missing = [k for k in expected if k not in actual]
                extra = [k for k in actual if k not in expected]
                changes.append(f"{where}: keys missing {missing[:4]} extra {extra[:4]}")
        for key in expected:
            if key in actual:
                changes += describe_changes(expected[key], actual[key], f"{where}[{key[:40]!r}]")
        return changes
    if is_container(expected):
        if len(expected) != len(actual):
            return [f"{where}: length {len(expected)} -> {len(actual)}"]
        return [
            c
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for c in describe_changes(e, a, f"{where}[{i}]")
        ]
    return _tensor_changes(where, np.asarray(expected), np.asarray(actual))


def exact_by_name(summary: str) -> bool:
    """Whether a round trip (its `Outcome.summary`) changed nothing but the order of a dict's top-level keys:
    exact for a state_dict, which is loaded by name (safetensors sorts its keys)."""
    return summary in ("exact", "drift: root: key order changed")


def outcome_of(expected: Any, actual: Any) -> Outcome:
    changes = tuple(describe_changes(expected, actual))
    return Outcome("drift", changes) if changes else Outcome("exact")


def guarded(attempt: Callable[[], tuple[Any, Any]]) -> Outcome:
    """Run a round trip returning (expected, loaded) NumPy trees; a gap or a failure is an outcome too."""
    try:
        expected, loaded = attempt()
    except UnsupportedError as error:
        return Outcome("unsupported", detail=str(error))
    except Exception as error:  # noqa: BLE001  (a framework failure is a finding, recorded as such)
        return Outcome("error", detail=f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
    return outcome_of(expected, loaded)


def roundtrip(adapter: Adapter, format: str, workload_name: str, directory: Path | None = None) -> Outcome:
    """Save one named workload through the adapter in `format`, load it back (trusted: serbench wrote
    it) into what its kind loads into (`bench.kinds`), and compare every value."""
    from bench import kinds, workloads

    kind = kinds.kind_of(workload_name)

    def attempt() -> tuple[Any, Any]:
        adapter.check_holds(adapter.spec(format), workloads.WORKLOADS[workload_name].kind)
        subject = kind.subject(adapter, workload_name)
        with tempfile.TemporaryDirectory(dir=directory) as scratch:
            path = kinds.saved_path(adapter, format, workload_name, Path(scratch))
            kind.save(adapter, subject, path, format)
            return subject.reference, kind.state(adapter, subject, kind.load(adapter, subject, path, format))

    return guarded(attempt)
