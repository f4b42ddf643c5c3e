"""Turn raw run data (pytest-benchmark JSON, outcomes, peak memory, limits) into one tidy table.

Pure: it reads files under RUN_DIR/raw and returns a DataFrame; nothing is rerun. Every timed row
carries its spread (`bench.timing.stats`): quartiles, a range, the number of rounds and of samples
(processes x passes), the sample medians' span, and `stability`. Rounds whose evidence says they
waited for a CPU (`bench.timing.evidence`) are left out of the figure and counted in `rounds_waited`;
where they are most of the rounds, all are kept and the figure is unstable ("the machine was
busy"). Every round's time stays in `rounds_s`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import frameworks
from bench import workloads
from bench.timing import stats
from bench.timing.plan import CASE_KEY, Case, case_id, read_plan
from bench.timing.rundir import RunDir
from frameworks import stored

COLUMNS = [
    "framework",
    "format",
    "kind",
    "workload",
    "size",
    "dtype",
    "device",
    "cache",
    "op",
    "threads",
    "status",
    "note",
    "median_s",
    "iqr_s",
    "min_s",
    "q1_s",
    "q3_s",
    "low_s",
    "high_s",
    "rounds",
    "processes",
    "samples",
    "sample_low_s",
    "sample_high_s",
    "stability",
    "unstable_reason",
    "rounds_waited",
    "minflt_per_round",
    "rounds_s",
    "rounds_by_process",
    "payload_bytes",
    "file_bytes",
    "gbps",
    "limit",
    "limit_gbps",
    "frac_of_limit",
    "roundtrip",
    "peak_rss_bytes",
    "peak_rss_multiple",
    "peak_device_bytes",
    "peak_device_multiple",
    "resident_before_cold",
    "lazy",
]


def baseline_rows(frame: pd.DataFrame) -> pd.Series:
    """The rows of baseline adapters (the null adapter): timed for the harness's cost, never compared."""
    return frame["framework"].map(frameworks.is_baseline).astype(bool)


def limit_for(op: str, device: str, cache: str, limits: dict | None = None) -> str | None:
    """Which measured limit a figure is compared with: the slowest stage the bytes must pass.

    A cold load to the GPU must both read the disk and cross to the device, so it is compared with
    whichever of the two measured limits is lower."""
    if op == "open":
        return None
    if op == "save":
        return "disk_write"
    if device == "cuda" and cache == "cold":
        measured = {name: (limits or {}).get(name, {}).get("gbps") for name in ("disk_read_cold", "h2d_pageable")}
        known = {name: gbps for name, gbps in measured.items() if gbps}
        return min(known, key=known.__getitem__) if known else "h2d_pageable"
    if device == "cuda":
        return "h2d_pageable"
    if cache == "cold":
        return "disk_read_cold"
    # a loader returns new memory: its ceiling is a copy into fresh pages (runs before that limit: memcpy)
    return "fresh_copy" if limits is not None and (limits.get("fresh_copy") or {}).get("gbps") else "memcpy"


RAW_CAP = 256 << 20
"""The most bytes one raw file of a run may have (a full run's largest pytest-benchmark file is under 20 MiB)."""
BENCHMARK_SCHEMA = stored.Object(
    required={
        "benchmarks": stored.ListOf(
            stored.Object(
                required={
                    "extra_info": stored.Object(required={"id": str}, extra=True),
                    "stats": stored.Object(
                        required={"median": stored.POSITIVE},
                        optional={"data": stored.ListOf(stored.POSITIVE)},
                        extra=True,
                    ),
                },
                extra=True,
            )
        )
    },
    extra=True,
)
OUTCOME_SCHEMA = stored.Object(required={"id": str, "outcome": str, "detail": str})
PEAK_KEY = {"framework": str, "format": str, "workload": str}


def read_json(path: Path, schema: object = stored.ANY) -> Any:
    """A raw file of the run: a regular file within RAW_CAP, of `schema`."""
    return stored.read_json(path, what=f"raw file {Path(path).name}", schema=schema, cap=RAW_CAP)


INFO_FIELDS = (
    "framework",
    "format",
    "workload",
    "device",
    "cache",
    "op",
    "kind",
    "dtype",
    "size",
    "payload_bytes",
    "file_bytes",
    "roundtrip",
    "lazy",
    "resident_before_cold",
)


