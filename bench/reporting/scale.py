"""The report of a `serbench run --scale` run (`scale.md` and its plots), from its `scale.json` alone.

Every time is published with its spread (`bench.timing.stats.spread`: median, min-max, and `unstable`
where rounds disagree); every load row says whether every tensor came back bit-exact; peak memory is a
multiple of the payload; each loader is set beside serbench's reference loader (large parallel reads into
one buffer: what a plain load reaches on this machine) and the machine's limits; each loader's fitted
costs per load, file, tensor and byte come with their bootstrap intervals and are checked against the LLM
load they predict.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from bench import decide, markdown, scale_workloads
from bench.reporting import fit
from bench.timing import stats
from bench.timing.rundir import ENV_CAP
from frameworks import stored
from frameworks.files import write_bytes_atomic, write_figure

RECORD = "scale.json"
REPORT = "scale.md"
PEAK_ADVICE_MULTIPLE = 2.0
"""A loader whose peak memory is above this multiple of the payload is named in the advice."""


_ERROR = stored.Object(required={"error": str}, extra=True)
_LLM_ROUND = (
    _ERROR,
    stored.Object(
        required={"seconds": stored.POSITIVE, "peak_rss_bytes": stored.COUNT, "wrong": stored.ListOf(str)},
        optional={
            "mapped_file_bytes": stored.COUNT,
            "device_peak_bytes": (stored.COUNT, type(None)),
            "resident": stored.Number(),
        },
        extra=True,
    ),
)
_RANKS = stored.Object(
    required={
        "max_rank_s": stored.POSITIVE,
        "end_to_end_s": stored.POSITIVE,
        "bytes": stored.COUNT,
        "wrong": stored.ListOf(str),
    },
    extra=True,
)
SCALE_SCHEMA = stored.Object(
    required={
        "limits": stored.MapOf(stored.MapOf(stored.ANY)),
        "llm": stored.Object(
            required={
                "workload": stored.MapOf(stored.ANY),
                "parameters": stored.COUNT,
                "rows": stored.ListOf(
                    stored.Object(
                        required={
                            "framework": str,
                            "loader": str,
                            "format": str,
                            "layout": str,
                            "files": stored.COUNT,
                            "device": str,
                            "cache": str,
                            "payload_bytes": stored.Number(above=True, integer=True),
                            "rounds": stored.ListOf(_LLM_ROUND),
                            "unavailable": str,
                        },
                        optional={"reference": bool},
                        extra=True,
                    )
                ),
            },
            extra=True,
        ),
        "distributed": stored.ListOf(
            stored.Object(
                required={
                    "engine": str,
                    "backend": str,
                    "device": str,
                    "save_ranks": stored.COUNT,
                    "load_ranks": stored.COUNT,
                    "rounds": stored.ListOf(
                        (_ERROR, stored.Object(required={"save": _RANKS, "load": _RANKS, "size_on_disk": stored.COUNT}))
                    ),
                    "unavailable": str,
                },
                extra=True,
            )
        ),
        "sweep": stored.Object(
            required={
                "rows": stored.ListOf(
                    stored.Object(
                        required={
                            "framework": str,
                            "loader": str,
                            "point": str,
                            "files": stored.COUNT,
                            "tensors": stored.COUNT,
                            "payload_bytes": stored.Number(above=True, integer=True),
                            "samples": stored.ListOf(stored.ListOf(stored.POSITIVE)),
                            "peaks": stored.ListOf(stored.COUNT),
                            "wrong": stored.ListOf(str),
                            "unavailable": str,
                        },
                        extra=True,
                    )
                )
            },
            extra=True,
        ),
    },
    extra=True,
)
"""What the report reads of scale.json, with exact types: a stored run that is not this is refused in one line."""


def read_scale_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(scale.json, env.json) of a scale run, each a regular file within its cap and of its schema."""
    record = stored.read_json(run_dir / RECORD, what="scale run record", schema=SCALE_SCHEMA, cap=256 << 20)
    env_path = run_dir / "env.json"
    env = stored.read_json(env_path, what="env.json", cap=ENV_CAP) if os.path.lexists(env_path) else {}
    return record, env


def _seconds(value: float) -> str:
    if value == 0:
        return "0"
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.0f} µs"


