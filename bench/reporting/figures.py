"""One formatter for every figure a report prints: numbers, sizes, times, rates, fractions of a limit, and a
timed row's figure with its spread. Every report (run, bench answer, compare, versions, scale, GPU) uses these,
so a time reads alike everywhere: three significant digits, never scientific notation, en dashes in ranges."""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

NA = "n/a"


def number(value: float) -> str:
    """Three significant digits and never scientific notation: 1350, 13.5, 1.35, 0.135; '<0.001' below that."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) < 0.001:
        return "<0.001"
    return f"{value:.{2 - math.floor(math.log10(abs(value)))}f}"


def rate(value: float) -> str:
    return NA if pd.isna(value) else number(value)


def percent(value: float) -> str:
    return NA if pd.isna(value) else f"{number(value * 100)}%"


def size(value: float) -> str:
    if pd.isna(value):
        return NA
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{int(value)} B"


def _time_unit(value: float) -> tuple[float, str]:
    return (1e6, "µs") if value < 1e-3 else ((1e3, "ms") if value < 1 else (1.0, "s"))


def seconds(value: float) -> str:
    if pd.isna(value):
        return NA
    scale, unit = _time_unit(value)
    return f"{number(value * scale)} {unit}"


def unstable(row: pd.Series) -> bool:
    return row.get("stability") == "unstable"


def _time_range(row: pd.Series, low: str, high: str) -> str:
    """`a-b unit` (an en dash in the output), in the unit of the median (so both ends read alike)."""
    scale, unit = _time_unit(row["median_s"])
    return f"{number(row[low] * scale)}–{number(row[high] * scale)} {unit}"


def time_figure(row: pd.Series) -> str:
    """`median [q1-q3] n=rounds/samples`, or `unstable low-high n=...` (en dashes in the output)."""
    count = "" if pd.isna(row.get("rounds")) else f" n={int(row['rounds'])}/{int(row.get('samples') or 1)}"
    if pd.isna(row.get("q1_s")):
        return f"{seconds(row['median_s'])} (spread not recorded){count}"
    if unstable(row):
        return f"unstable {_time_range(row, 'low_s', 'high_s')}{count}"
    return f"{seconds(row['median_s'])} [{_time_range(row, 'q1_s', 'q3_s')}]{count}"


def _rate_figure(row: pd.Series, scale: float, fmt: Callable[[float], str]) -> str:
    """A figure inversely proportional to time (GB/s, fraction of a limit), with its spread."""
    if pd.isna(scale) or pd.isna(row["median_s"]):
        return NA
    value = scale / row["median_s"]
    if pd.isna(row.get("q1_s")):
        return f"{fmt(value)} (spread not recorded)"
    if unstable(row):
        return f"unstable {fmt(scale / row['high_s'])}–{fmt(scale / row['low_s'])}"
    return f"{fmt(value)} [{fmt(scale / row['q3_s'])}–{fmt(scale / row['q1_s'])}]"


def gbps_figure(row: pd.Series) -> str:
    return _rate_figure(row, row["payload_bytes"] / 1e9, rate)


ABOVE_LIMIT = "ABOVE ITS LIMIT: the limit was not measured well enough to bound it"


def fraction_figure(row: pd.Series) -> str:
    """The figure's fraction of its limit, with its spread; flagged where the median is above the limit (a
    limit is a ceiling: a figure above it says the limit's rounds were slower than the case's, for a save
    as for a load)."""
    figure = _rate_figure(row, row["payload_bytes"] / 1e9 / row["limit_gbps"], percent)
    above = row["payload_bytes"] / 1e9 / row["limit_gbps"] / row["median_s"] > 1
    return f"{figure} {ABOVE_LIMIT}" if not pd.isna(row["median_s"]) and above else figure
