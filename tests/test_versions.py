"""`serbench versions`: releases of one package as variants of an environment, timed interleaved, and
compared (issue 13 items 4 and 5). The end-to-end test builds two small releases of safetensors (a
wheel of about 0.5 MB each, cached after the first build) and times them on the small workloads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import frameworks
from bench.errors import UsageError
from bench.reporting import versions as versions_report
from bench.reporting.compare import evidence, releases_under_test
from bench.timing.plan import case_id
from bench.version_matrix import frameworks_using
from frameworks import environments
from frameworks.variants import Variant, _pip_reason
from tests.run_fixture import make_run, rows, times

SERBENCH = [sys.executable, "-m", "bench.cli"]
REAL = [name for name in frameworks.names() if not frameworks.is_baseline(name)]


def test_an_interpreter_replaces_its_environments_own_for_the_block_and_its_children() -> None:
    replacement = "/somewhere/else/bin/python"
    before = environments.python_for(environments.HOME)
    with environments.interpreter(environments.HOME, replacement):
        assert environments.python_for(environments.HOME) == replacement
        assert not environments.runs_here(environments.HOME)
        assert environments.child_environment(environments.HOME)[environments.interpreter_variable("core")] == (
            replacement
        )
    assert environments.python_for(environments.HOME) == before
    assert environments.interpreter_variable("core") not in os.environ


@pytest.mark.parametrize("framework", REAL)
def test_every_package_a_framework_declares_is_pinned_in_its_environments_lock(framework: str) -> None:
    """A versions run replaces a pin: a declared package without one could not be compared."""
    adapter = frameworks.adapter_class(framework)
    pins = environments.ENVIRONMENTS[adapter.environment].pins()
    assert [package for package in adapter.packages if environments.normalize(package) not in pins] == []
    for package in adapter.packages:
        environment, chosen = frameworks_using(package, (framework,))
        assert (environment, chosen) == (adapter.environment, (framework,))


def test_a_package_is_timed_with_the_frameworks_that_use_it_in_one_environment() -> None:
    environment, chosen = frameworks_using("safetensors", None)
    assert environment == environments.HOME
    assert "numpy" in chosen
    assert "torch" in chosen
    assert all(frameworks.adapter_class(name).environment == environment for name in chosen)
    assert frameworks_using("numpy", None) == (environments.HOME, ("numpy",))


def test_frameworks_of_two_environments_or_an_unpinned_package_are_refused_naming_what_is_valid() -> None:
    homes = {frameworks.adapter_class(name).environment for name in REAL}
    if len(homes) > 1:
        one_each = tuple({frameworks.adapter_class(name).environment: name for name in REAL}.values())
        with pytest.raises(UsageError, match="different environments"):
            frameworks_using("numpy", one_each)
    with pytest.raises(UsageError, match="safetensors"):  # the pins are listed
        frameworks_using("no-such-package", ("numpy",))


def test_the_locked_release_is_the_environment_itself() -> None:
    locked = environments.ENVIRONMENTS[environments.HOME].pins()["safetensors"]
    record = Variant(environments.HOME, "safetensors", locked).build()
    assert record["locked"] is True
    assert record["interpreter"] == str(environments.ENVIRONMENTS[environments.HOME].python)


def test_pips_reason_is_one_line_without_the_yanked_notice_or_the_whole_release_list() -> None:
    stderr = (
        "WARNING: Location 'file:///x' is ignored\n"
        "ERROR: Ignored the following yanked versions: 0.3.3.post1\n"
        "ERROR: Could not find a version that satisfies the requirement safetensors==9.9 (from versions: "
        + ", ".join(f"0.{i}.0" for i in range(40))
        + ")\nERROR: No matching distribution found for safetensors==9.9\n"
    )
    reason = _pip_reason(stderr)
    assert reason.startswith("Could not find a version that satisfies the requirement safetensors==9.9")
    assert "yanked" not in reason
    assert "\n" not in reason
    assert reason.endswith(", ...)")


def _variant_run(directory: Path, version: str, matrix: str, table: list[dict]) -> Path:
    run = make_run(directory, table)
    env = json.loads((run / "env.json").read_text())
    env["versions"]["safetensors"] = version
    env["versions_in_effect"] = {"torch": {"torch": "2.13.0", "safetensors": version}}
    env["variant"] = {"label": directory.name, "package": "safetensors", "version": version, "matrix": matrix}
    env["variant"]["replaced"] = [f"safetensors=={version}"]
    (run / "env.json").write_text(json.dumps(env))
    return run


def _summary(out: Path, *versions: str) -> None:
    records = [
        {"label": f"safetensors-{v}", "package": "safetensors", "version": v, "locked": False}
        | {"replaced": [f"safetensors=={v}"], "conflicts": []}
        for v in versions
    ]
    records.append(
        {
            "label": "safetensors-9.9",
            "package": "safetensors",
            "version": "9.9",
            "not_installable": "Could not find a version",
        }
    )
    summary = {"package": "safetensors", "environment": "core", "frameworks": ["torch", "numpy"], "preset": "quick"}
    summary |= {"date": "2026-11-24T00:00:00+00:00", "versions": records, "order": "A, B", "safety": True}
    (out / "versions.json").write_text(json.dumps(summary))


def test_the_report_names_a_slower_release_a_changed_round_trip_and_a_changed_safety_outcome(tmp_path: Path) -> None:
    changed = []
    for r in rows():
        if (r["format"], r["op"], r["cache"]) == ("safetensors", "load", "warm"):
            r = times(r, 2)
            r |= {"sample_low_s": r["sample_low_s"] * 2, "sample_high_s": r["sample_high_s"] * 2}
        if (r["format"], r["op"]) == ("safetensors", "save"):
            r = dict(r, roundtrip="exact")
        changed.append(r)
    _variant_run(tmp_path / "safetensors-0.6.2", "0.6.2", "one run", rows())
    _variant_run(tmp_path / "safetensors-0.7.0", "0.7.0", "one run", changed)
    for version, outcome in (("0.6.2", "loaded-exact"), ("0.7.0", "refused")):
        safety = tmp_path / f"safetensors-{version}" / "safety"
        safety.mkdir()
        pd.DataFrame(
            [
                {"framework": "torch", "format": "safetensors", "mode": "load_file", "input": "header-bomb"}
                | {"group": "bomb", "outcome": outcome, "detail": ""}
            ]
        ).to_csv(safety / "safety.csv", index=False)
    _summary(tmp_path, "0.6.2", "0.7.0")
    report = versions_report.write_versions_report(tmp_path).read_text()
    speed = report.split("## Speed")[1].split("## Round-trip")[0]
    outcomes = report.split("## Round-trip")[1].split("## Safety")[0]
    safety = report.split("## Safety outcome changes")[1]
    assert "REGRESSION: slower" in speed
    assert "2.00x [" in speed, "the change is a ratio with its interval"
    assert "| torch       | torch    |" not in speed  # a control that did not change is not listed
    assert "drift: root: key order changed -> exact" in outcomes
    assert "header-bomb" in safety
    assert "refused" in safety
    assert "no: Could not find a version" in report
    assert (tmp_path / "tables" / "versions-speed.csv").exists()


def test_a_release_whose_processes_imported_another_is_marked_invalid(tmp_path: Path) -> None:
    run = _variant_run(tmp_path / "safetensors-0.6.2", "0.6.2", "one run", rows())
    _variant_run(tmp_path / "safetensors-0.7.0", "0.7.0", "one run", rows())
    env = json.loads((run / "env.json").read_text())
    env["versions_in_effect"]["torch"]["safetensors"] = "0.8.0"
    (run / "env.json").write_text(json.dumps(env))
    _summary(tmp_path, "0.6.2", "0.7.0")
    table = versions_report.releases_table(tmp_path, json.loads((tmp_path / "versions.json").read_text()))
    assert table.loc[0, "timed"].startswith("INVALID")
    assert table.loc[1, "timed"] == "yes"


def test_releases_are_the_point_only_between_variants_of_one_interleaved_run(tmp_path: Path) -> None:
    a = _variant_run(tmp_path / "a", "0.6.2", "run 1", rows())
    b = _variant_run(tmp_path / "b", "0.7.0", "run 1", rows())
    c = _variant_run(tmp_path / "c", "0.7.0", "run 2", rows())
    env = {name: json.loads((run / "env.json").read_text()) for name, run in (("a", a), ("b", b), ("c", c))}
    assert releases_under_test(env["a"], env["b"]) == {"safetensors"}
    assert releases_under_test(env["a"], env["c"]) == set()
    assert evidence(env["a"], env["b"]).startswith("strong")
    same_day = subprocess.run([*SERBENCH, "compare", "--json", str(a), str(b)], capture_output=True, text=True)
    assert same_day.returncode == 0, same_day.stderr
    assert "evidence: strong" in same_day.stderr
    other_run = subprocess.run([*SERBENCH, "compare", str(a), str(c)], capture_output=True, text=True)
    assert other_run.returncode == 4
    assert "safetensors version: 0.6.2 -> 0.7.0" in other_run.stderr


def test_runs_of_different_days_are_weak_evidence(tmp_path: Path) -> None:
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    env = json.loads((b / "env.json").read_text())
    (b / "env.json").write_text(json.dumps(env | {"date": "2026-11-23T09:00:00+00:00"}))
    result = subprocess.run([*SERBENCH, "compare", "--json", str(a), str(b)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["evidence"].startswith("weak: timed on different days (2026-11-22, 2026-11-23)")


def test_two_releases_are_built_timed_interleaved_and_compared_end_to_end(tmp_path: Path) -> None:
    """Two small releases of safetensors (neither the locked one, so both are variants) and one that does
    not exist, on numpy's safetensors format and the small workloads, two processes each."""
    out = tmp_path / "versions"
    command = [*SERBENCH, "versions", "safetensors", "0.6.2", "0.7.0", "9.9", "--frameworks", "numpy"]
    command += ["--formats", "safetensors", "--sizes", "small", "--processes", "2", "--no-peak-memory"]
    command += ["--no-safety", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    for version in ("0.6.2", "0.7.0"):
        env = json.loads((out / f"safetensors-{version}" / "env.json").read_text())
        assert env["versions"]["safetensors"] == version
        assert env["versions_in_effect"]["numpy"]["safetensors"] == version  # what the timed processes imported
        assert env["variant"]["interpreter"].startswith(str(environments.root() / ".venv-versions"))
    # the releases' processes alternated: A p0, B p0, A p1, B p1
    finished = sorted(
        (path.stat().st_mtime_ns, f"{run.name} {path.name}")
        for run in (out / "safetensors-0.6.2", out / "safetensors-0.7.0")
        for path in (run / "raw").glob("benchmark-numpy-*.json")
    )
    assert [name for _, name in finished] == [
        "safetensors-0.6.2 benchmark-numpy-t1-p0.json",
        "safetensors-0.7.0 benchmark-numpy-t1-p0.json",
        "safetensors-0.6.2 benchmark-numpy-t1-p1.json",
        "safetensors-0.7.0 benchmark-numpy-t1-p1.json",
    ]
    report = (out / "versions.md").read_text()
    assert "| 9.9 " in report
    assert "no: pip cannot install it here: Could not find a version" in report
    assert report.count("| yes ") == 2
    compared = subprocess.run(
        [*SERBENCH, "compare", "safetensors-0.6.2", "safetensors-0.7.0", "--json"],
        cwd=out,
        capture_output=True,
        text=True,
    )
    assert compared.returncode in (0, 1, 5), compared.stderr  # compared, not refused for differing versions
    assert "evidence: strong" in compared.stderr
    summary = json.loads(compared.stdout)
    speed = pd.read_csv(out / "tables" / "versions-speed.csv", keep_default_na=False)
    column = "change 0.7.0"
    for kind, listed in (("REGRESSION: slower", "regressions"), ("cannot decide", "undecided")):
        in_report = {case_id(r) for _, r in speed[speed[column] == kind].iterrows()}
        in_compare = {case["case"] for case in summary[listed] if case["change"] == kind}
        real = {case for case in in_compare if not frameworks.is_baseline(case.split("|")[0])}
        assert in_report == real, f"versions.md and compare agree on what is {kind}"


def _with_rounds(rounds: list[float]) -> list[dict]:
    """The fixture's rows, its torch warm load given these rounds as two processes of six (and its median)."""
    q1, median, q3 = np.percentile(rounds, [25, 50, 75])
    changed = {"rounds_by_process": json.dumps([rounds[:6], rounds[6:]]), "median_s": median, "q1_s": q1, "q3_s": q3}
    changed |= {"low_s": min(rounds), "high_s": max(rounds)}
    return [
        dict(r, **changed) if (r["format"], r["op"], r["cache"], r["device"]) == ("torch", "load", "warm", "cpu") else r
        for r in rows()
    ]


def test_interleaved_releases_are_compared_paired_process_against_process(tmp_path: Path) -> None:
    """A load that halved in 10 of 12 rounds, each release with one first-touch round per process (which made
    its process medians span 2x and hid the change under the old noise rule): paired, process against the
    process timed next to it, it is decided faster; the same rounds in another order are not called a change."""
    from bench.reporting.compare import Change, compare, load_any

    old = [0.24, 0.104, 0.096, 0.101, 0.095, 0.097, 0.17, 0.108, 0.104, 0.102, 0.111, 0.113]
    new = [0.066, 0.062, 0.054, 0.048, 0.048, 0.050, 0.22, 0.051, 0.054, 0.054, 0.059, 0.058]
    base = load_any(make_run(tmp_path / "a", _with_rounds(old)))
    faster = load_any(make_run(tmp_path / "b", _with_rounds(new)))
    same = load_any(make_run(tmp_path / "c", _with_rounds(old[6:] + old[:6])))

    def kind(table: pd.DataFrame) -> str:
        row = table[(table["format"] == "torch") & (table["op"] == "load") & (table["cache"] == "warm")]
        return row[row["device"] == "cpu"]["kind"].item()

    assert kind(compare(base, faster, interleaved=True)) == Change.FASTER.value
    assert kind(compare(faster, base, interleaved=True)) == Change.SLOWER.value
    assert kind(compare(base, same, interleaved=True)) in (Change.SAME.value, Change.UNDECIDED.value)


@pytest.mark.parametrize("framework", REAL)
def test_a_format_that_uses_the_package_is_never_its_control_and_the_others_of_its_framework_are(
    framework: str,
) -> None:
    specs = frameworks.adapter_class(framework).specs
    for package in {package for spec in specs for package in spec.uses}:
        for spec in specs:
            assert versions_report.is_control(framework, spec.name, package) is (package not in spec.uses)
    assert not versions_report.is_control(framework, specs[0].name, framework)  # its own package: no controls
