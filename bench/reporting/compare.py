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

from bench import markdown
from bench.errors import UsageError
from bench.timing.plan import CASE_KEY, case_id
from bench.timing.results import RAW_CAP
from bench.timing.rundir import RunDir
from bench.timing.stats import paired_direction, rank_test_p, relative_noise
from frameworks import stored

KEY = list(CASE_KEY)
SPREAD = ["q1_s", "q3_s", "sample_low_s", "sample_high_s"]
SEVERITY = {"exact": 0, "drift": 1, "unsupported": 1, "error": 2}


COLUMNS = [*KEY, "status", "median_s", "iqr_s", *SPREAD, "roundtrip", "rounds_s", "samples"]
INTERLEAVED_ALPHA = 0.001
"""Runs interleaved in one run (`serbench versions`) are compared round against round
(`bench.timing.stats.rank_test_p`): a change counts when it exceeds the threshold, the rank test's
p-value is below this, and every pair of samples timed next to each other moved the same way
(`paired_direction`). On independent lognormal rounds, 12 against 12, the rank test alone flags 0.02%
of unchanged cases; rounds of one pass are not independent, and on this VM it flagged 5 of about 100
controls (formats that do not use the package compared) before the pairs had to agree, 1 to 2 after.
The noise rule cannot be used there: one first-touch pass sets a run's noise for every comparison
(a 64 MiB save that halved, 104 -> 54 ms in 10 of 12 rounds, read as 'same' under it)."""


MACHINE_FIELDS = ("cpu", "cores_logical", "ram_bytes", "gpu", "python")
"""What must match for two runs' times to be compared (with every package version both record)."""


PYTEST_BENCHMARK_SCHEMA = stored.Object(
    required={
        "benchmarks": stored.ListOf(
            stored.Object(
                required={
                    "stats": stored.Object(
                        required={"median": stored.POSITIVE},
                        optional={
                            "iqr": stored.Number(),
                            "q1": stored.POSITIVE,
                            "q3": stored.POSITIVE,
                            "data": stored.ListOf(stored.POSITIVE),
                        },
                        extra=True,
                    )
                },
                optional={"extra_info": stored.MapOf(stored.ANY)},
                extra=True,
            )
        )
    },
    extra=True,
)
"""What compare reads of a pytest-benchmark file: every median (and every round) a finite time above zero."""


def _benchmark_json(source: Path) -> dict:
    return stored.read_json(source, what="pytest-benchmark JSON file", schema=PYTEST_BENCHMARK_SCHEMA, cap=RAW_CAP)


def machine_of_env(env: dict) -> dict[str, object]:
    """The machine fields and package versions of an env.json's content."""
    machine: dict[str, object] = {field: env.get(field) for field in MACHINE_FIELDS}
    versions = env.get("versions") if isinstance(env.get("versions"), dict) else {}
    return {**machine, **{f"{name} version": version for name, version in versions.items()}}


def this_machine() -> dict[str, object]:
    """This machine and its package versions, as `machine_of` reads a run's."""
    from bench import environment

    return machine_of_env(environment.environment(Path.cwd()))


def machine_of(source: Path) -> dict[str, object]:
    """The machine and package versions a run was measured with: its env.json, or a pytest-benchmark file's
    machine_info (which records no package versions)."""
    source = Path(source)
    if source.is_dir():
        return machine_of_env(RunDir.read_env(RunDir(source).env))
    info = _benchmark_json(source).get("machine_info") or {}
    cpu = info.get("cpu") if isinstance(info.get("cpu"), dict) else {}
    return {"cpu": cpu.get("brand_raw"), "cores_logical": cpu.get("count"), "python": info.get("python_version")}


def env_of(source: Path) -> dict:
    """A run directory's env.json ({} for a pytest-benchmark file, which records none)."""
    source = Path(source)
    return RunDir.read_env(RunDir(source).env) if source.is_dir() else {}


def releases_under_test(base_env: dict, new_env: dict) -> set[str]:
    """The packages whose versions are the point of the comparison: those a version variant replaced,
    when both runs are variants interleaved in one `serbench versions` run; else none."""
    base, new = base_env.get("variant") or {}, new_env.get("variant") or {}
    if not base or not new or base.get("matrix") != new.get("matrix"):
        return set()
    replaced = [
        *base.get("replaced", []),
        *new.get("replaced", []),
        f"{base.get('package')}==",
        f"{new.get('package')}==",
    ]
    return {_normalize(item.split("==")[0]) for item in replaced if "==" in item}


