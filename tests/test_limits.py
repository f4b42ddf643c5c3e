"""The limits a run reads its figures against: a fresh-memory copy for loads that return new memory,
measured at the run's start and end, and a figure above its limit flagged (`bench.timing.limits`)."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.reporting.figures import ABOVE_LIMIT, fraction_figure
from bench.reporting.report import environment_block
from bench.timing import limits
from bench.timing.results import limit_for


def test_the_fresh_copy_faults_every_round_under_the_recorded_page_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each round must copy into pages no earlier round faulted: one mapping per round, unmapped after."""
    made, closed = [], []
    real = limits.mmap.mmap

    class Counted(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            made.append(self)

        def close(self) -> None:
            closed.append(self)
            super().close()

    monkeypatch.setattr(limits.mmap, "mmap", Counted)
    limit = limits.measure_fresh_copy(1 << 20, rounds=4)
    assert (limit.name, limit.bytes, limit.rounds) == ("fresh_copy", 1 << 20, 8)
    assert len(made) == 8, "a new mapping each round, 4 of each page policy"
    assert len(closed) == 8, "each unmapped, so the next round cannot reuse its pages"
    assert "default" in limit.note
    assert "MADV_HUGEPAGE" in limit.note, "both policies' best are recorded"
    assert limit.gbps is not None
    assert limit.gbps > 0
    assert "THP enabled=" in limit.note, "the page policy it ran under is recorded"


def test_every_run_measures_the_fresh_copy_beside_memcpy(tmp_path) -> None:
    measured = limits.measure_all(tmp_path, 1 << 20)
    assert {"memcpy", "fresh_copy", "disk_write", "disk_read_warm", "disk_read_cold"} <= set(measured)
    assert measured["fresh_copy"].bytes == measured["memcpy"].bytes == 1 << 20


def test_a_warm_cpu_load_is_read_against_fresh_memory_where_the_run_measured_it() -> None:
    measured = {"memcpy": {"gbps": 10.0}, "fresh_copy": {"gbps": 2.0}, "disk_read_cold": {"gbps": 1.0}}
    assert limit_for("load", "cpu", "warm", measured) == "fresh_copy"
    assert limit_for("load", "cpu", "cold", measured) == "disk_read_cold"
    assert limit_for("load", "cpu", "warm", {"memcpy": {"gbps": 10.0}}) == "memcpy", "a run before the limit"


def test_the_limits_of_the_start_and_the_end_are_kept_at_their_best() -> None:
    start = {"disk_write": {"gbps": 0.5, "rounds": 3, "note": "write + fsync"}, "h2d_pinned": {"gbps": None}}
    end = {"disk_write": {"gbps": 0.8, "rounds": 3, "note": "write + fsync"}, "h2d_pinned": {"gbps": None}}
    merged = limits.best_of(start, end)
    assert merged["disk_write"]["gbps"] == 0.8
    assert merged["disk_write"]["rounds"] == 6
    assert "best of the run's start and end" in merged["disk_write"]["note"]
    assert limits.best_of(end, start)["disk_write"]["gbps"] == 0.8, "whichever came first"
    assert merged["h2d_pinned"]["gbps"] is None


def _row(median_s: float) -> pd.Series:
    return pd.Series(
        {"payload_bytes": 1e9, "limit_gbps": 1.0, "median_s": median_s, "q1_s": median_s, "q3_s": median_s}
    )


def test_a_figure_above_its_limit_is_flagged_for_a_save_as_for_a_load() -> None:
    """A save came out at 123% of the write limit and nothing said so."""
    assert ABOVE_LIMIT in fraction_figure(_row(0.8))  # 125% of the limit
    assert ABOVE_LIMIT not in fraction_figure(_row(1.25))  # 80%


def test_the_report_says_why_warm_loads_are_read_against_fresh_memory() -> None:
    measured = {"memcpy": {"gbps": 12.0, "bytes": 1, "note": ""}, "fresh_copy": {"gbps": 3.0, "bytes": 1, "note": ""}}
    text = environment_block({}, measured)
    assert "4.0x gap is what faulting fresh memory costs here" in text


def test_the_in_memory_baseline_is_bounded_by_memcpy_not_by_the_disk(tmp_path) -> None:
    """Its 'save' copies in memory: read against the disk's write limit it was flagged ABOVE ITS LIMIT."""
    import json

    from bench.timing.results import COLUMNS, _add_derived
    from bench.timing.rundir import RunDir

    run = RunDir(tmp_path)
    run.raw.mkdir(parents=True)
    run.raw_limits.write_text(json.dumps({"memcpy": {"gbps": 10.0}, "disk_write": {"gbps": 1.0}}))
    frame = pd.DataFrame(
        [
            {"framework": fw, "format": fmt, "workload": "w", "op": "save", "device": "cpu", "cache": "-"}
            | {"payload_bytes": 1e9, "median_s": 0.5, "threads": "1"}
            for fw, fmt in (("null-adapter", "memory"), ("numpy", "npz"))
        ]
    )
    derived = _add_derived(frame.reindex(columns=COLUMNS), run).set_index("framework")
    assert derived.loc["null-adapter", "limit"] == "memcpy"
    assert derived.loc["numpy", "limit"] == "disk_write"
