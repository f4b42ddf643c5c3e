"""gpu.md: what the GPU run measured, each GPU row beside its CPU row and its limits, and what it skipped.

Every figure is a median with its spread or range as serbench publishes them (`bench.timing.stats`, through
bench.reporting's formatting); a ratio is a ratio of medians. No statistics beyond that are computed here:
whether a GPU row is faster than its CPU row, how close it comes to the pinned copy, and how a scale loader
compares with the reference loader are questions for `bench/decide.py`, which the report asks through
`decide` below (the one place to wire it in).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.reporting.figures import gbps_figure, number, time_figure
from bench.timing import stats
from bench.timing.plan import CASE_KEY
from frameworks.files import write_bytes_atomic

REPORT = "gpu.md"
RECORD = "gpu-run.json"
NOT_DECIDED = "not decided (bench.decide is not wired in yet)"


@dataclass(frozen=True)
class Comparison:
    """One decided comparison the GPU report asks for."""

    question: str
    """What is compared, in words: "torch safetensors vgg16 warm: cuda vs cpu"."""
    subject: list[list[float]]
    """The GPU figure's timed rounds (seconds), one list per sample (a process and pass; a fresh process at scale)."""
    against: list[list[float]] | None = None
    """The other figure's rounds, likewise; None when the comparison is with a limit."""
    limit_s: float | None = None
    """With a limit: the seconds the payload takes at the limit's rate (payload / GB/s)."""
    payload_bytes: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


# ==== DECIDE HOOK: where the GPU report calls bench/decide.py (issue 32, item 3) ================================
def decide(comparison: Comparison) -> str:
    """The verdict of one comparison, as bench/decide.py gives it (being written; its API is not settled).

    Wire it in here and nowhere else. Two figures (`comparison.against` set): their rounds grouped by sample, as
    the engine takes them (a draft has `bench.decide.decide(a, b)` -> a Decision with a verdict). A figure
    against a limit (`comparison.limit_s` set): the engine's way of asking whether the rounds reach a fixed time.
    Return the words to print ("faster", "slower", "indistinguishable", "undecided: <why>"). Until then every
    comparison is printed with its medians and ranges only, and this column says it is not decided.
    """
    return NOT_DECIDED


# ==== end of the DECIDE HOOK =====================================================================================


