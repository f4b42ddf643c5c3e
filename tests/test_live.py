"""Live progress (`bench.live`): one bar over a command's work with the time left, plain lines off a terminal,
and children followed through their events files."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from bench import live


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plain(clock: Clock) -> tuple[live.Progress, io.StringIO]:
    buffer = io.StringIO()
    return live.Progress("run", 100, Console(file=buffer, force_terminal=False, width=200), clock), buffer


def test_off_a_terminal_a_line_per_step_and_the_time_left_from_the_work_done() -> None:
    clock = Clock()
    progress, buffer = plain(clock)
    with progress:
        progress.start("numpy|npz|size-64MiB|cpu|warm|load|1")
        clock.now += 10
        progress.advance(25)
        assert buffer.getvalue() == "", "no line before a step ends or PLAIN_INTERVAL_S passes"
        progress.step_done("numpy: process 1 of 2 done")
        clock.now += live.PLAIN_INTERVAL_S
        progress.advance(25, "torch|torch|size-64MiB|cpu|cold|load|1")
        clock.now += 40
        progress.advance(50)
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "serbench run:  25%, numpy: process 1 of 2 done, about 30 s left"
    assert lines[1] == "serbench run:  50%, at torch|torch|size-64MiB|cpu|cold|load|1, about 40 s left"
    assert lines[-1] == "serbench run: done in 1 min 20 s"


def test_no_time_left_before_a_share_of_the_work_is_done() -> None:
    clock = Clock()
    progress, _ = plain(clock)
    clock.now += 5
    progress.advance(1)
    assert progress.left() == ""
    progress.advance(9)
    assert progress.left() == "about 45 s left"


def test_on_a_terminal_one_bar_names_the_case_in_hand() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=200, color_system=None)
    clock = Clock()
    with live.Progress("safety", 10, console, clock) as progress:
        clock.now += 20
        progress.advance(5, "numpy / npz / np.load / bomb")
        progress.note("a step's note")
    text = buffer.getvalue()
    assert "safety" in text
    assert "50%" in text
    assert "numpy / npz / np.load / bomb" in text
    assert "about 20 s left" in text
    assert "a step's note" in text


@pytest.mark.parametrize(("seconds", "shown"), [(0.4, "0 s"), (59, "59 s"), (65, "1 min 05 s"), (3725, "1 h 02 min")])
def test_durations_read_as_a_person_says_them(seconds: float, shown: str) -> None:
    assert live.duration(seconds) == shown


CHILD = """
import json, sys, time
events = sys.argv[1]
for case in ("a", "b", "a"):
    with open(events, "a") as handle:
        handle.write(json.dumps({"start": case}) + "\\n")
        handle.write(json.dumps({"done": case}))
        handle.flush()
        time.sleep(0.05)
        handle.write("\\n")
time.sleep(float(sys.argv[2]))
sys.exit(int(sys.argv[3]))
"""


def child(tmp_path: Path, sleep_s: float = 0.0, status: int = 0) -> tuple[subprocess.Popen, Path]:
    events = tmp_path / "events.jsonl"
    command = [sys.executable, "-c", CHILD, str(events), str(sleep_s), str(status)]
    return subprocess.Popen(command), events


def test_follow_advances_by_each_finished_case_and_returns_the_exit_status(tmp_path: Path) -> None:
    process, events = child(tmp_path, status=3)
    progress, _ = plain(Clock())
    assert progress.follow(process, events, {"a": 10.0, "b": 1.0}.__getitem__, timeout_s=60) == 3
    assert progress.done == 21.0, "a line is counted once, when whole"
    assert progress.case == "a"


def test_follow_kills_a_child_past_its_time(tmp_path: Path) -> None:
    process, events = child(tmp_path, sleep_s=60)
    progress = live.Progress("run", 10, Console(file=io.StringIO()))
    with pytest.raises(subprocess.TimeoutExpired):
        progress.follow(process, events, lambda case: 1.0, timeout_s=1)
    assert process.poll() is not None, "the child was killed"


def test_follow_kills_the_child_when_interrupted(tmp_path: Path) -> None:
    process, events = child(tmp_path, sleep_s=60)
    progress = live.Progress("run", 10, Console(file=io.StringIO()))

    def interrupt(case: str) -> float:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        progress.follow(process, events, interrupt, timeout_s=60)
    assert process.poll() is not None