def _figure(samples: list[list[float]]) -> tuple[str, stats.Spread | None]:
    """A time with its spread: `median (low-high)`, or a range marked unstable."""
    if not samples:
        return "", None
    spread = stats.spread(samples)
    if not spread.stable:
        return f"unstable: {_seconds(spread.low)}-{_seconds(spread.high)} ({spread.unstable_reason})", spread
    return f"{_seconds(spread.median)} ({_seconds(spread.low)}-{_seconds(spread.high)})", spread


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.2f} GB"


def is_reference(row: dict[str, Any]) -> bool:
    """Whether a row is serbench's reference loader (runs before `reference` was recorded: by its name)."""
    return bool(row.get("reference", row["loader"].startswith("reference:")))


def _bandwidth(payload: int, spread: stats.Spread | None) -> str:
    """GB/s at the median, or the range of the rounds where they disagree (no crisp figure for an unstable time)."""
    if spread is None:
        return ""
    if not spread.stable:
        return f"{payload / spread.high / 1e9:.2f}-{payload / spread.low / 1e9:.2f}"
    return f"{payload / spread.median / 1e9:.2f}"


def llm_frame(record: dict[str, Any]) -> pd.DataFrame:
    """One row per loader x layout x device x cache: time with spread, bandwidth, ceiling, peak, check."""
    rows = record["llm"]["rows"]
    references = {}
    for row in rows:
        if is_reference(row) and not row["unavailable"]:
            good = [r["seconds"] for r in row["rounds"] if "seconds" in r]
            spread = stats.spread([[t] for t in good]) if good else None
            if spread and spread.stable:
                references[(row["layout"], row["device"], row["cache"])] = spread.median
    table = []
    for row in rows:
        entry = {
            "loader": row["loader"],
            "format": row["format"],
            "layout": f"{row['layout']} ({row['files']} file{'s' if row['files'] > 1 else ''})",
            "device": row["device"],
            "cache": row["cache"],
        }
        if row["unavailable"]:
            table.append({**entry, "load": f"unavailable: {row['unavailable']}"})
            continue
        good = [r for r in row["rounds"] if "seconds" in r]
        errors = [r["error"] for r in row["rounds"] if "error" in r]
        text, spread = _figure([[r["seconds"]] for r in good])
        payload = row["payload_bytes"]
        wrong = sorted({problem for r in good for problem in r["wrong"]})
        peak = max((r["peak_rss_bytes"] for r in good), default=0) / payload
        device_peaks = [r["device_peak_bytes"] for r in good if r.get("device_peak_bytes") is not None]
        mapped = max((r.get("mapped_file_bytes", 0) for r in good), default=0) / payload
        reference = references.get((row["layout"], row["device"], row["cache"]))
        stale = [r["resident"] for r in good if row["cache"] == "cold" and r.get("resident", 0) > 0.01]
        table.append(
            {
                **entry,
                "load": text or f"failed: {errors[0] if errors else 'no rounds'}",
                "GB/s": _bandwidth(payload, spread),
                "x reference": f"{spread.median / reference:.2f}" if spread and spread.stable and reference else "",
                "peak memory (x payload)": (
                    f"{peak:.2f}"
                    + (f" ({mapped:.2f} mapped file)" if mapped >= 0.01 else "")
                    + (f"; GPU {max(device_peaks) / payload:.2f}" if device_peaks else "")
                )
                if good
                else "",
                "check": (
                    "bit-exact"
                    if good and not wrong and not errors
                    else "; ".join(wrong[:2] + errors[:1]) or "not checked"
                )
                + (f"; not cold: up to {max(stale):.0%} cached" if stale else ""),
                "rounds": len(good),
                "stable": bool(spread and spread.stable),
                "reference": is_reference(row),
                "peak": peak,
                "mapped": mapped,
                "median_s": spread.median if spread else float("nan"),
                "low_s": spread.low if spread else float("nan"),
                "high_s": spread.high if spread else float("nan"),
                "samples": [[r["seconds"]] for r in good],  # every round is a fresh process
            }
        )
    return pd.DataFrame(table)


