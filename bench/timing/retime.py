"""Re-timing for `serbench compare`: the cases two runs disagree on (decided slower, or not decided) are timed again
here, the base's code and the new run's code alternately, until each is decided or the budget is spent, as asv
confirms a regression. Two runs of two sittings differ by a machine state no setting inside a VM controls; processes
timed one after the other, alternating, share it.

Each side's source tree is the checkout when a run's commit is HEAD (dirty only if the run was), else a temporary
`git worktree` of that commit. An alternation runs `serbench run` in each tree on the flagged cases alone
(`--cases`; a tree from before that option times their selection), PROCESSES processes each; after every alternation
each case's rounds are decided (`bench.decide.decide_among`: a verdict of slower holds for all the comparison's
cases together), paired process against process (the two timed next to each other), and the cases still undecided
and slower by their estimates are timed again while the budget lasts (by default the two runs' durations together:
re-timing takes no longer than the runs did). The suspect cases go first, the strongest evidence of a slowdown
first; only those whose MIN_ALTERNATIONS fit the budget are started (by the stored run's cost of each, corrected by
what the first alternation took), and the rest are named as left out by the budget. Each re-timed run must record
its own tree's commit, or the figure is refused. A case that cannot be re-timed (a commit that is not here, a run
from uncommitted changes, a user's checkpoint) raises Unconfirmable with the reason and how to fix it.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

import frameworks
from bench import decide, environment, workloads
from bench.live import duration
from bench.timing.plan import PRESETS, case_id
from bench.timing.results import samples_of
from bench.timing.rundir import RunDir
from frameworks import environments

REPO = Path(__file__).resolve().parents[2]
MIN_ALTERNATIONS = 2
"""At least this many alternations (each PROCESSES processes a side) before a re-timed case is decided."""
PROCESSES = 3
"""Processes of each side per alternation: base's k, then new's k, paired in order. One process a side paid a
run's fixed cost (start-up, the machine's limits, the report: 10-14 s) for every pair, and 2 pairs leave
intervals such as 2.20x [0.49-2.74] that decide nothing among 50 cases; k pairs cost one fixed cost."""
MAX_ALTERNATIONS = 8
LOOKS = MAX_ALTERNATIONS - MIN_ALTERNATIONS + 1
"""How many times a case may be decided (after its minimum, then after each further alternation): a verdict of
slower is decided among the comparison's cases times these looks (Bonferroni), since deciding again after every
alternation until one says slower is that many chances of a false alarm."""
FIXED_PRIOR_S = 10.0
"""What a re-timing `serbench run` costs whatever it times, until the first alternation measures it (start-up,
the machine's limits measured twice, the report: 10-14 s for numpy alone on this project's VM). Without it, the
first alternation of a numpy-only gate took 41 s of a 52 s budget and 18 of its 19 cases got no decision."""
RUN_TIMEOUT_S = 1800
COMMIT = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?(?:-dirty)?")
"""What env.json's git_commit must be for re-timing: a full hex object id (SHA-1 or SHA-256), with '-dirty' when
the run's tree differed from it. Anything else (an option such as `--lock`, a ref name, a path) is never given to
git."""


class Unconfirmable(Exception):
    """Why the flagged cases cannot be re-timed here, and what would let them be."""


def _commit(run: Path) -> str:
    commit = RunDir.read_env(RunDir(run).env).get("git_commit")
    if not isinstance(commit, str) or "SERBENCH_GIT_COMMIT" in commit or commit == "unknown":
        raise Unconfirmable(f"{run} does not record the commit its code came from ({str(commit)[:80]!r})")
    if not COMMIT.fullmatch(commit):
        raise Unconfirmable(f"{run}'s env.json records git_commit {commit[:80]!r}, which is not a commit id")
    return commit


def resolve(commit: str, repo: Path) -> str:
    """The full id of `commit` in `repo` if it names a commit there (`git rev-parse --verify --end-of-options
    ID^{commit}`: never read as an option), else Unconfirmable naming the fix."""
    if not COMMIT.fullmatch(commit) or commit.endswith("-dirty"):
        raise Unconfirmable(f"{commit[:80]!r} is not a commit id")
    found = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", "--end-of-options", f"{commit}^{{commit}}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if found.returncode != 0 or found.stdout.strip() != commit:
        raise Unconfirmable(
            f"commit {commit[:12]} is not in {repo}: fetch it (git fetch origin {commit[:12]}) or run compare from a "
            "checkout that has it"
        )
    return commit


@contextlib.contextmanager
def source_tree(commit: str, repo: Path | None = None) -> Iterator[Path]:
    """A tree holding the code of `commit`: the checkout (`REPO`) if it is that commit (dirty only if the run
    was), else a temporary worktree of it, removed afterwards."""
    repo = repo or REPO
    if commit == environment.git_commit(repo):
        yield repo
        return
    if commit.endswith("-dirty"):
        raise Unconfirmable(f"a run was made from uncommitted changes to {commit.removesuffix('-dirty')[:12]}")
    resolve(commit, repo)
    with tempfile.TemporaryDirectory(prefix="serbench-worktree-") as parent:
        tree = Path(parent) / "tree"
        added = subprocess.run(
            ["git", "-C", str(repo), "worktree", "add", "--detach", "--", str(tree), commit],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if added.returncode != 0:
            raise Unconfirmable(f"git could not check out commit {commit[:12]} in a worktree of {repo}")
        try:
            yield tree
        finally:
            subprocess.run(
                ["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)],
                capture_output=True,
                timeout=120,
                check=False,
            )


def selection(flagged: pd.DataFrame) -> list[str]:
    """`serbench run` options whose matrix holds every flagged case."""
    names = list(dict.fromkeys(flagged["workload"]))
    unknown = [name for name in names if name not in workloads.WORKLOADS or name.startswith("user-")]
    if unknown:
        raise Unconfirmable(f"workloads this code does not build (a user's checkpoint is not in a commit): {unknown}")
    chosen = [workloads.WORKLOADS[name] for name in names]
    preset = "quick" if all(name in PRESETS["quick"].workloads for name in names) else "full"

    def joined(values: pd.Series | list[str]) -> str:
        return ",".join(dict.fromkeys(str(value) for value in values))

    real = flagged[[not frameworks.is_baseline(name) for name in flagged["framework"]]]
    # a baseline (the null adapter) runs beside any framework; alone, it needs one to run beside
    chosen_frameworks = ["--frameworks", joined(real["framework"])] if len(real) else ["--frameworks", "numpy"]
    chosen_formats = ["--formats", joined(real["format"])] if len(real) else []
    return [
        f"--{preset}",
        *chosen_frameworks,
        *chosen_formats,
        "--kinds",
        joined([workload.kind for workload in chosen]),
        "--sizes",
        joined([workload.size for workload in chosen]),
        "--devices",
        joined(flagged["device"]),
        "--threads",
        joined(flagged["threads"]),
        "--processes",
        str(PROCESSES),
        "--no-peak-memory",
    ]


def _takes_cases(tree: Path) -> bool:
    """Whether the tree's `serbench run` has --cases (commits before it time the whole selection)."""
    sources = [tree / "bench" / "cli.py", *sorted((tree / "bench" / "cli").glob("*.py"))]  # a module, then a package
    return any(path.is_file() and '"--cases"' in path.read_text(errors="replace") for path in sources)