def _time(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    scale, unit = (1e6, "µs") if value < 1e-3 else ((1e3, "ms") if value < 1 else (1.0, "s"))
    return f"{number(value * scale)} {unit}"


def _share(row: pd.Series, limit_gbps: float | None) -> str:
    """The row's GB/s as a share of a limit: at the median with the quartiles' range, or the range if unstable."""
    if not limit_gbps or pd.isna(row.get("median_s")):
        return "n/a"
    scale = row["payload_bytes"] / 1e9 / limit_gbps * 100
    if row.get("stability") == "unstable":
        return f"unstable {number(scale / row['high_s'])}–{number(scale / row['low_s'])}%"
    return f"{number(scale / row['median_s'])}% [{number(scale / row['q3_s'])}–{number(scale / row['q1_s'])}%]"


def samples_by_case(run_dir: Path) -> dict[str, list[list[float]]]:
    """Every timed case's rounds, one list per sample (a pass of a process), from the run's raw pytest-benchmark
    files: what a decided comparison weighs (results.csv keeps them pooled)."""
    from bench.timing.results import BENCHMARK_SCHEMA, read_json
    from bench.timing.rundir import RunDir

    found: dict[str, list[list[float]]] = {}
    for path in RunDir(run_dir).benchmarks():
        for bench in read_json(path, BENCHMARK_SCHEMA)["benchmarks"]:
            rounds = bench["stats"].get("data") or []
            if rounds:
                found.setdefault(bench["extra_info"]["id"], []).append(list(rounds))
    return found


def _rounds(row: pd.Series | None, samples: dict[str, list[list[float]]]) -> list[list[float]]:
    if row is None:
        return []
    row_id = "|".join(str(row[key]) for key in CASE_KEY)
    if row_id in samples:
        return samples[row_id]
    text = row.get("rounds_s")
    return [json.loads(text)] if isinstance(text, str) and text else []


def _gbps(limits: dict[str, Any], name: str) -> float | None:
    value = limits.get(name, {}).get("gbps")
    return float(value) if value else None


def timing_table(
    frame: pd.DataFrame, limits: dict[str, Any], samples: dict[str, list[list[float]]] | None = None
) -> pd.DataFrame:
    """Every cuda load of the timing run: its figure, GB/s, share of the pinned and pageable copies (and of the cold
    read, cold), the GPU's peak, the same load to the CPU here, and the decided comparisons."""
    pinned, pageable, cold_read = (_gbps(limits, n) for n in ("h2d_pinned", "h2d_pageable", "disk_read_cold"))
    samples = samples or {}
    rows = []
    cuda = frame[(frame["device"] == "cuda") & (frame["op"] == "load")]
    for _, row in cuda.iterrows():
        entry: dict[str, Any] = {
            "framework": row["framework"],
            "format": row["format"],
            "workload": row["workload"],
            "cache": row["cache"],
        }
        if row["status"] != "ok":
            rows.append({**entry, "to cuda": f"{row['status']}: {row['note']}"})
            continue
        same = frame[
            (frame["framework"] == row["framework"])
            & (frame["format"] == row["format"])
            & (frame["workload"] == row["workload"])
            & (frame["cache"] == row["cache"])
            & (frame["op"] == "load")
            & (frame["device"] == "cpu")
            & (frame["threads"] == row["threads"])
        ]
        cpu = same.iloc[0] if len(same) and same.iloc[0]["status"] == "ok" else None
        question = f"{row['framework']} {row['format']} {row['workload']} {row['cache']}"
        versus_cpu = (
            decide(
                Comparison(
                    f"{question}: cuda vs cpu",
                    _rounds(row, samples),
                    _rounds(cpu, samples),
                    None,
                    int(row["payload_bytes"]),
                )
            )
            if cpu is not None
            else "n/a"
        )
        versus_pinned = (
            decide(
                Comparison(
                    f"{question}: cuda vs the pinned copy",
                    _rounds(row, samples),
                    None,
                    row["payload_bytes"] / (pinned * 1e9),
                    int(row["payload_bytes"]),
                )
            )
            if pinned
            else "n/a"
        )
        peak = row.get("peak_device_multiple")
        rows.append(
            {
                **entry,
                "to cuda": time_figure(row),
                "GB/s": gbps_figure(row),
                "% pinned H2D": _share(row, pinned),
                "% pageable H2D": _share(row, pageable),
                "% cold read": _share(row, cold_read) if row["cache"] == "cold" else "",
                "GPU peak x payload": "n/a (not reported)" if pd.isna(peak) else f"{peak:.2f}",
                "to cpu, here": time_figure(cpu) if cpu is not None else "n/a",
                "cuda / cpu (medians)": f"{row['median_s'] / cpu['median_s']:.2f}x" if cpu is not None else "n/a",
                "round trip": str(row.get("roundtrip", "")),
                "decided: vs cpu": versus_cpu,
                "decided: vs pinned": versus_pinned,
            }
        )
    return pd.DataFrame(rows).fillna("")


def scale_table(record: dict[str, Any]) -> pd.DataFrame:
    """Every scale row: median and range of its fresh-process rounds, GB/s, share of the pinned copy, its median
    over the reference loader's (same cache), GPU peak, the check, skipped rounds, decided comparisons."""
    pinned = _gbps(record.get("limits", {}), "h2d_pinned")
    rows = record["llm"]["rows"]

    def timed(row: dict[str, Any]) -> list[float]:
        return [entry["seconds"] for entry in row["rounds"] if "seconds" in entry]

    references = {row["cache"]: timed(row) for row in rows if row.get("reference") and timed(row)}
    table = []
    for row in rows:
        entry: dict[str, Any] = {"loader": row["loader"], "layout": row["layout"], "cache": row["cache"]}
        if row["unavailable"]:
            table.append({**entry, "load": f"unavailable: {row['unavailable']}"})
            continue
        seconds = timed(row)
        errors = [r["error"] for r in row["rounds"] if "error" in r]
        skipped = "; ".join(row.get("skipped_rounds", []))
        if not seconds:
            table.append({**entry, "load": f"failed: {errors[0]}" if errors else "not run", "skipped": skipped})
            continue
        spread = stats.spread([[t] for t in seconds])
        payload = row["payload_bytes"]
        figure = f"{_time(spread.median)} ({_time(spread.low)}–{_time(spread.high)}) n={spread.rounds}"
        reference = references.get(row["cache"])
        wrong = sorted({problem for r in row["rounds"] for problem in r.get("wrong", [])})
        peaks = [r["device_peak_bytes"] for r in row["rounds"] if r.get("device_peak_bytes") is not None]
        question = f"{row['loader']} {row['layout']} {row['device']} {row['cache']}"
        rounds = [[t] for t in seconds]
        limit_s = payload / (pinned * 1e9) if pinned else None
        beside = bool(reference) and not row.get("reference")
        table.append(
            {
                **entry,
                "load": ("unstable " if not spread.stable else "") + figure,
                "GB/s (median)": number(payload / spread.median / 1e9),
                "% pinned H2D (median)": f"{number(payload / spread.median / 1e9 / pinned * 100)}%"
                if pinned
                else "n/a",
                "x reference (medians)": f"{spread.median / float(pd.Series(reference).median()):.2f}"
                if beside
                else "",
                "GPU peak x payload": f"{max(peaks) / payload:.2f}" if peaks else "n/a",
                "check": "bit-exact" if not wrong and not errors else "; ".join(wrong[:2] + errors[:1]),
                "skipped": skipped,
                "decided: vs pinned": decide(
                    Comparison(f"{question}: vs the pinned copy", rounds, None, limit_s, payload)
                ),
                "decided: vs reference": decide(
                    Comparison(f"{question}: vs the reference loader", rounds, [[t] for t in reference], None, payload)
                )
                if beside
                else "",
            }
        )
    return pd.DataFrame(table).fillna("")


def _markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False) if not frame.empty else "(none)"


