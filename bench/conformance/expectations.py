"""What each framework really preserves: the round-trip suite's expectations, read from the adapters.

Every (framework, format, workload) is `exact` unless one of the adapter's `findings` says otherwise
(see `frameworks.findings`) or the format does not hold the workload's kind. The conformance tests
assert the exact outcome; the README's support table is generated from the same function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import frameworks
from bench.workloads import Workload
from frameworks.findings import EXACT, Expectation, Finding

if TYPE_CHECKING:
    from bench.conformance.roundtrip import Outcome


def holds(framework: str, format: str) -> frozenset[str]:
    """Kinds the format can store, from the adapter's spec (the one place that says so); anything
    else must raise UnsupportedError naming both."""
    return frameworks.adapter_class(framework).spec(format).holds


def findings(framework: str) -> tuple[Finding, ...]:
    return frameworks.adapter_class(framework).findings


def expected(framework: str, format: str, workload: Workload) -> Expectation:
    """The outcome the suite expects for one cell of the matrix."""
    for finding in findings(framework):
        if finding.matches(format, workload.name):
            return finding.expectation
    held = holds(framework, format)
    if workload.kind not in held:
        return Expectation("unsupported", f"{format} holds {', '.join(sorted(held))}, not a {workload.kind}")
    return EXACT


def meets(outcome: Outcome, expectation: Expectation) -> bool:
    """Whether a round trip's outcome is the one expected: same status, the same changes for a drift,
    the same exception class for an error."""
    if outcome.status != expectation.status:
        return False
    if expectation.status == "drift":
        return outcome.changes == expectation.changes
    if expectation.status == "error":
        return outcome.detail.startswith(expectation.error + ":")
    return True
