"""`serbench report RUN_DIR`: tables and plots from a run's stored results; nothing is rerun.

A pure function of `results.csv`, `env.json` and `limits.json`: it writes `report.md`, one CSV
per table and PNG plots beside them, so a report can be regenerated, diffed and compared.

Every figure is printed with its spread: `median [q1-q3] n=R/S` (interquartile range, R rounds
from S samples, a sample being one process's pass). A figure `bench.timing.stats` calls unstable is
printed as `unstable low-high`, its range. Advice and ratios are decided comparisons of the rounds
(`bench.reporting.decisions`, `bench.decide`), with their intervals: a noisy figure widens them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

import frameworks
from bench import markdown
from bench.markdown import escape
from bench.reporting.decisions import Answer, trust_tag
from bench.reporting.figures import (
    NA,
    fraction_figure,
    gbps_figure,
    rate,
    size,
    time_figure,
    unstable,
)
from bench.reporting.trust import Verdicts, verdicts
from bench.timing.results import baseline_rows
from bench.timing.rundir import RunDir
from bench.workloads import read_checkpoints
from frameworks.files import own_directory, write_bytes_atomic

SMALL_BYTES = 1 << 20
"""Below this payload a load's or save's time is per-call overhead: its figures are times, with no GB/s
and no share of a limit (a 32-byte tensor at 0.00005 GB/s says nothing a reader can use)."""


def load_run(run_dir: Path) -> tuple[pd.DataFrame, dict, dict]:
    from bench.timing.results import COLUMNS

    run = RunDir(run_dir)
    run.check_readable()
    frame = run.read_results()
    frame = frame.reindex(columns=list(dict.fromkeys([*COLUMNS, *frame.columns])))
    env = run.read_env(run.env)
    limits = run.read_limits()
    return frame, env, limits


def _pick(rows: pd.DataFrame, op: str, cache: str = "-", device: str = "cpu") -> pd.Series | None:
    match = rows[(rows["op"] == op) & (rows["cache"] == cache) & (rows["device"] == device)]
    return None if match.empty else match.iloc[0]


def _file_ratio(file_bytes: float, payload: float) -> str:
    """'1.000x (+1000 B)': the file against its tensors, and what it adds where it is not smaller (Orbax compresses)."""
    ratio = f"{file_bytes / payload:.3f}x"
    return (
        f"{ratio} (+{size(file_bytes - payload)})" if file_bytes >= payload else f"{ratio} (smaller than its tensors)"
    )


def _cell(row: pd.Series | None, figure: Callable[[pd.Series], str] = gbps_figure) -> str:
    if row is None:
        return NA
    if row["status"] != "ok":
        return str(row["status"])
    return figure(row)


def workload_table(frame: pd.DataFrame, workload: str) -> pd.DataFrame:
    """framework x format for one workload: times (and, from SMALL_BYTES, GB/s and fractions of the
    limits), size, memory, round trip. Formats that cannot hold the workload are left out (`not_held`)."""
    rows = []
    subset = frame[frame["workload"] == workload]
    small = subset["payload_bytes"].max() < SMALL_BYTES
    for (framework, fmt, threads), group in subset.groupby(
        ["framework", "format", "threads"], sort=False, dropna=False
    ):
        if (group["status"] == "unsupported").all():
            continue
        save, warm, cold = _pick(group, "save"), _pick(group, "load", "warm"), _pick(group, "load", "cold")
        open_warm = _pick(group, "open", "warm")
        sized = save if save is not None else warm
        payload = sized["payload_bytes"] if sized is not None else np.nan
        file_bytes = sized["file_bytes"] if sized is not None else np.nan
        row = {"framework": framework, "format": fmt, "threads": threads}
        warm_limit = "fresh memory" if (frame["limit"] == "fresh_copy").any() else "memcpy"
        for name, picked, limit in (
            ("save", save, "disk"),
            ("warm load", warm, warm_limit),
            ("cold load", cold, "disk"),
        ):
            row[name] = _cell(picked, time_figure)
            if not small:
                row[f"{name} GB/s"] = _cell(picked)
                row[f"{name.split()[0]} % {limit}"] = _cell(picked, fraction_figure)
        row |= {
            "lazy open": _cell(open_warm, time_figure) if open_warm is not None else "-",
            "file": size(file_bytes),
            "file ÷ payload": NA
            if pd.isna(file_bytes) or frameworks.is_baseline(framework) or not payload
            else _file_ratio(file_bytes, payload),
            "peak RSS x payload": NA
            if warm is None or pd.isna(warm["peak_rss_multiple"])
            else f"{warm['peak_rss_multiple']:.2f}",
            "round trip": str(warm["roundtrip"]) if warm is not None and warm["status"] == "ok" else NA,
        }
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def not_held(frame: pd.DataFrame, workload: str) -> str:
    """One line naming the formats that cannot hold the workload (every case of theirs `unsupported`)."""
    subset = frame[frame["workload"] == workload]
    names = [
        f"{fmt} ({framework})"
        for (framework, fmt), group in subset.groupby(["framework", "format"], sort=False)
        if (group["status"] == "unsupported").all()
    ]
    kind = subset["kind"].iloc[0] if not subset.empty else "workload"
    return f"Cannot hold a {escape(kind)}, so not timed: {escape(', '.join(dict.fromkeys(names)))}." if names else ""


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
        for (framework, fmt, threads), group in subset.groupby(
            ["framework", "format", "threads"], sort=False, dropna=False
        ):
            if frameworks.is_baseline(framework):
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
                    "threads": threads,
                    "cpu warm GB/s": _cell(cpu),
                    "cuda warm": time_figure(gpu),
                    "cuda warm GB/s": gbps_figure(gpu),
                    "cuda cold GB/s": _cell(gpu_cold),
                    "cuda / cpu time": _ratio_figure(gpu, cpu) if comparable else NA,
                    "cuda % h2d": fraction_figure(gpu),
                    "peak GPU memory x payload": NA
                    if pd.isna(gpu.get("peak_device_multiple"))
                    else f"{gpu['peak_device_multiple']:.2f}",
                    "round trip": str(gpu["roundtrip"]),
                }
            )
    return pd.DataFrame(rows).fillna("")


def _ratio_figure(numerator: pd.Series, denominator: pd.Series) -> str:
    """The cuda load against the cpu load, decided (`bench.decide`): '0.25x [0.21-0.30] (4.00x faster)', or
    'indistinguishable: ...'; the quartiles' range where a run did not record its rounds."""
    from bench import decide
    from bench.timing.results import samples_of

    a, b = samples_of(numerator), samples_of(denominator)
    if a is not None and b is not None:
        decision = decide.decide(a, b)
        shown = f"{decision.ratio:.2f}x [{decision.low:.2f}–{decision.high:.2f}]"
        if decision.verdict in (decide.Verdict.FASTER, decide.Verdict.SLOWER):
            return f"{shown}: cuda {decision.factor} {decision.verdict.value}"
        return f"{shown}: {decision.verdict.value}"
    ratio = f"{numerator['median_s'] / denominator['median_s']:.2f}x"
    if pd.isna(numerator.get("q1_s")) or pd.isna(denominator.get("q1_s")):
        return f"{ratio} (spread not recorded)"
    low, high = numerator["q1_s"] / denominator["q3_s"], numerator["q3_s"] / denominator["q1_s"]
    prefix = "unstable " if unstable(numerator) or unstable(denominator) else ""
    return f"{prefix}{ratio} [{low:.2f}–{high:.2f}x] (quartiles: this run recorded no rounds)"


