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

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

import frameworks
from bench import environment, kinds, workloads
from bench.errors import UsageError
from bench.timing import limits, machine
from bench.timing.plan import PRESETS, Case, headline_loads, plan, write_plan
from bench.timing.results import assemble
from bench.timing.rundir import RunDir
from frameworks.files import write_bytes_atomic

BENCH_MODULE = Path(__file__).resolve().parent / "test_io.py"
CHUNK_TIMEOUT_S = 3600
PEAK_TIMEOUT_S = 600
PEAK_MIN_BYTES = 16 << 20
"""Below this payload the RSS a load adds is allocator noise (0.8x to 6.7x for 1 MiB here)."""
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


def write_json(path: Path, data: object) -> None:
    write_bytes_atomic(path, json.dumps(data, indent=1, default=str).encode())


def default_out(preset: str) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("results") / f"{stamp}-{preset}"


def thread_environment(framework: str, threads: str) -> dict[str, str]:
    """This process's environment with the framework's thread variables set for `threads`."""
    env = dict(os.environ)
    for name, value in frameworks.adapter_class(framework).thread_env(threads).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _run_chunk(
    framework: str,
    cases: list[Case],
    run_dir: RunDir,
    scratch: Path,
    process: int = 0,
    plan_name: str = "plan",
    passes: int = 1,
) -> None:
    """Time one framework's cases of one thread setting in a fresh pytest process; raw files appear
    only when complete."""
    threads = cases[0].threads if cases else "1"
    chunk = RunDir.chunk(framework, threads)
    plan_path = run_dir.plan(chunk, plan_name)
    outcomes = run_dir.outcomes(chunk)
    final = run_dir.benchmark(chunk, process)
    partial = run_dir.partial_benchmark(chunk, process)
    log_path = run_dir.log(chunk, process)
    write_plan(cases, plan_path, passes)
    if process == 0:
        outcomes.unlink(missing_ok=True)
    if not any(case.held for case in cases):
        write_json(final, {"benchmarks": [], "note": "no case of this selection is held by these formats"})
        return
    env = thread_environment(framework, threads)  # read by the framework when it is imported
    command = [
        sys.executable,
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
        "--serbench-label",
        f"{framework} (threads {threads}, process {process})",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "-q",
        "--benchmark-json",
        str(partial),
        "--benchmark-disable-gc",
        "--benchmark-save-data",
        "--benchmark-quiet",
        "-W",
        "ignore::DeprecationWarning",
    ]
    with open(log_path, "w") as log:
        result = subprocess.run(command, env=env, stdout=log, stderr=None, timeout=CHUNK_TIMEOUT_S, check=False)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"benchmark chunk for {framework} failed (exit {result.returncode}); see {log_path}")
    if result.returncode == 1:
        console.print(f"[yellow]{framework}: some cases failed; they are reported as errors (details in {log_path})")
    if not partial.exists() or partial.stat().st_size == 0:
        # pytest-benchmark writes no file (or an empty one, by version) when no case was timed
        write_json(partial, {"benchmarks": [], "note": "no case was timed: each one's outcome is in outcomes"})
    os.replace(partial, final)


