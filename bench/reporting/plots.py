"""Headless matplotlib plots for a report: throughput against limits, file overhead, peak memory."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.container import BarContainer
from matplotlib.patches import Patch

from bench.timing.results import baseline_rows
from frameworks.files import write_figure


def _real(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[~baseline_rows(frame) & (frame["status"] == "ok")]


SERIES_COLOURS = {
    "cpu warm": "tab:orange",
    "cpu cold": "tab:blue",
    "cuda warm": "tab:green",
    "cuda cold": "tab:purple",
}
"""One colour per series of the throughput plot, named in its legend (GPU bars only where a cuda load was timed)."""


def load_throughput(frame: pd.DataFrame, limits: dict, path: Path) -> None:
    """Bars at the median GB/s per device and cache, whiskers over the range of the rounds; unstable
    figures hatched; the limits each series is measured against drawn as lines."""
    loads = _real(frame)
    loads = loads[loads["op"] == "load"]
    if "threads" in loads and (loads["threads"].astype(str) == "1").any():
        loads = loads[loads["threads"].astype(str) == "1"]
    cpu = loads[loads["device"] == "cpu"]
    if cpu.empty:
        return
    largest = loads[loads["payload_bytes"] == cpu["payload_bytes"].max()].copy()
    largest["series"] = largest["device"] + " " + largest["cache"]
    largest["low_gbps"] = largest["payload_bytes"] / largest["high_s"].fillna(largest["median_s"]) / 1e9
    largest["high_gbps"] = largest["payload_bytes"] / largest["low_s"].fillna(largest["median_s"]) / 1e9
    pivot = largest.pivot_table(
        index=["framework", "format"], columns="series", values=["gbps", "low_gbps", "high_gbps"]
    )
    series = [name for name in SERIES_COLOURS if name in pivot["gbps"].columns]
    table = pivot["gbps"][series]
    errors = [
        [(table - pivot["low_gbps"][series])[name].values, (pivot["high_gbps"][series] - table)[name].values]
        for name in series
    ]
    figure, axes = plt.subplots(figsize=(11, 5))
    table.plot.bar(ax=axes, color=[SERIES_COLOURS[name] for name in series], yerr=errors, capsize=2)
    unstable = largest.loc[largest["stability"] == "unstable", ["framework", "format", "series"]]
    marked = set(unstable.itertuples(index=False, name=None))
    bars = [container for container in axes.containers if isinstance(container, BarContainer)]
    for container, name in zip(bars, series, strict=True):
        for patch, key in zip(container, table.index, strict=True):
            if (*key, name) in marked:
                patch.set_hatch("//")
    lines = [
        ("memcpy", "--", "black"),
        ("fresh_copy", "-", "dimgrey"),
        ("disk_read_cold", ":", "black"),
        ("disk_read_warm", "-.", "black"),
    ]
    if any(name.startswith("cuda") for name in series):
        lines.append(("h2d_pageable", "--", SERIES_COLOURS["cuda warm"]))
    for name, style, colour in lines:
        value = limits.get(name, {}).get("gbps")
        if value:
            axes.axhline(value, linestyle=style, color=colour, linewidth=1, label=f"limit: {name} {value:.2f} GB/s")
    axes.set_ylabel("GB/s (load incl. materialization)")
    axes.set_xlabel("framework, format")
    axes.set_title(f"Load throughput, {largest['workload'].iloc[0]} (whiskers: range of the rounds; hatched: unstable)")
    lines_drawn = [line for line in axes.get_lines() if not line.get_label().startswith("_")]
    handles = [Patch(facecolor=SERIES_COLOURS[name], label=name) for name in series]
    handles += [Patch(facecolor="white", edgecolor="black", hatch="//", label="unstable figure"), *lines_drawn]
    axes.legend(handles=handles, fontsize=8, title="series (device, page cache)", title_fontsize=8)
    figure.tight_layout()
    write_figure(figure, path)
    plt.close(figure)


def file_overhead(frame: pd.DataFrame, path: Path) -> None:
    """File size ÷ payload per format: against payload size where the run saved several sizes (the fixed cost
    of a format shows as the small payloads' rise), else one bar per format. A ratio, not bytes over the
    payload: a compressed format (Orbax) writes less than its payload, which a difference would make negative."""
    saves = _real(frame)
    saves = saves[(saves["op"] == "save") & saves["file_bytes"].notna() & (saves["payload_bytes"] > 0)].copy()
    if saves.empty:
        return
    saves["ratio"] = saves["file_bytes"] / saves["payload_bytes"]
    figure, axes = plt.subplots(figsize=(9, 6))
    if saves["payload_bytes"].nunique() < 3:
        largest = saves[saves["payload_bytes"] == saves["payload_bytes"].max()].sort_values("ratio")
        labels = [f"{row.framework}/{row.format}" for row in largest.itertuples()]
        axes.barh(labels, largest["ratio"], color="tab:blue")
        axes.axvline(1.0, color="black", linewidth=0.8)
        axes.set_xlabel("file bytes ÷ payload bytes (1 = the tensors' own size)")
        axes.set_title(f"File size against payload, {largest['workload'].iloc[0]}")
        figure.tight_layout()
        write_figure(figure, path)
        plt.close(figure)
        return
    groups = list(saves.groupby(["framework", "format"]))
    colours = plt.get_cmap("tab20" if len(groups) > 10 else "tab10")
    markers = dict(zip(saves["framework"].unique(), "osD^v<>phX", strict=False))
    for index, ((framework, fmt), group) in enumerate(groups):
        axes.plot(
            group["payload_bytes"],
            group["ratio"],
            marker=markers.get(framework, "o"),
            linestyle="",
            color=colours(index % colours.N),
            label=f"{framework}/{fmt}",
        )
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("payload bytes")
    axes.set_ylabel("file bytes ÷ payload bytes (1 = the tensors' own size)")
    axes.set_title("File size against payload size")
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    write_figure(figure, path)
    plt.close(figure)


def peak_memory(frame: pd.DataFrame, path: Path) -> None:
    loads = _real(frame).dropna(subset=["peak_rss_multiple"])
    if loads.empty:
        return
    largest = loads[loads["payload_bytes"] == loads["payload_bytes"].max()]
    series = largest.set_index(largest["framework"] + "/" + largest["format"])["peak_rss_multiple"].sort_values()
    figure, axes = plt.subplots(figsize=(9, 5))
    series.plot.barh(ax=axes, color="tab:green")
    axes.axvline(1.0, color="black", linestyle="--", linewidth=1, label="1x payload")
    axes.set_xlabel("peak RSS added by one load / payload bytes")
    axes.set_title(f"Peak memory per loader, {largest['workload'].iloc[0]}")
    axes.legend()
    figure.tight_layout()
    write_figure(figure, path)
    plt.close(figure)


def draw_all(frame: pd.DataFrame, limits: dict, directory: Path) -> list[str]:
    """Draw every plot that has data; returns their names (file stems)."""
    drawn = []
    for name, draw in (
        ("load_throughput", lambda p: load_throughput(frame, limits, p)),
        ("file_overhead", lambda p: file_overhead(frame, p)),
        ("peak_memory", lambda p: peak_memory(frame, p)),
    ):
        path = directory / f"{name}.png"
        draw(path)
        if path.exists():
            drawn.append(name)
    return drawn
