"""`serbench compare` flags real regressions (speed beyond threshold and noise, correctness) and
nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from bench.reporting.compare import compare, has_regression, load_any
from tests.run_fixture import make_run, row, rows


def verdicts(base: Path, new: Path, **kwargs: float) -> dict[tuple[str, str, str, str], str]:
    """Verdicts of the CPU rows by (framework, format, cache, op)."""
    table = compare(load_any(base), load_any(new), **kwargs)
    return {(r.framework, r.format, r.cache, r.op): r.verdict for r in table.itertuples() if r.device == "cpu"}


def test_identical_rerun_is_not_flagged(tmp_path: Path) -> None:
    base, new = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    table = compare(load_any(base), load_any(new))
    untimed = table["median_s_base"].isna()
    assert set(table.loc[~untimed, "verdict"]) == {"same"}
    assert set(table.loc[untimed, "verdict"]) == {"not timed: unavailable", "not timed: unsupported"}
    assert not has_regression(table)


def test_a_case_timed_only_in_the_new_run_says_so(tmp_path: Path) -> None:
    timed = [dict(r, status="ok", median_s=0.03, iqr_s=0.001, note="") if r["device"] == "cuda" else r for r in rows()]
    table = compare(load_any(make_run(tmp_path / "a")), load_any(make_run(tmp_path / "b", timed)))
    cuda = table[table["device"] == "cuda"]
    assert list(cuda["verdict"]) == ["newly timed (was unavailable)"]
    assert not has_regression(table)


def test_injected_2x_load_slowdown_is_a_regression(tmp_path: Path) -> None:
    slowed = [
        dict(r, median_s=r["median_s"] * 2)
        if (r["format"], r["op"], r["cache"], r.get("device", "cpu")) == ("torch", "load", "warm", "cpu")
        else r
        for r in rows()
    ]
    found = verdicts(make_run(tmp_path / "a"), make_run(tmp_path / "b", slowed))
    assert found[("torch", "torch", "warm", "load")] == "REGRESSION: slower"
    assert found[("torch", "torch", "cold", "load")] == "same"


def test_exact_to_drift_is_flagged_whatever_the_speed(tmp_path: Path) -> None:
    drifted = [
        dict(r, roundtrip="drift: root: key order changed", median_s=r["median_s"] * 0.5)
        if (r["framework"], r["format"]) == ("numpy", "npz")
        else r
        for r in rows()
    ]
    found = verdicts(make_run(tmp_path / "a"), make_run(tmp_path / "b", drifted))
    assert found[("numpy", "npz", "warm", "load")] == "REGRESSION: exact -> drift: root: key order changed"


def test_change_inside_the_noise_is_not_flagged(tmp_path: Path) -> None:
    def noisy(r: dict, scale: float) -> dict:
        median = (r["median_s"] or 0) * scale or None
        spread = (r["median_s"] or 0) * 0.15
        return dict(r, median_s=median, iqr_s=2 * spread, q1_s=(median or 0) - spread, q3_s=(median or 0) + spread)

    noisy_base = [noisy(r, 1.0) for r in rows()]
    noisy_new = [noisy(r, 1.15) for r in rows()]
    table = compare(load_any(make_run(tmp_path / "a", noisy_base)), load_any(make_run(tmp_path / "b", noisy_new)))
    assert not has_regression(table)
    tight = [dict(r, median_s=(r["median_s"] or 0) * 1.15 or None) for r in rows()]
    assert has_regression(compare(load_any(make_run(tmp_path / "c")), load_any(make_run(tmp_path / "d", tight))))


def test_threshold_is_configurable(tmp_path: Path) -> None:
    slower = [dict(r, median_s=(r["median_s"] or 0) * 1.3 or None) for r in rows()]
    base, new = make_run(tmp_path / "a"), make_run(tmp_path / "b", slower)
    assert has_regression(compare(load_any(base), load_any(new)))
    assert not has_regression(compare(load_any(base), load_any(new), threshold=0.5))


def test_noise_floor_absorbs_run_to_run_drift(tmp_path: Path) -> None:
    drifted = [dict(r, median_s=(r["median_s"] or 0) * 1.25 or None) for r in rows()]
    base, new = make_run(tmp_path / "a"), make_run(tmp_path / "b", drifted)
    assert has_regression(compare(load_any(base), load_any(new)))
    assert not has_regression(compare(load_any(base), load_any(new), noise_floor=0.35))
    doubled = [dict(r, median_s=(r["median_s"] or 0) * 2 or None) for r in rows()]
    assert has_regression(compare(load_any(base), load_any(make_run(tmp_path / "c", doubled)), noise_floor=0.35))


def test_status_broken_is_a_regression(tmp_path: Path) -> None:
    broken = [
        *rows()[:-1],
        row(
            "null-adapter",
            "memory",
            "load",
            "warm",
            workload="d2l-tensor",
            status="error",
            median=None,
            payload_bytes=32,
        ),
    ]
    found = verdicts(make_run(tmp_path / "a"), make_run(tmp_path / "b", broken))
    assert found[("null-adapter", "memory", "warm", "load")] == "REGRESSION: status ok -> error"


def _pytest_benchmark_json(path: Path, median: float) -> Path:
    path.write_text(
        json.dumps(
            {
                "benchmarks": [
                    {
                        "fullname": "bench/timing/test_io.py::test_io[x]",
                        "stats": {"median": median, "iqr": median * 0.01},
                        "extra_info": {
                            "framework": "torch",
                            "format": "torch",
                            "workload": "size-64MiB",
                            "device": "cpu",
                            "cache": "warm",
                            "op": "load",
                            "roundtrip": "exact",
                        },
                    }
                ]
            }
        )
    )
    return path


def test_cli_compares_pytest_benchmark_json_and_exits_nonzero_on_regression(tmp_path: Path) -> None:
    base = _pytest_benchmark_json(tmp_path / "base.json", 0.04)
    same = _pytest_benchmark_json(tmp_path / "same.json", 0.04)
    slow = _pytest_benchmark_json(tmp_path / "slow.json", 0.08)
    command = [sys.executable, "-m", "bench.cli", "compare"]
    ok = subprocess.run([*command, str(base), str(same)], capture_output=True, text=True, timeout=60, check=False)
    bad = subprocess.run([*command, str(base), str(slow)], capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    assert bad.returncode == 1
    assert "REGRESSION: slower" in bad.stdout


def test_drift_between_processes_is_noise_even_when_each_process_is_tight(tmp_path: Path) -> None:
    """Rounds within one process agree, processes do not: the sample medians' span is the noise."""
    drifting = [dict(r, sample_low_s=(r["median_s"] or 0) * 0.8 or None) for r in rows()]
    slower = [dict(r, median_s=(r["median_s"] or 0) * 1.15 or None) for r in drifting]
    table = compare(load_any(make_run(tmp_path / "a", drifting)), load_any(make_run(tmp_path / "b", slower)))
    assert not has_regression(table), table[["format", "op", "change", "noise", "verdict"]]
    doubled = [dict(r, median_s=(r["median_s"] or 0) * 2 or None) for r in drifting]
    assert has_regression(
        compare(load_any(make_run(tmp_path / "c", drifting)), load_any(make_run(tmp_path / "d", doubled)))
    )


def test_thread_settings_are_compared_with_their_own_kind(tmp_path: Path) -> None:
    one = [r for r in rows() if r["framework"] == "torch"]
    both = one + [dict(r, threads="default", median_s=(r["median_s"] or 0) * 3 or None) for r in one]
    table = compare(load_any(make_run(tmp_path / "a", both)), load_any(make_run(tmp_path / "b", both)))
    assert not has_regression(table), "a 3x slower default-thread row is not a regression of the 1-thread row"
    assert set(table["threads"]) == {"1", "default"}


def test_runs_from_before_the_threads_axis_compare_as_default_threads(tmp_path: Path) -> None:
    old = make_run(tmp_path / "old")
    frame = pd.read_csv(old / "results.csv").drop(columns=["threads", "q1_s", "q3_s", "sample_low_s", "sample_high_s"])
    frame.to_csv(old / "results.csv", index=False)
    table = compare(load_any(old), load_any(old))
    assert set(table["threads"]) == {"default"}
    assert not has_regression(table)
