"""What a pytest report says about a test that did not pass, for serbench's pytest plugins (the benchmark's
progress plugin and `serbench recipes`): the reason a test was skipped, the message a failure raised."""

from __future__ import annotations

from typing import Any


def skip_reason(report: Any) -> str:
    """The reason given to `pytest.skip`, without pytest's "Skipped: " prefix."""
    detail = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return detail.removeprefix("Skipped: ")


def failure_message(report: Any) -> str:
    """The exception's own message (`Type: message`), not the traceback's last line (a file and line number),
    on one line of at most 300 characters."""
    crash = getattr(report.longrepr, "reprcrash", None)
    message = crash.message if crash is not None else str(report.longrepr).strip().splitlines()[-1]
    return " ".join(message.split())[:300]
