"""Timing until decided: the cases an answer cannot decide yet get more processes, pooled with the run's, until
decided or the budget is spent (`bench.timing.deciding`); `serbench run/bench --budget` names them."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from bench.reporting import decisions
from bench.timing import deciding
from bench.timing.plan import case_id
from bench.timing.rundir import RunDir
from tests.run_fixture import make_run, row


class Clock:
    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _loop(tmp_path: Path, open_rounds: int, budget_s: float, step: float = 1.0):
    """until_decided on a stored run whose one case stays open for `open_rounds` checks; returns the record and
    the processes it asked for."""
    run_dir = RunDir(make_run(tmp_path / "run", [row("numpy", "npz", "load", "warm", median=0.01)]))
    from bench.timing.plan import Case

    case = Case("numpy", "npz", "size-64MiB", "cpu", "warm", "load", rounds=3, threads="1")
    run_dir.raw.mkdir(exist_ok=True)
    run_dir.benchmark(RunDir.chunk("numpy", "1"), 0).write_text(json.dumps({"benchmarks": []}))  # the run's own
    checks, asked = [], []

    def still_open(frame: pd.DataFrame) -> set[str]:
        checks.append(len(frame))
        return {case.id} if len(checks) <= open_rounds else set()

    def run_chunk(framework: str, cases: list, process: int, plan_name: str) -> None:
        asked.append((framework, [c.id for c in cases], process, plan_name))
        chunk = RunDir.chunk(framework, "1")
        run_dir.benchmark(chunk, process).write_text(json.dumps({"benchmarks": []}))

    said: list[str] = []
    record = deciding.until_decided(run_dir, [case], still_open, budget_s, run_chunk, Clock(step), say=said.append)
    if asked:
        assert "npz (numpy) warm" in said[0], "the progress line names the comparison it is deciding"
    return record, asked, case


def test_open_cases_are_timed_in_new_processes_until_decided(tmp_path: Path) -> None:
    record, asked, case = _loop(tmp_path, open_rounds=2, budget_s=100)
    assert record.stopped == "decided"
    assert record.rounds == 2
    assert record.processes == 2
    assert record.open_at_start == 1
    assert record.open_at_end == 0
    numbers = [process for *_, process, _ in asked]
    assert numbers == sorted(set(numbers)), "a new process number each time"
    assert min(numbers) > 0, "after the run's own processes"
    assert all(cases == [case.id] and plan == deciding.PLAN for _, cases, _, plan in asked)


def test_no_round_starts_that_the_budget_would_not_hold(tmp_path: Path) -> None:
    record, asked, _ = _loop(tmp_path, open_rounds=100, budget_s=10, step=1.0)
    assert record.stopped == "budget"
    assert record.open_at_end == 1
    assert record.seconds <= 10
    assert len(asked) == record.rounds >= 1


def test_the_rounds_stop_at_the_most_a_machine_can_tell(tmp_path: Path) -> None:
    record, asked, _ = _loop(tmp_path, open_rounds=1000, budget_s=1e9, step=1e-6)
    assert record.stopped == "max rounds"
    assert len(asked) == deciding.MAX_ROUNDS


def test_nothing_is_timed_when_every_answer_is_decided(tmp_path: Path) -> None:
    record, asked, _ = _loop(tmp_path, open_rounds=0, budget_s=100)
    assert asked == []
    assert record.stopped == "decided"
    assert record.describe() == "every speed answer was decided by the planned processes"


def test_only_the_contenders_of_an_undecided_answer_are_open(tmp_path: Path) -> None:
    """Two formats whose rounds overlap cannot be told apart: both are timed again; a third, clearly slower, is
    not; a tie (both indistinguishable) is an answer and is not timed again."""
    wide = [[0.010, 0.020, 0.014], [0.012, 0.019, 0.011]]
    close = [
        row("numpy", "npz", "load", "warm", median=0.0135, rounds_by_process=json.dumps(wide)),
        row("numpy", "npy", "load", "warm", median=0.0140, rounds_by_process=json.dumps([wide[1], wide[0]])),
    ]
    frame = make_run(tmp_path / "run", [*close, row("numpy", "safetensors", "load", "warm", median=0.5)])
    rows = pd.read_csv(frame / "results.csv")
    answer = decisions.fastest(rows, "fastest", name=lambda r: str(r["format"]))
    assert not answer.decided
    assert "cannot be told apart yet" in answer.line, answer.line
    still = decisions.open_cases([answer])
    assert still <= {case_id(r) for _, r in rows.iterrows()}
    assert not any("safetensors" in case for case in still), "a format decided slower is not timed again"
    tie = decisions.fastest(rows[rows["format"] == "npz"].assign(format="a"), "", name=lambda r: str(r["format"]))
    assert decisions.open_cases([tie]) == set(), "one candidate: nothing to decide"


def test_a_run_with_a_budget_pools_the_extra_processes_and_records_them(tmp_path: Path) -> None:
    """End to end with numpy: the open case gets a process of its own, its rounds join the case's row as one
    more process, and env.json says what was done and why it stopped."""
    from bench.timing.runner import RunConfig, run

    asked: list[int] = []

    def still_open(frame: pd.DataFrame) -> set[str]:
        asked.append(1)
        timed = frame[(frame["status"] == "ok") & (frame["op"] == "load") & (frame["framework"] == "numpy")]
        return {case_id(timed.iloc[0])} if len(asked) == 1 else set()

    config = RunConfig(
        frameworks=("numpy",),
        formats=("npy",),
        kinds=("tensor",),
        sizes=("small",),
        devices=("cpu",),
        out=tmp_path / "run",
        processes=1,
        peak_memory=False,
        budget_s=600,
        open_cases=still_open,
    )
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        run(config)
    run_dir = RunDir(tmp_path / "run")
    assert len(list(run_dir.raw.glob("benchmark-numpy-t1-p*.json"))) == 2
    frame = pd.read_csv(run_dir.results_csv)
    loads = frame[(frame["status"] == "ok") & (frame["op"] == "load") & (frame["framework"] == "numpy")]
    by_process = [json.loads(text) for text in loads["rounds_by_process"]]
    assert sorted(len(groups) for groups in by_process)[-1] == 2, "the re-timed case has the extra process's rounds"
    assert sorted(len(groups) for groups in by_process)[0] == 1, "the others do not"
    record = json.loads(run_dir.env.read_text())["until_decided"]
    assert record["processes"] == 1
    assert record["stopped"] == "decided"
    assert record["open_at_start"] == 1
    assert not run_dir.scratch.exists() or not any(run_dir.scratch.iterdir()), "its saved files are removed"


@pytest.mark.parametrize(("argv", "budget"), [(["run"], 0.0), (["run", "--budget", "30"], 30.0), (["bench"], 120.0)])
def test_the_budget_reaches_the_run_with_the_commands_question(
    argv: list[str], budget: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` times the report's undecided advice again only when asked; `bench` does by default, since its
    answer is the user's question. Interrupted, the command says how to finish the run."""
    from bench import checkpoints, cli, workloads
    from bench.timing import runner

    monkeypatch.setenv(workloads.CHECKPOINTS_VARIABLE, "")  # `bench` sets it for its children: undone after
    seen = []

    def interrupted(config: object) -> None:
        seen.append(config)
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run", interrupted)
    monkeypatch.setattr(checkpoints, "prepare", lambda paths, store, trusted: [])
    if argv[0] == "bench":
        argv = [*argv, str(tmp_path / "model.safetensors")]
    assert cli.main([*argv, "--out", str(tmp_path / "run")]) == cli.EXIT_INTERRUPTED
    hint = capsys.readouterr().err.strip().splitlines()[-1]
    assert hint.startswith(f"serbench {argv[0]}: interrupted; ")
    assert f"serbench {argv[0]} --resume --out {tmp_path / 'run'}" in hint
    (config,) = seen
    assert config.budget_s == budget
    assert callable(config.open_cases), "the run knows which answers are open"