def distributed_frame(record: dict[str, Any]) -> pd.DataFrame:
    table = []
    for row in record["distributed"]:
        entry = {
            "engine": f"{row['engine']} ({row['backend']})",
            "device": row["device"],
            "ranks": f"{row['save_ranks']} save -> {row['load_ranks']} load",
        }
        if row["unavailable"]:
            table.append({**entry, "save (slowest rank)": f"unavailable: {row['unavailable']}"})
            continue
        good = [r for r in row["rounds"] if "save" in r]
        errors = [r["error"] for r in row["rounds"] if "error" in r]
        wrong = sorted({name for r in good for name in r["load"]["wrong"]})
        table.append(
            {
                **entry,
                "save (slowest rank)": _figure([[r["save"]["max_rank_s"]] for r in good])[0],
                "save end to end": _figure([[r["save"]["end_to_end_s"]] for r in good])[0],
                "load (slowest rank)": _figure([[r["load"]["max_rank_s"]] for r in good])[0],
                "load end to end": _figure([[r["load"]["end_to_end_s"]] for r in good])[0],
                "on disk": _gb(good[0]["size_on_disk"]) if good else "",
                "check": (
                    f"bit-exact ({_gb(good[0]['load']['bytes'])} over {row['load_ranks']} rank(s))"
                    if good and not wrong and not errors
                    else "; ".join(wrong[:2] + errors[:1]) or "not checked"
                ),
            }
        )
    return pd.DataFrame(table)


def sweep_points_of(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[fit.Point]]:
    found: dict[tuple[str, str], list[fit.Point]] = {}
    for row in rows:
        if row["unavailable"] or not row["samples"] or row["wrong"]:
            continue
        rounds = tuple(t for sample in row["samples"] for t in sample)
        samples = tuple(tuple(sample) for sample in row["samples"])
        point = fit.Point(row["files"], row["tensors"], row["payload_bytes"], rounds, samples)
        found.setdefault((row["framework"], row["loader"]), []).append(point)
    return found


def fit_frame(record: dict[str, Any], llm: pd.DataFrame) -> pd.DataFrame:
    """Each loader's fitted costs with intervals, and the warm single-file LLM load they predict vs measured."""
    model = record["llm"]["workload"]
    tensors, payload = _tensor_count(model), 2 * record["llm"]["parameters"]
    sweep_rows = record["sweep"]["rows"]
    table = []
    for (_, loader), points in sweep_points_of(sweep_rows).items():
        entry = {"loader": loader}
        try:
            fitted = fit.fit(points)
        except ValueError as error:
            table.append({**entry, "per load": f"no fit: {error}"})
            continue
        interval = fitted.intervals
        measured = _measured(llm, loader)
        table.append(
            {
                **entry,
                "per load": _cost(fitted.per_load_s, interval["load"]),
                "per file": _cost(fitted.per_file_s, interval["files"]),
                "per tensor": _cost(fitted.per_tensor_s, interval["tensors"]),
                "per byte, as GB/s": f"{fitted.gbps:.2f} ({_rate(interval['bytes'][1])}-{_rate(interval['bytes'][0])})",
                "worst miss": f"{fitted.worst_residual:.0%}"
                + ("" if fitted.describes else " (does not fit: not advice)"),
                f"predicts {model['name']} (1 file, warm)": _seconds(fitted.predict(1, tensors, payload)),
                "measured (fresh process)": measured,
            }
        )
    return pd.DataFrame(table)


def _measured(llm: pd.DataFrame, loader: str) -> str:
    """The warm single-file LLM load as the table shows it (a range where it is unstable)."""
    if llm.empty or "median_s" not in llm:
        return ""
    chosen = llm[
        (llm["loader"] == loader)
        & (llm["device"] == "cpu")
        & (llm["cache"] == "warm")
        & llm["layout"].str.startswith("single")
    ]
    return str(chosen["load"].iloc[0]) if len(chosen) else ""


def _cost(value: float, interval: tuple[float, float]) -> str:
    return f"{_seconds(value)} ({_seconds(interval[0])}-{_seconds(interval[1])})"


def _rate(per_byte: float) -> str:
    return f"{1 / per_byte / 1e9:.2f}" if per_byte > 0 else "inf"


def _tensor_count(model: dict[str, Any]) -> int:
    return len(scale_workloads.Transformer(**model).shapes())