def untimed_on_gpu(frame: pd.DataFrame) -> list[str]:
    """One line per framework and reason whose cuda loads were not timed."""
    cuda = frame[(frame["device"] == "cuda") & (frame["op"] == "load") & (frame["status"] != "ok")]
    reasons = [_unavailable(row) if row["status"] == "unavailable" else str(row["note"]) for _, row in cuda.iterrows()]
    lines = []
    for (framework, reason), group in cuda.assign(reason=reasons).groupby(["framework", "reason"], sort=False):
        lines.append(f"- {escape(framework)} ({escape(', '.join(dict.fromkeys(group['format'])))}): {escape(reason)}")
    return lines


def _h2d_text(limits: dict) -> str:
    parts = []
    for name in ("h2d_pageable", "h2d_pinned"):
        limit = limits.get(name, {})
        parts.append(
            f"{name}: "
            + (f"{limit['gbps']:.2f} GB/s" if limit.get("gbps") else escape(limit.get("note", "unavailable")))
        )
    return (
        "Host-to-device copy limits measured in this run (a cuda load is compared with the pageable one, since "
        "loaders copy from ordinary host memory): " + "; ".join(parts) + "."
    )


def _advice_threads(frame: pd.DataFrame) -> str | None:
    """The thread setting advice is built on: one thread where it was timed (the reproducible one)."""
    settings = set(frame["threads"].dropna().astype(str))
    return "1" if "1" in settings else (sorted(settings)[0] if settings else None)


