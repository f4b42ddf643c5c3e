"""Live progress for the long commands (`run`, `bench`, `safety`): one bar over all of a command's
cases, with the time left and the case in hand, on a terminal; plain lines when stderr is not one
(CI logs, pipes), at most one every `PLAIN_INTERVAL_S` unless a step ends.

The work runs in child processes. Each appends JSON lines to an events file (`append_event`:
`{"start": case}` when it begins a case, `{"done": case}` when it ends one), and `Progress.follow`
reads them while the child runs. Progress is counted in work units the caller estimates per case
(a 1 GiB load counts for more than a four-number tensor), so the time left follows the work, not
the count of cases; it is the elapsed time scaled by the units left, shown once 2% is done.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from frameworks.files import open_for_writing

PLAIN_INTERVAL_S = 30.0
POLL_S = 0.2
MAX_EVENTS_READ = 16 << 20
ETA_AFTER = 0.02
"""The share of the work done before the time left is shown (before it, one slow start decides it)."""


def append_event(path: str | Path | None, **event: str) -> None:
    """A child's report of a case starting or ending (no-op without an events file)."""
    if path:
        with open_for_writing(path, append=True) as handle:
            handle.write(json.dumps(event) + "\n")


def duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '1 h 02 min'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class _EventReader:
    """The lines appended to an events file since the last read (a partial last line waits)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.pending = b""

    def read(self) -> list[dict[str, str]]:
        try:
            descriptor = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, OSError):
            return []  # not there yet, or a link or FIFO planted in its place: no events from it
        with os.fdopen(descriptor, "rb") as handle:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                return []
            handle.seek(self.offset)
            data = handle.read(MAX_EVENTS_READ)
        self.offset += len(data)
        *lines, self.pending = (self.pending + data).split(b"\n")
        events = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events


class Progress:
    """One bar (a terminal) or plain lines (otherwise) for `total` units of work."""

    def __init__(
        self, command: str, total: float, console: Console | None = None, clock: Callable[[], float] = time.monotonic
    ):
        self.command = command
        self.total = max(float(total), 1e-9)
        self.done = 0.0
        self.console = console or Console(stderr=True)
        self.clock = clock
        self.started = clock()
        self.last_line = self.started
        self.case = ""
        self._bar: RichProgress | None = None
        self._task: int | None = None

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[left]}"),
                TextColumn("{task.fields[case]}"),
                console=self.console,
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.command, total=self.total, left="", case="")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif kind is None:
            self._line(f"done in {duration(self.clock() - self.started)}")

    def left(self) -> str:
        """The estimated time left, or '' until ETA_AFTER of the work is done."""
        share = self.done / self.total
        if share < ETA_AFTER or share >= 1:
            return ""
        elapsed = self.clock() - self.started
        return f"about {duration(elapsed * (1 - share) / share)} left"

    def _line(self, text: str) -> None:
        self.console.print(f"serbench {self.command}: {text}", highlight=False, markup=False, soft_wrap=True)
        self.last_line = self.clock()

    def note(self, text: str) -> None:
        """A step of the command (printed above the bar, or as a line)."""
        if self._bar is not None:
            self._bar.console.print(text, highlight=False, markup=False)
        else:
            self._line(text)

    def _show(self, step_ended: str = "") -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=min(self.done, self.total), left=self.left(), case=self.case)
        elif step_ended or self.clock() - self.last_line >= PLAIN_INTERVAL_S:
            share = min(self.done / self.total, 1.0)
            where = step_ended or (f"at {self.case}" if self.case else "")
            parts = [f"{share:4.0%}", where, self.left()]
            self._line(", ".join(part for part in parts if part))

    def start(self, case: str) -> None:
        self.case = case
        self._show()

    def advance(self, units: float, case: str | None = None) -> None:
        self.done += units
        if case is not None:
            self.case = case
        self._show()

    def step_done(self, text: str) -> None:
        """A step (a child process, a framework) ended: on a terminal the bar shows it, else one line."""
        self._show(step_ended=text)

    def follow(
        self, process: subprocess.Popen, events: Path, units_of: Callable[[str], float], timeout_s: float
    ) -> int:
        """Advance by the events `process` appends to `events` until it exits; its exit status.
        Kills it (and raises subprocess.TimeoutExpired) past `timeout_s`, and on any interruption."""
        reader = _EventReader(events)
        deadline = self.clock() + timeout_s
        try:
            while True:
                code = process.poll()
                for event in reader.read():
                    if "start" in event:
                        self.start(str(event["start"]))
                    elif "done" in event:
                        self.advance(units_of(str(event["done"])), str(event["done"]))
                if code is not None:
                    return code
                if self.clock() > deadline:
                    raise subprocess.TimeoutExpired(process.args, timeout_s)
                self._show()
                time.sleep(POLL_S)
        except BaseException:
            if process.poll() is None:
                process.kill()
                process.wait()
            raise
