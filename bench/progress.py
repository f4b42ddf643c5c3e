"""pytest plugin for `serbench run`: a rich progress bar, and each case's outcome as JSON lines.

Outcomes (passed, skipped with its reason, failed with its message) go to $SERBENCH_OUTCOMES so
that skipped cases (a missing framework, no GPU) become `unavailable` rows with their reason.
"""

from __future__ import annotations

import json
import os
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

_progress: Progress | None = None
_task: Any = None


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
    label = os.environ.get("SERBENCH_LABEL", "benchmark")
    _task = _progress.add_task(label, total=len(session.items), case="")


def _record(item_id: str, outcome: str, detail: str) -> None:
    path = os.environ.get("SERBENCH_OUTCOMES")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"id": item_id, "outcome": outcome, "detail": detail}) + "\n")


def pytest_runtest_logreport(report: Any) -> None:
    case_id = report.nodeid.split("[", 1)[-1].rstrip("]").rsplit("#", 1)[0]  # "<case id>#<pass>"
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.skipped:
            detail = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            _record(case_id, "skipped", detail.removeprefix("Skipped: "))
        elif report.failed:
            _record(case_id, "failed", str(report.longrepr).strip().splitlines()[-1][:300])
        else:
            _record(case_id, "passed", "")
        if _progress is not None:
            _progress.update(_task, advance=1, case=case_id)


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    if _progress is not None:
        _progress.stop()
