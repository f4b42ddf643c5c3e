"""A framework added at run time is picked up everywhere with no edit outside its adapter.

`tests/extra_adapter.py` is registered under the name "toy" (`frameworks.register`, which also
carries it to child processes). The conformance suite, the MLP and cross-framework tests, the trust
gate's attacks, the benchmark plan and run, the report, the safety matrix and the support table must
all see it; nothing in `bench/` or `tests/` names it except this module.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import frameworks
from bench.conformance import support
from bench.timing import plan

ROOT = Path(__file__).resolve().parent.parent
NAME = "toy"


@pytest.fixture(scope="module", autouse=True)
def toy_registered() -> Iterator[None]:
    frameworks.register(NAME, "tests.extra_adapter:ToyAdapter", "nothing to install (tests only)")
    try:
        yield
    finally:
        frameworks.unregister(NAME)


def serbench(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process, which sees the extra adapter only through the carried registry."""
    env = {key: value for key, value in os.environ.items() if key != "SERBENCH_REQUIRE_FRAMEWORKS"}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_the_registry_and_its_children_see_the_extra_adapter() -> None:
    assert NAME in frameworks.names()
    assert not frameworks.is_baseline(NAME)
    child = serbench("frameworks.__init__", timeout=60)  # importing must not fail
    assert child.returncode == 0, child.stderr
    listed = subprocess.run(
        [sys.executable, "-c", "import frameworks; print(','.join(frameworks.names()))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert NAME in listed.stdout.strip().split(",")


def test_support_table_shows_its_format_and_declared_drift() -> None:
    frame, _notes = support.support_frame()
    row = frame[(frame["framework"] == NAME) & (frame["format"] == "toy-npz")]
    assert len(row) == 1
    assert row["dict"].iloc[0].startswith("exact 23/24, drift 1/24"), row["dict"].iloc[0]
    assert row["mlp"].iloc[0] == "exact"
    assert row["tensor"].iloc[0] == "unsupported"


def test_the_benchmark_plan_includes_it() -> None:
    cases = plan.plan("quick", include_null=False)
    toy = [case for case in cases if case.framework == NAME]
    assert {case.format for case in toy} == {"toy-npz"}
    assert {case.op for case in toy} == {"save", "load"}
    assert {case.cache for case in toy if case.op == "load"} == {"warm", "cold"}


def test_conformance_mlp_cross_framework_and_trust_gate_tests_run_it() -> None:
    """The registry-parametrized suites, collected in a child, include the extra adapter and pass."""
    env = {**os.environ, "SERBENCH_REQUIRE_FRAMEWORKS": NAME}
    suites = ["tests/test_conformance.py", "tests/test_mlp.py", "tests/test_cross_framework.py"]
    suites.append("tests/test_trust_gate.py")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", NAME, "-m", "not large", *suites],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    passed = int(re.search(r"(\d+) passed", result.stdout).group(1))
    assert passed >= 40, result.stdout[-2000:]
    assert re.search(rf"passed tests per framework: {NAME}: [1-9]", result.stdout), result.stdout[-1000:]


def test_a_benchmark_run_and_its_report_include_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = serbench(
        "bench.cli", "run", "--frameworks", NAME, "--sizes", "small", "--devices", "cpu", "--out", str(out),
        "--no-peak-memory",
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    frame = pd.read_csv(out / "results.csv")
    toy = frame[frame["framework"] == NAME]
    assert not toy.empty
    held = toy["status"] != "unsupported"  # a list, a tensor, a checkpoint: reported, not timed
    assert set(toy.loc[~held, "workload"]) == {"d2l-tensor", "d2l-list", "nested", "d2l-checkpoint"}
    assert set(toy.loc[held, "status"]) == {"ok"}, toy[["format", "workload", "op", "status", "note"]]
    assert set(toy.loc[held, "workload"]) == {"d2l-dict", "d2l-mlp"}
    assert set(toy.loc[held & (toy["op"] == "load"), "roundtrip"]) == {"exact"}
    assert (toy.loc[held & (toy["op"] == "save"), "file_bytes"] > 0).all()
    report = (out / "report.md").read_text()
    assert "toy-npz" in report


def test_the_safety_matrix_attacks_it(tmp_path: Path) -> None:
    out = tmp_path / "safety"
    result = serbench("bench.cli", "safety", "--frameworks", NAME, "--out", str(out), "--timeout", "20")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    frame = pd.read_csv(out / "safety.csv", keep_default_na=False)
    toy = frame[frame["framework"] == NAME]
    assert set(toy["format"]) == {"toy-npz"}
    assert set(toy["mode"]) == {"serbench", "remote request", "np.load allow_pickle=False"}  # a dict: requestable
    assert {"valid", "fifo", "a-directory", "truncated-mid-data", "canary-object-array"} <= set(toy["input"])
    serbench_rows = toy[toy["mode"] == "serbench"]
    valid = serbench_rows[serbench_rows["input"] == "valid"]
    assert list(valid["outcome"]) == ["loaded-exact"]
    assert not set(serbench_rows["outcome"]) & {"code-executed", "crash", "hang", "memory-blowup"}
    requested = toy[toy["mode"] == "remote request"].set_index("input")["outcome"]
    assert requested.to_dict() == serbench_rows.set_index("input")["outcome"].to_dict(), "the request is no less safe"