def recommendations(frame: pd.DataFrame, trust: Verdicts | None = None) -> pd.DataFrame:
    """Per framework, from the numbers: the fastest exact warm load as a decided ranking of its formats
    (`bench.reporting.decisions`: a pick with its interval against the next, or a tie), the same among the
    formats safe for untrusted files and among all formats whatever their round trip, the smallest file and
    the lowest peak memory (single measurements). "Exact" is by name (`exact_by_name`): a format that only
    sorted a dict's keys gives a state_dict back exactly. Every candidate carries its trust label."""
    trust = trust or Verdicts()
    rows = []

    def pick(row: pd.Series | None, figure: str) -> str:
        return NA if row is None else f"{row['format']}{trust_tag(trust, row)} ({figure})"

    for framework, big, decided in _advised(frame, trust):
        largest = big["payload_bytes"].max()
        loads = big[(big["op"] == "load") & (big["cache"] == "warm") & (big["device"] == "cpu")]
        saves = big[big["op"] == "save"]
        memory = loads.dropna(subset=["peak_rss_multiple"])
        smallest = saves.loc[saves["file_bytes"].idxmin()] if not saves.empty else None
        leanest = memory.loc[memory["peak_rss_multiple"].idxmin()] if not memory.empty else None
        rows.append(
            {
                "framework": framework,
                "measured on": f"{big['workload'].iloc[0]} ({size(largest)})",
                **{question: answer.line for question, answer in decided.items()},
                "smallest file": pick(smallest, size(smallest["file_bytes"]) if smallest is not None else ""),
                "lowest peak memory": pick(
                    leanest, f"{leanest['peak_rss_multiple']:.2f}x payload" if leanest is not None else ""
                ),
            }
        )
    return pd.DataFrame(rows)


def _advised(frame: pd.DataFrame, trust: Verdicts) -> Iterator[tuple[str, pd.DataFrame, dict[str, Answer]]]:
    """Per framework: the rows of its largest workload (CPU rows at the advice's thread setting) and the three
    decided speed answers the advice gives on them."""
    from bench.reporting.decisions import exact_rows, fastest
    from bench.reporting.trust import reads_untrusted

    real = frame[~baseline_rows(frame) & (frame["status"] == "ok")]
    setting = _advice_threads(real)
    if setting is not None:
        real = real[real["threads"].astype(str) == setting]

    def fmt(row: pd.Series) -> str:
        return str(row["format"])

    for framework, group in real.groupby("framework", sort=False):
        big = group[group["payload_bytes"] == group["payload_bytes"].max()]
        loads = big[(big["op"] == "load") & (big["cache"] == "warm") & (big["device"] == "cpu")]
        exact = loads[exact_rows(loads)]
        safe = exact[[bool(reads_untrusted(str(framework), name)) for name in exact["format"]]]
        yield (
            str(framework),
            big,
            {
                "fastest exact load": fastest(exact, "", trust, fmt),
                "fastest exact load safe for untrusted files": fastest(safe, "", trust, fmt),
                "fastest load, any round trip": fastest(loads, "", trust, fmt),
            },
        )


