"""Every command the README and docs/ show in their fenced blocks still works: each `serbench` line parses
with today's command line (a removed command or option fails here), each `make` target exists, and the cheap
ones run. A documented command that stopped working is a newcomer's first failure."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cli

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_FENCES = ("```bash", "```sh", "```console")


def _shown(prefixes: tuple[str, ...]) -> list[tuple[str, str]]:
    """(page, command) for each line of a shell block (```bash, ```sh) that starts with one of `prefixes`,
    its trailing comment cut."""
    found = []
    for page in PAGES:
        shell = inside = False
        for line in page.read_text().splitlines():
            if line.startswith("```"):
                inside, shell = not inside, not inside and line.strip() in SHELL_FENCES
                continue
            command = line.split("  #", 1)[0].split(" # ", 1)[0].strip()
            if inside and shell and command.startswith(prefixes):
                found.append((page.relative_to(ROOT).as_posix(), command))
    return found


SERBENCH = _shown((".venv/bin/serbench ", "serbench "))
MAKE = _shown(("make ",))


def test_the_pages_show_commands() -> None:
    assert len(SERBENCH) >= 5, "the README's own commands were not found: has the fence syntax changed?"
    assert MAKE, "the README's two commands were not found"


@pytest.mark.parametrize(("page", "command"), SERBENCH, ids=[f"{p}: {c}" for p, c in SERBENCH])
def test_every_serbench_command_shown_parses(page: str, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = shlex.split(command)[1:]
    try:
        arguments = cli.build_parser().parse_args(argv)
    except SystemExit as stop:
        pytest.fail(f"{page} shows `{command}`, which serbench refuses: {capsys.readouterr().err.strip()} ({stop})")
    assert callable(arguments.func)


@pytest.mark.parametrize(("page", "command"), MAKE, ids=[f"{p}: {c}" for p, c in MAKE])
def test_every_make_target_shown_exists(page: str, command: str) -> None:
    target = shlex.split(command)[1]
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, f"{page} shows `{command}`: {dry.stderr.strip()}"


CHEAP = ["support-table", "roundtrip --frameworks torch,mxnet"]
"""Shown commands that take seconds here: run as a newcomer would (the others are parsed, and run by their
own tests)."""


@pytest.mark.parametrize("command", CHEAP)
def test_the_cheap_commands_shown_run(command: str) -> None:
    shown = {" ".join(shlex.split(line)[1:]) for _, line in SERBENCH}
    assert command in shown, f"`serbench {command}` is no longer shown: update CHEAP"
    done = subprocess.run(
        [sys.executable, "-m", "bench.cli", *shlex.split(command)], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]


def test_the_version_shown_by_the_cli_is_the_package_version() -> None:
    from bench import __version__

    done = subprocess.run([sys.executable, "-m", "bench.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == f"serbench {__version__}"
