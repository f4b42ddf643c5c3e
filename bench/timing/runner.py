"""`serbench run`: measure the limits, time the plan with pytest-benchmark, measure peak memory,
and write tidy results with the environment.

Each framework and thread setting runs in its own pytest subprocesses, as many as the preset's
`processes`, plus `extra_load_processes` that re-time only the headline (64 MiB and larger)
loads; each process times every case in `passes` passes, and the rounds of every process and pass
are pooled (frameworks never share a process, and a crash loses one framework's chunk, not the
run). A thread setting is the environment its framework reads at import (`Adapter.thread_env`).
Every file in the run directory is written atomically; `--resume` skips the frameworks whose raw
files are complete. The machine is checked around the run (`bench.timing.machine`): how busy it was,
and whether its hypervisor takes freed memory back (paused for the run on request). The run
directory's files are named by `bench.timing.rundir.RunDir`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import signal
import subprocess
import tempfile
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console

import frameworks
from bench import environment, kinds, workloads
from bench.errors import UsageError
from bench.live import Progress
from bench.timing import deciding, limits, machine
from bench.timing.plan import PRESETS, Case, headline_loads, plan, write_plan
from bench.timing.results import BENCHMARK_SCHEMA, RAW_CAP, assemble, read_json
from bench.timing.rundir import ENV_CAP, LIMITS_SCHEMA, RunDir
from frameworks import environments, files, stored
from frameworks.files import write_bytes_atomic

BENCH_MODULE = Path(__file__).resolve().parent / "test_io.py"
CHUNK_TIMEOUT_S = 3600
PEAK_TIMEOUT_S = 600
PEAK_MIN_BYTES = 16 << 20
"""Below this payload the RSS a load adds is allocator noise (0.8x to 6.7x for 1 MiB here)."""
PROCESS_S = 4.0
ROUND_S = 0.03
ROUND_BYTES_PER_S = 0.4e9
"""The progress bar's estimate of the work (`Step.units`): a process's start and its framework's import,
and per timed round a fixed cost plus its bytes (the round and its setup: a save, an eviction,
materialization). Only the proportions matter: the time left is scaled by the time taken so far."""
console = Console(stderr=True)


@dataclass
class RunConfig:
    preset: str = "quick"
    frameworks: tuple[str, ...] | None = None
    formats: tuple[str, ...] | None = None
    kinds: tuple[str, ...] | None = None
    sizes: tuple[str, ...] | None = None
    devices: tuple[str, ...] = ("cpu", "cuda")
    out: Path | None = None
    resume: bool = False
    peak_memory: bool = True
    processes: int | None = None
    """Overrides the preset's `processes` (more processes: less noise, more time)."""
    extra_load_processes: int | None = None
    """Overrides the preset's `extra_load_processes`."""
    threads: tuple[str, ...] | None = None
    """Thread settings to time every case with (default: the preset's)."""
    pause_page_reporting: bool = False
    """Unbind the virtio balloon for the run where it reports free pages (see `bench.timing.machine`)."""
    workloads: tuple[str, ...] | None = None
    """Replaces the preset's workloads (users' checkpoints, registered with `workloads.register_checkpoints`)."""
    variant: dict[str, object] | None = None
    """The version variant this run times (`frameworks.variants`: its environment, package, version and
    interpreter, which replaces the environment's for every process of the run); recorded in env.json."""
    interleaved_with: list[str] = field(default_factory=list)
    """The other runs whose processes alternated with this one's (`run_interleaved`)."""
    only_cases: tuple[str, ...] | None = None
    """Time only these case ids of the selection (`serbench run --cases`, as compare's re-timing does)."""
    budget_s: float = 0.0
    """After the planned processes, time the cases `open_cases` names again until decided, for up to this long
    (`bench.timing.deciding`); 0: not at all."""
    open_cases: deciding.OpenCases | None = None

    @property
    def label(self) -> str:
        return str(self.variant["label"]) if self.variant else ""

    def interpreter(self) -> AbstractContextManager[None]:
        """The block in which this run's processes start: with the variant's interpreter, if any."""
        if not self.variant:
            return nullcontext()
        return environments.interpreter(str(self.variant["environment"]), str(self.variant["interpreter"]))


def write_json(path: Path, data: object) -> None:
    write_bytes_atomic(path, json.dumps(data, indent=1, default=str).encode())


