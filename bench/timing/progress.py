"""pytest plugin for `serbench run`: its options, a rich progress bar, each case's outcome as JSON lines.

The runner passes the plan as options (see `pytest --help`, group "serbench"), not as environment
variables: --serbench-plan, --serbench-scratch, --serbench-outcomes, --serbench-label. Outcomes
(passed, skipped with its reason, failed with its message) go to the outcomes file so that skipped
cases (a missing framework, no GPU) become `unavailable` rows with their reason.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.pytest_outcomes import failure_message, skip_reason

_progress: Progress | None = None
_task: Any = None
_outcomes: str | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("serbench", "serbench run (set by the runner)")
    group.addoption("--serbench-plan", metavar="PATH", help="plan file of the cases to time (bench.timing.plan)")
    group.addoption("--serbench-scratch", metavar="DIR", help="directory for the saved files")
    group.addoption("--serbench-outcomes", metavar="PATH", help="JSON-lines file to append each case's outcome to")
    group.addoption("--serbench-label", default="benchmark", help="the progress bar's label")


def pytest_configure(config: pytest.Config) -> None:
    global _outcomes
    _outcomes = config.getoption("serbench_outcomes")


def pytest_collection_finish(session: Any) -> None:
    global _progress, _task
    _progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[case]}"),
        transient=False,
    )
    _progress.start()
    label = session.config.getoption("serbench_label")
    _task = _progress.add_task(label, total=len(session.items), case="")


def _record(item_id: str, outcome: str, detail: str) -> None:
    if _outcomes:
        with open(_outcomes, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"id": item_id, "outcome": outcome, "detail": detail}) + "\n")


def pytest_runtest_logreport(report: Any) -> None:
    case_id = report.nodeid.split("[", 1)[-1].rstrip("]").rsplit("#", 1)[0]  # "<case id>#<pass>"
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.skipped:
            _record(case_id, "skipped", skip_reason(report))
        elif report.failed:
            _record(case_id, "failed", failure_message(report))
        else:
            _record(case_id, "passed", "")
        if _progress is not None:
            _progress.update(_task, advance=1, case=case_id)


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    if _progress is not None:
        _progress.stop()