def speed_answers(frame: pd.DataFrame) -> list[Answer]:
    """Every decided speed answer of the advice (what `serbench run --budget` times until decided)."""
    return [answer for _, _, decided in _advised(frame, Verdicts()) for answer in decided.values()]


def console_summary(frame: pd.DataFrame) -> str:
    """A short view for the terminal: save and load of the largest workload per format, CPU, with spread
    (GB/s from SMALL_BYTES, times below)."""
    timed = frame[(frame["status"] == "ok") & (frame["device"] == "cpu")]
    if timed.empty:
        return "no timed rows"
    largest = timed.loc[timed["payload_bytes"] == timed["payload_bytes"].max()].copy()
    payload = largest["payload_bytes"].iloc[0]
    rate = payload >= SMALL_BYTES
    column = "GB/s [IQR]" if rate else "time [IQR]"
    largest[column] = [
        gbps_figure(row) if rate and row["op"] != "open" else time_figure(row) for _, row in largest.iterrows()
    ]
    view = largest.set_index(["framework", "format", "threads", "op", "cache"])[[column]]
    return f"{column.split()[0]} for {largest['workload'].iloc[0]} ({size(payload)}):\n" + view.to_string()


def harness_overhead(frame: pd.DataFrame) -> str:
    null = frame[
        baseline_rows(frame) & (frame["workload"] == "d2l-tensor") & (frame["op"] == "load") & (frame["status"] == "ok")
    ]
    loads = frame[
        ~baseline_rows(frame) & (frame["op"] == "load") & (frame["status"] == "ok") & (frame["device"] == "cpu")
    ]
    if null.empty or loads.empty:
        return "Harness overhead: not measured in this run."
    per_call = null.loc[null["median_s"].idxmin()]
    largest = loads[loads["payload_bytes"] == loads["payload_bytes"].max()]
    fastest = largest.loc[largest["median_s"].idxmin()]
    return (
        f"Harness overhead: {time_figure(per_call)} per call (null adapter on a 32-byte tensor), "
        f"{per_call['median_s'] / fastest['median_s']:.3%} of the fastest load of {largest['workload'].iloc[0]} "
        f"({time_figure(fastest)})."
    )


def _markdown(frame: pd.DataFrame) -> str:
    return markdown.table(frame)


