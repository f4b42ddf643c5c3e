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
from bench import decide, markdown
from bench.reporting.compare import KEY, Change, compare, load_any, settle
from bench.reporting.figures import time_figure
from bench.reporting.report import load_run
from bench.safety.runner import read_safety
from bench.timing.results import baseline_rows
from bench.timing.rundir import RunDir
from frameworks import environments, stored
from frameworks.files import own_directory, write_bytes_atomic, write_figure

RECORD = "versions.json"
SAFETY_KEY = ["framework", "format", "mode", "input"]
SPEED_CHANGES = (
    Change.SAME.value,
    Change.FASTER.value,
    Change.SLOWER.value,
    Change.UNDECIDED.value,
    Change.UNSETTLED.value,
)
"""`compare`'s changes of a timed case's speed (decided or not)."""
ALARMS = (Change.FASTER.value, Change.SLOWER.value)
"""A control decided faster or slower is a false alarm: it does not use the package."""
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
        folder = Path(out) / release["label"]
        if "not_installable" not in release and (folder.is_symlink() or not folder.is_dir()):
            raise stored.StoredFileError(
                f"{folder} is {'a symbolic link' if folder.is_symlink() else 'missing'}: a release's run is a "
                f"directory of {out} itself (a link would send its report elsewhere)"
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
        compared = settle(
            compare(load_any(out / first["label"]), load_any(out / record["label"]), interleaved=True), decide.THRESHOLD
        )
        compared[f"{record['version']} vs {first['version']}"] = [
            "" if pd.isna(r.ratio) else f"{r.ratio:.2f}x [{r.low:.2f}–{r.high:.2f}]" for r in compared.itertuples()
        ]
        compared = compared[[*KEY, f"{record['version']} vs {first['version']}", "kind", "verdict"]].rename(
            columns={"kind": f"change {record['version']}", "verdict": f"verdict {record['version']}"}
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
    """Cases some release changed: decided faster or slower, or whose status or round trip changed (a case
    still undecided is not a change; it is counted apart)."""
    changes = [column for column in table if column.startswith("change ")]
    if not changes:
        return pd.Series(False, index=table.index)
    unchanged = [Change.SAME.value, Change.NOT_TIMED.value, Change.UNDECIDED.value, Change.UNSETTLED.value]
    quiet = table[changes].apply(lambda c: c.fillna(Change.SAME.value).isin(unchanged))
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


def is_outcome_change(change: str) -> bool:
    """A `compare` change about what a case does, not how fast: a status or round-trip change."""
    return change in (
        Change.ROUNDTRIP_CHANGED.value,
        Change.ROUNDTRIP_WORSE.value,
        Change.STATUS_BROKE.value,
        Change.NEWLY_TIMED.value,
    )


def _format_change(table: pd.DataFrame) -> pd.DataFrame:
    """The table as shown: the `change` columns (Change values, for counting) left out; the verdicts say it."""
    return table.drop(columns=[column for column in table if column.startswith("change ")])


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
    change_columns = [column for column in speed if column.startswith("change ")]
    compared = sum(int((speed[c].isin(SPEED_CHANGES) & controls).sum()) for c in change_columns)
    alarms = sum(int((speed[c].isin(ALARMS) & controls).sum()) for c in change_columns)
    open_cases = sum(int((speed[c] == Change.UNDECIDED.value).sum()) for c in change_columns)
    unsettled = sum(int((speed[c] == Change.UNSETTLED.value).sum()) for c in change_columns)
    outcomes = speed[speed[change_columns].fillna("").apply(lambda c: c.map(is_outcome_change)).any(axis=1)]
    safety = safety_changes(out, summary)
    tables = own_directory(out / "tables")
    write_bytes_atomic(tables / "versions-speed.csv", speed.to_csv(index=False).encode())
    write_bytes_atomic(tables / "versions-speed.md", markdown.table(_format_change(speed)).encode())
    plotted = largest_loads_plot(out, summary, out / "plots" / "versions-largest-loads.png")
    first = markdown.escape(installed[0]["version"])
    shown = {key: markdown.escape(value) for key, value in summary.items() if isinstance(value, str)}
    shown["frameworks"] = [markdown.escape(name) for name in summary["frameworks"]]
    lines = [
        f"# {shown['package']} releases compared: "
        + markdown.escape(", ".join(release["version"] for release in summary["versions"])),
        "",
        f"Frameworks: {', '.join(shown['frameworks'])} (the {shown['environment']} environment, every other "
        f"package as its lock pins it); preset {shown['preset']}; started {shown['date']}. "
        f"Processes alternated: {shown['order']}.",
        "",
        CROSS_DAY,
        "",
        "## Releases",
        "",
        markdown.table(releases.fillna(""), markup=("run",)),
        "",
        f"## Speed: what changed against {shown['package']} {first}",
        "",
        "The releases' processes alternated, so each case is compared paired, every process of a release against "
        "the process of the first timed next to it (`bench.decide`): the ratio of the medians with its "
        f"{decide.CONFIDENCE:.0%} interval, and a verdict from the interval: slower or faster when the whole "
        f"interval is beyond {decide.THRESHOLD:.0%}, indistinguishable when it lies within it, cannot decide "
        "otherwise. `serbench compare` gives the same verdict for two releases of this run. Every figure is "
        "`median [q1-q3] n=rounds/samples`, or `unstable low-high` where its rounds disagree. Cases of formats "
        "that do not use the package (`FormatSpec.uses`) are controls, counted below this table instead of in it. "
        f"{open_cases} comparisons could not be decided with an estimate beyond {decide.THRESHOLD:.0%}, and "
        f"{unsettled} more could not be decided but are within it by their estimates (more processes per "
        "release would decide them); a directional verdict holds for all the cases together (Bonferroni). "
        f"All {len(speed)} cases: [tables/versions-speed.md](tables/versions-speed.md).",
        "",
        markdown.table(_format_change(changed), empty="No case was decided faster or slower, and no outcome changed."),
        "",
        f"**Controls**: by the same rule, {alarms} of {compared} comparisons of formats that do not use "
        f"{shown['package']} were decided faster or slower. That is this run's false-alarm rate: weigh the "
        "changes above against it (a change no larger and no more frequent than the controls' is not evidence)."
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
