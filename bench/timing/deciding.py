"""Timing until decided (`serbench run/bench --budget SECONDS`): after a run's planned processes, the cases that
an answer cannot decide yet (two formats whose interval crosses the threshold's edge) are timed again in more
processes, one per framework holding such a case, until every answer is decided or the budget is spent:
BenchmarkDotNet's stopping rule (`bench.decide.until_decided`) applied to whole processes, since rounds of one
process share its offset and only another process narrows what processes differ by.

Which cases are open is the caller's question (the report's and `bench`'s answers live in `bench.reporting`):
`open_cases` takes the run's assembled rows and returns the ids of the contenders still undecided. The extra
processes are ordinary benchmark files of the run (`raw/benchmark-<chunk>-p<N>.json`, their own plan
`decide-plan-<chunk>.json`), so `assemble` pools them like any other; what was done and why it stopped is
`until_decided` in env.json.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import pandas as pd

from bench.timing.plan import Case
from bench.timing.results import assemble
from bench.timing.rundir import RunDir

OpenCases = Callable[[pd.DataFrame], set[str]]
"""The ids of the cases whose answers are not decided yet, from a run's assembled rows."""
MAX_ROUNDS = 12
"""At most this many extra processes per framework: past them a tie is a machine's, not a lack of rounds."""
PLAN = "decide-plan"


@dataclass
class Record:
    budget_s: float
    rounds: int = 0
    """Extra processes per framework holding an open case."""
    processes: int = 0
    seconds: float = 0.0
    open_at_start: int = 0
    open_at_end: int = 0
    stopped: str = ""
    """'decided', 'budget' (the next round would end past it), or 'max rounds'."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        if not self.open_at_start:
            return "every speed answer was decided by the planned processes"
        done = f"{self.processes} more processes in {self.seconds:.0f} s of the {self.budget_s:.0f} s budget"
        if self.stopped == "decided":
            return f"timed until decided: {done}; every answer is decided"
        why = "the budget would not hold another round" if self.stopped == "budget" else "at the most rounds"
        return f"timed until decided: {done}; {self.open_at_end} of {self.open_at_start} cases still undecided ({why})"


def _named(case_ids: list[str], by_id: dict[str, Case], shown: int = 4) -> str:
    """'npz (numpy) warm, npy (numpy) warm, ...': the formats whose comparison is being decided."""
    names = [f"{by_id[case].format} ({by_id[case].framework}) {by_id[case].cache}" for case in case_ids[:shown]]
    return ", ".join(names) + (f" and {len(case_ids) - shown} more" if len(case_ids) > shown else "")


def next_process(run_dir: RunDir, chunk: str) -> int:
    """The first process number of `chunk` with no benchmark file yet."""
    taken = {int(path.stem.rsplit("-p", 1)[1]) for path in run_dir.raw.glob(f"benchmark-{chunk}-p*.json")}
    return max(taken, default=-1) + 1


def until_decided(
    run_dir: RunDir,
    cases: list[Case],
    open_cases: OpenCases,
    budget_s: float,
    run_chunk: Callable[[str, list[Case], int, str], None],
    clock: Callable[[], float] = time.monotonic,
    say: Callable[[str], None] = print,
) -> Record:
    """Time the open cases again, a process per framework per round, while any is open and the budget holds
    another round (the last round's duration says how long one takes). `run_chunk(framework, cases, process,
    plan_name)` times one process into the run directory."""
    record = Record(budget_s)
    by_id = {case.id: case for case in cases}
    start, round_s = clock(), 0.0
    while True:
        still = sorted(set(open_cases(assemble(run_dir.root))) & set(by_id))
        if record.rounds == 0:
            record.open_at_start = len(still)
        record.open_at_end, record.seconds = len(still), clock() - start
        if not still:
            record.stopped = "decided"
            break
        if record.rounds >= MAX_ROUNDS:
            record.stopped = "max rounds"
            break
        if record.seconds + round_s > budget_s:
            record.stopped = "budget"
            break
        began = clock()
        chunks: dict[tuple[str, str], list[Case]] = {}
        for case_id in still:
            case = by_id[case_id]
            chunks.setdefault((case.framework, case.threads), []).append(case)
        left = budget_s - record.seconds
        say(
            f"deciding: timing the {len(still)} undecided cases again ({_named(still, by_id)}), "
            f"{len(chunks)} process(es), {left:.0f} s left"
        )
        for (framework, threads), chunk in chunks.items():
            run_chunk(framework, chunk, next_process(run_dir, RunDir.chunk(framework, threads)), PLAN)
            record.processes += 1
        record.rounds += 1
        round_s = clock() - began
    if record.open_at_start:
        say(record.describe())
    return record
