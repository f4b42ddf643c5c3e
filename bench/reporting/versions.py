"""OUT/versions.md for `serbench versions` (`bench.version_matrix`): the releases compared, what each
replaced and whether the timed processes really imported it; speed per release with its spread and
its change against the first release (`bench.reporting.compare`, the same noise rule as `serbench
compare`); every round-trip, status and safety outcome that changed. Full tables under OUT/tables/,
a plot of the largest loads under OUT/plots/.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

import frameworks
from bench import markdown
from bench.reporting.compare import INTERLEAVED_ALPHA, KEY, compare, load_any
from bench.reporting.report import load_run, time_figure
from bench.safety.runner import read_safety
from bench.timing.results import baseline_rows
from bench.timing.rundir import RunDir
from frameworks import environments, stored
from frameworks.files import own_directory, write_bytes_atomic, write_figure

RECORD = "versions.json"
SAFETY_KEY = ["framework", "format", "mode", "input"]
SPEED_VERDICTS = ("same", "faster", "REGRESSION: slower")
"""`compare`'s verdicts on a timed case's speed, unchanged first."""
CROSS_DAY = (
    "Figures of this report were timed in one run with the releases' processes interleaved, so the "
    "machine's drift hit each alike. Comparing them with a run of another day is weak evidence: on this "
    "project's VM the same torch.load of the VGG16-shaped dict took 353 ms one day and 265 ms the next "
    "through the same code."
)


LABEL = re.compile(r"[a-z0-9][a-z0-9_+-]*(?:\.[a-z0-9_+-]+)*", re.IGNORECASE)
"""A release's directory name: one plain name inside OUT (never `..`, never a path)."""
RELEASE_SCHEMA = (
    stored.Object(required={"label": str, "package": str, "version": str, "not_installable": str}, extra=True),
    stored.Object(
        required={
            "label": str,
            "package": str,
            "version": str,
            "locked": bool,
            "replaced": stored.ListOf(str),
            "conflicts": stored.ListOf(str),
        },
        extra=True,
    ),
)
RECORD_SCHEMA = stored.Object(
    required={
        "package": str,
        "environment": str,
        "frameworks": stored.ListOf(str),
        "preset": str,
        "date": str,
        "versions": stored.ListOf(RELEASE_SCHEMA, max_items=100),
        "order": str,
    },
    extra=True,
)


def read_record(out: Path) -> dict:
    """OUT/versions.json, checked: its schema, and every release's label a plain directory name in OUT."""
    path = Path(out) / RECORD
    summary = stored.read_json(path, what="versions record", schema=RECORD_SCHEMA, cap=1 << 20)
    for release in summary["versions"]:
        if not LABEL.fullmatch(release["label"]):
            raise stored.StoredFileError(
                f"{path}: the release label {release['label']!r} is not a plain directory name inside {out}"
            )
    return summary


def _installed(summary: dict) -> list[dict]:
    return [record for record in summary["versions"] if "not_installable" not in record]


def imported_versions(env: dict, package: str) -> dict[str, str]:
    """Per framework, the release of `package` its timed processes imported (env.json's versions_in_effect)."""
    wanted = environments.normalize(package)
    found = {}
    for framework, versions in (env.get("versions_in_effect") or {}).items():
        for name, version in versions.items():
            if environments.normalize(name) == wanted:
                found[framework] = version
    return found


def releases_table(out: Path, summary: dict) -> pd.DataFrame:
    rows = []
    for record in summary["versions"]:
        if "not_installable" in record:
            rows.append({"release": record["version"], "timed": f"no: {record['not_installable']}"})
            continue
        env = RunDir.read_env(out / record["label"] / "env.json")
        imported = imported_versions(env, summary["package"])
        wrong = {framework: v for framework, v in imported.items() if v != record["version"]}
        rows.append(
            {
                "release": record["version"],
                "timed": "yes"
                if imported and not wrong
                else f"INVALID: the timed processes imported {wrong or 'nothing'}",
                "installed as": "the environment itself (its lock's pin)"
                if record["locked"]
                else ", ".join(record["replaced"]),
                "pip check": "; ".join(record["conflicts"]) or "no conflicts",
                "run": f"[{record['label']}]({record['label']}/report.md)",
            }
        )
    return pd.DataFrame(rows)