def environment_block(env: dict, limits: dict) -> str:
    fs = env.get("filesystem", {})
    thp = env.get("transparent_huge_pages") if isinstance(env.get("transparent_huge_pages"), dict) else {}
    lines = [
        f"- date: {escape(env.get('date'))}, commit: {markdown.code(env.get('git_commit'))}",
        f"- machine: {escape(env.get('cpu'))}, {escape(env.get('cores_logical'))} logical cores, "
        f"{size(env.get('ram_bytes', np.nan))} RAM; kernel {escape(env.get('kernel'))}; "
        f"Python {escape(env.get('python'))}",
        f"- GPU: {escape(env.get('gpu'))}",
        f"- filesystem of the results: {escape(fs.get('type'))} on {escape(fs.get('device', '?'))} "
        f"({escape(fs.get('mountpoint', '?'))})",
        f"- transparent huge pages: {escape(thp.get('enabled', '?'))} (defrag: {escape(thp.get('defrag', '?'))})"
        if thp
        else "- transparent huge pages: not recorded (the run predates that field)",
        "- versions: " + escape(", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())),
        _environments_line(env),
        _threads_line(env),
        _page_reporting_line(env),
        _machine_line(env),
        "",
        "Limits measured in this run (best round; the ceiling each figure is compared with):",
        "",
        *_fresh_memory_line(limits),
        pd.DataFrame(
            [
                {
                    "limit": name,
                    "GB/s": rate(item.get("gbps")) if item.get("gbps") is not None else "unavailable",
                    "buffer": size(item.get("bytes")),
                    "how": item.get("note"),
                }
                for name, item in limits.items()
            ]
        ).pipe(markdown.table),
    ]
    return "\n".join(lines)


def _fresh_memory_line(limits: dict) -> list[str]:
    """Why warm loads are read against fresh_copy, not memcpy, in one line (and a blank one after it)."""
    fresh, memcpy = (limits.get(name, {}).get("gbps") for name in ("fresh_copy", "memcpy"))
    if not fresh or not memcpy:
        return [
            "Warm loads are compared with memcpy of a pre-faulted buffer (the run predates the fresh_copy limit).",
            "",
        ]
    return [
        f"A loader returns new memory, so warm CPU loads are read against fresh_copy ({rate(fresh)} GB/s), a copy "
        f"into newly mapped pages, not memcpy into faulted ones ({rate(memcpy)} GB/s): the {memcpy / fresh:.1f}x gap "
        "is what faulting fresh memory costs here.",
        "",
    ]


def _environments_line(env: dict) -> str:
    record = env.get("environments")
    if not isinstance(record, dict) or not record:
        return "- environments: one interpreter for every framework (the run predates per-framework environments)"
    parts = [
        f"{escape(name)}: {escape(item.get('frameworks'))} ({escape(item.get('lock'))})"
        for name, item in record.items()
    ]
    return "- environments (versions of another one are marked `[name]`): " + "; ".join(parts)


def _threads_line(env: dict) -> str:
    record = env.get("threads")
    if not record:
        return "- threads: not recorded (the run predates the threads axis: the frameworks' defaults)"
    parts = []
    for framework, settings in record.items():
        for setting, effect in settings.items():
            shown = ", ".join(f"{k}={v}" for k, v in (effect or {}).items() if v != "unset") or "framework defaults"
            parts.append(f"{escape(framework)} {markdown.code(setting)}: {escape(shown)}")
    return "- threads in effect: " + "; ".join(parts)


def _page_reporting_line(env: dict) -> str:
    state = env.get("page_reporting")
    if not state:
        return "- free page reporting (VM balloon): not recorded (the run predates that field)"
    if state.get("paused"):
        return (
            f"- free page reporting (VM balloon): paused for this run ({escape(state.get('device'))} unbound, "
            "rebound after)"
        )
    status = "ACTIVE" if state.get("active") else "not active"
    return f"- free page reporting (VM balloon): {status}: {escape(state.get('note'))}"


def _machine_line(env: dict) -> str:
    record = env.get("machine")
    if not record:
        return "- machine during the run: not recorded (the run predates that field)"
    verdict = "BUSY: " + escape("; ".join(record.get("warnings") or [])) if record.get("busy") else "quiet"
    load = (record.get("load_average_start") or [float("nan")])[0]
    return (
        f"- machine during the run: {verdict} (other processes {record.get('other_cpu_fraction', float('nan')):.1%} "
        f"of the CPUs, steal {record.get('steal_fraction', float('nan')):.1%}, load average {load:.2f} at the start)"
    )


def reading_guide(frame: pd.DataFrame) -> str:
    timed = frame[frame["status"] == "ok"]
    unstable = timed[timed["stability"] == "unstable"]
    waited = pd.to_numeric(timed["rounds_waited"], errors="coerce").fillna(0)
    return (
        "Each figure is `median [q1–q3] n=R/S`: the interquartile range of R rounds pooled from S samples "
        "(a sample is one process's pass over the cases; passes spread a case's rounds over the run). "
        "A figure whose rounds span more than 1.5x, whose IQR exceeds 20% of its median, or whose sample "
        "medians span more than 1.5x is shown as `unstable low–high` (min–max under 20 rounds, 5th–95th "
        "percentile from 20); advice compares the rounds themselves, so such a figure gives a wide interval. "
        f"In this run {len(unstable)} of {len(timed)} timed figures are unstable; "
        f"{int((waited > 0).sum())} figures had rounds that waited for a CPU ({int(waited.sum())} rounds: left out "
        "of their figure, unless they were most of its rounds, which then says the machine was busy)."
    )


def safety_section(run_dir: Path) -> list[str]:
    """The safety table when the run directory holds one (`serbench safety --out RUN_DIR`), else a pointer."""
    from bench.safety.runner import read_safety, safety_markdown

    source = Path(run_dir) / "safety.csv"
    if not os.path.lexists(source):
        return [
            "## Safety",
            "",
            "Not measured in this run: `serbench safety --out " + str(run_dir) + "` adds it; "
            "the committed reference is `results/reference-safety/safety.md`.",
            "",
        ]
    table = safety_markdown(read_safety(source)).replace("## ", "### ")
    return ["## Safety", "", table, ""]


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    write_bytes_atomic(path, table.to_csv(index=False).encode())


RESERVED_TABLES = frozenset({"recommendations", "gpu_vs_cpu"})
"""Tables the report writes under its own names: a workload named so gets a digest, never their file."""


def safe_file_name(name: str) -> str:
    """A workload's name as a file name: letters, digits, '.', '_' and '-' only, never hidden or a path, with a
    digest of the name when anything was replaced (two names never share a file)."""
    import hashlib

    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".")[:100] or "workload"
    if cleaned == name and name not in RESERVED_TABLES:
        return cleaned
    return f"{cleaned}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def write_report(run_dir: Path) -> Path:
    """Write report.md, tables/*.csv and plots/*.png into `run_dir`, holding its lock (a run or another report
    writing there is refused); returns the report path."""
    run_dir = Path(run_dir)
    RunDir(run_dir).check_readable()
    with RunDir(run_dir).locked():
        return _write_report(run_dir)


