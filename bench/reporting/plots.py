"""Headless matplotlib plots for a report: throughput against limits, file overhead, peak memory."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.container import BarContainer

from bench.timing.results import baseline_rows


def _real(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[~baseline_rows(frame) & (frame["status"] == "ok")]


def load_throughput(frame: pd.DataFrame, limits: dict, path: Path) -> None:
    """Bars at the median GB/s with whiskers over the range of the rounds; unstable figures hatched."""
    loads = _real(frame)
    loads = loads[(loads["op"] == "load") & (loads["device"] == "cpu")]
    if "threads" in loads and (loads["threads"].astype(str) == "1").any():
        loads = loads[loads["threads"].astype(str) == "1"]
    largest = loads[loads["payload_bytes"] == loads["payload_bytes"].max()].copy()
    largest["low_gbps"] = largest["payload_bytes"] / largest["high_s"].fillna(largest["median_s"]) / 1e9
    largest["high_gbps"] = largest["payload_bytes"] / largest["low_s"].fillna(largest["median_s"]) / 1e9
    pivot = largest.pivot_table(
        index=["framework", "format"], columns="cache", values=["gbps", "low_gbps", "high_gbps"]
    )
    table = pivot["gbps"]
    errors = [
        [(table - pivot["low_gbps"])[cache].values, (pivot["high_gbps"] - table)[cache].values] for cache in table
    ]
    figure, axes = plt.subplots(figsize=(10, 5))
    table.plot.bar(ax=axes, color={"warm": "tab:orange", "cold": "tab:blue"}, yerr=errors, capsize=2)
    unstable = largest.loc[largest["stability"] == "unstable", ["framework", "format", "cache"]]
    marked = set(unstable.itertuples(index=False, name=None))
    bars = [container for container in axes.containers if isinstance(container, BarContainer)]
    for container, cache in zip(bars, table.columns, strict=True):
        for patch, key in zip(container, table.index, strict=True):
            if (*key, cache) in marked:
                patch.set_hatch("//")
    for name, style in (("memcpy", "--"), ("disk_read_cold", ":"), ("disk_read_warm", "-.")):
        value = limits.get(name, {}).get("gbps")
        if value:
            axes.axhline(value, linestyle=style, color="black", linewidth=1, label=f"{name} {value:.2f} GB/s")
    axes.set_ylabel("GB/s (load incl. materialization)")
    axes.set_title(f"Load throughput, {largest['workload'].iloc[0]} (whiskers: range of the rounds; hatched: unstable)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def file_overhead(frame: pd.DataFrame, path: Path) -> None:
    saves = _real(frame)
    saves = saves[(saves["op"] == "save")].copy()
    saves["overhead"] = (saves["file_bytes"] - saves["payload_bytes"]).clip(lower=1)
    figure, axes = plt.subplots(figsize=(9, 6))
    for (framework, fmt), group in saves.groupby(["framework", "format"]):
        axes.plot(group["payload_bytes"], group["overhead"], marker="o", linestyle="", label=f"{framework}/{fmt}")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("payload bytes")
    axes.set_ylabel("file bytes - payload bytes")
    axes.set_title("Per-file overhead against payload size")
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
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
    figure.savefig(path, dpi=110)
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
