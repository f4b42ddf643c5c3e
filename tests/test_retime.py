"""`serbench compare` re-times the cases two runs disagree on before deciding them: base and new code
alternately, on this machine, until decided (`bench.timing.retime`). The end-to-end cases use a throwaway clone
whose second commit slows a load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench import cli, environment
from bench.reporting import compare as comparing
from bench.timing import retime
from bench.timing.plan import case_id, plan
from tests.run_fixture import make_run, row

ROOT = Path(__file__).resolve().parents[1]
FLAGGED = {
    "framework": "numpy",
    "format": "npy",
    "workload": "d2l-tensor",
    "device": "cpu",
    "cache": "warm",
    "op": "load",
    "threads": "1",
}


@pytest.mark.parametrize(
    "cases",
    [
        [FLAGGED],
        [
            FLAGGED,
            {**FLAGGED, "framework": "torch", "format": "safetensors", "workload": "size-64MiB", "cache": "cold"},
        ],
        [{**FLAGGED, "workload": "vgg16", "format": "npz", "op": "save", "cache": "-"}],
        [{**FLAGGED, "framework": "null-adapter", "format": "memory", "workload": "size-64MiB"}],
    ],
    ids=["one", "two-frameworks", "large-needs-full", "baseline"],
)
def test_the_retiming_selection_holds_every_flagged_case(cases: list[dict]) -> None:
    options = cli.build_parser().parse_args(["run", *retime.selection(pd.DataFrame(cases))])
    planned = plan(
        "full" if options.full else "quick",
        options.frameworks,
        options.formats,
        options.kinds,
        options.sizes,
        options.devices,
        threads=options.threads,
    )
    assert {case_id(case) for case in cases} <= {case.id for case in planned}


def test_a_users_checkpoint_cannot_be_retimed() -> None:
    with pytest.raises(retime.Unconfirmable, match="user-mine"):
        retime.selection(pd.DataFrame([{**FLAGGED, "workload": "user-mine"}]))


def test_a_commit_that_is_not_in_the_repository_cannot_be_retimed_and_the_reason_names_the_fix() -> None:
    """From a checkout lacking the new run's commit, compare called 17 cases REGRESSION, with raw `fatal:
    invalid reference` text in its table."""
    with pytest.raises(retime.Unconfirmable, match="git fetch origin 000000000000"), retime.source_tree("0" * 40):
        pass


@pytest.mark.parametrize(
    "flagged",
    [FLAGGED, {**FLAGGED, "framework": "null-adapter", "format": "memory", "cache": "-", "op": "save"}],
    ids=["framework", "baseline-alone"],
)
def test_the_cases_option_times_only_the_named_cases(tmp_path: Path, flagged: dict) -> None:
    """Re-timing times the flagged cases, not their whole selection (which took longer than the runs); a
    baseline's cases alone too (the 1.3x doctored gate's second alternation kept two null-adapter saves, and
    `serbench run` refused them: "nothing to time")."""
    import contextlib
    import io

    from bench.timing.runner import RunConfig, run

    wanted = [case_id(flagged)]
    config = RunConfig(
        frameworks=("numpy",),
        kinds=("tensor",),
        sizes=("small",),
        devices=("cpu",),
        out=tmp_path / "run",
        processes=1,
        peak_memory=False,
        only_cases=tuple(wanted),
    )
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        run(config)
    frame = pd.read_csv(tmp_path / "run" / "results.csv")
    timed = frame[frame["status"] == "ok"]
    assert [case_id(r) for _, r in timed.iterrows()] == wanted


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def doctored_clone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A clone of this checkout with one more commit, whose .npy load sleeps 5 ms (a 10x slowdown here)."""
    clone = tmp_path_factory.mktemp("repo") / "serbench"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    base = environment.git_commit(clone)
    adapter = clone / "frameworks" / "numpy_adapter.py"
    source = adapter.read_text()
    loader = "def _load_npy("
    assert loader in source, "the doctored function exists"
    head, tail = source.split(loader, 1)
    body = tail.split("\n", 1)
    adapter.write_text(f"{head}{loader}{body[0]}\n    __import__('time').sleep(0.005)\n{body[1]}")
    _git(clone, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-am", "doctored: npy loads sleep")
    return clone, base, environment.git_commit(clone)


def _runs(tmp_path: Path, base_commit: str, new_commit: str, slower: float) -> tuple[Path, Path]:
    """Two hand-made runs of this machine in which the flagged case is `slower` times slower in the new one."""
    machine = comparing.this_machine()
    runs = []
    for name, commit, median in (("base", base_commit, 1e-4), ("new", new_commit, 1e-4 * slower)):
        run = make_run(tmp_path / name, [row(**{**FLAGGED, "fmt": FLAGGED["format"]}, median=median)])
        env = json.loads((run / "env.json").read_text())
        env.update(
            {key.removesuffix(" version"): value for key, value in machine.items() if not key.endswith(" version")}
        )
        env["versions"] = {
            key.removesuffix(" version"): value for key, value in machine.items() if key.endswith(" version")
        }
        env["git_commit"] = commit
        (run / "env.json").write_text(json.dumps(env))
        runs.append(run)
    return runs[0], runs[1]


def _compare(base: Path, new: Path, clone: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from bench.timing import retime; from pathlib import Path; "
        f"retime.REPO = Path({str(clone)!r}); from bench import cli; sys.exit(cli.main(sys.argv[1:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, "compare", str(base), str(new), "--json"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=ROOT,
    )


@pytest.mark.filterwarnings("ignore")
def test_a_slowdown_in_the_code_is_decided_by_retiming_and_one_in_the_results_alone_is_not_found_again(
    doctored_clone: tuple[Path, str, str], tmp_path: Path
) -> None:
    clone, base_commit, doctored = doctored_clone
    base, new = _runs(tmp_path / "code", base_commit, doctored, slower=3.0)
    caught = _compare(base, new, clone)
    assert caught.returncode == cli.EXIT_REGRESSION, caught.stderr[-2000:]
    (regression,) = json.loads(caught.stdout)["regressions"]
    assert regression["retimed"].startswith("re-timed alternately")
    assert regression["low"] > 2.0, "a 5 ms sleep in a ~0.1 ms load: the whole interval is far above 1"

    # the same code, 3x slower in the results only: both sides are re-timed, and the re-timing does not find 3x
    # (whether a tiny load is then decided the same or left undecided depends on the machine)
    base, new = _runs(tmp_path / "runs", base_commit, base_commit, slower=3.0)
    retimed = _compare(base, new, clone)
    assert retimed.returncode in (0, cli.EXIT_UNDECIDED), retimed.stderr[-2000:]
    summary = json.loads(retimed.stdout)
    assert not summary["regressions"]
    for case in summary["undecided"]:
        assert case["high"] < 3.0, case


def test_a_case_decided_by_the_first_alternation_is_still_timed_in_every_minimum_alternation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A case decided after the first alternation was dropped before the minimum was reached, so the second
    alternation asked `serbench run` for no case at all ("the selection matches no benchmark case") and the
    gate exited 5 instead of 1 (the doctored-commit test caught it, by timing)."""
    import contextlib

    case = case_id(FLAGGED)
    asked: list[tuple[str, list[str]]] = []

    def fake_retime(tree: Path, options: list[str], out: Path, pause: bool, commit: str) -> pd.DataFrame:
        chosen = json.loads(Path(options[options.index("--cases") + 1]).read_text())
        asked.append((commit, chosen))
        seconds = 0.010 if commit == "a" * 40 else 0.030  # new is 3x slower: decided at once
        return pd.DataFrame({"rounds_s": [json.dumps([seconds * (1 + 0.01 * i) for i in range(5)])]}, index=[case])

    monkeypatch.setattr(retime, "_commit", lambda run: ("a" if run.name == "base" else "b") * 40)
    monkeypatch.setattr(retime, "source_tree", lambda commit: contextlib.nullcontext(tmp_path))
    monkeypatch.setattr(retime, "_takes_cases", lambda tree: True)
    monkeypatch.setattr(retime, "_retime", fake_retime)
    monkeypatch.setattr(retime, "PROCESSES", 1)
    monkeypatch.setattr(retime, "case_costs", lambda run, cases: dict.fromkeys(cases, 0.0))
    decisions, left_out = retime.retime(tmp_path / "base", tmp_path / "new", pd.DataFrame([FLAGGED]), budget_s=600)
    assert decisions[case].verdict is retime.decide.Verdict.SLOWER
    assert not left_out
    assert len(asked) == 2 * retime.MIN_ALTERNATIONS, "the minimum alternations, then stopped: decided"
    assert all(chosen == [case] for _, chosen in asked), asked


SUSPECTS = [{**FLAGGED, "workload": name} for name in ("d2l-tensor", "d2l-list", "d2l-dict")]


def _budgeted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget_s: float, seconds_per_case: float, per_run: float = 0.0
) -> tuple[dict, str, list[list[str]]]:
    """Re-time SUSPECTS (each estimated at 10 s per process) with a fake clock on which each case of each
    re-timing process takes `seconds_per_case`, and each process `per_run` more whatever it times; every case
    comes back 3x slower, paired and tight."""
    import contextlib

    now, asked = [0.0], []

    def fake_retime(tree: Path, options: list[str], out: Path, pause: bool, commit: str) -> pd.DataFrame:
        chosen = json.loads(Path(options[options.index("--cases") + 1]).read_text())
        if commit == "a" * 40:
            asked.append(chosen)
        now[0] += per_run + seconds_per_case * len(chosen)
        seconds = 0.010 if commit == "a" * 40 else 0.030
        timed = [json.dumps([seconds * (1 + 0.01 * i) for i in range(5)])] * len(chosen)
        return pd.DataFrame({"rounds_s": timed}, index=chosen)

    monkeypatch.setattr(retime, "_commit", lambda run: ("a" if run.name == "base" else "b") * 40)
    monkeypatch.setattr(retime, "source_tree", lambda commit: contextlib.nullcontext(tmp_path))
    monkeypatch.setattr(retime, "_takes_cases", lambda tree: True)
    monkeypatch.setattr(retime, "_retime", fake_retime)
    monkeypatch.setattr(retime, "PROCESSES", 1)  # each fake run is one process
    monkeypatch.setattr(retime, "FIXED_PRIOR_S", 0.0)  # what is learnt, not the prior
    monkeypatch.setattr(retime, "case_costs", lambda run, cases: dict.fromkeys(cases, 10.0))
    flagged = pd.DataFrame(SUSPECTS)
    decisions, left_out = retime.retime(
        tmp_path / "base", tmp_path / "new", flagged, budget_s=budget_s, comparisons=50, clock=lambda: now[0]
    )
    asked.append(now[0])
    return decisions, left_out, asked


def test_the_budget_starts_only_the_suspect_cases_whose_minimum_alternations_fit_the_most_suspect_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """273 cases re-timed for their two minimum alternations took 6 min 11 s against a 3 min 22 s budget: the
    budget was checked only after the minimum. Two of three 10 s cases fit 2 alternations x 2 sides in 85 s."""
    decisions, left_out, asked = _budgeted(tmp_path, monkeypatch, budget_s=85, seconds_per_case=10)
    first, second = (case_id(case) for case in SUSPECTS[:2])
    assert asked[:-1] == [[first, second]] * retime.MIN_ALTERNATIONS
    assert set(decisions) == {first, second}
    # decided among the comparison's 50 cases times the looks a case may get (deciding after every alternation)
    assert all(d.verdict is retime.decide.Verdict.SLOWER for d in decisions.values())
    assert all(d.comparisons == 50 * retime.LOOKS for d in decisions.values())
    assert "re-timed 2 of the 3 suspect cases" in left_out
    assert "--budget" in left_out


def test_a_first_alternation_slower_than_estimated_drops_the_cases_the_rest_of_the_budget_cannot_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All three fit by the stored run's costs (120 of 170 s); the first alternation takes 3x as long, so only
    the most suspect case gets its second, and the others get no decision from one alternation."""
    decisions, left_out, asked = _budgeted(tmp_path, monkeypatch, budget_s=170, seconds_per_case=30)
    ids = [case_id(case) for case in SUSPECTS]
    assert asked[:-1] == [ids, ids[:1]]
    assert set(decisions) == {ids[0]}
    assert "re-timed 1 of the 3" in left_out


def test_what_every_run_costs_whatever_it_times_is_learnt_and_not_saved_by_dropping_cases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each re-timing run costs 30 s before its cases (start-up, limits, the report): a numpy-only gate's first
    alternation took 28 s of a 36 s budget. Read as a slower machine (every case 2x), two cases would seem to
    fit the 80 s left and the re-timing would end at 220 s of 200; as a fixed cost, one does, and it ends on
    the budget."""
    decisions, _, asked = _budgeted(tmp_path, monkeypatch, budget_s=200, seconds_per_case=10, per_run=30)
    ids = [case_id(case) for case in SUSPECTS]
    assert asked[:-1] == [ids, ids[:1]]
    assert asked[-1] <= 200
    assert set(decisions) == {ids[0]}


def test_within_budget_counts_both_sides_of_every_alternation_and_always_keeps_one() -> None:
    assert retime.within_budget([10.0, 10.0, 10.0], 80.0, 2) == 2
    assert retime.within_budget([10.0, 10.0, 10.0], 79.0, 2) == 1
    assert retime.within_budget([100.0], 1.0, 2) == 1
    assert retime.within_budget([], 1.0, 2) == 0
    assert retime.within_budget([10.0, 10.0, 10.0], 80.0, 1, fixed_s=20.0) == 2


def test_the_fixed_cost_of_a_run_is_never_learnt_below_the_prior_unless_the_run_took_less() -> None:
    """A stored run that overstated its cases (40 s of cases, re-timed in 12 s) was learnt as a 0 s fixed cost,
    so dropping cases seemed to save the whole run and the budget overran."""
    prior = retime.FIXED_PRIOR_S
    scale, fixed = retime.learn_costs(prior + 2.0, 40.0)
    assert fixed == prior
    assert scale == pytest.approx(2.0 / 40.0)
    assert retime.learn_costs(prior / 2, 40.0) == (0.0, prior / 2)  # the whole run is less than the prior
    assert retime.learn_costs(prior + 50.0, 40.0) == (1.0, prior + 10.0)  # slower than the costs: the excess is fixed
    assert retime.learn_costs(prior + 5.0, 0.0) == (None, prior + 5.0)


def test_a_re_timing_that_fails_after_its_minimum_alternations_keeps_their_decisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `serbench run` failing in the third alternation threw away the two alternations' decisions: they stand,
    and the note says why the re-timing stopped."""
    import contextlib

    case = case_id(FLAGGED)
    calls = [0]
    base_rounds = [[0.010, 0.014, 0.008, 0.012, 0.009], [0.013, 0.009, 0.011, 0.010, 0.015]]  # noisy: undecided,
    new_rounds = [[0.011, 0.015, 0.008, 0.013, 0.0095], [0.009, 0.016, 0.012, 0.010, 0.013]]  # 1.10x by estimate

    def fake_retime(tree: Path, options: list[str], out: Path, pause: bool, commit: str) -> pd.DataFrame:
        calls[0] += 1
        if calls[0] > 2 * retime.MIN_ALTERNATIONS:
            raise retime.Unconfirmable("re-timing in /tree failed: the disk is full")
        alternation = (calls[0] - 1) // 2
        seconds = (base_rounds if commit == "a" * 40 else new_rounds)[alternation % 2]
        return pd.DataFrame({"rounds_s": [json.dumps(seconds)]}, index=[case])

    monkeypatch.setattr(retime, "_commit", lambda run: ("a" if run.name == "base" else "b") * 40)
    monkeypatch.setattr(retime, "source_tree", lambda commit: contextlib.nullcontext(tmp_path))
    monkeypatch.setattr(retime, "_takes_cases", lambda tree: True)
    monkeypatch.setattr(retime, "_retime", fake_retime)
    monkeypatch.setattr(retime, "PROCESSES", 1)
    monkeypatch.setattr(retime, "case_costs", lambda run, cases: dict.fromkeys(cases, 0.0))
    decisions, note = retime.retime(tmp_path / "base", tmp_path / "new", pd.DataFrame([FLAGGED]), budget_s=600)
    assert calls[0] == 2 * retime.MIN_ALTERNATIONS + 1, "undecided and slower by its estimate: timed again"
    assert decisions[case].verdict is retime.decide.Verdict.UNDECIDED
    assert decisions[case].processes_a == retime.MIN_ALTERNATIONS
    assert f"stopped after {retime.MIN_ALTERNATIONS} alternations" in note
    assert "disk is full" in note


def test_processes_pair_only_with_the_other_sides_of_their_own_alternation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pairs were matched by position across all alternations: a run that timed a case in fewer processes
    shifted every later pair onto another alternation's process, and the comparison still called itself paired."""
    import contextlib

    case = case_id(FLAGGED)
    calls = [0]

    def fake_retime(tree: Path, options: list[str], out: Path, pause: bool, commit: str) -> pd.DataFrame:
        calls[0] += 1
        alternation, base = (calls[0] - 1) // 2, commit == "a" * 40
        processes = (2 if base else 3) if alternation % 2 == 0 else (3 if base else 2)  # 5 a side in 2 alternations
        seconds = 0.010 if base else 0.030
        rounds = [json.dumps([seconds * (1 + 0.01 * (i + p)) for i in range(5)]) for p in range(processes)]
        return pd.DataFrame({"rounds_s": rounds}, index=[case] * processes)

    monkeypatch.setattr(retime, "_commit", lambda run: ("a" if run.name == "base" else "b") * 40)
    monkeypatch.setattr(retime, "source_tree", lambda commit: contextlib.nullcontext(tmp_path))
    monkeypatch.setattr(retime, "_takes_cases", lambda tree: True)
    monkeypatch.setattr(retime, "_retime", fake_retime)
    monkeypatch.setattr(retime, "case_costs", lambda run, cases: dict.fromkeys(cases, 0.0))
    decisions, _ = retime.retime(tmp_path / "base", tmp_path / "new", pd.DataFrame([FLAGGED]), budget_s=600)
    assert decisions[case].processes_a == decisions[case].processes_b == 5
    assert not decisions[case].paired
