"""The short answer to "which format for *my* checkpoint, on this machine?" (`serbench bench`).

Built from the run's own rows for one workload: the fastest exact load (warm and cold, CPU, stable
figures only; an unstable figure is named, never chosen), the smallest exact file, the lowest peak
memory, the fastest exact load onto a GPU where one was timed, and which of the exact formats are safe
for files from others: those whose reader runs no code and parses no pickle (the adapters declare it:
`FormatSpec.executes_code`, `FormatSpec.unpickles`), every one of them checked by the trust gate before
parsing. A format that did not give the checkpoint back exactly is listed with what changed; one that
only sorted its keys counts as exact, because a state_dict is loaded by name.
"""

from __future__ import annotations

import pandas as pd

from bench.conformance.roundtrip import exact_by_name
from bench.markdown import escape
from bench.reporting.report import SMALL_BYTES, _bytes, gbps_figure, time_figure
from bench.reporting.trust import reads_untrusted
from bench.timing.results import baseline_rows


def _label(row: pd.Series) -> str:
    return _label_of(row["framework"], row["format"])


def _fastest(rows: pd.DataFrame, what: str) -> str:
    unstable = rows["stability"] == "unstable"
    stable, left_out = rows[~unstable], rows[unstable]
    if stable.empty:
        return f"{what}: no stable figure" + (f" ({len(left_out)} unstable)" if len(left_out) else "")
    best = stable.loc[stable["median_s"].idxmin()]
    rate = f" ({gbps_figure(best)} GB/s)" if best["payload_bytes"] >= SMALL_BYTES else ""
    line = f"{what}: {_label(best)}, {time_figure(best)}{rate}"
    faster = left_out[left_out["low_s"] < best["median_s"]]
    if not faster.empty:
        line += "; left out as unstable: " + ", ".join(f"{_label(r)} {time_figure(r)}" for _, r in faster.iterrows())
    return line


def checkpoint_answer(frame: pd.DataFrame, workload: str) -> list[str]:
    """One line per question, for the rows of `workload` (threads 1 where timed)."""
    rows = frame[(frame["workload"] == workload) & ~baseline_rows(frame)]
    if "1" in set(rows["threads"].astype(str)):
        rows = rows[rows["threads"].astype(str) == "1"]
    ok = rows[rows["status"] == "ok"]
    loads = ok[ok["op"] == "load"]
    cpu_warm = loads[(loads["device"] == "cpu") & (loads["cache"] == "warm")]
    # a checkpoint is a state_dict, loaded by name: a format that sorts its keys gives it back exactly
    by_name = cpu_warm["roundtrip"].astype(str).map(exact_by_name)
    exact_formats = {(r["framework"], r["format"]) for _, r in cpu_warm[by_name].iterrows()}

    def exact(subset: pd.DataFrame) -> pd.DataFrame:
        keys = zip(subset["framework"], subset["format"], strict=True)
        return subset[pd.Series([key in exact_formats for key in keys], index=subset.index, dtype=bool)]

    lines = [
        _fastest(exact(cpu_warm), "fastest exact load, warm page cache"),
        _fastest(exact(loads[(loads["device"] == "cpu") & (loads["cache"] == "cold")]), "fastest exact load, cold"),
    ]
    cuda = exact(loads[loads["device"] == "cuda"])
    if not cuda.empty:
        lines.append(_fastest(cuda[cuda["cache"] == "warm"], "fastest exact load onto the GPU, warm"))
    else:
        unavailable = rows[(rows["device"] == "cuda") & (rows["status"] == "unavailable")]
        reasons = unavailable.drop_duplicates("framework")
        notes = [str(note).removeprefix("unavailable: ") for note in reasons["note"]]
        if not notes:
            lines.append("GPU: not timed (no cuda case selected)")
        else:
            example = next((note for note in notes if note.startswith("torch")), notes[0])
            which = ", ".join(reasons["framework"])
            lines.append(f"GPU: not timed, no framework can use one here ({which}), e.g. {example}")
    saves = exact(ok[ok["op"] == "save"])
    if not saves.empty:
        smallest = saves.loc[saves["file_bytes"].idxmin()]
        payload = smallest["payload_bytes"]
        lines.append(
            f"smallest exact file: {_label(smallest)}, {_bytes(smallest['file_bytes'])} "
            f"({smallest['file_bytes'] / payload:.3f}x the {_bytes(payload)} of tensors)"
        )
    memory = exact(cpu_warm).dropna(subset=["peak_rss_multiple"])
    if not memory.empty:
        leanest = memory.loc[memory["peak_rss_multiple"].idxmin()]
        multiple = leanest["peak_rss_multiple"]
        lines.append(f"lowest peak memory of a load: {_label(leanest)}, {multiple:.2f}x the payload")
    else:
        lines.append("peak memory: not measured (it is, for checkpoints of 16 MiB and more, unless --no-peak-memory)")
    safe = sorted(_label_of(*key) for key in exact_formats if reads_untrusted(*key))
    trusted_only = sorted(_label_of(*key) for key in exact_formats if reads_untrusted(*key) is False)
    lines.append(
        "safe for untrusted files (no code runs, no pickle is parsed, sizes checked before parsing): "
        + (", ".join(safe) or "none of the exact formats")
    )
    if trusted_only:
        lines.append("only for files you trust (pickle): " + ", ".join(trusted_only))
    changed = cpu_warm[~by_name]
    for _, row in changed.iterrows():
        lines.append(f"not exact: {_label(row)}: {row['roundtrip']}")
    unsupported = rows[(rows["status"] == "unsupported") & (rows["op"] == "save")]
    for _, row in unsupported.iterrows():
        lines.append(f"cannot hold it: {_label(row)}: {str(row['note']).removeprefix('unsupported: ')[:200]}")
    failed = rows[rows["status"] == "error"]
    if not failed.empty:
        first = failed.drop_duplicates(["framework", "format"])
        notes = [f"{_label(row)} {row['op']}: {str(row['note'])[:160]}" for _, row in first.iterrows()]
        lines.append("failed: " + "; ".join(notes))
    return lines


def _label_of(framework: str, format_name: str) -> str:
    return f"{format_name} ({framework})"


def answer_section(frame: pd.DataFrame, entries: list[dict]) -> list[str]:
    """The report's section for a `serbench bench` run: what each checkpoint was, and the answer."""
    sections = ["## Your checkpoints", ""]
    for entry in entries:
        dropped = entry.get("dropped") or []
        lost = f"; {len(dropped)} values (not tensors) were dropped: {', '.join(dropped[:10])}" if dropped else ""
        sections += [
            f"### {escape(entry['name'])}: {escape(entry['source'])}",
            "",
            escape(
                f"{entry.get('tensor_count')} tensors, {_bytes(entry['payload_bytes'])} "
                f"({', '.join(map(str, entry.get('dtypes') or []))}), {entry.get('reader')}{lost}."
            ),
            "",
            *[f"- {escape(line)}" for line in checkpoint_answer(frame, entry["name"])],
            "",
        ]
    return sections
