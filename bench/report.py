"""`serbench report RUN_DIR`: tables and plots from a run's stored results; nothing is rerun.

A pure function of `results.csv`, `env.json` and `limits.json`: it writes `report.md`, one CSV
per table and PNG plots beside them, so a report can be regenerated, diffed and compared.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from frameworks.files import write_bytes_atomic

NA = "n/a"


def load_run(run_dir: Path) -> tuple[pd.DataFrame, dict, dict]:
    run_dir = Path(run_dir)
    frame = pd.read_csv(run_dir / "results.csv", keep_default_na=False, na_values=[""])
    env = json.loads((run_dir / "env.json").read_text())
    limits = json.loads((run_dir / "limits.json").read_text())
    return frame, env, limits


def _gbps(value: float) -> str:
    return NA if pd.isna(value) else f"{value:.3g}"


def _frac(value: float) -> str:
    return NA if pd.isna(value) else f"{value * 100:.3g}%"


def _bytes(value: float) -> str:
    if pd.isna(value):
        return NA
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{int(value)} B"


def _seconds(value: float) -> str:
    if pd.isna(value):
        return NA
    return f"{value * 1e3:.2f} ms" if value < 1 else f"{value:.2f} s"


def _pick(rows: pd.DataFrame, op: str, cache: str = "-", device: str = "cpu") -> pd.Series | None:
    match = rows[(rows["op"] == op) & (rows["cache"] == cache) & (rows["device"] == device)]
    return None if match.empty else match.iloc[0]


def _cell(row: pd.Series | None, field: str, fmt: Callable[[float], str] = _gbps) -> str:
    if row is None:
        return NA
    if row["status"] != "ok":
        return str(row["status"])
    return fmt(row[field])


def workload_table(frame: pd.DataFrame, workload: str) -> pd.DataFrame:
    """framework x format for one workload: speeds, fractions of limits, size, memory, round trip."""
    rows = []
    subset = frame[frame["workload"] == workload]
    for (framework, fmt), group in subset.groupby(["framework", "format"], sort=False):
        save, warm, cold = _pick(group, "save"), _pick(group, "load", "warm"), _pick(group, "load", "cold")
        open_warm = _pick(group, "open", "warm")
        if save is not None and save["status"] == "unsupported":
            rows.append({"framework": framework, "format": fmt, "round trip": "unsupported"})
            continue
        payload = save["payload_bytes"] if save is not None else np.nan
        file_bytes = save["file_bytes"] if save is not None else np.nan
        rows.append(
            {
                "framework": framework,
                "format": fmt,
                "save": _cell(save, "median_s", _seconds),
                "save GB/s": _cell(save, "gbps"),
                "save % disk": _cell(save, "frac_of_limit", _frac),
                "warm load": _cell(warm, "median_s", _seconds),
                "warm load GB/s": _cell(warm, "gbps"),
                "warm % memcpy": _cell(warm, "frac_of_limit", _frac),
                "cold load GB/s": _cell(cold, "gbps"),
                "cold % disk": _cell(cold, "frac_of_limit", _frac),
                "lazy open": _cell(open_warm, "median_s", _seconds) if open_warm is not None else "-",
                "file": _bytes(file_bytes),
                "overhead": NA if pd.isna(file_bytes) or framework == "null-adapter" else _bytes(file_bytes - payload),
                "peak RSS x payload": NA
                if warm is None or pd.isna(warm["peak_rss_multiple"])
                else f"{warm['peak_rss_multiple']:.2f}",
                "round trip": str(warm["roundtrip"]) if warm is not None and warm["status"] == "ok" else NA,
            }
        )
    return pd.DataFrame(rows).fillna("")


def _unavailable(row: pd.Series) -> str:
    note = str(row["note"])
    return note if note.startswith("unavailable") else f"unavailable: {note}"


def gpu_table(frame: pd.DataFrame) -> pd.DataFrame:
    """CPU vs CUDA load per framework/format on the medium and large workloads with timed CUDA rows
    (the largest workload alone when only small ones have them)."""
    cuda = frame[(frame["device"] == "cuda") & (frame["op"] == "load")]
    if cuda.empty:
        return pd.DataFrame()
    sized = cuda.sort_values("payload_bytes", kind="stable", na_position="first")
    chosen = [w for w in sized["workload"].unique() if (cuda.loc[cuda["workload"] == w, "size"] != "small").all()]
    chosen = chosen or [sized["workload"].iloc[-1]]
    rows = []
    for workload in chosen:
        subset = frame[(frame["workload"] == workload) & (frame["op"] == "load")]
        for (framework, fmt), group in subset.groupby(["framework", "format"], sort=False):
            if framework == "null-adapter":
                continue
            cpu, gpu = _pick(group, "load", "warm", "cpu"), _pick(group, "load", "warm", "cuda")
            gpu_cold = _pick(group, "load", "cold", "cuda")
            if gpu is None or gpu["status"] != "ok":
                continue  # listed by `untimed_on_gpu`
            comparable = cpu is not None and cpu["status"] == "ok" and cpu["median_s"] > 0
            rows.append(
                {
                    "workload": workload,
                    "framework": framework,
                    "format": fmt,
                    "cpu warm GB/s": _cell(cpu, "gbps"),
                    "cuda warm": _seconds(gpu["median_s"]),
                    "cuda warm GB/s": _gbps(gpu["gbps"]),
                    "cuda cold GB/s": _cell(gpu_cold, "gbps"),
                    "cuda / cpu time": f"{gpu['median_s'] / cpu['median_s']:.2f}x" if comparable else NA,
                    "cuda % h2d": _frac(gpu["frac_of_limit"]),
                    "round trip": str(gpu["roundtrip"]),
                }
            )
    return pd.DataFrame(rows).fillna("")


def untimed_on_gpu(frame: pd.DataFrame) -> list[str]:
    """One line per framework and reason whose cuda loads were not timed."""
    cuda = frame[(frame["device"] == "cuda") & (frame["op"] == "load") & (frame["status"] != "ok")]
    reasons = [_unavailable(row) if row["status"] == "unavailable" else str(row["note"]) for _, row in cuda.iterrows()]
    lines = []
    for (framework, reason), group in cuda.assign(reason=reasons).groupby(["framework", "reason"], sort=False):
        lines.append(f"- {framework} ({', '.join(dict.fromkeys(group['format']))}): {reason}")
    return lines


def _h2d_text(limits: dict) -> str:
    parts = []
    for name in ("h2d_pageable", "h2d_pinned"):
        limit = limits.get(name, {})
        parts.append(
            f"{name}: " + (f"{limit['gbps']:.2f} GB/s" if limit.get("gbps") else limit.get("note", "unavailable"))
        )
    return (
        "Host-to-device copy limits measured in this run (a cuda load is compared with the pageable one, since "
        "loaders copy from ordinary host memory): " + "; ".join(parts) + "."
    )


def recommendations(frame: pd.DataFrame) -> pd.DataFrame:
    """Per framework, from the numbers: fastest exact warm load, smallest file, lowest peak memory."""
    rows = []
    real = frame[(frame["framework"] != "null-adapter") & (frame["status"] == "ok")]
    for framework, group in real.groupby("framework", sort=False):
        largest = group["payload_bytes"].max()
        big = group[group["payload_bytes"] == largest]
        warm = big[(big["op"] == "load") & (big["cache"] == "warm") & (big["device"] == "cpu")]
        exact = warm[warm["roundtrip"] == "exact"]
        saves = big[big["op"] == "save"]
        memory = warm.dropna(subset=["peak_rss_multiple"])
        fastest = exact.loc[exact["gbps"].idxmax()] if not exact.empty else None
        fastest_any = warm.loc[warm["gbps"].idxmax()] if not warm.empty else None
        smallest = saves.loc[saves["file_bytes"].idxmin()] if not saves.empty else None
        leanest = memory.loc[memory["peak_rss_multiple"].idxmin()] if not memory.empty else None
        rows.append(
            {
                "framework": framework,
                "measured on": f"{big['workload'].iloc[0]} ({_bytes(largest)})",
                "fastest exact load": NA if fastest is None else f"{fastest['format']} ({fastest['gbps']:.2f} GB/s)",
                "fastest load, any round trip": NA
                if fastest_any is None
                else f"{fastest_any['format']} ({fastest_any['gbps']:.2f} GB/s; {fastest_any['roundtrip']})",
                "smallest file": NA if smallest is None else f"{smallest['format']} ({_bytes(smallest['file_bytes'])})",
                "lowest peak memory": NA
                if leanest is None
                else f"{leanest['format']} ({leanest['peak_rss_multiple']:.2f}x payload)",
            }
        )
    return pd.DataFrame(rows)


def harness_overhead(frame: pd.DataFrame) -> str:
    null = frame[
        (frame["framework"] == "null-adapter")
        & (frame["workload"] == "d2l-tensor")
        & (frame["op"] == "load")
        & (frame["status"] == "ok")
    ]
    loads = frame[
        (frame["framework"] != "null-adapter")
        & (frame["op"] == "load")
        & (frame["status"] == "ok")
        & (frame["device"] == "cpu")
    ]
    if null.empty or loads.empty:
        return "Harness overhead: not measured in this run."
    per_call = null["median_s"].min()
    largest = loads[loads["payload_bytes"] == loads["payload_bytes"].max()]
    fastest = largest["median_s"].min()
    return (
        f"Harness overhead: {per_call * 1e6:.1f} us per call (null adapter on a 32-byte tensor), "
        f"{per_call / fastest:.3%} of the fastest load of {largest['workload'].iloc[0]} "
        f"({_seconds(fastest)})."
    )


def _markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True) if not frame.empty else "(no rows)"


def environment_block(env: dict, limits: dict) -> str:
    fs = env.get("filesystem", {})
    thp = env.get("transparent_huge_pages", {})
    lines = [
        f"- date: {env.get('date')}, commit: `{env.get('git_commit')}`",
        f"- machine: {env.get('cpu')}, {env.get('cores_logical')} logical cores, "
        f"{_bytes(env.get('ram_bytes', np.nan))} RAM; kernel {env.get('kernel')}; Python {env.get('python')}",
        f"- GPU: {env.get('gpu')}",
        f"- filesystem of the results: {fs.get('type')} on {fs.get('device', '?')} ({fs.get('mountpoint', '?')})",
        f"- transparent huge pages: {thp['enabled']} (defrag: {thp.get('defrag', '?')})"
        if thp
        else "- transparent huge pages: not recorded (the run predates that field)",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items()),
        "",
        "Limits measured in this run (best round; the ceiling each figure is compared with):",
        "",
        pd.DataFrame(
            [
                {
                    "limit": name,
                    "GB/s": _gbps(item.get("gbps")) if item.get("gbps") is not None else "unavailable",
                    "buffer": _bytes(item.get("bytes")),
                    "how": item.get("note"),
                }
                for name, item in limits.items()
            ]
        ).to_markdown(index=False, disable_numparse=True),
    ]
    return "\n".join(lines)


def safety_section(run_dir: Path) -> list[str]:
    """The safety table when the run directory holds one (`serbench safety --out RUN_DIR`), else a pointer."""
    from bench.safety.runner import safety_markdown

    source = Path(run_dir) / "safety.csv"
    if not source.exists():
        return [
            "## Safety",
            "",
            "Not measured in this run: `serbench safety --out " + str(run_dir) + "` adds it; "
            "the committed reference is `results/reference-safety/safety.md`.",
            "",
        ]
    table = safety_markdown(pd.read_csv(source, keep_default_na=False)).replace("## ", "### ")
    return ["## Safety", "", table, ""]


def write_report(run_dir: Path) -> Path:
    """Write report.md, tables/*.csv and plots/*.png into `run_dir`; returns the report path."""
    from bench import plots

    run_dir = Path(run_dir)
    frame, env, limits = load_run(run_dir)
    tables_dir, plots_dir = run_dir / "tables", run_dir / "plots"
    tables_dir.mkdir(exist_ok=True)
    plots_dir.mkdir(exist_ok=True)
    sections = [
        f"# serbench report: {run_dir.name}",
        "",
        "## Environment",
        "",
        environment_block(env, limits),
        "",
        harness_overhead(frame),
        "",
        "## Which format should I use?",
        "",
        "Derived from the numbers below (largest workload of the run, CPU).",
        "",
        _markdown(recommendations(frame)),
        "",
    ]
    recommendations(frame).to_csv(tables_dir / "recommendations.csv", index=False)
    real = frame[frame["framework"] != "null-adapter"]
    workloads_in_run = real.sort_values("payload_bytes", kind="stable")["workload"].unique()
    for workload in workloads_in_run:
        table = workload_table(frame, workload)
        kind = frame.loc[frame["workload"] == workload, "kind"].iloc[0]
        payload = frame.loc[frame["workload"] == workload, "payload_bytes"].max()
        table.to_csv(tables_dir / f"{workload.replace('/', '_')}.csv", index=False)
        sections += [f"## {kind}: {workload} ({_bytes(payload)})", "", _markdown(table), ""]
    gpu = gpu_table(frame)
    untimed = untimed_on_gpu(frame)
    sections += [
        "## GPU vs CPU load",
        "",
        _h2d_text(limits),
        "",
        _markdown(gpu) if not gpu.empty else "No cuda load was timed.",
        "",
    ]
    sections += ["Not timed on cuda:", "", *untimed, ""] if untimed else []
    gpu.to_csv(tables_dir / "gpu_vs_cpu.csv", index=False)
    sections += safety_section(run_dir)
    figures = plots.draw_all(frame, limits, plots_dir)
    sections += ["## Plots", ""] + [f"![{name}](plots/{name}.png)" for name in figures] + [""]
    report = run_dir / "report.md"
    write_bytes_atomic(report, "\n".join(sections).encode())
    return report
