"""The command line answers bad input with one line and a distinct exit status, never a traceback,
and before any work starts; `compare` is a gate CI can trust (see bench/cli/__init__.py for the statuses)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

import frameworks
from bench import cli
from bench.cli import options
from tests.run_fixture import make_run, rows

ROOT = Path(__file__).resolve().parents[1]


def serbench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int = cli.EXIT_USAGE) -> str:
    assert result.returncode == status, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


VOCABULARIES = {
    "--frameworks": frameworks.names(),
    "--formats": options.all_formats(),
    "--kinds": options.kind_names(),
    "--sizes": options.size_names(),
    "--devices": options.device_names(),
}


@pytest.mark.parametrize("option", sorted(VOCABULARIES))
def test_a_value_outside_the_vocabulary_is_one_line_naming_the_valid_values(option: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    line = assert_one_line_error(serbench("run", option, "pytorch", "--out", str(out)))
    assert "'pytorch'" in line
    assert all(valid in line for valid in VOCABULARIES[option])
    assert not out.exists(), "nothing may start before the arguments are checked"


def test_safety_checks_its_frameworks_too(tmp_path: Path) -> None:
    line = assert_one_line_error(serbench("safety", "--out", str(tmp_path / "s"), "--frameworks", "pytorch"))
    assert all(name in line for name in frameworks.names())
    assert not (tmp_path / "s").exists()


def test_version_is_the_package_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = serbench("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"serbench {version}"


def test_an_existing_run_directory_is_not_mixed_into_without_resume(tmp_path: Path) -> None:
    old = make_run(tmp_path / "old")
    before = {path: path.read_bytes() for path in old.iterdir()}
    line = assert_one_line_error(serbench("run", "--frameworks", "numpy", "--out", str(old)))
    assert "--resume" in line
    assert {path: path.read_bytes() for path in old.iterdir()} == before


def test_a_selection_with_nothing_to_time_says_so_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "run"
    line = assert_one_line_error(serbench("run", "--kinds", "tensor", "--formats", "safetensors", "--out", str(out)))
    assert "nothing to time" in line
    assert not out.exists()


def _malformed_runs(directory: Path) -> dict[str, Path]:
    """Run directories a user might point at by mistake, each broken in one way."""
    cases = {}

    def run(name: str) -> Path:
        cases[name] = make_run(directory / name)
        return cases[name]

    (run("empty-results") / "results.csv").write_text("")
    (run("binary-results") / "results.csv").write_bytes(bytes(range(256)) * 4)
    results = run("missing-column") / "results.csv"
    results.write_text("\n".join(line.split(",", 1)[1] for line in results.read_text().splitlines()))
    (run("env-is-a-list") / "env.json").write_text("[1, 2]")
    (run("env-invalid") / "env.json").write_text("{not json")
    (run("env-deeply-nested") / "env.json").write_text("[" * 100_000 + "]" * 100_000)
    fifo = run("results-a-fifo") / "results.csv"
    fifo.unlink()
    os.mkfifo(fifo)
    (run("no-limits") / "limits.json").unlink()
    cases["not-a-directory"] = directory / "nothing-here"
    return cases


def test_report_of_a_malformed_run_directory_is_one_line(tmp_path: Path) -> None:
    for name, path in _malformed_runs(tmp_path).items():
        line = assert_one_line_error(serbench("report", str(path), timeout=60))
        assert str(path) in line, name


def test_compare_of_a_malformed_input_is_one_line(tmp_path: Path) -> None:
    good = make_run(tmp_path / "good")
    readme = tmp_path / "README.md"
    readme.write_text("# not a run\n")
    no_stats = tmp_path / "no-stats.json"
    no_stats.write_text(json.dumps({"benchmarks": [{"fullname": "x"}]}))
    for bad in (readme, no_stats, *_malformed_runs(tmp_path / "malformed").values()):
        assert_one_line_error(serbench("compare", str(bad), str(good), timeout=60))


def test_compare_refuses_runs_from_different_machines_unless_allowed(tmp_path: Path) -> None:
    base, new = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    env = json.loads((new / "env.json").read_text())
    (new / "env.json").write_text(json.dumps({**env, "cpu": "Other CPU", "versions": {"torch": "2.11.0"}}))
    line = assert_one_line_error(serbench("compare", str(base), str(new)), cli.EXIT_NOT_COMPARABLE)
    assert "cpu: Test CPU -> Other CPU" in line
    assert "torch version: 2.13.0 -> 2.11.0" in line
    allowed = serbench("compare", str(base), str(new), "--allow-different")
    assert allowed.returncode == 0, allowed.stderr
    assert "WARNING" in allowed.stderr


def test_compare_fails_when_cases_disappear(tmp_path: Path) -> None:
    base = make_run(tmp_path / "a")
    new = make_run(tmp_path / "b", rows()[: len(rows()) // 2])
    result = serbench("compare", str(base), str(new), "--json")
    assert result.returncode == cli.EXIT_REGRESSION
    summary = json.loads(result.stdout)
    assert summary["exit_status"] == 1
    assert len(summary["missing"]) == len(rows()) - len(rows()) // 2
    assert "missing from the new run" in result.stderr


def test_compare_of_identical_runs_is_clean_and_shows_readable_times(tmp_path: Path) -> None:
    base, new = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    result = serbench("compare", str(base), str(new), "--all")
    assert result.returncode == 0, result.stderr
    assert "e-0" not in result.stdout, "no scientific notation in a table a person reads"
    assert " ms " in result.stdout or " µs " in result.stdout
    assert json.loads(serbench("compare", str(base), str(new), "--json").stdout)["exit_status"] == 0


def test_an_internal_error_is_one_line_with_its_own_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(run_dir: Path) -> Path:
        raise RuntimeError("a bug\nwith a second line")

    monkeypatch.setattr("bench.reporting.report.write_report", broken)
    monkeypatch.delenv("SERBENCH_TRACEBACK", raising=False)
    assert cli.main(["report", str(make_run(tmp_path / "run"))]) == cli.EXIT_INTERNAL
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "serbench report: internal error: RuntimeError: a bug\\nwith a second line (SERBENCH_TRACEBACK=1 shows where)"
    ]


def test_safety_table_of_a_file_that_is_not_a_safety_csv_is_one_line(tmp_path: Path) -> None:
    results = make_run(tmp_path / "run") / "results.csv"
    for bad in (results, tmp_path / "missing.csv", tmp_path):
        line = assert_one_line_error(serbench("safety-table", "--source", str(bad)))
        assert str(bad) in line


def test_resume_without_a_run_directory_is_refused() -> None:
    """--resume with no --out would start a whole new run under a fresh name; it is refused instead."""
    line = assert_one_line_error(serbench("run", "--resume", timeout=60))
    assert "--resume needs --out" in line


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (commands,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(commands.choices)


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_option_of_every_command_says_what_its_values_mean(command: str) -> None:
    parser = _subcommands()[command]
    silent = [
        action.dest for action in parser._actions if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert not silent, f"serbench {command}: {silent} have no help"


@pytest.mark.parametrize("framework", frameworks.names())
def test_roundtrip_prints_held_cells_against_their_expectation_and_one_line_for_the_rest(
    framework: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A teacher's check: each outcome says whether it is the expected one; no block of "unsupported"."""
    from tests.conftest import adapter_or_skip

    adapter_or_skip(framework)
    assert cli.main(["roundtrip", "--frameworks", framework]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "every outcome is the one the suite expects"
    cells = [line for line in lines[:-1] if "cannot hold" not in line]
    assert cells
    assert all(line.endswith("[as expected]") for line in cells), cells
    assert not [line for line in cells if " unsupported: " in line]
    assert len([line for line in lines if "cannot hold, as expected" in line]) <= 1


def test_roundtrip_exits_1_on_an_unexpected_outcome(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.conformance import expectations
    from frameworks.findings import Expectation

    real = expectations.expected

    def doctored(framework: str, fmt: str, workload: object) -> Expectation:
        if fmt == "npz" and workload.name == "d2l-dict":
            return Expectation("drift", "a finding that is no longer true", changes=("root: key order changed",))
        return real(framework, fmt, workload)

    monkeypatch.setattr(expectations, "expected", doctored)
    assert cli.main(["roundtrip", "--frameworks", "numpy"]) == 1
    out = capsys.readouterr().out
    assert "npz            d2l-dict                     exact  [UNEXPECTED (expected drift)]" in out
    assert out.splitlines()[-1] == "unexpected outcomes: 1"