def _normalize(package: str) -> str:
    from frameworks.environments import normalize

    return normalize(package)


def about_releases(difference: str, packages: set[str]) -> bool:
    """Whether a `machine_differences` line is one of `packages`' versions (in any environment)."""
    field = difference.split(":")[0]
    name = field.removesuffix(" version").split(" [")[0]
    return field.endswith(" version") and _normalize(name) in packages


CROSS_DAY_NOTE = "on this project's VM the same load moved 25% between two days through the same code"


def evidence(base_env: dict, new_env: dict) -> str:
    """How far the two runs' times can be compared: interleaved in one run, the same day, or different days."""
    if releases_under_test(base_env, new_env):
        return "strong: the two were timed interleaved in one run (serbench versions), so drift hit both alike"
    base_day, new_day = str(base_env.get("date", ""))[:10], str(new_env.get("date", ""))[:10]
    if not base_day or not new_day:
        return "unknown: a run without a date (a pytest-benchmark file); drift between the runs is not controlled"
    if base_day != new_day:
        return (
            f"weak: timed on different days ({base_day}, {new_day}), and {CROSS_DAY_NOTE}; the slower cases are "
            "re-timed where both commits can run here"
        )
    return "moderate: separate runs of one day; the slower cases are re-timed where both commits can run here"


def machine_differences(base: dict[str, object], new: dict[str, object]) -> list[str]:
    """What differs between two runs' machines and package versions, as `field: base -> new`; a field
    either run did not record is not a difference."""
    return [
        f"{field}: {base[field]} -> {new[field]}"
        for field in base
        if field in new and base[field] is not None and new[field] is not None and base[field] != new[field]
    ]