def test_bench_times_its_undecided_formats_again_from_the_users_own_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The extra processes rebuild the user's tensors from the run's store: it was removed with the scratch
    before they ran, so every one of them failed ("nothing to load") and added no round."""
    import numpy as np

    from bench import cli, workloads
    from bench.cli import bench as bench_command

    # `bench` tells its children where the user's tensors are through os.environ and registers them in this
    # process: both are undone after the test, or every later subprocess of the session would time them
    monkeypatch.setenv(workloads.CHECKPOINTS_VARIABLE, "")
    monkeypatch.setattr(workloads, "WORKLOADS", dict(workloads.WORKLOADS))

    source = tmp_path / "model.npz"
    np.savez(source, weight=np.arange(4096, dtype=np.float32))
    calls: list[int] = []

    def first_load_open(names: tuple[str, ...], frame: pd.DataFrame) -> set[str]:
        calls.append(1)
        loads = frame[(frame["status"] == "ok") & (frame["op"] == "load") & (frame["format"] == "npz")]
        return {case_id(loads.iloc[0])} if len(calls) == 1 else set()

    monkeypatch.setattr(bench_command, "_open_answers", first_load_open)
    argv = ["bench", str(source), "--frameworks", "numpy", "--formats", "npz,npy", "--devices", "cpu"]
    assert cli.main([*argv, "--no-peak-memory", "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    run_dir = RunDir(tmp_path / "run")
    frame = pd.read_csv(run_dir.results_csv)
    assert not (frame["status"] == "error").any(), frame.loc[frame["status"] == "error", "note"].tolist()
    logs = "".join(path.read_text() for path in run_dir.raw.glob("pytest-numpy-*-p*.log"))
    assert "nothing to load" not in logs, "the extra process found the user's tensors"
    retimed = frame[
        frame["rounds_by_process"].map(lambda text: len(json.loads(text)) if isinstance(text, str) else 0) > 1
    ]
    assert len(retimed) == 1, "the open case has the extra process's rounds"
    assert json.loads(run_dir.env.read_text())["until_decided"]["processes"] == 1
