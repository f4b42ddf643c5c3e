"""pytest plugin for `serbench run`: its options, and each case's start, end and outcome as JSON lines.

The runner passes the plan as options (see `pytest --help`, group "serbench"), not as environment
variables: --serbench-plan, --serbench-scratch, --serbench-outcomes, --serbench-events. Outcomes
(passed, skipped with its reason, failed with its message) go to the outcomes file so that skipped
cases (a missing framework, no GPU) become `unavailable` rows with their reason. Events (a case
started, a case ended) go to the events file, from which the runner draws its progress bar
(`bench.live`).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.live import append_event
from bench.pytest_outcomes import failure_message, skip_reason
from frameworks.files import open_for_writing

_outcomes: str | None = None
_events: str | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("serbench", "serbench run (set by the runner)")
    group.addoption("--serbench-plan", metavar="PATH", help="plan file of the cases to time (bench.timing.plan)")
    group.addoption("--serbench-scratch", metavar="DIR", help="directory for the saved files")
    group.addoption("--serbench-outcomes", metavar="PATH", help="JSON-lines file to append each case's outcome to")
    group.addoption(
        "--serbench-events", metavar="PATH", help="JSON-lines file to append each case's start and end to (progress)"
    )


def pytest_configure(config: pytest.Config) -> None:
    global _outcomes, _events
    _outcomes = config.getoption("serbench_outcomes")
    _events = config.getoption("serbench_events")


def case_of(nodeid: str) -> str:
    """The case id of a test id: `test_io.py::test_io[<case id>#<pass>]` -> `<case id>`."""
    return nodeid.split("[", 1)[-1].rstrip("]").rsplit("#", 1)[0]


def _record(item_id: str, outcome: str, detail: str) -> None:
    if _outcomes:
        with open_for_writing(_outcomes, append=True) as handle:
            handle.write(json.dumps({"id": item_id, "outcome": outcome, "detail": detail}) + "\n")


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    append_event(_events, start=case_of(nodeid))


def pytest_runtest_logreport(report: Any) -> None:
    case_id = case_of(report.nodeid)
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.skipped:
            _record(case_id, "skipped", skip_reason(report))
        elif report.failed:
            _record(case_id, "failed", failure_message(report))
        else:
            _record(case_id, "passed", "")
        append_event(_events, done=case_id)