def plot_sweep(record: dict[str, Any], directory: Path) -> list[str]:
    """scale-payload.png (time and peak memory vs payload, log-log, with the limits), scale-tensors.png,
    scale-files.png (time vs tensor and file count at fixed bytes)."""
    rows = [row for row in record["sweep"]["rows"] if row["samples"] and not row["unavailable"]]
    if not rows:
        return []
    frame = pd.DataFrame(
        [
            {
                "loader": row["loader"],
                "point": row["point"],
                "files": row["files"],
                "tensors": row["tensors"],
                "bytes": row["payload_bytes"],
                "median": spread.median,
                "low": spread.low,
                "high": spread.high,
                "peak": max(row["peaks"]) if row["peaks"] else float("nan"),
            }
            for row in rows
            for spread in [stats.spread(row["samples"])]
        ]
    )
    tensors_mode = frame["tensors"].mode().iloc[0]
    by_payload = frame[(frame["files"] == 1) & (frame["tensors"] == tensors_mode)]
    middle = frame.loc[frame["tensors"].idxmax(), "bytes"]  # the payload of the tensor-count and file-count sweeps
    fixed = frame[(frame["bytes"] - middle).abs() < 0.05 * middle]
    written = []
    figure, (times, peaks) = plt.subplots(1, 2, figsize=(13, 5))
    for loader, group in by_payload.groupby("loader"):
        group = group.sort_values("bytes")
        times.errorbar(
            group["bytes"], group["median"], yerr=[group["median"] - group["low"], group["high"] - group["median"]],
            marker="o", label=loader, capsize=2,
        )  # fmt: skip
        peaks.plot(group["bytes"], group["peak"] / group["bytes"], marker="o", label=loader)
    span = pd.Series(sorted(by_payload["bytes"].unique()))
    for name, style in (("memcpy", ":"), ("disk_read_warm", "--")):
        limit = record["limits"].get(name, {}).get("gbps")
        if limit:
            times.plot(span, span / (limit * 1e9), style, color="black", label=f"{name} limit ({limit:.1f} GB/s)")
    times.set(xscale="log", yscale="log", xlabel="payload (bytes)", ylabel="load time (s), median and range",
              title=f"Load time vs payload ({tensors_mode} tensors, one file, warm)")  # fmt: skip
    peaks.set(xscale="log", xlabel="payload (bytes)", ylabel="peak RSS added / payload",
              title="Peak memory vs payload")  # fmt: skip
    peaks.axhline(PEAK_ADVICE_MULTIPLE, color="red", linestyle=":", label=f"{PEAK_ADVICE_MULTIPLE:g}x payload")
    times.legend(fontsize=7)
    peaks.legend(fontsize=7)
    figure.tight_layout()
    write_figure(figure, directory / "scale-payload.png")
    plt.close(figure)
    written.append("scale-payload.png")
    figure, (by_tensors, by_files) = plt.subplots(1, 2, figsize=(13, 5))
    for axis, column, other in ((by_tensors, "tensors", "files"), (by_files, "files", "tensors")):
        chosen = fixed[fixed[other] == (1 if other == "files" else tensors_mode)]
        for loader, group in chosen.groupby("loader"):
            group = group.sort_values(column)
            axis.errorbar(
                group[column], group["median"], yerr=[group["median"] - group["low"], group["high"] - group["median"]],
                marker="o", label=loader, capsize=2,
            )  # fmt: skip
        axis.set(xscale="log", yscale="log", xlabel=column, ylabel="load time (s)",
                 title=f"Load time vs {column} at {middle / 2**20:.0f} MiB (warm)")  # fmt: skip
        if not chosen.empty:
            axis.legend(fontsize=7)
    figure.tight_layout()
    write_figure(figure, directory / "scale-counts.png")
    plt.close(figure)
    written.append("scale-counts.png")
    return written


def advice(llm: pd.DataFrame, payload: int) -> list[str]:
    lines = []
    measured = llm[llm["median_s"].notna()] if "median_s" in llm else pd.DataFrame()
    heavy = measured[measured["peak"] > PEAK_ADVICE_MULTIPLE]
    for loader, group in heavy.groupby("loader"):
        worst = group.loc[group["peak"].idxmax()]
        mapped = (
            f"; {worst['mapped']:.2f}x of it was the file's pages, counted in RSS because they are mapped (the other "
            "loaders also bring the file into the page cache, outside their RSS; a cgroup charges page cache either "
            "way, and the kernel can reclaim it)"
            if worst["mapped"] >= 0.01
            else ""
        )
        lines.append(
            f"**{loader}** needed up to {worst['peak']:.3f}x the payload in memory at its peak "
            f"({_gb(worst['peak'] * payload)} for a {_gb(payload)} checkpoint): "
            f"above {PEAK_ADVICE_MULTIPLE:g}x{mapped}."
        )
    for (device, cache), group in measured.groupby(["device", "cache"]):
        timed = group[[len(samples) >= 2 for samples in group["samples"]]]
        loaders = {f"{row.loader} ({row.layout})": row.samples for row in timed.itertuples() if not row.reference}
        if not loaders:
            lines.append(f"{device}, {cache}: fewer than 2 rounds of any loader, so nothing is decided.")
            continue
        ranking = decide.rank(loaders)
        line = f"{device}, {cache}: {ranking.describe()}"
        references = timed[timed["reference"]]
        if not references.empty:
            reference = references.loc[references["median_s"].idxmin()]
            against = decide.decide(reference["samples"], loaders[ranking.leader])
            line += f"; serbench's reference loader ({reference['layout']}): {against.describe('it', ranking.leader)}"
        lines.append(line + ".")
    return lines


