"""The command line as a package: every command its parser builds answers --help, and main is the one place
that maps an error to its exit status: an OSError about a path the user gave is bad input (2), any other
(EIO, a full disk, a missing program) is the system's (3), and Ctrl-C is caught there alone."""

from __future__ import annotations

import argparse
import ast
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cli

CLI = Path(cli.__file__).parent


def _subcommands() -> list[str]:
    (commands,) = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return list(commands.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_command_answers_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main([command, "--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: serbench {command} ")


def test_the_command_lists_every_command_in_the_parsers_order() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.cli", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    listed = done.stdout.split("{", 1)[1].split("}", 1)[0].split(",")
    assert listed == _subcommands()


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _failing(monkeypatch: pytest.MonkeyPatch, target: str, error: BaseException) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(target, fail)


COMMANDS = {
    "index": ("bench.reporting.index.write_index", lambda tmp: ["index", str(tmp)]),
    "safety": ("bench.safety.runner.run_safety", lambda tmp: ["safety", "--out", str(tmp / "s")]),
    "support-table": ("bench.conformance.support.support_markdown", lambda tmp: ["support-table"]),
}


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC], ids=errno.errorcode.get)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_oserror_of_the_system_is_not_bad_input(
    command: str, code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An I/O error or a full disk is no fault of the input, even on a path the user gave: exit 3, one line."""
    target, argv = COMMANDS[command]
    _failing(monkeypatch, target, OSError(code, "the device failed", str(tmp_path / "results.csv")))
    monkeypatch.delenv("SERBENCH_TRACEBACK", raising=False)
    assert cli.main(argv(tmp_path)) == cli.EXIT_INTERNAL
    line = _one_line(capsys)
    assert line.startswith(f"serbench {command}: system error: OSError: "), line
    assert "the device failed" in line
    assert "SERBENCH_TRACEBACK=1" in line


def test_a_system_error_shows_its_traceback_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing(monkeypatch, "bench.reporting.index.write_index", OSError(errno.EIO, "the device failed"))
    monkeypatch.setenv("SERBENCH_TRACEBACK", "1")
    with pytest.raises(OSError, match="the device failed"):
        cli.main(["index", str(tmp_path)])


def test_a_missing_program_is_the_systems_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A FileNotFoundError about a path the user did not give (an environment's python): exit 3, not 2."""
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "/nowhere/.venv-mxnet/bin/python")
    _failing(monkeypatch, "bench.safety.runner.run_safety", missing)
    assert cli.main(["safety", "--out", str(tmp_path / "s")]) == cli.EXIT_INTERNAL
    assert "/nowhere/.venv-mxnet/bin/python" in _one_line(capsys)


ABOUT_THE_USERS_PATH = {
    "missing": (FileNotFoundError, errno.ENOENT, lambda out: out),
    "not-permitted-inside": (PermissionError, errno.EACCES, lambda out: out / "safety.csv"),
    "not-a-directory-above": (NotADirectoryError, errno.ENOTDIR, lambda out: out.parent),
    "a-directory": (IsADirectoryError, errno.EISDIR, lambda out: out),
}


@pytest.mark.parametrize("case", sorted(ABOUT_THE_USERS_PATH))
def test_an_oserror_about_a_path_the_user_gave_is_bad_input(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The path named by --out, one inside it or one above it: exit 2, one line."""
    kind, code, where = ABOUT_THE_USERS_PATH[case]
    out = tmp_path / "s"
    _failing(monkeypatch, "bench.safety.runner.run_safety", kind(code, os.strerror(code), str(where(out))))
    assert cli.main(["safety", "--out", str(out)]) == cli.EXIT_USAGE
    assert _one_line(capsys) == f"serbench safety: error: {where(out)}: {os.strerror(code)}"


def test_a_missing_input_path_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["report", str(tmp_path / "missing")], ["index", str(tmp_path / "missing")]):
        assert cli.main(argv) == cli.EXIT_USAGE
        assert str(tmp_path / "missing") in _one_line(capsys)


def test_an_out_path_under_a_file_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real NotADirectoryError, raised by the run's own mkdir: the user's --out, so exit 2."""
    (tmp_path / "file").write_text("")
    assert cli.main(["safety", "--out", str(tmp_path / "file" / "s"), "--frameworks", "numpy"]) == cli.EXIT_USAGE
    assert str(tmp_path / "file") in _one_line(capsys)


def test_an_interrupt_is_one_line_and_its_own_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _failing(monkeypatch, "bench.safety.runner.run_safety", KeyboardInterrupt())
    assert cli.main(["safety", "--out", str(tmp_path / "s")]) == cli.EXIT_INTERRUPTED
    assert _one_line(capsys) == "serbench safety: interrupted"


def test_only_main_catches_an_interrupt() -> None:
    """A command says what an interrupt leaves and how to finish (`resumable`); main alone catches it."""
    catching = [
        f"{path.name}:{function.name}"
        for path in sorted(CLI.glob("*.py"))
        for function in ast.parse(path.read_text()).body
        if isinstance(function, ast.FunctionDef)
        for handler in ast.walk(function)
        if isinstance(handler, ast.ExceptHandler) and "KeyboardInterrupt" in ast.unparse(handler.type or ast.Pass())
    ]
    assert catching == ["__init__.py:main"], "catch KeyboardInterrupt in main alone; a command uses resumable()"