def speed_table(out: Path, summary: dict) -> pd.DataFrame:
    """One row per case: each release's figure with its spread, and each later release's change against
    the first with `compare`'s verdict."""
    installed = _installed(summary)
    first = installed[0]
    runs = {record["label"]: load_run(out / record["label"])[0] for record in installed}
    base_frame = runs[first["label"]]
    table = base_frame[~baseline_rows(base_frame)][KEY].copy()
    for record in installed:
        frame = runs[record["label"]]
        figures = frame[~baseline_rows(frame)].assign(
            figure=lambda f: [time_figure(row) if row["status"] == "ok" else row["status"] for _, row in f.iterrows()]
        )
        table = table.merge(
            figures[[*KEY, "figure"]].rename(columns={"figure": record["version"]}), on=KEY, how="outer"
        )
    for record in installed[1:]:
        compared = compare(load_any(out / first["label"]), load_any(out / record["label"]), interleaved=True)
        compared = compared[[*KEY, "change", "p", "verdict"]].rename(
            columns={
                "change": f"{record['version']} vs {first['version']}",
                "p": f"p {record['version']}",
                "verdict": f"verdict {record['version']}",
            }
        )
        table = table.merge(compared, on=KEY, how="left")
    return table


def is_control(framework: str, fmt: str, package: str) -> bool:
    """Whether a case's format does not use `package` while another format of its framework does
    (`FormatSpec.uses`): its change between releases is the machine's, not the release's."""
    if framework not in frameworks.names():
        return False
    wanted = environments.normalize(package)
    uses = {
        spec.name: {environments.normalize(p) for p in spec.uses} for spec in frameworks.adapter_class(framework).specs
    }
    return any(wanted in used for used in uses.values()) and wanted not in uses.get(fmt, {wanted})


def _changed(table: pd.DataFrame) -> pd.Series:
    verdicts = [column for column in table if column.startswith("verdict ")]
    if not verdicts:
        return pd.Series(False, index=table.index)
    quiet = table[verdicts].apply(lambda c: c.fillna("same").eq("same") | c.fillna("").str.startswith("not timed"))
    return ~quiet.all(axis=1)


def safety_changes(out: Path, summary: dict) -> pd.DataFrame | None:
    """Safety outcomes that differ between releases (None when the run had no safety matrix)."""
    frames = []
    for record in _installed(summary):
        path = out / record["label"] / "safety" / "safety.csv"
        if not path.exists():
            return None
        frame = read_safety(path)[[*SAFETY_KEY, "outcome"]]
        frames.append(frame.rename(columns={"outcome": record["version"]}))
    merged = frames[0]
    for frame in frames[1:]:
        merged = merged.merge(frame, on=SAFETY_KEY, how="outer")
    versions = [record["version"] for record in _installed(summary)]
    differs = merged[versions].fillna("(absent)").nunique(axis=1) > 1
    return merged[differs]


def is_outcome_change(verdict: str) -> bool:
    """A `compare` verdict about what a case does, not how fast: a status or round-trip change."""
    return verdict.startswith(("correctness changed", "newly timed")) or (
        verdict.startswith("REGRESSION") and verdict != "REGRESSION: slower"
    )


def _format_change(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.copy()
    for column in shown:
        if " vs " in column:
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:+.1%}")
        elif column.startswith("p "):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.2g}")
    return shown


def largest_loads_plot(out: Path, summary: dict, path: Path) -> bool:
    """Median time of every format's load of the largest workload (warm, cpu), one bar per release with
    its interquartile range as whiskers. False when nothing was timed."""
    installed = _installed(summary)
    bars = []
    for record in installed:
        frame = load_run(out / record["label"])[0]
        frame = frame[~baseline_rows(frame) & (frame["status"] == "ok") & (frame["op"] == "load")]
        frame = frame[(frame["device"] == "cpu") & (frame["cache"] == "warm")]
        if frame.empty:
            continue
        largest = frame[frame["payload_bytes"] == frame["payload_bytes"].max()]
        for _, row in largest.iterrows():
            bars.append(
                {
                    "case": f"{row['framework']} {row['format']}",
                    "release": record["version"],
                    **row[["median_s", "q1_s", "q3_s"]],
                }
            )
    if not bars:
        return False
    data = pd.DataFrame(bars)
    cases = list(dict.fromkeys(data["case"]))
    releases = [record["version"] for record in installed]
    width = 0.8 / len(releases)
    figure, axes = plt.subplots(figsize=(max(6, 1.2 * len(cases) * len(releases) / 2), 4.5))
    for index, release in enumerate(releases):
        rows = data[data["release"] == release].set_index("case").reindex(cases)
        positions = [i + index * width for i in range(len(cases))]
        axes.bar(
            positions,
            rows["median_s"] * 1e3,
            width,
            yerr=[(rows["median_s"] - rows["q1_s"]) * 1e3, (rows["q3_s"] - rows["median_s"]) * 1e3],
            capsize=3,
            label=f"{summary['package']} {release}",
        )
    axes.set_xticks([i + width * (len(releases) - 1) / 2 for i in range(len(cases))], cases, rotation=30, ha="right")
    axes.set_ylabel("warm load, ms (median, whiskers: IQR)")
    axes.set_title(f"{summary['package']} releases, largest workload, interleaved in one run")
    axes.legend()
    figure.tight_layout()
    own_directory(path.parent)
    write_figure(figure, path)
    plt.close(figure)
    return True


