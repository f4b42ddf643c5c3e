"""`serbench compare BASE NEW`: every timed case of two runs (run directories or pytest-benchmark JSON files)
decided by one comparison engine (`bench.decide`): the new time against the base's as a ratio of medians with
its interval, and a verdict from the interval (slower, faster, indistinguishable, or cannot decide yet); and
every correctness change. A regression is a case decided slower beyond the threshold (default 10%), a change
to a worse round trip (exact -> drift -> error), or a status that broke; a case of the base missing from the
new run counts too. Runs of two sittings differ by the machine's drift, so the cases decided slower or not
decided are re-timed, both commits alternately on this machine, until decided (`bench.timing.retime`); where
that cannot be done the case stays undecided, and the gate says so with its own exit status.

Runs whose processes alternated in one run (`serbench versions`) are compared paired, process against the
process timed next to it, and need no re-timing: that is what re-timing would do.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench import decide, markdown
from bench.errors import UsageError
from bench.reporting.figures import seconds
from bench.timing.plan import CASE_KEY, case_id
from bench.timing.results import RAW_CAP, samples_of
from bench.timing.rundir import RunDir
from frameworks import stored

KEY = list(CASE_KEY)
SEVERITY = {"exact": 0, "drift": 1, "unsupported": 1, "error": 2}
COLUMNS = [*KEY, "status", "median_s", "roundtrip", "rounds_s", "rounds_by_process"]


class Change(enum.Enum):
    """What happened to one case between the runs (the `kind` column; `verdict` is its sentence)."""

    SAME = "indistinguishable"
    FASTER = "faster"
    SLOWER = "REGRESSION: slower"
    UNDECIDED = "cannot decide"
    UNSETTLED = "undecided, not slower"
    """Not decided, but its estimate is within the threshold: no sign of a regression (asv's rule: a gate fails
    on a change shown, not on one that a wide interval cannot rule out); counted and shown, exit 0."""
    STATUS_BROKE = "REGRESSION: status"
    ROUNDTRIP_WORSE = "REGRESSION: round trip"
    ROUNDTRIP_CHANGED = "correctness changed"
    ONLY_BASE = "only in base"
    ONLY_NEW = "only in new"
    NOT_TIMED = "not timed"
    NEWLY_TIMED = "newly timed"


REGRESSIONS = frozenset({Change.SLOWER, Change.STATUS_BROKE, Change.ROUNDTRIP_WORSE})
SPEED = {
    decide.Verdict.SLOWER: Change.SLOWER,
    decide.Verdict.FASTER: Change.FASTER,
    decide.Verdict.INDISTINGUISHABLE: Change.SAME,
    decide.Verdict.UNDECIDED: Change.UNDECIDED,
}
EXIT_CLEAN, EXIT_REGRESSION, EXIT_UNDECIDED = 0, 1, 5


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
        return RunDir(source).read_results().reindex(columns=COLUMNS)
    data = _benchmark_json(source)
    rows = []
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        row = {k: info.get(k, "") for k in KEY}
        if not info:
            row.update(framework="", format="", workload=bench.get("fullname", "?"))
        timing = bench["stats"]
        rounds = timing.get("data")
        rows.append(
            {
                **row,
                "status": "ok",
                "median_s": timing["median"],
                "roundtrip": info.get("roundtrip", ""),
                "rounds_s": json.dumps(rounds) if rounds else None,  # one process: pytest-benchmark's own
            }
        )
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if frame.duplicated(subset=KEY).any():
        twice = frame[frame.duplicated(subset=KEY)].iloc[0]
        raise UsageError(f"{source} times the case {case_id(twice)!r} twice: each benchmark needs its own extra_info")
    return frame


def _severity(outcome: object) -> int:
    text = str(outcome) if isinstance(outcome, str) else ""
    return SEVERITY.get(text.split(":")[0], 0) if text else 0


def speed_decision(
    row: pd.Series, threshold: float, confidence: float, interleaved: bool, comparisons: int = 1
) -> decide.Decision | None:
    """The new time against the base's for one merged row, one of `comparisons` decided together
    (`decide.decide_among`; paired where the runs were interleaved and the processes pair up); None where
    either side recorded fewer than 2 rounds."""
    base, new = samples_of(row, "base"), samples_of(row, "new")
    if base is None or new is None:
        return None
    paired = interleaved and [len(group) for group in base] == [len(group) for group in new]
    options = {"threshold": threshold, "confidence": confidence, "paired": paired}
    return decide.decide_among(new, base, comparisons=comparisons, **options)


def compare(
    base: pd.DataFrame,
    new: pd.DataFrame,
    threshold: float = decide.THRESHOLD,
    confidence: float = decide.CONFIDENCE,
    interleaved: bool = False,
) -> pd.DataFrame:
    """One row per case of either run: the medians, the decided ratio new / base with its interval, the change
    (`kind`, a Change value) and the sentence (`verdict`). `interleaved`: the runs' processes alternated in one
    run, so a case whose processes pair up is compared paired."""
    merged = base.merge(new, on=KEY, how="outer", suffixes=("_base", "_new"), indicator=True)
    kinds, verdicts, ratios, lows, highs = [], [], [], [], []
    family = sum(_other_change(row) is None for _, row in merged.iterrows())  # the cases decided on speed
    for _, row in merged.iterrows():
        kind, verdict, decision = _judge(row, threshold, confidence, interleaved, family)
        kinds.append(kind.value)
        verdicts.append(verdict)
        ratios.append(decision.ratio if decision else np.nan)
        lows.append(decision.low if decision else np.nan)
        highs.append(decision.high if decision else np.nan)
    merged = merged.assign(kind=kinds, verdict=verdicts, ratio=ratios, low=lows, high=highs)
    figures = ["median_s_base", "median_s_new", "ratio", "low", "high"]
    return merged[[*KEY, *figures, "roundtrip_base", "roundtrip_new", "kind", "verdict"]].reset_index(drop=True)


def _other_change(row: pd.Series) -> tuple[Change, str] | None:
    """What changed in a case besides its speed (one side only, a status, the round trip); None where both
    timed it with the same round trip, so its speed is what is decided."""
    if row["_merge"] != "both":
        kind = Change.ONLY_BASE if row["_merge"] == "left_only" else Change.ONLY_NEW
        return kind, kind.value
    timed_base, timed_new = row["status_base"] == "ok", row["status_new"] == "ok"
    if not timed_base and not timed_new:
        return Change.NOT_TIMED, f"not timed: {row['status_new']}"
    if not timed_base:
        return Change.NEWLY_TIMED, f"newly timed (was {row['status_base']})"
    if not timed_new:
        return Change.STATUS_BROKE, f"REGRESSION: status ok -> {row['status_new']}"
    before, after = row["roundtrip_base"], row["roundtrip_new"]
    if (before if isinstance(before, str) else "") != (after if isinstance(after, str) else ""):
        worse = _severity(after) > _severity(before)
        kind = Change.ROUNDTRIP_WORSE if worse else Change.ROUNDTRIP_CHANGED
        return kind, f"{'REGRESSION' if worse else 'correctness changed'}: {before} -> {after}"
    return None


def _judge(
    row: pd.Series, threshold: float, confidence: float, interleaved: bool, family: int = 1
) -> tuple[Change, str, decide.Decision | None]:
    if (other := _other_change(row)) is not None:
        return *other, None
    decision = speed_decision(row, threshold, confidence, interleaved, family)
    if decision is None:
        return Change.UNDECIDED, "cannot decide: fewer than 2 rounds recorded on a side", None
    kind = SPEED[decision.verdict]
    return kind, f"{kind.value}: {decision.describe('new', 'base')}", decision


def family_size(table: pd.DataFrame) -> int:
    """How many cases the comparison decided on speed: the family its directional verdicts hold together in."""
    return int(table["ratio"].notna().sum())


def to_retime(table: pd.DataFrame) -> pd.DataFrame:
    """The cases whose speed verdict between two sittings needs re-timing, the most suspect first: those decided
    slower, and those not decided whose estimate is slower than the base (a case not decided but faster by its
    estimate shows no sign of a regression to confirm). Ordered by the low end of the interval (the slowdown
    the runs show at the least), then by the estimate, so that a budget too short for all of them re-times the
    likeliest regressions first: by the estimate alone, tiny noisy cases (a nested save at 2.26x [1.21-3.59])
    went before a real 2x slower 64 MiB load (1.98x [1.60-3.33]). The cases decided slower go first: their low
    end is the joint interval's (all the comparison's cases at once), not comparable with an undecided case's."""
    leaning_slower = (table["kind"] == Change.UNDECIDED.value) & (table["ratio"] > 1)
    decided = table["kind"] == Change.SLOWER.value
    suspects = table[(decided | leaning_slower) & table["ratio"].notna()]
    # decided ones first: their interval is the comparison's joint one, an undecided one's is per case
    order = suspects.assign(_decided=decided[suspects.index])
    return suspects.loc[order.sort_values(["_decided", "low", "ratio"], ascending=False, kind="stable").index]


