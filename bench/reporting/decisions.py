"""Decided answers from a run's rows: which of several timed options is fastest is a ranking of comparisons
(`bench.decide`), each with its interval, never a pick among filtered medians. A wide figure gives a wide
interval and so, honestly, a tie or an undecided answer; no figure is left out for being unstable.

A row's rounds come grouped by the process that timed them (`rounds_by_process`; a run from before that
column has only `rounds_s`, which is taken as one process and says so). Every candidate is named with its
trust label where the safety matrix has one (`bench.reporting.trust`), at its first mention in every answer.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pandas as pd

from bench import decide
from bench.reporting.figures import time_figure
from bench.reporting.trust import Verdicts
from bench.timing.results import samples_of

ONE_PROCESS = "rounds not grouped by process (a run before serbench recorded them): intervals may be too narrow"


def exact_rows(rows: pd.DataFrame) -> pd.Series:
    """Which rows gave their tensors back exactly by name (`exact_by_name`: a format that only sorted a dict's
    keys still gives a state_dict back)."""
    from bench.conformance.roundtrip import exact_by_name

    return rows["roundtrip"].astype(str).map(exact_by_name).astype(bool)


def label(row: pd.Series) -> str:
    return f"{row['format']} ({row['framework']})"


def trust_tag(trust: Verdicts, row: pd.Series) -> str:
    """' [UNSAFE: ...]' or ' [pickle: files you trust only]' where the safety matrix or the format says so."""
    warning = trust.warning(row["framework"], row["format"])
    if not warning:
        return ""
    return f" [{warning}]" if warning.startswith(("UNSAFE", "not robust")) else " [pickle: only for files you trust]"


@dataclass(frozen=True)
class Answer:
    """One decided question: the ranking, the line a person reads, and the rows by candidate name."""

    question: str
    line: str
    ranking: decide.Ranking | None = None
    rows: dict[str, pd.Series] = field(default_factory=dict)
    untimed: tuple[str, ...] = ()

    @property
    def decided(self) -> bool:
        return self.ranking is not None and self.ranking.pick is not None

    @property
    def contenders(self) -> tuple[str, ...]:
        return self.ranking.contenders if self.ranking is not None else ()

    def as_dict(self) -> dict[str, object]:
        """For --json: the question, the line, the pick (or None on a tie), every comparison with its interval."""
        found: dict[str, object] = {"question": self.question, "answer": self.line, "untimed": list(self.untimed)}
        if self.ranking is not None:
            leader = self.ranking.leader
            found |= {
                "pick": self.ranking.pick,
                "contenders": list(self.ranking.contenders),
                "comparisons": [
                    {
                        "a": leader,
                        "b": name,
                        "ratio": decision.ratio,
                        "low": decision.low,
                        "high": decision.high,
                        "confidence": decision.confidence,
                        "verdict": decision.verdict.value,
                    }
                    for name, decision in self.ranking.decisions.items()
                ],
            }
        return found


def fastest(
    rows: pd.DataFrame,
    question: str,
    trust: Verdicts | None = None,
    name: Callable[[pd.Series], str] = label,
    threshold: float = decide.THRESHOLD,
) -> Answer:
    """Rank the timed rows (one option each) by their rounds: 'question: A [trust], 2.10 ms [...]: 1.60x
    [1.30-1.90] faster than the next, B', or the tie, or 'nothing timed'."""
    trust = trust or Verdicts()
    candidates, by_name, untimed, tags = {}, {}, [], {}
    for _, row in rows.iterrows():
        shown, tags[name(row)] = name(row), trust_tag(trust, row)
        samples = samples_of(row)
        if samples is None:
            untimed.append(shown)
            continue
        candidates[shown], by_name[shown] = samples, row
    asked = f"{question}: " if question else ""
    untimed = [shown + tags[shown] for shown in untimed]
    if not candidates:
        return Answer(question, f"{asked}nothing timed", untimed=tuple(untimed))
    if len(candidates) == 1:
        (only,) = candidates
        line = f"{asked}{only}, {time_figure(by_name[only])} (the only one timed)"
        return Answer(question, _tagged(line, tags), None, by_name, tuple(untimed))
    ranking = decide.rank(candidates, threshold=threshold, paired=functools.partial(_side_by_side, by_name))
    figures = "; ".join(f"{shown} {time_figure(by_name[shown])}" for shown in ranking.contenders)
    note = f" ({ONE_PROCESS})" if any(pd.isna(row.get("rounds_by_process")) for row in by_name.values()) else ""
    line = f"{asked}{ranking.describe().removeprefix('fastest: ')} ({figures}){note}"
    if ranking.pick is None and not _tied(ranking):
        line += f"; {UNDECIDED_HINT}"
    return Answer(question, _tagged(line, tags), ranking, by_name, tuple(untimed))


UNDECIDED_HINT = "more --processes, a quieter machine or fewer candidates would decide it"


def _tagged(line: str, tags: dict[str, str]) -> str:
    """The line with each candidate's trust tag after its first mention (once: the line names it again)."""
    for shown, tag in tags.items():
        if tag:
            mention = rf"(?<![\w-]){re.escape(shown)}(?![\w-])"
            line = re.sub(mention, lambda found, tag=tag: found[0] + tag, line, count=1)
    return line


def open_cases(found: Iterable[Answer]) -> set[str]:
    """The case ids of the contenders of every answer not decided yet (neither a pick nor a tie): the cases that
    more processes would decide (`serbench run/bench --budget`)."""
    from bench.timing.plan import case_id

    still: set[str] = set()
    for answer in found:
        if answer.ranking is None or answer.decided or _tied(answer.ranking):
            continue
        still |= {case_id(answer.rows[name]) for name in answer.contenders}
    return still


def _side_by_side(rows: dict[str, pd.Series], a: str, b: str) -> bool:
    """Whether two candidates' rounds were timed in the same processes, pass by pass: the cases of one
    framework and thread setting share its pytest processes (`bench.timing.runner`), each process timing
    every case once per pass. Rows without rounds by process (older runs) are never paired."""
    first, second = rows[a], rows[b]
    same = all(str(first.get(key)) == str(second.get(key)) for key in ("framework", "threads"))
    return same and all(isinstance(row.get("rounds_by_process"), str) for row in (first, second))


def _tied(ranking: decide.Ranking) -> bool:
    return all(ranking.decisions[name].verdict is decide.Verdict.INDISTINGUISHABLE for name in ranking.contenders[1:])