def _steps_table(run: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for step in run.get("steps", []):
        took = step.get("seconds")
        rows.append(
            {
                "step": step["name"],
                "required": "yes" if step.get("required") else "if time allows",
                "estimate": f"{step.get('estimate_s', 0):.0f} s",
                "took": f"{took:.0f} s" if took is not None else "",
                "outcome": step["status"] + (f": {step['why']}" if step.get("why") else ""),
            }
        )
    return pd.DataFrame(rows)


def gpu_report(run_dir: Path) -> str:
    run_dir = Path(run_dir)

    def read(name: str) -> dict[str, Any]:
        path = run_dir / name
        return json.loads(path.read_text()) if path.is_file() else {}

    env, run, limits = read("env.json"), read(RECORD), read("limits.json")
    versions = env.get("versions", {}) or run.get("probe", {}).get("versions", {})
    lines = [
        f"# {run_dir.name}: GPU vs CPU, measured",
        "",
        f"GPU: {env.get('gpu') or ', '.join(run.get('gpus', [])) or '?'}; {env.get('cpu', '?')}, "
        f"{env.get('cores_logical', '?')} cores, {round(env.get('ram_bytes', 0) / 2**30)} GiB; Python "
        f"{env.get('python', '?')}; torch {versions.get('torch', '?')}, jax {versions.get('jax', '?')}; commit "
        f"`{env.get('git_commit', '?')}`; {env.get('date', run.get('started', '?'))}. One `make gpu` run: budget "
        f"{run.get('budget_s', 0):.0f} s, took {run.get('wall_s', 0):.0f} s.",
        "",
        "Figures: median [q1–q3] n=rounds/samples, or `unstable low–high` where the rounds disagree; ratios are "
        "ratios of medians. The `decided` columns are bench/decide.py's verdicts (`bench.gpu.report.decide`).",
        "",
        "## The run",
        "",
        _markdown(_steps_table(run)),
        "",
        "Installed from the carried wheels:",
        "",
        *[f"- {item['pin']}: {item['status']}" for item in run.get("installs", [])],
        "",
        "## Limits (best round)",
        "",
        _markdown(
            pd.DataFrame(
                [
                    {"limit": name, "GB/s": number(v["gbps"]) if v.get("gbps") else "n/a", "note": v["note"]}
                    for name, v in limits.items()
                ]
            )
        ),
        "",
        "## Loads to the GPU, beside the same loads to the CPU on this machine",
        "",
    ]
    results = run_dir / "results.csv"
    if results.is_file():
        lines.append(_markdown(timing_table(pd.read_csv(results), limits, samples_by_case(run_dir))))
    else:
        lines.append("(no timing ran)")
    for path in sorted(run_dir.glob("scale-*/scale.json")):
        record = json.loads(path.read_text())
        model = record["llm"]["workload"]
        lines += [
            "",
            f"## Scale loaders to the GPU: {model['name']}, {record['llm']['parameters'] / 1e9:.2f} billion "
            f"parameters ([{path.parent.name}/scale.md]({path.parent.name}/scale.md))",
            "",
            "Each round a fresh process; every tensor checked (name, dtype, shape, CRC-32). The reference loader "
            "(parallel preadv into one page-locked buffer, asynchronous copies) is the attainable ceiling.",
            "",
            _markdown(scale_table(record)),
        ]
    skipped = [step for step in run.get("steps", []) if step["status"] in ("skipped", "stopped", "failed")]
    lines += ["", "## Not measured, and why", ""]
    lines += [f"- {step['name']}: {step['status']}: {step.get('why', '')}" for step in skipped] or ["- nothing"]
    return "\n".join(lines) + "\n"


def write_gpu_report(run_dir: Path) -> Path:
    path = Path(run_dir) / REPORT
    write_bytes_atomic(path, gpu_report(run_dir).encode())
    return path