def default_out(preset: str) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("results") / f"{stamp}-{preset}"


def thread_environment(framework: str, threads: str) -> dict[str, str]:
    """The environment of the framework's child processes (`frameworks.child_environment`) with its
    thread variables set for `threads`."""
    env = frameworks.child_environment(framework)
    for name, value in frameworks.adapter_class(framework).thread_env(threads).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def round_units(case: Case) -> float:
    """One pass of a case in the progress bar's units (see PROCESS_S)."""
    return case.rounds * (ROUND_S + workloads.payload_of(case.workload) / ROUND_BYTES_PER_S) if case.held else 0.0


@dataclass(frozen=True)
class Step:
    """One pytest process of a run: one framework's cases of one thread setting."""

    framework: str
    cases: list[Case]
    process: int
    processes: int
    plan_name: str = "plan"
    label: str = ""
    """The run it belongs to, where several alternate (a version's label)."""

    def units(self, passes: int) -> float:
        return PROCESS_S + passes * sum(round_units(case) for case in self.cases)

    def describe(self) -> str:
        threads = self.cases[0].threads if self.cases else "1"
        what = "the headline loads again" if self.plan_name == "loads-plan" else f"{len(self.cases)} cases"
        run = f" [{self.label}]" if self.label else ""
        return f"{self.framework}{run}, threads {threads}: process {self.process + 1} of {self.processes} ({what}) done"


def _run_chunk(
    framework: str,
    cases: list[Case],
    run_dir: RunDir,
    scratch: Path,
    process: int = 0,
    plan_name: str = "plan",
    passes: int = 1,
    progress: Progress | None = None,
) -> None:
    """Time one framework's cases of one thread setting in a fresh pytest process; raw files appear
    only when complete."""
    threads = cases[0].threads if cases else "1"
    chunk = RunDir.chunk(framework, threads)
    plan_path = run_dir.plan(chunk, plan_name)
    outcomes = run_dir.outcomes(chunk)
    final = run_dir.benchmark(chunk, process)
    log_path = run_dir.log(chunk, process)
    events = run_dir.events(chunk, process)
    write_plan(cases, plan_path, passes)
    if process == 0:
        outcomes.unlink(missing_ok=True)
    events.unlink(missing_ok=True)
    if not any(case.held for case in cases):
        write_json(final, {"benchmarks": [], "note": "no case of this selection is held by these formats"})
        return
    # pytest-benchmark opens its --benchmark-json path itself, following links: it writes into a directory of
    # this process's own (mode 0700, outside the run directory), and the file is moved into raw/ by rename
    with tempfile.TemporaryDirectory(prefix="serbench-benchmark-") as scratch_json:
        private = Path(scratch_json)
        env = thread_environment(framework, threads)  # read by the framework when it is imported
        command = [
            frameworks.python_for(framework),
            "-m",
            "pytest",
            str(BENCH_MODULE),
            "-p",
            "bench.timing.progress",
            "--serbench-plan",
            str(plan_path),
            "--serbench-scratch",
            str(scratch),
            "--serbench-outcomes",
            str(outcomes),
            "--serbench-events",
            str(events),
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "-q",
            "--benchmark-json",
            str(private / "benchmark.json"),
            "--benchmark-storage",  # its default made an empty .benchmarks/ in the user's working directory
            f"file://{private / 'benchmark-storage'}",
            "--benchmark-disable-gc",
            "--benchmark-save-data",
            "--benchmark-quiet",
            "-W",
            "ignore::DeprecationWarning",
        ]
        per_case = {case.id: round_units(case) for case in cases}
        with files.open_for_writing(log_path, replace=True) as log:
            child = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            if progress is None:
                returncode = child.wait(CHUNK_TIMEOUT_S)
            else:
                returncode = progress.follow(child, events, lambda case: per_case.get(case, 0.0), CHUNK_TIMEOUT_S)
        if returncode not in (0, 1):
            raise RuntimeError(f"benchmark chunk for {framework} failed (exit {returncode}); see {log_path}")
        if returncode == 1:
            message = f"{framework}: some cases failed; they are reported as errors (details in {log_path})"
            if progress is None:
                console.print(f"[yellow]{message}")
            else:
                progress.note(message)
        written = private / "benchmark.json"
        if not written.exists() or written.stat().st_size == 0:
            # pytest-benchmark writes no file (or an empty one, by version) when no case was timed
            write_json(final, {"benchmarks": [], "note": "no case was timed: each one's outcome is in outcomes"})
        else:
            write_bytes_atomic(final, stored.read_bytes(written, cap=RAW_CAP, what="pytest-benchmark JSON"))
        events.unlink(missing_ok=True)


