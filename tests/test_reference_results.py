"""The committed reference runs obey the invariants every honest run must: no load beats its
physical ceiling, cold loads were cold, every planned row is there, and the environment is recorded.
A run made by a harness that timed a lazy open as a load would fail here."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

RESULTS = Path(__file__).resolve().parent.parent / "results"
RUNS = sorted(path.parent for path in RESULTS.glob("reference-*/results.csv"))


def test_there_are_reference_runs_with_and_without_a_gpu() -> None:
    gpus = [json.loads((run / "env.json").read_text())["gpu"] for run in RUNS]
    assert any(gpu.startswith("none") for gpu in gpus)
    assert any("NVIDIA" in gpu for gpu in gpus)


@pytest.mark.parametrize("run", RUNS, ids=[run.name for run in RUNS])
def test_reference_run_obeys_the_physical_limits(run: Path) -> None:
    frame = pd.read_csv(run / "results.csv")
    limits = json.loads((run / "limits.json").read_text())
    loads = frame[(frame["op"] == "load") & (frame["status"] == "ok") & (frame["payload_bytes"] >= 64 << 20)]
    assert not loads.empty
    cpu, cuda = loads[loads["device"] == "cpu"], loads[loads["device"] == "cuda"]
    assert (cpu["gbps"] <= limits["memcpy"]["gbps"]).all(), cpu.loc[cpu["gbps"] > limits["memcpy"]["gbps"]]
    if not cuda.empty:
        assert (cuda["gbps"] <= limits["h2d_pinned"]["gbps"]).all()
    cold = frame[(frame["cache"] == "cold") & (frame["status"] == "ok") & (frame["framework"] != "null-adapter")]
    assert (cold["resident_before_cold"] < 0.01).all(), "a cold load found its file in the page cache"


@pytest.mark.parametrize("run", RUNS, ids=[run.name for run in RUNS])
def test_reference_run_has_every_row_and_its_environment(run: Path) -> None:
    frame = pd.read_csv(run / "results.csv")
    assert not (frame["status"] == "missing").any()
    assert not (frame["status"] == "error").any(), frame.loc[frame["status"] == "error", ["framework", "note"]]
    cuda = frame[frame["device"] == "cuda"]
    assert (cuda["status"].isin(["ok", "unavailable"])).all()
    assert cuda.loc[cuda["status"] == "unavailable", "note"].str.startswith("unavailable").all()
    env = json.loads((run / "env.json").read_text())
    assert {"python", "cpu", "gpu", "kernel", "filesystem", "git_commit", "versions"} <= set(env)
    if (cuda["status"] == "ok").any():
        assert "NVIDIA" in env["gpu"]
        assert limits_measured(run)
    else:
        assert not limits_measured(run)


def limits_measured(run: Path) -> bool:
    return json.loads((run / "limits.json").read_text())["h2d_pinned"]["gbps"] is not None


@pytest.mark.parametrize("run", RUNS, ids=[run.name for run in RUNS])
def test_every_committed_figure_carries_its_spread(run: Path) -> None:
    frame = pd.read_csv(run / "results.csv")
    timed = frame[frame["status"] == "ok"]
    for column in ("q1_s", "q3_s", "low_s", "high_s", "rounds", "samples", "stability"):
        assert timed[column].notna().all(), f"{run.name}: a timed row lacks {column}"
    unstable = timed[timed["stability"] == "unstable"]
    assert (unstable["unstable_reason"].fillna("").str.len() > 0).all()


@pytest.mark.parametrize("run", RUNS, ids=[run.name for run in RUNS])
def test_committed_report_is_what_the_report_code_writes_now(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report is a pure function of the stored results: a stale one (crisp figures from older
    report code) fails here until it is regenerated with `serbench report results/<run>`."""
    import shutil

    from bench.reporting.report import write_report

    shutil.copytree(run, tmp_path / "results" / run.name, ignore=shutil.ignore_patterns("plots", "raw"))
    monkeypatch.chdir(tmp_path)  # the report names its directory as it was given: results/<run>
    assert write_report(Path("results") / run.name).read_text() == (run / "report.md").read_text()


SCALE_RUNS = sorted(path.parent for path in RESULTS.glob("reference-*/scale.json"))


@pytest.mark.parametrize("run", SCALE_RUNS, ids=[run.name for run in SCALE_RUNS])
def test_a_committed_scale_run_was_checked_cold_and_below_memcpy(run: Path) -> None:
    record = json.loads((run / "scale.json").read_text())
    memcpy = record["limits"]["memcpy"]["gbps"]
    timed = [row for row in record["llm"]["rows"] if not row["unavailable"]]
    assert timed
    for row in timed:
        assert row["rounds"], row["loader"]
        for entry in row["rounds"]:
            assert entry["wrong"] == [], (row["loader"], entry["wrong"])
            assert row["payload_bytes"] / entry["seconds"] / 1e9 <= memcpy, (row["loader"], entry)
            if row["cache"] == "cold":
                assert entry["resident"] < 0.01, f"a cold {row['loader']} load found its files cached"
    for row in record["distributed"]:
        assert row["unavailable"] or all(entry["load"]["wrong"] == [] for entry in row["rounds"])
    assert all(not row["wrong"] for row in record["sweep"]["rows"])
    env = json.loads((run / "env.json").read_text())
    assert {"python", "cpu", "gpu", "git_commit", "versions"} <= set(env)
    assert (run / "scale.md").read_text().startswith(f"# {run.name}:")


@pytest.mark.parametrize("run", SCALE_RUNS, ids=[run.name for run in SCALE_RUNS])
def test_a_committed_scale_report_is_what_its_record_gives(run: Path, tmp_path: Path) -> None:
    """scale.md is regenerated from scale.json by the current report code (no hand edits, no stale report)."""
    import shutil

    from bench.reporting.scale import write_scale_report

    copy = tmp_path / run.name
    copy.mkdir()
    for name in ("scale.json", "env.json"):
        shutil.copy(run / name, copy / name)
    assert write_scale_report(copy).read_text() == (run / "scale.md").read_text()
