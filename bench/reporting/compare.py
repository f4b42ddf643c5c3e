"""`serbench compare BASE NEW`: flag speed regressions beyond threshold and noise, and any
correctness change, between two runs (run directories or pytest-benchmark JSON files).

A row regresses when its median got slower by more than the threshold (default 10%) AND by more
than the noise of the two runs. A figure's noise (`bench.timing.stats.relative_noise`) is the larger of
its IQR and the span of its sample medians (one per process and pass), relative to its median:
on this project's VM the drift between processes and stretches of a run exceeds the IQR of
rounds taken together. A round-trip change is flagged whatever the speed; a change to a worse
outcome (exact -> drift -> error) is a regression.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench.timing.plan import CASE_KEY
from bench.timing.rundir import RunDir
from bench.timing.stats import relative_noise

KEY = list(CASE_KEY)
SPREAD = ["q1_s", "q3_s", "sample_low_s", "sample_high_s"]
SEVERITY = {"exact": 0, "drift": 1, "unsupported": 1, "error": 2}


COLUMNS = [*KEY, "status", "median_s", "iqr_s", *SPREAD, "roundtrip"]


def load_any(source: Path) -> pd.DataFrame:
    """A run directory (results.csv) or a pytest-benchmark JSON file, as key + median, spread, round trip."""
    source = Path(source)
    if source.is_dir():
        frame = pd.read_csv(RunDir(source).results_csv, keep_default_na=False, na_values=[""])
        if "threads" not in frame:
            frame["threads"] = "default"  # runs before the threads axis
        frame["threads"] = frame["threads"].astype(str)
        return _with_spread(frame.reindex(columns=COLUMNS))
    data = json.loads(source.read_text())
    rows = []
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        row = {k: info.get(k, "") for k in KEY}
        if not info:
            row.update(framework="", format="", workload=bench["fullname"])
        timing = bench["stats"]
        rows.append(
            {
                **row,
                "status": "ok",
                "median_s": timing["median"],
                "iqr_s": timing["iqr"],
                "q1_s": timing.get("q1"),
                "q3_s": timing.get("q3"),
                "roundtrip": info.get("roundtrip", ""),
            }
        )
    return _with_spread(pd.DataFrame(rows, columns=COLUMNS))


def _with_spread(frame: pd.DataFrame) -> pd.DataFrame:
    """Fill what a source lacks: quartiles from the IQR around the median (results from before the
    quartiles were stored), and one sample's span (a pytest-benchmark file is one process)."""
    half = frame["iqr_s"] / 2
    frame["q1_s"] = frame["q1_s"].fillna(frame["median_s"] - half)
    frame["q3_s"] = frame["q3_s"].fillna(frame["median_s"] + half)
    frame["sample_low_s"] = frame["sample_low_s"].fillna(frame["median_s"])
    frame["sample_high_s"] = frame["sample_high_s"].fillna(frame["median_s"])
    return frame


def _noise(frame: pd.DataFrame, side: str) -> pd.Series:
    """Each row's relative noise in one run (see `bench.timing.stats.relative_noise`)."""
    columns = [f"{name}_{side}" for name in ("median_s", *SPREAD)]
    return pd.Series(
        [relative_noise(*values) for values in frame[columns].itertuples(index=False)], index=frame.index, dtype=float
    )


def _severity(outcome: object) -> int:
    text = str(outcome) if isinstance(outcome, str) else ""
    return SEVERITY.get(text.split(":")[0], 0) if text else 0


def compare(base: pd.DataFrame, new: pd.DataFrame, threshold: float = 0.10, noise_floor: float = 0.0) -> pd.DataFrame:
    """`noise_floor` raises the noise estimate where runs drift more between processes than rounds do
    within one (measured on this project's VM: up to about 40% between back-to-back quick runs)."""
    merged = base.merge(new, on=KEY, how="outer", suffixes=("_base", "_new"), indicator=True)
    merged["change"] = merged["median_s_new"] / merged["median_s_base"] - 1
    merged["noise"] = np.fmax(np.fmax(_noise(merged, "base"), _noise(merged, "new")), noise_floor)
    slower = (merged["change"] > threshold) & (merged["change"] > merged["noise"])
    faster = (merged["change"] < -threshold) & (-merged["change"] > merged["noise"])
    roundtrip_changed = (merged["roundtrip_base"].fillna("") != merged["roundtrip_new"].fillna("")) & (
        merged["_merge"] == "both"
    )
    worse = merged["roundtrip_new"].map(_severity) > merged["roundtrip_base"].map(_severity)
    status_broke = (merged["status_base"] == "ok") & (merged["status_new"].notna()) & (merged["status_new"] != "ok")
    timed_base, timed_new = merged["status_base"] == "ok", merged["status_new"] == "ok"
    verdicts = []
    for i in range(len(merged)):
        if merged["_merge"].iloc[i] != "both":
            verdicts.append("only in base" if merged["_merge"].iloc[i] == "left_only" else "only in new")
        elif not timed_base.iloc[i] and not timed_new.iloc[i]:
            verdicts.append(f"not timed: {merged['status_new'].iloc[i]}")
        elif not timed_base.iloc[i]:
            verdicts.append(f"newly timed (was {merged['status_base'].iloc[i]})")
        elif status_broke.iloc[i]:
            verdicts.append(f"REGRESSION: status ok -> {merged['status_new'].iloc[i]}")
        elif roundtrip_changed.iloc[i]:
            label = "REGRESSION" if worse.iloc[i] else "correctness changed"
            verdicts.append(f"{label}: {merged['roundtrip_base'].iloc[i]} -> {merged['roundtrip_new'].iloc[i]}")
        elif slower.iloc[i]:
            verdicts.append("REGRESSION: slower")
        elif faster.iloc[i]:
            verdicts.append("faster")
        else:
            verdicts.append("same")
    merged["verdict"] = verdicts
    return merged[
        [*KEY, "median_s_base", "median_s_new", "change", "noise", "roundtrip_base", "roundtrip_new", "verdict"]
    ]


def has_regression(table: pd.DataFrame) -> bool:
    return table["verdict"].str.startswith("REGRESSION").any()


def render(table: pd.DataFrame, show_all: bool = False) -> str:
    quiet = (table["verdict"] == "same") | table["verdict"].str.startswith("not timed")
    shown = table if show_all else table[~quiet]
    summary = table["verdict"].str.split(":").str[0].value_counts().to_dict()
    view = shown.assign(
        change=shown["change"].map(lambda v: "" if pd.isna(v) else f"{v:+.1%}"),
        noise=shown["noise"].map(lambda v: "" if pd.isna(v) else f"{v:.1%}"),
    )
    body = view.to_markdown(index=False) if not view.empty else "(no differences)"
    return f"{body}\n\nsummary: {summary}"