def _benchmark_rows(paths: list[Path]) -> list[dict[str, object]]:
    """One row per case, pooling the rounds of every process and pass that timed it."""
    pooled: dict[str, tuple[dict, list[list[float]], list[dict], list[str]]] = {}
    for path in paths:
        for bench in read_json(path, BENCHMARK_SCHEMA)["benchmarks"]:
            info, timing = bench["extra_info"], bench["stats"]
            if "roundtrip" not in info:
                # timed, but the case failed after its rounds (its file could not be read back, say): its outcome
                # (unsupported, failed) is the row, not a time without a round trip
                continue
            case_id = info["id"] if "threads" in info else f"{info['id']}|default"  # runs before the threads axis
            _, samples, evidence, sources = pooled.setdefault(case_id, (info, [], [], []))
            data = list(timing.get("data") or [timing["median"]])
            records = info.get("round_evidence") or [{"seconds": value} for value in data]
            samples.append(data)
            evidence.extend(records)
            sources.append(path.name)
    return [_timed_row(info, samples, evidence, sources) for info, samples, evidence, sources in pooled.values()]


def samples_of(row: pd.Series, side: str = "", minimum: int = 2) -> list[list[float]] | None:
    """A timed row's rounds by process (`rounds_by_process`, else `rounds_s` as one process), or None where it
    holds fewer than `minimum` rounds (2: what a comparison needs). `side` reads a merged row's columns
    (`rounds_s_base`...)."""
    suffix = f"_{side}" if side else ""
    for column in ("rounds_by_process", "rounds_s"):
        value = row.get(f"{column}{suffix}")
        if isinstance(value, str) and value.startswith("["):
            value = json.loads(value)
        if isinstance(value, list) and value:
            groups = value if column == "rounds_by_process" else [value]
            if sum(len(group) for group in groups) >= minimum:
                return groups
    return None


def by_process(samples: list[list[float]], sources: list[str]) -> list[list[float]]:
    """The rounds of each process (one benchmark file), its passes joined: the groups a comparison resamples
    (`bench.decide`), since the passes of one process share its offset and are not independent."""
    groups: dict[str, list[float]] = {}
    for sample, source in zip(samples, sources, strict=True):
        groups.setdefault(source, []).extend(sample)
    return [group for group in groups.values() if group]


def _timed_row(info: dict, samples: list[list[float]], evidence: list[dict], sources: list[str]) -> dict[str, object]:
    waited = [bool(record.get("waited")) for record in evidence]
    kept, note = samples, ""
    if any(waited):
        flags = iter(waited)
        kept = [[value for value in sample if not next(flags)] for sample in samples]
        if sum(len(sample) for sample in kept) < sum(len(sample) for sample in samples) / 2:
            kept, note = samples, f"the machine was busy: {sum(waited)} of {len(waited)} rounds waited for a CPU"
    processes = len(set(sources))
    figure = stats.spread(kept)
    reason = "; ".join(part for part in (note, figure.unstable_reason) if part)
    faults = [record["minflt"] for record in evidence if "minflt" in record]
    return {
        **{k: info[k] for k in INFO_FIELDS},
        "peak_device_bytes": info.get("peak_device_bytes"),
        "threads": info.get("threads", "default"),
        "status": "ok",
        "note": "",
        "median_s": figure.median,
        "iqr_s": figure.iqr,
        "min_s": min(min(sample) for sample in samples),
        "q1_s": figure.q1,
        "q3_s": figure.q3,
        "low_s": figure.low,
        "high_s": figure.high,
        "rounds": figure.rounds,
        "processes": processes,
        "samples": figure.samples,
        "sample_low_s": figure.sample_low,
        "sample_high_s": figure.sample_high,
        "stability": "unstable" if reason else "stable",
        "unstable_reason": reason,
        "rounds_waited": sum(waited),
        "minflt_per_round": float(np.median(faults)) if faults else None,
        "rounds_s": json.dumps([round(value, 9) for sample in samples for value in sample]),
        "rounds_by_process": json.dumps([[round(v, 9) for v in group] for group in by_process(kept, sources)]),
    }


def _case_row(case: Case, status: str, note: str) -> dict[str, object]:
    workload = workloads.WORKLOADS.get(case.workload)
    return {
        "framework": case.framework,
        "format": case.format,
        "workload": case.workload,
        "device": case.device,
        "cache": case.cache,
        "op": case.op,
        "threads": case.threads,
        "status": status,
        "note": note,
        "kind": workload.kind if workload else "",
        "dtype": workload.dtype if workload else "",
        "size": workload.size if workload else "",
    }