def _retime(tree: Path, options: list[str], out: Path, pause: bool, commit: str) -> pd.DataFrame:
    command = [sys.executable, "-m", "bench.cli", "run", *options, "--out", str(out)]
    command += ["--pause-page-reporting"] if pause else []
    # the tree's code, this checkout's environments (a worktree has none)
    env = {**environments.child_environment(environments.HOME), "PYTHONPATH": str(tree)}
    result = subprocess.run(
        command, cwd=tree, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise Unconfirmable(f"re-timing in {tree} failed: {last[:300]}")
    ran = RunDir.read_env(RunDir(out).env).get("git_commit")
    if ran != commit:
        raise Unconfirmable(f"the re-timing in {tree} ran the code of {str(ran)[:60]!r}, not of commit {commit[:12]}")
    frame = RunDir(out).read_results()
    timed = frame[frame["status"] == "ok"].copy()
    timed.index = pd.Index([case_id(row) for _, row in timed.iterrows()])
    return timed


def _processes(frame: pd.DataFrame, case: str) -> list[list[float]]:
    """The re-timed rounds of one case in one re-timing run, by process (one process per run)."""
    groups: list[list[float]] = []
    for _, row in frame.loc[frame.index == case].iterrows():
        groups += samples_of(row, minimum=1) or []
    return groups


def case_costs(run: Path, cases: list[str]) -> dict[str, float]:
    """Each case's estimated seconds per re-timing process of one side: its share of the timed seconds of the
    stored run, times the run's duration over its processes (so a case's part of the imports, setup and
    writes is counted as the run spent them). A case the run has no rounds for costs the average one."""
    frame = RunDir(run).read_results()
    totals: dict[str, float] = {}
    processes = 1
    for _, row in frame[frame["status"] == "ok"].iterrows():
        groups = samples_of(row, minimum=1) or []
        totals[case_id(row)] = sum(map(sum, groups))
        processes = max(processes, len(groups))
    timed = sum(totals.values())
    seconds = float((RunDir.read_env(RunDir(run).env).get("machine") or {}).get("seconds") or 0.0)
    if timed <= 0 or seconds <= 0:
        return dict.fromkeys(cases, 0.0)
    average = timed / len(totals)
    return {case: seconds * totals.get(case, average) / timed / processes for case in cases}


def within_budget(costs: list[float], budget_s: float, alternations: int, fixed_s: float = 0.0) -> int:
    """How many of the cases, in order, fit `alternations` alternations in the budget, each alternation two
    `serbench run`s (base, new) that cost `fixed_s` each whatever they time plus the cases' costs; at least
    one."""
    spent, count = 2 * alternations * fixed_s, 0
    for cost in costs:
        spent += 2 * alternations * cost
        if spent > budget_s and count:
            break
        count += 1
    return count


def learn_costs(run_s: float, estimated_s: float) -> tuple[float | None, float]:
    """(scale, fixed) such that one re-timing run of cases the stored run's costs put at `estimated_s` takes
    fixed + scale x estimated_s = `run_s`, as measured. The fixed part (start-up, the machine's limits, the
    report) is never taken below FIXED_PRIOR_S unless the whole run took less: learning it as 0 (a stored run
    that overstated its cases) made dropping cases look like it saved the whole run, and the budget overran.
    scale is None where the stored run gave no costs."""
    fixed = min(run_s, max(FIXED_PRIOR_S, run_s - estimated_s))
    if estimated_s <= 0:
        return None, fixed
    return (run_s - fixed) / estimated_s, fixed


def retime(
    base_run: Path,
    new_run: Path,
    flagged: pd.DataFrame,
    *,
    budget_s: float,
    threshold: float = decide.THRESHOLD,
    confidence: float = decide.CONFIDENCE,
    comparisons: int = 1,
    progress: Callable[[str], None] = lambda text: None,
    clock: Callable[[], float] = time.monotonic,
    pause_page_reporting: bool = False,
) -> tuple[dict[str, decide.Decision], str]:
    """Re-time the flagged cases (the most suspect first), both sides alternately, until decided or the budget
    is spent (module docstring); the decision of each, new against base, by case id, each one of `comparisons`
    decided together (`decide.decide_among`), and a note naming the cases the budget left out (empty when
    none). The cases re-timed are those whose MIN_ALTERNATIONS fit the budget by the stored run's costs, then
    by the first alternation's measured ones: a case is never left with fewer. Unconfirmable says why not."""
    base_commit, new_commit = _commit(base_run), _commit(new_run)
    cases = [case_id(row) for _, row in flagged.iterrows()]
    costs = {case: cost * PROCESSES for case, cost in case_costs(new_run, cases).items()}  # per re-timing run
    pause = pause_page_reporting  # asked for on the command line, never taken from a stored run (it needs root)
    rounds: dict[str, dict[str, list[list[float]]]] = {side: {case: [] for case in cases} for side in ("base", "new")}
    # processes per alternation, by side and case: a process pairs with the other side's of its alternation and
    # position only, so a run that timed a case in fewer processes must not shift every later pair
    layout: dict[str, dict[str, list[int]]] = {side: {case: [] for case in cases} for side in ("base", "new")}
    decisions: dict[str, decide.Decision] = {}
    start = clock()
    # a re-timing run's cost: fixed + scale x its cases' costs, from FIXED_PRIOR_S, then learnt as it goes
    scale, fixed = 1.0, FIXED_PRIOR_S
    open_cases = cases[: within_budget([costs[case] for case in cases], budget_s, MIN_ALTERNATIONS, fixed)]

    def left_out() -> str:
        dropped = [case for case in cases if case not in decisions]
        if not dropped:
            return ""
        needed = 2 * MIN_ALTERNATIONS * (fixed + scale * sum(costs[case] for case in cases))
        return (
            f"the budget ({duration(budget_s)}) re-timed {len(cases) - len(dropped)} of the {len(cases)} suspect "
            f"cases, the strongest evidence of a slowdown first; about {duration(needed)} would re-time them all "
            "(--budget)"
        )

    stopped = ""
    with contextlib.ExitStack() as stack:
        trees = {"base": stack.enter_context(source_tree(base_commit))}
        trees["new"] = trees["base"] if new_commit == base_commit else stack.enter_context(source_tree(new_commit))
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="serbench-retime-")))
        for alternation in range(MAX_ALTERNATIONS):
            options = selection(flagged[[case in open_cases for case in cases]])
            began = clock()
            chosen = scratch / f"cases-{alternation}.json"
            chosen.write_text(json.dumps(open_cases))
            timed: dict[str, pd.DataFrame] = {}
            try:
                for side in ("base", "new"):
                    elapsed = clock() - start
                    left = f"; about {duration(budget_s - elapsed)} of the {duration(budget_s)} budget left"
                    progress(
                        f"re-timing {len(open_cases)} of {len(cases)} cases: {side} code, alternation {alternation + 1}"
                        + (left if alternation else "")
                    )
                    given = [*options, "--cases", str(chosen)] if _takes_cases(trees[side]) else options
                    commit = base_commit if side == "base" else new_commit
                    timed[side] = _retime(trees[side], given, scratch / f"{side}-{alternation}", pause, commit)
            except Unconfirmable as failed:
                if alternation < MIN_ALTERNATIONS:  # no case has its minimum yet: nothing decided to keep
                    raise
                # the decisions of the alternations that ran stand; this one's half is dropped (it has no pair)
                stopped = f"re-timing stopped after {alternation} alternations: {failed}"
                break
            for side, frame in timed.items():
                for case in open_cases:
                    timed_here = _processes(frame, case)
                    rounds[side][case] += timed_here
                    layout[side][case].append(len(timed_here))
            for case in open_cases:
                base, new = rounds["base"][case], rounds["new"][case]
                if not base or not new:
                    raise Unconfirmable(f"the re-timing did not time {case}")
                same_layout = layout["base"][case] == layout["new"][case]
                paired = same_layout and [len(group) for group in base] == [len(group) for group in new]
                settings = {"threshold": threshold, "confidence": confidence, "paired": paired}
                decisions[case] = decide.decide_among(new, base, comparisons=comparisons * LOOKS, **settings)
            done, took = alternation + 1, clock() - began
            # what a run of these cases took, against the stored run's costs: the excess is what every run
            # costs whatever it times (start-up, the machine's limits, the report), which fewer cases keep
            scale, fixed = learn_costs(took / 2, sum(costs[case] for case in open_cases))
            if scale is None:  # the stored run gave no costs: the cases share what the run took beyond its fixed cost
                costs = {case: (took / 2 - fixed) / len(open_cases) for case in cases}
                scale = 1.0
            remaining = budget_s - (clock() - start)
            scaled = {case: costs[case] * scale for case in cases}
            if done < MIN_ALTERNATIONS:  # every case kept gets its first MIN_ALTERNATIONS, decided or not
                kept = within_budget([scaled[c] for c in open_cases], remaining, MIN_ALTERNATIONS - done, fixed)
                for case in open_cases[kept:]:  # fewer than MIN_ALTERNATIONS: no decision to give
                    decisions.pop(case, None)
                open_cases = open_cases[:kept]
                continue
            # only what can still become a regression: undecided and slower than the base by its estimate
            open_cases = [c for c in open_cases if decisions[c].verdict is decide.Verdict.UNDECIDED]
            open_cases = [c for c in open_cases if decisions[c].ratio > 1]
            open_cases = open_cases[: within_budget([scaled[c] for c in open_cases], remaining, 1, fixed)]
            if not open_cases or 2 * (fixed + sum(scaled[c] for c in open_cases)) > remaining:
                break
    return decisions, "; ".join(note for note in (left_out(), stopped) if note)