def peak_cases(framework: str, cases: list[Case]) -> list[Case]:
    """The loads whose peak RSS is measured: one warm CPU load per (format, workload) of PEAK_MIN_BYTES or more."""
    if frameworks.is_baseline(framework):  # no file, so no load to measure
        return []
    chosen: dict[tuple[str, str], Case] = {}
    for case in cases:
        if case.held and case.op == "load" and workloads.payload_of(case.workload) >= PEAK_MIN_BYTES:
            chosen.setdefault((case.format, case.workload), case)
    return list(chosen.values())


def peak_units(case: Case) -> float:
    return PROCESS_S + workloads.payload_of(case.workload) / ROUND_BYTES_PER_S


def _measure_peaks(
    framework: str, cases: list[Case], scratch: Path, progress: Progress | None = None
) -> list[dict[str, object]]:
    """Peak RSS of one warm CPU load per (format, workload) of PEAK_MIN_BYTES or more, each in a fresh process."""
    records: list[dict[str, object]] = []
    for case in peak_cases(framework, cases):
        if progress is not None:
            progress.start(f"peak memory: {framework} {case.format} {case.workload}")
        record: dict[str, object] = {"framework": framework, "format": case.format, "workload": case.workload}
        try:
            path = kinds.saved_path(frameworks.adapter_class(framework), case.format, case.workload, scratch)
        except frameworks.UnsupportedError as error:  # a checkpoint timed as given that is no longer a file
            records.append({**record, "error": str(error)})
        else:
            records.append({**record, **_peak_of(framework, case, path)})
        if progress is not None:
            progress.advance(peak_units(case))
    return records


