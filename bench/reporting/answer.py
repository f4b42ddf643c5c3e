"""The short answer to "which format for *my* checkpoint, on this machine?" (`serbench bench`).

Built from the run's own rows for one workload. Speed answers are decided comparisons
(`bench.reporting.decisions`): the fastest exact load warm and cold (CPU), onto a GPU where one was timed, and
the fastest among the formats safe for files from others, each a ranking with intervals ("A, 1.6x [1.3-1.9]
faster than the next, B", or a tie), every candidate with its trust label. The smallest exact file and the
lowest peak memory are single measurements, so they are picks. Safe for files from others are the exact
formats whose reader runs no code and parses no pickle (`FormatSpec.executes_code`, `FormatSpec.unpickles`),
every one checked by the trust gate before parsing. A format that did not give the checkpoint back exactly
is listed with how many tensors changed and how (the full list is in the report); one that only sorted its
keys counts as exact, because a state_dict is loaded by name.
"""

from __future__ import annotations

import pandas as pd

from bench.markdown import escape
from bench.reporting.decisions import Answer, exact_rows, fastest, label, trust_tag
from bench.reporting.figures import size
from bench.reporting.trust import Verdicts, reads_untrusted
from bench.timing.results import baseline_rows

SHOWN_CHANGES = 3
"""How many of a not-exact format's changed tensors the answer names (the report lists them all)."""


def answers(frame: pd.DataFrame, workload: str, trust: Verdicts | None = None) -> list[Answer]:
    """The decided speed answers for the rows of `workload` (threads 1 where timed): warm, cold, GPU, safe."""
    trust = trust or Verdicts()
    rows = _rows(frame, workload)
    loads = rows[(rows["status"] == "ok") & (rows["op"] == "load")]
    exact = _exact(loads)
    cpu = exact[exact["device"] == "cpu"]
    found = [
        fastest(cpu[cpu["cache"] == "warm"], "fastest exact load, warm page cache", trust),
        fastest(cpu[cpu["cache"] == "cold"], "fastest exact load, cold", trust),
    ]
    cuda = exact[(exact["device"] == "cuda") & (exact["cache"] == "warm")]
    if not cuda.empty:
        found.append(fastest(cuda, "fastest exact load onto the GPU, warm", trust))
    untrusted_ok = pd.Series([bool(reads_untrusted(r.framework, r.format)) for r in cpu.itertuples()], index=cpu.index)
    safe = cpu[(cpu["cache"] == "warm") & untrusted_ok]
    found.append(fastest(safe, "fastest exact load safe for untrusted files, warm", trust))
    return found


def _rows(frame: pd.DataFrame, workload: str) -> pd.DataFrame:
    rows = frame[(frame["workload"] == workload) & ~baseline_rows(frame)]
    if "1" in set(rows["threads"].astype(str)):
        rows = rows[rows["threads"].astype(str) == "1"]
    return rows


def _exact_formats(rows: pd.DataFrame) -> set[tuple[str, str]]:
    """(framework, format) of the formats whose warm CPU load gave the checkpoint back exactly, by name."""
    warm = rows[(rows["status"] == "ok") & (rows["op"] == "load") & (rows["device"] == "cpu")]
    warm = warm[warm["cache"] == "warm"]
    by_name = exact_rows(warm)
    return {(r["framework"], r["format"]) for _, r in warm[by_name].iterrows()}


def _exact(subset: pd.DataFrame, formats: set[tuple[str, str]] | None = None) -> pd.DataFrame:
    formats = _exact_formats(subset) if formats is None else formats
    keys = zip(subset["framework"], subset["format"], strict=True)
    return subset[pd.Series([key in formats for key in keys], index=subset.index, dtype=bool)]


def changes(roundtrip: str, shown: int = SHOWN_CHANGES) -> str:
    """A round trip's drift as a count and a few full entries: 'drift in 53 tensors, e.g. root['a.b']: dtype
    bfloat16 -> |V2; ...' instead of one line of kilobytes with names cut short."""
    kind, _, detail = str(roundtrip).partition(": ")
    entries = [entry.strip() for entry in detail.split("; ") if entry.strip()]
    if len(entries) <= shown:
        return str(roundtrip)
    return f"{kind} in {len(entries)} places, e.g. {'; '.join(entries[:shown])}; all of them in the report"