def assemble(run_dir: Path) -> pd.DataFrame:
    """One row per case: timed figures, or the reason there are none."""
    run = RunDir(run_dir)
    rows: list[dict[str, object]] = []
    timed: set[str] = set()
    for row in _benchmark_rows(run.benchmarks()):
        rows.append(row)
        timed.add(case_id(row))
    for plan_path, outcome_path in run.plans():
        outcomes: dict[str, dict] = {}
        if outcome_path.exists():
            for record in stored.read_jsonl(outcome_path, what="outcomes", schema=OUTCOME_SCHEMA, cap=RAW_CAP):
                if record["id"].count("|") == len(CASE_KEY) - 2:  # runs before the threads axis
                    record["id"] += "|default"
                # a case outcome per pass; a failure in any pass is the one that is kept
                if outcomes.get(record["id"], {}).get("outcome") != "failed":
                    outcomes[record["id"]] = record
        for case in read_plan(plan_path):
            if case.id in timed:
                continue
            if not case.held:
                rows.append(
                    _case_row(
                        case, "unsupported", f"{case.format} cannot hold a {workloads.WORKLOADS[case.workload].kind}"
                    )
                )
            elif case.id in outcomes and outcomes[case.id]["outcome"] == "skipped":
                detail = outcomes[case.id]["detail"]
                unsupported = detail.startswith("unsupported: ")
                rows.append(_case_row(case, "unsupported" if unsupported else "unavailable", detail))
            elif case.id in outcomes:
                rows.append(_case_row(case, "error", outcomes[case.id]["detail"]))
            else:
                rows.append(_case_row(case, "missing", "not run (interrupted?)"))
    frame = pd.DataFrame(rows).reindex(columns=COLUMNS)
    warm_cold = pd.to_numeric(frame["resident_before_cold"], errors="coerce") > 0.01
    frame.loc[warm_cold, "note"] = [
        f"eviction failed: {fraction:.0%} of the file was still cached, so this is not a cold figure"
        for fraction in frame.loc[warm_cold, "resident_before_cold"]
    ]
    return _add_derived(frame, run)


def _add_derived(frame: pd.DataFrame, run: RunDir) -> pd.DataFrame:
    limits = read_json(run.raw_limits, stored.MapOf(stored.MapOf(stored.ANY))) if run.raw_limits.exists() else {}
    frame["gbps"] = np.where(frame["op"] == "open", np.nan, frame["payload_bytes"] / frame["median_s"] / 1e9)
    frame["limit"] = [
        limit_for(o, d, c, limits) for o, d, c in zip(frame["op"], frame["device"], frame["cache"], strict=True)
    ]
    # the in-memory baseline neither writes nor reads a file: every figure of it is a copy, bounded by memcpy
    frame.loc[baseline_rows(frame) & frame["limit"].notna(), "limit"] = "memcpy"
    frame["limit_gbps"] = [limits.get(name, {}).get("gbps") if name else None for name in frame["limit"]]
    frame["limit_gbps"] = pd.to_numeric(frame["limit_gbps"], errors="coerce")
    frame["frac_of_limit"] = frame["gbps"] / frame["limit_gbps"]
    peaks = {}
    for path in run.all_peaks():
        for record in read_json(path, stored.ListOf(stored.Object(required=PEAK_KEY, extra=True))):
            peaks[(record["framework"], record["format"], record["workload"])] = record.get("peak_rss_bytes")
    keys = zip(
        frame["framework"],
        frame["format"],
        frame["workload"],
        frame["op"],
        frame["device"],
        frame["cache"],
        strict=True,
    )
    frame["peak_rss_bytes"] = [
        peaks.get((f, fmt, w)) if op == "load" and dev == "cpu" and cache == "warm" else None
        for f, fmt, w, op, dev, cache in keys
    ]
    frame["peak_rss_bytes"] = pd.to_numeric(frame["peak_rss_bytes"], errors="coerce")
    frame["peak_rss_multiple"] = frame["peak_rss_bytes"] / frame["payload_bytes"]
    frame["peak_device_bytes"] = pd.to_numeric(frame["peak_device_bytes"], errors="coerce")
    frame["peak_device_multiple"] = frame["peak_device_bytes"] / frame["payload_bytes"]
    return frame
