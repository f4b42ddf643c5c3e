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