def _peak_of(framework: str, case: Case, path: Path) -> dict[str, object]:
    if not path.exists():
        return {"error": "no saved file (the save case did not run)"}
    arguments = ["-m", "bench.timing.peak_memory", framework, case.format, case.workload, str(path)]
    try:
        result = frameworks.run_child(framework, arguments, PEAK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {PEAK_TIMEOUT_S}s"}
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C, so the balloon driver is bound again


def run(config: RunConfig) -> Path:
    return run_interleaved([config])[0]


def run_interleaved(configs: list[RunConfig]) -> list[Path]:
    """Time the same cases in every run, their processes alternating (A, B, A, B, ...: per framework,
    process 1 of each run, then process 2 of each, and so on), so that the machine's drift during the
    run hits every one alike; each run gets its own directory. One run is `run`."""
    first = configs[0]
    cases = plan(
        first.preset,
        first.frameworks,
        first.formats,
        first.kinds,
        first.sizes,
        first.devices,
        threads=first.threads,
        workload_names=first.workloads,
    )
    if first.only_cases is not None:
        wanted = set(first.only_cases)
        unknown = sorted(wanted - {case.id for case in cases})
        if unknown:
            raise UsageError(f"--cases names {len(unknown)} cases the selection does not hold, e.g. {unknown[0]!r}")
        cases = [case for case in cases if case.id in wanted]
    if not cases:
        raise UsageError("the selection matches no benchmark case; check --frameworks/--formats/--kinds/--sizes")
    named = first.only_cases is not None  # --cases: what is named is timed, a baseline alone too (re-timing)
    if not named and not any(case.held for case in cases if not frameworks.is_baseline(case.framework)):
        pairs = sorted(
            {f"{case.format} ({case.framework})" for case in cases if not frameworks.is_baseline(case.framework)}
        )
        raise UsageError(
            f"nothing to time: no selected format holds a selected workload's kind (formats: {', '.join(pairs)}); "
            "`serbench support-table` shows what each format holds"
        )
    runs = [(config, RunDir(Path(config.out or default_out(config.preset)))) for config in configs]
    with contextlib.ExitStack() as held:
        for _, run_dir in runs:
            run_dir.prepare()
            held.enter_context(run_dir.locked())
            files.own_directory(run_dir.raw)
        _run_locked(runs, cases)
    return [run_dir.root for _, run_dir in runs]


def _run_locked(runs: list[tuple[RunConfig, RunDir]], cases: list[Case]) -> None:
    first = runs[0][0]
    envs = []
    for config, run_dir in runs:
        with config.interpreter():  # the versions of the interpreter that runs it
            env = environment.environment(run_dir.root)
        if config.variant:
            env["variant"] = {**config.variant, "interleaved_with": config.interleaved_with}
        envs.append(env)
    start = machine.snapshot()
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        with machine.page_reporting_paused(first.pause_page_reporting) as reporting:
            if reporting["active"] and not reporting["paused"]:
                console.print(
                    f"[yellow]free page reporting is active on {reporting['device']}: {reporting['note']}. "
                    "Large loads will spread (up to 6.6x here); --pause-page-reporting pauses it for the run."
                )
            for env, (_, run_dir) in zip(envs, runs, strict=True):
                env["page_reporting"] = reporting
                write_json(run_dir.env, env)
            _time_everything(runs, cases)
            if first.budget_s > 0 and first.open_cases is not None and len(runs) == 1:
                envs[0]["until_decided"] = _time_until_decided(first, runs[0][1], cases, first.open_cases)
            _measure_limits_again(runs, cases)
            for _, run_dir in runs:  # after the deciding processes: a user's checkpoint store is in scratch
                files.remove_marked(run_dir.scratch, "the run's saved files")
    finally:
        signal.signal(signal.SIGTERM, previous)
    busy = machine.busy_record(start, machine.snapshot())
    for warning in busy["warnings"]:
        console.print(f"[yellow]the machine was busy: {warning}")
    for env, (_, run_dir) in zip(envs, runs, strict=True):
        env["machine"] = busy
        frame = assemble(run_dir.root)
        env["threads"] = thread_record(run_dir)
        env["versions_in_effect"] = versions_in_effect(run_dir)
        write_json(run_dir.env, env)
        write_bytes_atomic(run_dir.results_csv, frame.to_csv(index=False).encode())
        write_bytes_atomic(run_dir.results_json, frame.to_json(orient="records", indent=1).encode())


def _time_until_decided(
    config: RunConfig, run_dir: RunDir, cases: list[Case], open_cases: deciding.OpenCases
) -> dict[str, object]:
    passes = PRESETS[config.preset].passes

    def run_chunk(framework: str, chunk: list[Case], process: int, plan_name: str) -> None:
        try:
            _run_chunk(framework, chunk, run_dir, run_dir.own_scratch(framework), process, plan_name, passes)
        finally:
            files.remove_marked(run_dir.scratch / framework, "the files a framework's cases saved")

    record = deciding.until_decided(
        run_dir, cases, open_cases, config.budget_s, run_chunk, say=lambda line: console.print(line)
    )
    return record.as_dict()


def thread_record(run_dir: RunDir) -> dict[str, dict[str, object]]:
    """Per framework and thread setting, the settings its processes reported (first case of each)."""
    record: dict[str, dict[str, object]] = {}
    for path in run_dir.benchmarks():
        for bench in read_json(path, BENCHMARK_SCHEMA)["benchmarks"][:1]:
            info = bench["extra_info"]
            record.setdefault(info["framework"], {})[info.get("threads", "default")] = info.get("threads_in_effect")
    return record


def versions_in_effect(run_dir: RunDir) -> dict[str, dict[str, str]]:
    """Per framework, the versions of its packages that its timed processes imported (first case of the
    first process): what a version variant's figures were measured with, from the process itself."""
    record: dict[str, dict[str, str]] = {}
    for path in run_dir.benchmarks():
        for bench in read_json(path, BENCHMARK_SCHEMA)["benchmarks"][:1]:
            info = bench["extra_info"]
            record.setdefault(info["framework"], info.get("versions_in_effect") or {})
    return record


def steps_of(config: RunConfig, cases: list[Case]) -> dict[str, list[Step]]:
    """Per framework, its pytest processes in order: each thread setting's base processes, then the
    extra processes that re-time its headline loads."""
    by_chunk: dict[tuple[str, str], list[Case]] = {}
    for case in cases:
        by_chunk.setdefault((case.framework, case.threads), []).append(case)
    preset = PRESETS[config.preset]
    base = config.processes or preset.processes
    extra = preset.extra_load_processes if config.extra_load_processes is None else config.extra_load_processes
    steps: dict[str, list[Step]] = {}
    for (framework, _), chunk in by_chunk.items():
        headline = headline_loads(chunk)
        processes = base + (extra if headline else 0)
        steps.setdefault(framework, []).extend(
            Step(framework, chunk, process, processes)
            if process < base
            else Step(framework, headline, process, processes, "loads-plan")
            for process in range(processes)
        )
    return steps


def _probe_bytes(cases: list[Case]) -> int:
    largest = max(workloads.payload_of(name) for name in {c.workload for c in cases})
    return min(max(largest, 64 << 20), 1 << 30)


def _measured_limits(run_dir: RunDir, cases: list[Case]) -> dict[str, dict]:
    return {name: limit.as_dict() for name, limit in limits.measure_all(run_dir.root, _probe_bytes(cases)).items()}


def _share_limits(runs: list[tuple[RunConfig, RunDir]]) -> None:
    """The first run's limits.json into every run (one machine, measured once) and into each raw/."""
    first_dir = runs[0][1]
    measured_limits = stored.read_bytes(first_dir.limits, cap=ENV_CAP, what="limits.json")
    for _, run_dir in runs:
        if run_dir != first_dir:
            write_bytes_atomic(run_dir.limits, measured_limits)
        write_bytes_atomic(run_dir.raw_limits, measured_limits)


def _measure_limits_again(runs: list[tuple[RunConfig, RunDir]], cases: list[Case]) -> None:
    """Limits measured again after the timing, each kept at its best of the two: a ceiling is measured at
    the run's start and end, so the cases it bounds fall between its measurements, and one busy minute
    at the start does not leave a figure above its limit."""
    first_dir = runs[0][1]
    console.print("measuring the limits again ...")
    earlier = stored.read_json(first_dir.limits, what="limits.json", cap=ENV_CAP, schema=LIMITS_SCHEMA)
    write_json(first_dir.limits, limits.best_of(earlier, _measured_limits(first_dir, cases)))
    _share_limits(runs)


def _time_everything(runs: list[tuple[RunConfig, RunDir]], cases: list[Case]) -> None:
    first, first_dir = runs[0]
    if not (first.resume and first_dir.limits.exists()):
        console.print(f"measuring limits with {_probe_bytes(cases) / 2**20:.0f} MiB buffers ...")
        write_json(first_dir.limits, _measured_limits(first_dir, cases))
    _share_limits(runs)

    passes = PRESETS[first.preset].passes
    todo: dict[str, list[Step]] = {}
    for framework, steps in steps_of(first, cases).items():
        done = all(
            first_dir.benchmark(RunDir.chunk(framework, step.cases[0].threads), step.process).exists() for step in steps
        )
        if first.resume and len(runs) == 1 and done and (first_dir.peaks(framework).exists() or not first.peak_memory):
            console.print(f"{framework}: already done, skipped (--resume)")
        else:
            todo[framework] = steps
    peaks = {
        framework: peak_cases(framework, steps[0].cases) if first.peak_memory else []
        for framework, steps in todo.items()
    }
    total = len(runs) * sum(step.units(passes) for steps in todo.values() for step in steps)
    total += len(runs) * sum(peak_units(case) for chosen in peaks.values() for case in chosen)
    with Progress("run", total, console) as progress:
        for framework, steps in todo.items():
            try:
                for step in steps:
                    for config, run_dir in runs:  # A, B, A, B, ...
                        labelled = replace(step, label=config.label)
                        before = progress.done
                        with config.interpreter():
                            _run_chunk(
                                framework,
                                step.cases,
                                run_dir,
                                run_dir.own_scratch(framework),
                                step.process,
                                step.plan_name,
                                passes,
                                progress,
                            )
                        progress.done = before + step.units(passes)  # whatever the events said (a crash, a skip)
                        progress.step_done(labelled.describe())
                if first.peak_memory:
                    for config, run_dir in runs:
                        with config.interpreter():
                            measured = _measure_peaks(framework, steps[0].cases, run_dir.scratch / framework, progress)
                        write_json(run_dir.peaks(framework), measured)
            finally:
                for _, run_dir in runs:
                    files.remove_marked(run_dir.scratch / framework, "the files a framework's cases saved")