def _write_report(run_dir: Path) -> Path:
    from bench.reporting import plots

    frame, env, limits = load_run(run_dir)
    tables_dir, plots_dir = own_directory(RunDir(run_dir).tables), own_directory(RunDir(run_dir).plots)
    sections = [f"# serbench report: {escape(run_dir.name)}", ""]
    if RunDir(run_dir).checkpoints.exists():
        from bench.reporting.answer import answer_section

        entries = read_checkpoints(RunDir(run_dir).checkpoints)
        sections += answer_section(frame, entries, verdicts(run_dir))
    trust = verdicts(run_dir)
    advice = recommendations(frame, trust)
    sections += [
        "## Environment",
        "",
        environment_block(env, limits),
        "",
        "## How to read the figures",
        "",
        reading_guide(frame),
        "",
        harness_overhead(frame),
        "",
        "## Which format should I use?",
        "",
        "Derived from the figures below (largest workload of the run, CPU, one thread where timed). A speed "
        "answer is a decided comparison of the rounds (`bench.decide`): the fastest format with how much faster "
        "it is than the next, with its 95% interval, or the formats that tie; a noisy figure gives a wide "
        "interval, never a pick it cannot support. Exact means every tensor back bit for bit by name (a format "
        "that sorts a dict's keys still gives a state_dict back). "
        f"Trust: each format's loader as {trust.source} judges it (`serbench safety`), in brackets.",
        "",
        _markdown(advice),
        "",
    ]
    _write_csv(advice, tables_dir / "recommendations.csv")
    real = frame[~baseline_rows(frame)]
    workloads_in_run = real.sort_values("payload_bytes", kind="stable")["workload"].unique()
    for workload in workloads_in_run:
        table = workload_table(frame, workload)
        kind = frame.loc[frame["workload"] == workload, "kind"].iloc[0]
        payload = frame.loc[frame["workload"] == workload, "payload_bytes"].max()
        _write_csv(table, tables_dir / f"{safe_file_name(workload)}.csv")
        sections += [f"## {escape(kind)}: {escape(workload)} ({size(payload)})", ""]
        if payload < SMALL_BYTES:
            sections += [f"Times only: below {size(SMALL_BYTES)} a figure is per-call overhead, not throughput.", ""]
        sections += [_markdown(table), ""]
        held = not_held(frame, workload)
        sections += [held, ""] if held else []
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
    _write_csv(gpu, tables_dir / "gpu_vs_cpu.csv")
    sections += safety_section(run_dir)
    figures = plots.draw_all(frame, limits, plots_dir)
    sections += ["## Plots", ""] + [f"![{name}](plots/{name}.png)" for name in figures] + [""]
    report = RunDir(run_dir).report
    write_bytes_atomic(report, "\n".join(sections).encode())
    return report