def settle(table: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The table with each undecided case whose estimate is within the threshold marked UNSETTLED: no sign of a
    regression, so not a reason to fail the gate (it is counted and shown). An undecided case whose estimate
    is beyond the threshold stays UNDECIDED: a slowdown the runs suggest but did not show. So does one the two runs
    decided slower (`kind_between`, kept by `apply_retiming`) whose re-timing did not decide: evidence of a
    slowdown that was neither confirmed nor refuted is not a pass."""
    table = table.copy()
    quiet = (table["kind"] == Change.UNDECIDED.value) & (table["ratio"] <= 1 + threshold)
    if "kind_between" in table:  # decided slower between the runs, and re-timing did not decide: still a suspect
        quiet &= table["kind_between"] != Change.SLOWER.value
    table.loc[quiet, "kind"] = Change.UNSETTLED.value
    table.loc[quiet, "verdict"] = [
        f"{Change.UNSETTLED.value}: its estimate is within {threshold:.0%}; {verdict.removeprefix('cannot decide: ')}"
        for verdict in table.loc[quiet, "verdict"]
    ]
    return table


def apply_retiming(table: pd.DataFrame, decisions: dict[str, decide.Decision], unconfirmable: str = "") -> pd.DataFrame:
    """The table with each re-timed case's verdict replaced by the re-timing's (both commits alternately, here),
    and each case that needed re-timing but got none undecided, with the reason."""
    table = table.copy()
    table["retimed"] = ""
    table["kind_between"] = table["kind"]  # what the two runs alone decided, before any re-timing
    faster = table["kind"] == Change.FASTER.value  # two runs of one commit gave 5 of these, from the machine
    table.loc[faster, "verdict"] = table.loc[faster, "verdict"] + (
        " (between the runs only: a speed-up is not re-timed, and two sittings differ by the machine's drift)"
    )
    for index in to_retime(table).index:
        found = decisions.get(case_id(table.loc[index]))
        between = f"between the runs {table.loc[index, 'ratio']:.2f}x [{table.loc[index, 'low']:.2f}–" + (
            f"{table.loc[index, 'high']:.2f}]"
        )
        if found is None:
            table.loc[index, "kind"] = Change.UNDECIDED.value
            table.loc[index, "verdict"] = f"cannot decide: {between}; not re-timed: {unconfirmable or 'no re-timing'}"
            table.loc[index, "retimed"] = f"not re-timed: {unconfirmable or 'no re-timing'}"
            continue
        kind = SPEED[found.verdict]
        table.loc[index, ["kind", "ratio", "low", "high"]] = [kind.value, found.ratio, found.low, found.high]
        retimed = f"re-timed alternately ({found.processes_b}+{found.processes_a} processes): " + found.describe(
            "new", "base"
        )
        table.loc[index, "verdict"] = f"{kind.value}: {retimed} ({between})"
        table.loc[index, "retimed"] = retimed
    return table


def regressions(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["kind"].isin([change.value for change in REGRESSIONS])]


def has_regression(table: pd.DataFrame) -> bool:
    return not regressions(table).empty


def missing_cases(table: pd.DataFrame) -> pd.DataFrame:
    """The base's cases the new run does not have: a gate that passed them would pass an empty run."""
    return table[table["kind"] == Change.ONLY_BASE.value]


def undecided(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["kind"] == Change.UNDECIDED.value]


def summary(
    table: pd.DataFrame, differences: list[str], strength: str = "", cannot_decide: str = ""
) -> dict[str, object]:
    """The comparison for a machine: counts by change, every regression and undecided case with its interval,
    the missing cases, what differs between the machines, and the exit status `serbench compare` returns:
    1 on a regression or a missing case, else 5 when a case could not be decided (`cannot_decide` says why,
    where one reason holds for all), else 0 (cases UNSETTLED, not decided but not slower by their estimates,
    are counted in `changes` and listed in `unsettled`)."""
    found, missing, open_cases = regressions(table), missing_cases(table), undecided(table)
    status = EXIT_REGRESSION if len(found) or len(missing) else EXIT_UNDECIDED if len(open_cases) else EXIT_CLEAN
    return {
        "changes": table["kind"].value_counts().to_dict(),
        "regressions": [_case(row) for _, row in found.iterrows()],
        "undecided": [_case(row) for _, row in open_cases.iterrows()],
        "unsettled": [case_id(row) for _, row in table[table["kind"] == Change.UNSETTLED.value].iterrows()],
        "cannot_decide": cannot_decide,
        "missing": [case_id(row) for _, row in missing.iterrows()],
        "machine_differences": differences,
        "evidence": strength,
        "exit_status": status,
    }


def _case(row: pd.Series) -> dict[str, object]:
    found: dict[str, object] = {"case": case_id(row), "change": row["kind"], "verdict": row["verdict"]}
    if not pd.isna(row.get("ratio")):
        found |= {"ratio": float(row["ratio"]), "low": float(row["low"]), "high": float(row["high"])}
    if isinstance(row.get("retimed"), str) and row["retimed"]:
        found["retimed"] = row["retimed"]
    return found


def render(table: pd.DataFrame, show_all: bool = False) -> str:
    quiet = table["kind"].isin([Change.SAME.value, Change.NOT_TIMED.value, Change.UNSETTLED.value])
    shown = table if show_all else table[~quiet]
    counts = table["kind"].value_counts().to_dict()
    view = shown.assign(
        median_s_base=shown["median_s_base"].map(seconds),
        median_s_new=shown["median_s_new"].map(seconds),
        ratio=["" if pd.isna(r.ratio) else f"{r.ratio:.2f}x [{r.low:.2f}–{r.high:.2f}]" for r in shown.itertuples()],
    ).rename(columns={"median_s_base": "median base", "median_s_new": "median new", "ratio": "new / base"})
    internal = [column for column in ("retimed", "kind_between") if column in view]  # said in the verdict
    view = view.drop(columns=["low", "high", "kind", *internal])
    body = markdown.table(view, empty="(no differences)")
    return f"{body}\n\nsummary: {counts}"