def _measure_peaks(framework: str, cases: list[Case], scratch: Path) -> list[dict[str, object]]:
    """Peak RSS of one warm CPU load per (format, workload) of PEAK_MIN_BYTES or more, each in a fresh process."""
    records: list[dict[str, object]] = []
    if frameworks.is_baseline(framework):  # no file, so no load to measure
        return records
    seen = set()
    for case in cases:
        key = (case.format, case.workload)
        if not case.held or case.op != "load" or workloads.payload_of(case.workload) < PEAK_MIN_BYTES or key in seen:
            continue
        seen.add(key)
        path = kinds.saved_path(frameworks.adapter_class(framework), case.format, case.workload, scratch)
        record: dict[str, object] = {"framework": framework, "format": case.format, "workload": case.workload}
        if not path.exists():
            records.append({**record, "error": "no saved file (the save case did not run)"})
            continue
        command = [sys.executable, "-m", "bench.timing.peak_memory", framework, case.format, case.workload, str(path)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=PEAK_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            records.append({**record, "error": f"timed out after {PEAK_TIMEOUT_S}s"})
            continue
        if result.returncode != 0:
            records.append({**record, "error": (result.stderr.strip().splitlines() or ["?"])[-1][:300]})
            continue
        records.append({**record, **json.loads(result.stdout.strip().splitlines()[-1])})
    return records


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C, so the balloon driver is bound again


def run(config: RunConfig) -> Path:
    out = Path(config.out or default_out(config.preset))
    cases = plan(
        config.preset,
        config.frameworks,
        config.formats,
        config.kinds,
        config.sizes,
        config.devices,
        threads=config.threads,
        workload_names=config.workloads,
    )
    if not cases:
        raise UsageError("the selection matches no benchmark case; check --frameworks/--formats/--kinds/--sizes")
    if not any(case.held for case in cases if not frameworks.is_baseline(case.framework)):
        pairs = sorted(
            {f"{case.format} ({case.framework})" for case in cases if not frameworks.is_baseline(case.framework)}
        )
        raise UsageError(
            f"nothing to time: no selected format holds a selected workload's kind (formats: {', '.join(pairs)}); "
            "`serbench support-table` shows what each format holds"
        )
    run_dir = RunDir(out)
    run_dir.raw.mkdir(parents=True, exist_ok=True)
    env = environment.environment(out)
    start = machine.snapshot()
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        with machine.page_reporting_paused(config.pause_page_reporting) as reporting:
            env["page_reporting"] = reporting
            if reporting["active"] and not reporting["paused"]:
                console.print(
                    f"[yellow]free page reporting is active on {reporting['device']}: {reporting['note']}. "
                    "Large loads will spread (up to 6.6x here); --pause-page-reporting pauses it for the run."
                )
            write_json(run_dir.env, env)
            _time_everything(config, cases, run_dir)
    finally:
        signal.signal(signal.SIGTERM, previous)
    env["machine"] = machine.busy_record(start, machine.snapshot())
    for warning in env["machine"]["warnings"]:
        console.print(f"[yellow]the machine was busy: {warning}")
    frame = assemble(out)
    env["threads"] = thread_record(run_dir)
    write_json(run_dir.env, env)
    write_bytes_atomic(run_dir.results_csv, frame.to_csv(index=False).encode())
    write_bytes_atomic(run_dir.results_json, frame.to_json(orient="records", indent=1).encode())
    return out


def thread_record(run_dir: RunDir) -> dict[str, dict[str, object]]:
    """Per framework and thread setting, the settings its processes reported (first case of each)."""
    record: dict[str, dict[str, object]] = {}
    for path in run_dir.benchmarks():
        for bench in json.loads(path.read_text()).get("benchmarks", [])[:1]:
            info = bench["extra_info"]
            record.setdefault(info["framework"], {})[info.get("threads", "default")] = info.get("threads_in_effect")
    return record


def _time_everything(config: RunConfig, cases: list[Case], run_dir: RunDir) -> None:
    if not (config.resume and run_dir.limits.exists()):
        largest = max(workloads.payload_of(name) for name in {c.workload for c in cases})
        probe = min(max(largest, 64 << 20), 1 << 30)
        console.print(f"measuring limits with {probe / 2**20:.0f} MiB buffers ...")
        measured = {name: limit.as_dict() for name, limit in limits.measure_all(run_dir.root, probe).items()}
        write_json(run_dir.limits, measured)
    shutil.copyfile(run_dir.limits, run_dir.raw_limits)

    by_chunk: dict[tuple[str, str], list[Case]] = {}
    for case in cases:
        by_chunk.setdefault((case.framework, case.threads), []).append(case)
    preset = PRESETS[config.preset]
    base_processes = config.processes or preset.processes
    extra = preset.extra_load_processes if config.extra_load_processes is None else config.extra_load_processes
    for framework in dict.fromkeys(framework for framework, _ in by_chunk):
        chunks = {threads: chunk for (name, threads), chunk in by_chunk.items() if name == framework}
        processes = {
            threads: base_processes + (extra if headline_loads(chunk) else 0) for threads, chunk in chunks.items()
        }
        done = all(
            run_dir.benchmark(RunDir.chunk(framework, threads), process).exists()
            for threads in chunks
            for process in range(processes[threads])
        )
        peaks_path = run_dir.peaks(framework)
        if config.resume and done and (peaks_path.exists() or not config.peak_memory):
            console.print(f"{framework}: already done, skipped (--resume)")
            continue
        framework_scratch = run_dir.scratch / framework
        try:
            for threads, chunk in chunks.items():
                for process in range(processes[threads]):
                    if process < base_processes:
                        _run_chunk(framework, chunk, run_dir, framework_scratch, process, passes=preset.passes)
                    else:
                        headline = headline_loads(chunk)
                        _run_chunk(
                            framework, headline, run_dir, framework_scratch, process, "loads-plan", passes=preset.passes
                        )
            if config.peak_memory:
                first = next(iter(chunks.values()))
                write_json(peaks_path, _measure_peaks(framework, first, framework_scratch))
        finally:
            shutil.rmtree(framework_scratch, ignore_errors=True)
    shutil.rmtree(run_dir.scratch, ignore_errors=True)


def summary(out: Path) -> str:
    """A short console view: load and save throughput of the largest workload per format."""
    import pandas as pd

    frame = pd.read_csv(RunDir(out).results_csv)
    timed = frame[(frame["status"] == "ok") & (frame["device"] == "cpu")].copy()
    if timed.empty:
        return "no timed rows"
    largest = timed.loc[timed["payload_bytes"] == timed["payload_bytes"].max()].copy()
    payload = largest["payload_bytes"] / 1e9
    largest["GB/s [IQR]"] = [
        f"{p / m:.2f} [{p / q3:.2f}-{p / q1:.2f}]" + (" unstable" if s == "unstable" else "")
        for p, m, q1, q3, s in zip(
            payload, largest["median_s"], largest["q1_s"], largest["q3_s"], largest["stability"], strict=True
        )
    ]
    view = largest.set_index(["framework", "format", "threads", "op", "cache"])[["GB/s [IQR]"]]
    return f"GB/s for {largest['workload'].iloc[0]} ({largest['payload_bytes'].iloc[0] / 2**20:.0f} MiB):\n" + (
        view.to_string()
    )