def write_scale_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    record, env = read_scale_run(run_dir)
    model = record["llm"]["workload"]
    payload = 2 * record["llm"]["parameters"]
    llm = llm_frame(record)
    shown = [
        c
        for c in llm.columns
        if c not in ("stable", "reference", "peak", "mapped", "median_s", "low_s", "high_s", "samples")
    ]
    plots = plot_sweep(record, run_dir)
    fits = fit_frame(record, llm)
    limits = pd.DataFrame(
        [
            {"limit": name, "GB/s": f"{v['gbps']:.2f}" if v["gbps"] else "", "note": v["note"]}
            for name, v in record["limits"].items()
        ]
    )
    dcp = distributed_frame(record)
    lines = [
        f"# {run_dir.name}: checkpoints at scale",
        "",
        f"Machine: {env.get('cpu', '?')}, {env.get('cores_logical', '?')} cores, "
        f"{round(env.get('ram_bytes', 0) / 2**30)} GiB; "
        f"GPU: {env.get('gpu', '?')}; commit `{env.get('git_commit', '?')}`; {env.get('date', '?')}. "
        "Times: median (min-max) of the rounds, each in a fresh process; `unstable` where rounds disagree "
        "(bench.timing.stats). Every load was checked tensor by tensor (name, dtype, shape, CRC-32 of the bytes).",
        "",
        "## The machine's limits",
        "",
        markdown.table(limits),
        "",
        f"## {model['name']}: {record['llm']['parameters'] / 1e9:.2f} billion parameters, bfloat16, "
        f"{_gb(payload)} ({model['source']})",
        "",
        "Loaded the way users load it: the single file, or the Hugging Face shards (max shard "
        f"{_gb(model['max_shard_bytes'])}) into one dict. `x reference` is the load's median over serbench's "
        "reference loader's (parallel preads into one buffer, a few dozen lines: what a plain load reaches here) for "
        "the same files, device and cache; below 1 the loader beat it. Peak memory: the most RSS the load added at "
        "any moment, as a multiple of the payload; mapped file pages count once touched, and how much of the RSS "
        "at the end was mapped file is in brackets (every loader brings the file into the page cache; only a "
        "mapping puts it in RSS); for a GPU load, the host RSS and then the GPU's peak allocation.",
        "",
        markdown.table(llm[shown].fillna("")),
        "",
        "### Advice",
        "",
        *[f"- {line}" for line in advice(llm, payload)],
        "",
        "## Distributed checkpoints (real processes, one per rank)",
        "",
        "Each rank holds a row shard of every tensor; the slowest rank's time (as MLPerf Storage reports) and "
        "the launch end to end (process start, imports, rendezvous included). Loads at another world size "
        "reshard; every rank's rows are compared byte for byte with the source.",
        "",
        markdown.table(dcp.fillna(""), empty="(no framework here has a distributed engine)"),
        "",
        "## How cost grows (warm, one process per loader and pass, several rounds each)",
        "",
        *[f"![{name}]({name})" for name in plots],
        "",
        "Fitted: seconds = per load + per file x files + per tensor x tensors + per byte x bytes (non-negative, "
        "relative error; intervals: 5th-95th percentile of a bootstrap over processes and their rounds, the "
        "timings' noise only). `worst miss`: the largest relative "
        "gap between the fit and a point's median. The prediction for the LLM uses its tensor count and payload.",
        "",
        markdown.table(fits.fillna(""), empty="(no loader has sweep points)"),
        "",
    ]
    path = run_dir / REPORT
    write_bytes_atomic(path, "\n".join(lines).encode())
    return path