def write_versions_report(out: Path) -> Path:
    out = Path(out)
    summary = read_record(out)
    installed = _installed(summary)
    releases = releases_table(out, summary)
    speed = speed_table(out, summary)
    controls = pd.Series(
        [is_control(row.framework, row.format, summary["package"]) for row in speed.itertuples()], index=speed.index
    )
    changed = speed[_changed(speed) & ~controls]
    false_alarms = speed[_changed(speed) & controls]
    verdict_columns = [column for column in speed if column.startswith("verdict ")]
    compared = sum(int((speed[c].isin(SPEED_VERDICTS) & controls).sum()) for c in verdict_columns)
    alarms = sum(int((speed[c].isin(SPEED_VERDICTS[1:]) & controls).sum()) for c in verdict_columns)
    outcome_columns = [column for column in speed if column.startswith("verdict ")]
    outcomes = speed[speed[outcome_columns].fillna("").apply(lambda c: c.map(is_outcome_change)).any(axis=1)]
    safety = safety_changes(out, summary)
    tables = own_directory(out / "tables")
    write_bytes_atomic(tables / "versions-speed.csv", speed.to_csv(index=False).encode())
    write_bytes_atomic(tables / "versions-speed.md", markdown.table(_format_change(speed)).encode())
    plotted = largest_loads_plot(out, summary, out / "plots" / "versions-largest-loads.png")
    first = installed[0]["version"]
    lines = [
        f"# {summary['package']} releases compared: {', '.join(r['version'] for r in summary['versions'])}",
        "",
        f"Frameworks: {', '.join(summary['frameworks'])} (the `{summary['environment']}` environment, every other "
        f"package as its lock pins it); preset `{summary['preset']}`; started {summary['date']}. "
        f"Processes alternated: {summary['order']}.",
        "",
        CROSS_DAY,
        "",
        "## Releases",
        "",
        markdown.table(releases.fillna(""), markup=("run",)),
        "",
        f"## Speed: what changed against {summary['package']} {first}",
        "",
        "The releases' rounds were interleaved, so they are compared round against round: a change counts when "
        "the medians differ by more than 10%, a rank test of the two releases' rounds (Mann-Whitney U, column "
        f"`p`) gives p < {INTERLEAVED_ALPHA}, and every pair of samples timed next to each other (the same "
        "process and pass of each release) moved the same way; rounds of one process are not independent, hence "
        "the strictness. `serbench compare` applies the same rule between two releases of this run. Every "
        "figure is `median [q1-q3] n=rounds/samples`, or `unstable low-high` where its rounds disagree; a "
        "release can be faster by this rule while both its figures are unstable (a first-touch pass in each). "
        "Cases of formats that do not use the package (`FormatSpec.uses`) are controls, counted below this "
        "table instead of in it. "
        f"All {len(speed)} cases: [tables/versions-speed.md](tables/versions-speed.md).",
        "",
        markdown.table(_format_change(changed), empty="No case changed by this rule."),
        "",
        f"**Controls**: by the same rule, {alarms} of {compared} comparisons of formats that do not use "
        f"{summary['package']} changed. That is this run's false-alarm rate: weigh the changes above against "
        "it (a change no larger and no more frequent than the controls' is not evidence)."
        + ("" if false_alarms.empty else "\n\n" + markdown.table(_format_change(false_alarms))),
        "",
        "## Round-trip and status changes",
        "",
        markdown.table(_format_change(outcomes), empty="No round-trip or status outcome changed."),
        "",
        "## Safety outcome changes",
        "",
    ]
    if safety is None:
        lines.append("Not checked in this run (--no-safety).")
    elif safety.empty:
        lines.append("No safety outcome changed: every hostile or damaged input met the same outcome in every release.")
    else:
        lines.append(markdown.table(safety))
    if plotted:
        lines += ["", "## Largest loads", "", "![largest loads per release](plots/versions-largest-loads.png)"]
    lines += [
        "",
        f"Compare two releases case by case: `serbench compare {installed[0]['label']} {installed[-1]['label']}` "
        "(run from this directory).",
    ]
    report = out / "versions.md"
    write_bytes_atomic(report, ("\n".join(lines) + "\n").encode())
    return report