def checkpoint_answer(frame: pd.DataFrame, workload: str, trust: Verdicts | None = None) -> list[str]:
    """One line per question, for the rows of `workload` (threads 1 where timed)."""
    trust = trust or Verdicts()
    rows = _rows(frame, workload)
    ok = rows[rows["status"] == "ok"]
    formats = _exact_formats(rows)
    lines = [answer.line for answer in answers(frame, workload, trust)]
    if rows[(rows["device"] == "cuda") & (rows["status"] == "ok")].empty:
        unavailable = rows[(rows["device"] == "cuda") & (rows["status"] == "unavailable")]
        reasons = unavailable.drop_duplicates("framework")
        notes = [str(note).removeprefix("unavailable: ") for note in reasons["note"]]
        if not notes:
            lines.append("GPU: not timed (no cuda case selected)")
        else:
            example = next((note for note in notes if note.startswith("torch")), notes[0])
            which = ", ".join(reasons["framework"])
            lines.append(f"GPU: not timed, no framework can use one here ({which}), e.g. {example}")
    saves = _exact(ok[ok["op"] == "save"], formats)
    if not saves.empty:
        smallest = saves.loc[saves["file_bytes"].idxmin()]
        payload = smallest["payload_bytes"]
        lines.append(
            f"smallest exact file: {label(smallest)}{trust_tag(trust, smallest)}, {size(smallest['file_bytes'])} "
            f"({smallest['file_bytes'] / payload:.3f}x the {size(payload)} of tensors)"
        )
    cpu_warm = ok[(ok["op"] == "load") & (ok["device"] == "cpu") & (ok["cache"] == "warm")]
    memory = _exact(cpu_warm, formats).dropna(subset=["peak_rss_multiple"])
    if not memory.empty:
        leanest = memory.loc[memory["peak_rss_multiple"].idxmin()]
        multiple = leanest["peak_rss_multiple"]
        lines.append(
            f"lowest peak memory of a load: {label(leanest)}{trust_tag(trust, leanest)}, {multiple:.2f}x the payload"
        )
    else:
        lines.append("peak memory: not measured (it is, for checkpoints of 16 MiB and more, unless --no-peak-memory)")
    safe = sorted(_label_of(*key) for key in formats if reads_untrusted(*key))
    trusted_only = sorted(_label_of(*key) for key in formats if reads_untrusted(*key) is False)
    lines.append(
        "safe for untrusted files (no code runs, no pickle is parsed, sizes checked before parsing): "
        + (", ".join(safe) or "none of the exact formats")
    )
    if trusted_only:
        lines.append("only for files you trust (pickle): " + ", ".join(trusted_only))
    changed = cpu_warm[~exact_rows(cpu_warm)]
    for _, row in changed.iterrows():
        lines.append(f"not exact: {label(row)}: {changes(row['roundtrip'])}")
    unsupported = rows[(rows["status"] == "unsupported") & (rows["op"] == "save")]
    timed_loads = {(row["framework"], row["format"]) for _, row in ok[ok["op"] == "load"].iterrows()}
    for _, row in unsupported.iterrows():
        why = str(row["note"]).removeprefix("unsupported: ")[:200]
        if (row["framework"], row["format"]) in timed_loads:  # the format the checkpoint came in (kinds.timed_as_given)
            lines.append(
                f"your own format: {label(row)}: serbench cannot write one ({why}), so your file is timed as you gave "
                "it, loaded as serbench reads it"
            )
        else:
            lines.append(f"cannot hold it: {label(row)}: {why}")
    failed = rows[rows["status"] == "error"]
    if not failed.empty:
        first = failed.drop_duplicates(["framework", "format"])
        notes = [f"{label(row)} {row['op']}: {str(row['note'])[:160]}{_upstream(row)}" for _, row in first.iterrows()]
        lines.append("failed: " + "; ".join(notes))
    return lines


def _upstream(row: pd.Series) -> str:
    """' (upstream, not serbench: ...)' where the failure is a library bug its adapter declares (`Expectation.
    signature`), else ""."""
    import frameworks
    from frameworks.findings import upstream_cause

    if row["framework"] not in frameworks.names():
        return ""
    cause = upstream_cause(frameworks.adapter_class(row["framework"]).findings, row["format"], str(row["note"]))
    return f" (upstream, not serbench: {cause.removeprefix('upstream: ')[:400]})" if cause else ""


def _label_of(framework: str, format_name: str) -> str:
    return f"{format_name} ({framework})"


def answer_section(frame: pd.DataFrame, entries: list[dict], trust: Verdicts | None = None) -> list[str]:
    """The report's section for a `serbench bench` run: what each checkpoint was, and the answer (a format's
    full round-trip changes are in its workload's table below)."""
    sections = ["## Your checkpoints", ""]
    for entry in entries:
        dropped = entry.get("dropped") or []
        lost = f"; {len(dropped)} values (not tensors) were dropped: {', '.join(dropped[:10])}" if dropped else ""
        sections += [
            f"### {escape(entry['name'])}: {escape(entry['source'])}",
            "",
            escape(
                f"{entry.get('tensor_count')} tensors, {size(entry['payload_bytes'])} "
                f"({', '.join(map(str, entry.get('dtypes') or []))}), {entry.get('reader')}{lost}."
            ),
            "",
            *[f"- {escape(line)}" for line in checkpoint_answer(frame, entry["name"], trust)],
            "",
        ]
    return sections
