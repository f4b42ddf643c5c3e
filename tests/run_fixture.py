"""A small, hand-made run directory (results.csv, env.json, limits.json) for report and compare tests."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from bench.timing.results import COLUMNS

MIB64 = 64 << 20
MEMCPY = 8.0


def row(framework: str, fmt: str, op: str, cache: str = "-", median: float | None = 0.05, **extra: object) -> dict:
    base = {
        "framework": framework,
        "format": fmt,
        "kind": "dict",
        "workload": "size-64MiB",
        "size": "medium",
        "dtype": "float32",
        "device": "cpu",
        "cache": cache,
        "op": op,
        "threads": "1",
        "status": "ok",
        "note": "",
        "median_s": median,
        "iqr_s": None if median is None else median * 0.02,
        "min_s": None if median is None else median * 0.98,
        "q1_s": None if median is None else median * 0.99,
        "q3_s": None if median is None else median * 1.01,
        "low_s": None if median is None else median * 0.98,
        "high_s": None if median is None else median * 1.03,
        "rounds": None if median is None else 6,
        "samples": None if median is None else 3,
        "sample_low_s": None if median is None else median * 0.99,
        "sample_high_s": None if median is None else median * 1.01,
        "stability": None if median is None else "stable",
        "payload_bytes": MIB64,
        "file_bytes": MIB64 + 1_000,
        "roundtrip": "exact",
        "lazy": False,
        "resident_before_cold": 0.0 if cache == "cold" else None,
    }
    base.update(extra)
    return base


def rows() -> list[dict]:
    return [
        row("torch", "torch", "save", median=0.12),
        row("torch", "torch", "load", "warm", median=0.04, peak_rss_bytes=2 * MIB64),
        row("torch", "torch", "load", "cold", median=0.05),
        row(
            "torch",
            "torch",
            "load",
            "warm",
            device="cuda",
            status="unavailable",
            median=None,
            note="unavailable: torch cannot use device 'cuda' here",
        ),
        row(
            "torch",
            "safetensors",
            "save",
            median=0.11,
            file_bytes=MIB64 + 200,
            roundtrip="drift: root: key order changed",
        ),
        row(
            "torch",
            "safetensors",
            "load",
            "warm",
            median=0.02,
            peak_rss_bytes=MIB64,
            roundtrip="drift: root: key order changed",
            lazy=True,
        ),
        row("torch", "safetensors", "open", "warm", median=0.001, roundtrip="drift: root: key order changed"),
        row("numpy", "npz", "save", median=0.13, file_bytes=MIB64 + 5_000),
        row("numpy", "npz", "load", "warm", median=0.07, peak_rss_bytes=int(1.5 * MIB64)),
        row(
            "numpy",
            "npy",
            "save",
            status="unsupported",
            median=None,
            payload_bytes=None,
            file_bytes=None,
            roundtrip=None,
            note="npy cannot hold a dict",
        ),
        row(
            "null-adapter",
            "memory",
            "load",
            "warm",
            median=2e-6,
            workload="d2l-tensor",
            payload_bytes=32,
            file_bytes=0,
            kind="tensor",
        ),
    ]


JITTER = 0.01
"""The spread of the rounds a hand-made row gets (1%: a quiet machine)."""


def rounds_for(
    median: float, key: str, processes: int = 3, per_process: int = 8, jitter: float = JITTER, offset: float = 0.0
) -> str:
    """Rounds by process around `median` (seeded by the case's key), as results.csv stores them: what a
    comparison decides on; each process off by `offset` (sd, relative) and each round by `jitter`. A row's
    median decides its rounds, so a test that scales a median scales them."""
    generator = np.random.default_rng(zlib.crc32(key.encode()))
    shifts = np.exp(offset * generator.standard_normal(processes))
    groups = [
        (median * shift * np.exp(jitter * generator.standard_normal(per_process))).round(9).tolist() for shift in shifts
    ]
    return json.dumps(groups)


TIMES = ("median_s", "iqr_s", "min_s", "q1_s", "q3_s", "low_s", "high_s", "sample_low_s", "sample_high_s")


def times(r: dict, factor: float) -> dict:
    """The row with every time (median and spread) multiplied by `factor`: the same figure, slower or faster."""
    return {**r, **{name: r[name] * factor for name in TIMES if r.get(name) is not None}}


def case_key(row: dict) -> str:
    return "|".join(str(row[k]) for k in ("framework", "format", "workload", "device", "cache", "op"))


def make_run(directory: Path, table: list[dict] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(table if table is not None else rows()).reindex(columns=COLUMNS)
    frame["rounds_by_process"] = frame["rounds_by_process"].astype(object)
    missing = frame["rounds_by_process"].isna() & frame["median_s"].notna() & (frame["status"] == "ok")
    frame.loc[missing, "rounds_by_process"] = [
        rounds_for(r.median_s, f"{r.framework}|{r.format}|{r.workload}|{r.device}|{r.cache}|{r.op}")
        for r in frame[missing].itertuples()
    ]
    limits = {"memcpy": MEMCPY, "disk_write": 0.8, "disk_read_cold": 2.0, "h2d_pageable": None}
    frame["gbps"] = frame["payload_bytes"] / frame["median_s"] / 1e9
    frame.loc[frame["op"] == "open", "gbps"] = None
    frame["limit"] = frame["op"].map({"save": "disk_write", "load": "memcpy"})
    frame["limit_gbps"] = frame["limit"].map(limits)
    frame["frac_of_limit"] = frame["gbps"] / frame["limit_gbps"]
    frame["peak_rss_multiple"] = frame["peak_rss_bytes"] / frame["payload_bytes"]
    frame.to_csv(directory / "results.csv", index=False)
    (directory / "env.json").write_text(
        json.dumps(
            {
                "date": "2026-11-22T00:00:00+00:00",
                "git_commit": "abc123",
                "cpu": "Test CPU",
                "cores_logical": 2,
                "ram_bytes": 24 << 30,
                "kernel": "6.0",
                "python": "3.11.7",
                "gpu": "none (nvidia-smi not found)",
                "filesystem": {"type": "ext4", "device": "/dev/vda", "mountpoint": "/"},
                "versions": {"torch": "2.13.0"},
            }
        )
    )
    (directory / "limits.json").write_text(
        json.dumps(
            {
                name: {
                    "name": name,
                    "gbps": value,
                    "bytes": MIB64,
                    "rounds": 3,
                    "note": "unavailable: no CUDA" if value is None else "measured",
                }
                for name, value in limits.items()
            }
        )
    )
    return directory


def raw_run(directory: Path, rounds: dict[tuple[str, str], list[float]], **extra_info: object) -> Path:
    """A run directory built the way `serbench run` leaves it: raw pytest-benchmark JSON (one warm
    64 MiB load per (framework, format), with the given rounds), plan, limits and env; results.csv
    assembled from them by `bench.timing.results.assemble`. `extra_info` is added to every case's."""
    from bench.timing.plan import Case, write_plan
    from bench.timing.results import assemble

    raw = directory / "raw"
    raw.mkdir(parents=True)
    cases = [Case(fw, fmt, "size-64MiB", "cpu", "warm", "load", len(data)) for (fw, fmt), data in rounds.items()]
    benchmarks = []
    for case, data in zip(cases, rounds.values(), strict=True):
        info = {
            **case.as_dict(),
            "kind": "dict",
            "dtype": "float32",
            "size": "medium",
            "payload_bytes": MIB64,
            "file_bytes": MIB64 + 1_000,
            "roundtrip": "exact",
            "lazy": False,
            "resident_before_cold": None,
            "round_evidence": [{"seconds": value, "minflt": 16384, "waited": False} for value in data],
            **extra_info,
        }
        benchmarks.append({"extra_info": info, "stats": {"data": data, "median": sorted(data)[len(data) // 2]}})
    (raw / "benchmark-torch-t1-p0.json").write_text(json.dumps({"benchmarks": benchmarks}))
    write_plan(cases, raw / "plan-torch-t1.json", passes=1)
    limits = {"memcpy": {"name": "memcpy", "gbps": MEMCPY, "bytes": MIB64, "rounds": 3, "note": "measured"}}
    (raw / "limits.json").write_text(json.dumps(limits))
    (directory / "limits.json").write_text(json.dumps(limits))
    make_run(directory)  # env.json
    assemble(directory).to_csv(directory / "results.csv", index=False)
    return directory
