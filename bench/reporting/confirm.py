"""Confirmation re-runs for `serbench compare`: a slowdown is a regression only if it shows again when the
base's code and the new run's code are timed alternately, in one sitting, on this machine (as asv does).

Two runs minutes apart differ by a machine state no setting inside a VM controls (on this project's VM
three back-to-back quick runs of one commit, compared pairwise, flagged 0-6 cases each), so a gate that
compares runs from two sittings raises false alarms. Here each side's source tree (the checkout when a
run's commit is HEAD, else a temporary `git worktree` at that commit) runs `serbench run` on the
flagged cases' selection, base, new, base, new (`ALTERNATIONS`), and the rounds of each side are pooled:
the slowdown is confirmed when the re-timed new code is slower than the re-timed base by more than the
threshold and the re-timing's own noise. A case that cannot be re-timed (a commit that is not in this
repository, a run from uncommitted changes, another machine, a user's checkpoint) keeps its flag and
says why: a gate must not pass what it could not check.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import frameworks
from bench import environment, workloads
from bench.timing.plan import PRESETS, case_id
from bench.timing.rundir import RunDir
from bench.timing.stats import relative_noise, spread
from frameworks import environments

REPO = Path(__file__).resolve().parents[2]
ALTERNATIONS = 2
"""Re-timing runs per side, alternating base, new, base, new."""
RUN_TIMEOUT_S = 1800


class Unconfirmable(Exception):
    """Why the flagged cases cannot be re-timed here."""


@dataclass(frozen=True)
class Confirmation:
    """The re-timing of one flagged case: medians of the pooled rounds of each side, change and noise."""

    base_s: float
    new_s: float
    change: float
    noise: float
    confirmed: bool


COMMIT = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?(?:-dirty)?")
"""What env.json's git_commit must be for re-timing: a full hex object id (SHA-1 or SHA-256), with '-dirty' when
the run's tree differed from it. Anything else (an option such as `--lock`, a ref name, a path) is never given to
git."""


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
    resolved = found.stdout.strip()
    if found.returncode != 0 or resolved != commit:
        raise Unconfirmable(
            f"commit {commit[:12]} is not in {repo}: fetch it (git fetch origin {commit[:12]}) or run compare from a "
            "checkout that has it"
        )
    return resolved


@contextlib.contextmanager
def source_tree(commit: str, repo: Path | None = None) -> Iterator[Path]:
    """A tree holding the code of `commit`: the checkout (`REPO`) if it is that commit (dirty only if the run
    was), else a temporary worktree of it, removed afterwards."""
    repo = repo or REPO
    here = environment.git_commit(repo)
    if commit == here:
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
            raise Unconfirmable(f"commit {commit[:12]} is not in {repo}: {added.stderr.strip()[:200]}")
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
    """`serbench run` options whose matrix holds every flagged case (and a few neighbours)."""
    names = list(dict.fromkeys(flagged["workload"]))
    unknown = [name for name in names if name not in workloads.WORKLOADS or name.startswith("user-")]
    if unknown:
        raise Unconfirmable(f"workloads this code does not build: {', '.join(unknown)}")
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
        "1",
        "--no-peak-memory",
    ]


def _retime(tree: Path, options: list[str], out: Path, pause_page_reporting: bool, commit: str) -> pd.DataFrame:
    command = [sys.executable, "-m", "bench.cli", "run", *options, "--out", str(out)]
    command += ["--pause-page-reporting"] if pause_page_reporting else []
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
    return timed  # the timed cases, indexed by case id


def _pooled(frames: list[pd.DataFrame], case: str) -> tuple[float, float] | None:
    """Median and relative noise of one case over the re-timing runs of one side (`_retime`'s frames; None if
    never timed)."""
    samples = []
    for frame in frames:
        samples += [json.loads(text) for text in frame.loc[frame.index == case, "rounds_s"]]
    if not samples:
        return None
    figure = spread(samples)
    return figure.median, relative_noise(figure.median, figure.q1, figure.q3, figure.sample_low, figure.sample_high)


def decide(base: tuple[float, float], new: tuple[float, float], threshold: float, noise_floor: float) -> Confirmation:
    """Whether the re-timed new code is slower than the re-timed base beyond the threshold and their noise."""
    change = new[0] / base[0] - 1
    noise = max(base[1], new[1], noise_floor)
    return Confirmation(base[0], new[0], change, noise, change > threshold and change > noise)


def confirm(
    base_run: Path,
    new_run: Path,
    flagged: pd.DataFrame,
    threshold: float,
    noise_floor: float,
    progress: object = None,
) -> dict[str, Confirmation]:
    """Re-time the flagged cases, both sides alternately; Confirmation by case id. Unconfirmable says why not."""
    base_commit, new_commit = _commit(base_run), _commit(new_run)
    options = selection(flagged)
    pause = bool((RunDir.read_env(RunDir(new_run).env).get("page_reporting") or {}).get("paused"))
    frames: dict[str, list[pd.DataFrame]] = {"base": [], "new": []}
    with contextlib.ExitStack() as stack:
        trees = {"base": stack.enter_context(source_tree(base_commit))}
        trees["new"] = trees["base"] if new_commit == base_commit else stack.enter_context(source_tree(new_commit))
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="serbench-confirm-")))
        for alternation in range(ALTERNATIONS):
            for side in ("base", "new"):
                if callable(progress):
                    progress(f"re-timing {len(flagged)} flagged cases: {side} code, run {alternation + 1}")
                out = scratch / f"{side}-{alternation}"
                commit = base_commit if side == "base" else new_commit
                frames[side].append(_retime(trees[side], options, out, pause, commit))
    results = {}
    for _, row in flagged.iterrows():
        case = case_id(row)
        base, new = _pooled(frames["base"], case), _pooled(frames["new"], case)
        if base is None or new is None:
            raise Unconfirmable(f"the re-timing did not time {case}")
        results[case] = decide(base, new, threshold, noise_floor)
    return results
