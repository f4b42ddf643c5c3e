"""Round-trip conformance: adapter x format x workload, each cell against its expectation.

`exact` means bits, dtype, shape, container and key order all survive. A drift must be exactly
the recorded one, so a change in a framework's behaviour fails here and names itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import frameworks
from bench import workloads
from bench.conformance import expectations
from bench.conformance.roundtrip import roundtrip
from tests.conftest import adapter_or_skip


def _cells(sizes: tuple[str, ...]) -> list[tuple[str, str, str]]:
    return [
        (framework, fmt, workload.name)
        for framework in frameworks.names()
        for fmt in frameworks.adapter_class(framework).format_names()
        for workload in workloads.select(sizes)
    ]


def check_cell(framework: str, fmt: str, workload_name: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip(framework)
    workload = workloads.WORKLOADS[workload_name]
    expected = expectations.expected(framework, fmt, workload)
    outcome = roundtrip(adapter, fmt, workload_name, tmp_path)
    assert outcome.status == expected.status, (
        f"{framework}/{fmt}/{workload_name}: expected {expected.status} ({expected.reason}), got {outcome.summary()}"
    )
    if expected.status == "drift":
        assert outcome.changes == expected.changes
    elif expected.status == "error":
        assert outcome.detail.startswith(expected.error + ":"), outcome.detail
    elif expected.status == "unsupported" and workload.dtype != "bfloat16":
        kind = "dict" if workload.kind == "mlp" else workload.kind
        assert f"format {fmt!r} of {framework} cannot hold a {kind}" in outcome.detail or (
            workload.kind in ("mlp", "checkpoint") and f"cannot hold a {workload.kind}" in outcome.detail
        ), outcome.detail


@pytest.mark.parametrize(("framework", "fmt", "workload_name"), _cells(("small", "medium")))
def test_roundtrip(framework: str, fmt: str, workload_name: str, tmp_path: Path) -> None:
    check_cell(framework, fmt, workload_name, tmp_path)


@pytest.mark.large
@pytest.mark.parametrize(("framework", "fmt", "workload_name"), _cells(("large",)))
def test_roundtrip_large(framework: str, fmt: str, workload_name: str, tmp_path: Path) -> None:
    check_cell(framework, fmt, workload_name, tmp_path)


def test_every_finding_matches_some_cell() -> None:
    """A stale finding (pattern that matches nothing) would silently stop protecting anything."""
    cells = _cells(("small", "medium", "large"))
    for framework in frameworks.names():
        for finding in expectations.findings(framework):
            assert any(finding.matches(fmt, workload) for name, fmt, workload in cells if name == framework), finding