def load_any(source: Path) -> pd.DataFrame:
    """A run directory (results.csv) or a pytest-benchmark JSON file, as key + median, spread, round trip."""
    source = Path(source)
    if not source.exists():
        raise UsageError(f"{source}: no such run directory or file")
    if source.is_dir():
        RunDir(source).check_readable()
        return _with_spread(RunDir(source).read_results().reindex(columns=COLUMNS))
    data = _benchmark_json(source)
    rows = []
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        row = {k: info.get(k, "") for k in KEY}
        if not info:
            row.update(framework="", format="", workload=bench.get("fullname", "?"))
        timing = bench["stats"]
        rows.append(
            {
                **row,
                "status": "ok",
                "median_s": timing["median"],
                "iqr_s": timing.get("iqr", 0.0),
                "q1_s": timing.get("q1"),
                "q3_s": timing.get("q3"),
                "roundtrip": info.get("roundtrip", ""),
                "rounds_s": timing.get("data"),
                "samples": 1,
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


def _rounds(value: object) -> list[float] | None:
    """A row's rounds: results.csv stores them as a JSON list; a pytest-benchmark file as a list."""
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.startswith("["):
        return json.loads(value)
    return None


def compare(
    base: pd.DataFrame,
    new: pd.DataFrame,
    threshold: float = 0.10,
    noise_floor: float = 0.0,
    interleaved: bool = False,
) -> pd.DataFrame:
    """`noise_floor` raises the noise estimate where runs drift more between processes than rounds do
    within one (measured on this project's VM: up to about 40% between back-to-back quick runs).
    `interleaved`: the runs' processes alternated in one run, so rows whose rounds pair up are compared
    round against round (see INTERLEAVED_ALPHA; the p-value is in column `p`)."""
    merged = base.merge(new, on=KEY, how="outer", suffixes=("_base", "_new"), indicator=True)
    merged["change"] = merged["median_s_new"] / merged["median_s_base"] - 1
    merged["noise"] = np.fmax(np.fmax(_noise(merged, "base"), _noise(merged, "new")), noise_floor)
    slower = (merged["change"] > threshold) & (merged["change"] > merged["noise"])
    faster = (merged["change"] < -threshold) & (-merged["change"] > merged["noise"])
    merged["p"] = np.nan
    if interleaved:
        direction = pd.Series(np.nan, index=merged.index)
        for index in merged.index:
            rounds = _rounds(merged.at[index, "rounds_s_base"]), _rounds(merged.at[index, "rounds_s_new"])
            samples = merged.at[index, "samples_base"]
            if not (rounds[0] and rounds[1]) or pd.isna(samples) or samples != merged.at[index, "samples_new"]:
                continue
            paired = paired_direction(rounds[0], rounds[1], int(samples))
            if paired is not None:
                merged.at[index, "p"] = rank_test_p(rounds[0], rounds[1])
                direction[index] = paired
        tested = merged["p"].notna()
        significant = merged["p"] < INTERLEAVED_ALPHA
        slower = slower.where(~tested, (merged["change"] > threshold) & significant & (direction == 1))
        faster = faster.where(~tested, (merged["change"] < -threshold) & significant & (direction == -1))
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
    figures = ["median_s_base", "median_s_new", "change", "noise", *(["p"] if interleaved else [])]
    return merged[[*KEY, *figures, "roundtrip_base", "roundtrip_new", "verdict"]]


def flagged_slower(table: pd.DataFrame) -> pd.DataFrame:
    """The rows flagged only for speed: the ones a confirmation re-run can clear."""
    return table[table["verdict"] == "REGRESSION: slower"]


def apply_confirmation(table: pd.DataFrame, confirmations: dict, unconfirmable: str = "") -> pd.DataFrame:
    """The table with each speed flag confirmed, cleared, or kept with the reason it could not be checked."""
    table = table.copy()
    table["confirmation"] = ""
    table["retimed_change"] = np.nan
    for index in flagged_slower(table).index:
        found = confirmations.get(case_id(table.loc[index]))
        if found is None:
            table.loc[index, "confirmation"] = f"not re-timed: {unconfirmable or 'no confirmation run'}"
            continue
        table.loc[index, "retimed_change"] = found.change
        retimed = f"re-timed alternately: {found.change:+.1%} (noise {found.noise:.1%})"
        table.loc[index, "confirmation"] = retimed
        if not found.confirmed:
            table.loc[index, "verdict"] = (
                f"not confirmed: {table.loc[index, 'change']:+.1%} between the runs, {retimed}"
            )
    return table


def has_regression(table: pd.DataFrame) -> bool:
    return table["verdict"].str.startswith("REGRESSION").any()


def missing_cases(table: pd.DataFrame) -> pd.DataFrame:
    """The base's cases the new run does not have: a gate that passed them would pass an empty run."""
    return table[table["verdict"] == "only in base"]


def readable_seconds(seconds: object) -> str:
    """A time in the unit that keeps three significant digits readable: 812 µs, 4.25 ms, 1.30 s."""
    if not isinstance(seconds, int | float) or pd.isna(seconds):
        return ""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def summary(table: pd.DataFrame, differences: list[str], strength: str = "") -> dict[str, object]:
    """The comparison for a machine: verdict counts, the regressions and missing cases by case id, what
    differs between the machines, and the exit status `serbench compare` returns."""
    regressions = table[table["verdict"].str.startswith("REGRESSION")]
    missing = missing_cases(table)
    return {
        "verdicts": table["verdict"].str.split(":").str[0].value_counts().to_dict(),
        "regressions": [
            {"case": case_id(row), "verdict": row["verdict"], "change": row["change"], **_confirmation(row)}
            for _, row in regressions.iterrows()
        ],
        "missing": [case_id(row) for _, row in missing.iterrows()],
        "not_confirmed": [
            {"case": case_id(row), "verdict": row["verdict"], **_confirmation(row)}
            for _, row in table[table["verdict"].str.startswith("not confirmed")].iterrows()
        ],
        "machine_differences": differences,
        "evidence": strength,
        "exit_status": 1 if len(regressions) or len(missing) else 0,
    }


def _confirmation(row: pd.Series) -> dict[str, object]:
    text, change = row.get("confirmation", ""), row.get("retimed_change", np.nan)
    found: dict[str, object] = {"confirmation": text} if isinstance(text, str) and text else {}
    return found | ({"retimed_change": float(change)} if not pd.isna(change) else {})


def render(table: pd.DataFrame, show_all: bool = False) -> str:
    quiet = (table["verdict"] == "same") | table["verdict"].str.startswith("not timed")
    shown = table if show_all else table[~quiet]
    counts = table["verdict"].str.split(":").str[0].value_counts().to_dict()
    view = shown.assign(
        median_s_base=shown["median_s_base"].map(readable_seconds),
        median_s_new=shown["median_s_new"].map(readable_seconds),
        change=shown["change"].map(lambda v: "" if pd.isna(v) else f"{v:+.1%}"),
        noise=shown["noise"].map(lambda v: "" if pd.isna(v) else f"{v:.1%}"),
        **({"p": shown["p"].map(lambda v: "" if pd.isna(v) else f"{v:.2g}")} if "p" in shown else {}),
    ).rename(columns={"median_s_base": "median base", "median_s_new": "median new"})
    body = markdown.table(view, empty="(no differences)")
    return f"{body}\n\nsummary: {counts}"
