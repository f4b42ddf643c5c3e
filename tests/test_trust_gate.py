"""The trust gate: every entry point that reads a file x every format it takes x every hostile input.

Parametrized from `bench.safety.entry_points` and the adapters' specs, so a new entry point, format or
framework is attacked without editing this file. A canary leaves a marker file if its code runs;
a FIFO would block a load forever (an alarm turns that into a failure instead of a hung suite).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import frameworks
from bench import workloads
from bench.safety.entry_points import entry_points, undeclared_loaders
from frameworks.errors import NotRegularFileError, SerbenchError
from tests.conftest import adapter_or_skip
from tests.hostile import CANARIES

CELLS = [
    pytest.param(framework, point.name, fmt, id=f"{framework}-{point.name}-{fmt}")
    for framework in frameworks.names()
    for point in entry_points(framework)
    for fmt in point.formats
]


def entry_point(framework: str, name: str):
    return next(point for point in entry_points(framework) if point.name == name)


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fail, rather than hang, if a load blocks for 20 s."""

    def timeout(_signum: int, _frame: object) -> None:
        raise TimeoutError("the load blocked for 20 s")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("framework", frameworks.names())
def test_every_public_loader_is_a_declared_entry_point(framework: str) -> None:
    assert not undeclared_loaders(framework), "add these to bench.safety.entry_points so they are attacked"


@pytest.mark.parametrize("canary", sorted(CANARIES))
@pytest.mark.parametrize(("framework", "point_name", "fmt"), CELLS)
def test_no_canary_runs_through_any_entry_point(
    framework: str, point_name: str, fmt: str, canary: str, tmp_path: Path
) -> None:
    adapter = adapter_or_skip(framework)
    marker = tmp_path / "marker"
    path = CANARIES[canary](tmp_path, marker)
    with pytest.raises(SerbenchError) as caught:
        entry_point(framework, point_name).read(adapter, path, fmt, False)
    assert not marker.exists(), f"code from the file ran; the load then said: {caught.value}"
    assert str(path) in str(caught.value), "the error names the file"


@pytest.mark.parametrize(("framework", "point_name", "fmt"), CELLS)
def test_a_fifo_is_refused_without_blocking(framework: str, point_name: str, fmt: str, tmp_path: Path, alarm) -> None:
    adapter = adapter_or_skip(framework)
    fifo = tmp_path / f"pipe{adapter.spec(fmt).suffix}"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError, match="FIFO"):
        entry_point(framework, point_name).read(adapter, fifo, fmt, True)


@pytest.mark.parametrize(("framework", "point_name", "fmt"), CELLS)
def test_a_directory_holding_a_fifo_is_refused_without_blocking(
    framework: str, point_name: str, fmt: str, tmp_path: Path, alarm
) -> None:
    adapter = adapter_or_skip(framework)
    directory = tmp_path / f"checkpoint{adapter.spec(fmt).suffix}"
    directory.mkdir()
    for name in ("ckpt.index", "ckpt.data-00000-of-00001", "model.params", "trainer.states", "progress.json"):
        os.mkfifo(directory / name)
    with pytest.raises(SerbenchError):
        entry_point(framework, point_name).read(adapter, directory, fmt, True)


@pytest.mark.parametrize(("framework", "point_name", "fmt"), CELLS)
def test_a_users_directory_gets_a_clear_error_and_is_left_alone(
    framework: str, point_name: str, fmt: str, tmp_path: Path
) -> None:
    adapter = adapter_or_skip(framework)
    directory = tmp_path / "my-project"
    directory.mkdir()
    (directory / "notes.txt").write_text("mine")
    with pytest.raises(SerbenchError, match="my-project"):
        entry_point(framework, point_name).read(adapter, directory, fmt, True)
    assert [p.name for p in directory.iterdir()] == ["notes.txt"]
    assert (directory / "notes.txt").read_text() == "mine"


NESTED_DIRECTORY_CELLS = [
    pytest.param(framework, point.name, fmt, id=f"{framework}-{point.name}-{fmt}")
    for framework in frameworks.names()
    for point in entry_points(framework)
    for fmt in point.formats
    if frameworks.adapter_class(framework).spec(fmt).subdirectories
]


@pytest.mark.parametrize("planted", ["fifo", "symlink"])
@pytest.mark.parametrize(("framework", "point_name", "fmt"), NESTED_DIRECTORY_CELLS)
def test_a_checkpoint_with_a_fifo_or_link_deep_inside_is_refused(
    framework: str, point_name: str, fmt: str, planted: str, tmp_path: Path, alarm
) -> None:
    """A format whose checkpoints hold subdirectories (Orbax) is walked to the bottom: a FIFO would block
    the framework's reader, a link can point it at any file on the machine."""
    adapter = adapter_or_skip(framework)
    valid = tmp_path / f"valid{adapter.spec(fmt).suffix}"
    adapter.save(adapter.from_numpy(workloads.build("d2l-dict")), valid, fmt)
    deepest = max((p for p in valid.rglob("*") if p.is_file()), key=lambda p: len(p.relative_to(valid).parts))
    assert len(deepest.relative_to(valid).parts) > 1, "the checkpoint has no subdirectory to plant in"
    deepest.unlink()
    if planted == "fifo":
        os.mkfifo(deepest)
    else:
        outside = tmp_path / "elsewhere"
        outside.write_bytes(b"not part of the checkpoint")
        deepest.symlink_to(outside)
    with pytest.raises(NotRegularFileError, match=str(deepest.relative_to(valid))):
        entry_point(framework, point_name).read(adapter, valid, fmt, True)
