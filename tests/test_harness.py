"""The benchmark harness: plan, page cache, materialization, and the invariants of a real run.

No timing decides a test here: the tests check rows, bytes, statuses and physical invariants.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import frameworks
from bench import workloads
from bench.timing import pagecache, plan
from bench.timing.materialize import materialize, touch_pages
from bench.timing.plan import CASE_KEY
from bench.timing.results import COLUMNS
from bench.timing.rundir import RunDir
from bench.timing.runner import RunConfig, run
from tests.conftest import adapter_or_skip


def test_plan_covers_every_axis_and_marks_unsupported_cells() -> None:
    cases = plan.plan("quick", ("numpy", "torch"))
    ids = {case.id for case in cases}
    assert "torch|torch|size-64MiB|cpu|cold|load|1" in ids
    assert "torch|torch|size-64MiB|cuda|warm|load|1" in ids
    assert "torch|safetensors|size-64MiB|cpu|warm|open|1" in ids, "the lazy loader's bare open is its own figure"
    assert "numpy|npy|size-64MiB|cpu|-|save|1" in ids
    unsupported = [case for case in cases if not case.held]
    assert {(c.framework, c.format, c.workload) for c in unsupported} >= {("numpy", "npy", "d2l-dict")}
    assert all(case.rounds == 0 for case in unsupported)
    assert any(case.framework == "null-adapter" for case in cases)


def test_quick_preset_covers_every_kind_of_the_mission() -> None:
    kinds = {workloads.WORKLOADS[case.workload].kind for case in plan.plan("quick") if case.held}
    assert kinds == {"tensor", "list", "dict", "nested", "mlp", "checkpoint"}


def test_the_in_memory_baseline_has_no_cold_case() -> None:
    """A memory copy has no page cache to be cold in: it must never be compared with a disk limit."""
    null = [case for case in plan.plan("quick") if case.framework == "null-adapter"]
    assert null
    assert {case.cache for case in null} == {"-", "warm"}


def test_threads_are_an_axis_of_the_plan() -> None:
    quick = plan.plan("quick", ("torch",), include_null=False)
    assert {case.threads for case in quick} == {"1"}, "the quick preset times the reproducible setting"
    full = plan.plan("full", ("torch",), include_null=False)
    threaded = [case for case in full if case.threads == "default"]
    assert threaded
    assert {(c.op, workloads.payload_of(c.workload) >= plan.HEADLINE_MIN_BYTES) for c in threaded} == {("load", True)}
    both = plan.plan("quick", ("torch",), include_null=False, threads=("1", "default"))
    assert len(both) == 2 * len(quick), "--threads 1,default times every case in both settings"


@pytest.mark.parametrize("framework", [*plan.frameworks.names(), *plan.frameworks.baselines()])
def test_each_framework_says_which_variables_size_its_threads(framework: str) -> None:
    from bench.timing.runner import thread_environment

    adapter = plan.frameworks.adapter_class(framework)
    one = thread_environment(framework, "1")
    assert all(one.get(name) for name in adapter.thread_variables), "one thread sets every variable it names"
    assert one["OMP_NUM_THREADS"] == "1"
    assert all(one[name] == "1" or name == "XLA_FLAGS" for name in adapter.thread_variables), (
        "a count is the variable's value, except in XLA_FLAGS, which holds flags"
    )
    default = thread_environment(framework, "default")
    assert not set(adapter.thread_variables) & set(default), "default leaves the framework's own choice"


def test_plan_selection_filters() -> None:
    cases = plan.plan(
        "quick",
        ("torch",),
        formats=("torch",),
        kinds=("dict",),
        sizes=("medium",),
        devices=("cpu",),
        include_null=False,
    )
    assert {c.format for c in cases} == {"torch"}
    assert {workloads.WORKLOADS[c.workload].size for c in cases} == {"medium"}
    assert {c.device for c in cases} == {"cpu"}
    assert (
        plan.plan("full", ("torch",), formats=("torch",), sizes=("large",), include_null=False)[0].workload == "vgg16"
    )


def test_eviction_empties_the_page_cache(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(np.ones(8 << 20, np.uint8).tobytes())
    pagecache.warm(path)
    before = pagecache.resident_fraction(path)
    pagecache.evict(path)
    after = pagecache.resident_fraction(path)
    if before > 0.9 and after > 0.9:
        pytest.skip(f"this filesystem ignores POSIX_FADV_DONTNEED ({tmp_path}); cold rows say so")
    assert before > 0.9
    assert after < 0.01


def test_touch_pages_reads_one_byte_per_page() -> None:
    array = np.zeros(3 * 4096 + 10, np.uint8)
    array[[0, 4096, 8192, 12288, -1]] = 1
    assert touch_pages(array) == 5
    assert touch_pages(np.zeros(0, np.float32)) == 0


def test_lazy_materialization_copies_every_byte(tmp_path: Path) -> None:
    torch_adapter = adapter_or_skip("torch")
    state = workloads.build("size-1MiB")
    path = tmp_path / "s.safetensors"
    torch_adapter.save(torch_adapter.from_numpy(state), path, "safetensors")
    copies = materialize(torch_adapter, torch_adapter.load(path, "safetensors"), lazy=True)
    assert sum(copy.nbytes for copy in copies) == workloads.payload_bytes(state)
    assert all(copy.flags.owndata for copy in copies)


def test_each_figure_is_compared_with_its_slowest_stage() -> None:
    from bench.timing.results import limit_for

    slow_disk = {"disk_read_cold": {"gbps": 2.0}, "h2d_pageable": {"gbps": 8.0}}
    slow_bus = {"disk_read_cold": {"gbps": 9.0}, "h2d_pageable": {"gbps": 8.0}}
    assert limit_for("load", "cuda", "cold", slow_disk) == "disk_read_cold"
    assert limit_for("load", "cuda", "cold", slow_bus) == "h2d_pageable"
    assert limit_for("load", "cuda", "warm", slow_disk) == "h2d_pageable"
    assert limit_for("load", "cpu", "cold", slow_disk) == "disk_read_cold"
    assert limit_for("load", "cpu", "warm", slow_disk) == "memcpy"
    assert limit_for("save", "cpu", "-", slow_disk) == "disk_write"
    assert limit_for("open", "cpu", "warm", slow_disk) is None


def test_a_chunk_whose_cases_all_skip_leaves_valid_json(tmp_path: Path) -> None:
    """A framework that is not installed (TF and MXNet on the GPU machine) skips every case;
    pytest-benchmark then leaves its JSON empty, which must not break the run."""
    from bench.timing.runner import _run_chunk

    torch_adapter = adapter_or_skip("torch")
    if "cuda" in torch_adapter.devices():
        pytest.skip("a GPU is present: the cuda cases would run")
    cases = [c for c in plan.plan("quick", ("torch",), formats=("torch",), sizes=("medium",)) if c.device == "cuda"]
    run_dir = RunDir(tmp_path)
    run_dir.raw.mkdir()
    _run_chunk("torch", cases, run_dir, tmp_path / "scratch", passes=2)
    raw = run_dir.raw
    stored = json.loads((raw / "benchmark-torch-t1-p0.json").read_text())
    assert stored["benchmarks"] == []
    outcomes = [json.loads(line) for line in (raw / "outcomes-torch-t1.jsonl").read_text().splitlines()]
    assert {o["outcome"] for o in outcomes} == {"skipped"}
    assert len(outcomes) == 2 * len(cases), "one outcome per case and pass"
    assert {o["id"] for o in outcomes} == {case.id for case in cases}


def small_config(out: Path) -> RunConfig:
    return RunConfig(frameworks=("numpy", "torch"), sizes=("medium",), out=out, extra_load_processes=2)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, small run: NumPy and PyTorch on the medium workloads, CPU and CUDA rows, with the
    64 MiB loads re-timed in two more processes (off in the quick preset)."""
    adapter_or_skip("torch")
    out = tmp_path_factory.mktemp("run") / "r"
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        run(small_config(out))
    (out.parent / "stderr.txt").write_text(stderr.getvalue())
    return out


def test_run_reports_progress_per_process_off_a_terminal(small_run: Path) -> None:
    """Plain lines (stderr is no terminal here): one per pytest process, the share done rising to 100%."""
    from bench.timing.runner import steps_of

    lines = (small_run.parent / "stderr.txt").read_text().splitlines()
    steps = [line for line in lines if " done" in line and "process" in line]
    config = small_config(small_run)
    planned = steps_of(config, plan.plan(config.preset, config.frameworks, sizes=config.sizes))
    assert set(planned) == {"numpy", "torch", "null-adapter"}
    for framework_steps in planned.values():
        for step in framework_steps:
            assert any(step.describe() in line for line in steps), (step.describe(), lines)
    assert len(steps) == sum(map(len, planned.values()))
    shares = [int(line.split("%")[0].rsplit(" ", 1)[-1]) for line in steps]
    assert shares == sorted(shares)
    assert shares[-1] == 100
    assert any(line.startswith("serbench run: done in") for line in lines[lines.index(steps[-1]) :])


def test_run_writes_tidy_results_with_environment(small_run: Path) -> None:
    frame = pd.read_csv(small_run / "results.csv")
    assert list(frame.columns) == COLUMNS
    env = json.loads((small_run / "env.json").read_text())
    assert {"python", "cpu", "cores_logical", "ram_bytes", "gpu", "kernel", "filesystem", "git_commit"} <= set(env)
    assert {"busy", "other_cpu_fraction", "steal_fraction", "load_average_start"} <= set(env["machine"])
    assert {"active", "paused", "note"} <= set(env["page_reporting"])
    assert env["threads"]["torch"]["1"]["torch.get_num_threads"] == 1, "the thread setting reached torch"
    assert env["threads"]["numpy"]["1"]["OMP_NUM_THREADS"] == "1"
    assert env["versions"]["torch"].startswith("2.")
    limits = json.loads((small_run / "limits.json").read_text())
    assert limits["memcpy"]["gbps"] > 0
    expected = {c.id for c in plan.plan("quick", ("numpy", "torch"), sizes=("medium",))}
    got = set(frame[list(CASE_KEY)].astype(str).agg("|".join, axis=1))
    assert got == expected, "every planned case is a row"
    assert not list(small_run.rglob("*.partial")), "no partial files left"
    assert not (small_run / "scratch").exists()


def test_no_load_beats_memcpy_and_cold_loads_were_cold(small_run: Path) -> None:
    frame = pd.read_csv(small_run / "results.csv")
    memcpy = json.loads((small_run / "limits.json").read_text())["memcpy"]["gbps"]
    large = frame[(frame["op"] == "load") & (frame["status"] == "ok") & (frame["payload_bytes"] >= 64 << 20)]
    assert not large.empty
    too_fast = large[large["gbps"] > memcpy]
    assert too_fast.empty, f"loads faster than memcpy ({memcpy:.2f} GB/s): {too_fast[['framework', 'format']]}"
    cold = frame[(frame["cache"] == "cold") & (frame["status"] == "ok") & (frame["framework"] != "null-adapter")]
    assert (cold["resident_before_cold"] < 0.01).all()


def test_rows_carry_bytes_roundtrip_spread_and_memory(small_run: Path) -> None:
    frame = pd.read_csv(small_run / "results.csv")
    ok = frame[frame["status"] == "ok"]
    headline = (ok["op"] == "load") & (ok["payload_bytes"] >= 64 << 20)
    assert headline.any()
    assert (ok.loc[~headline, "processes"] == 2).all(), "the quick preset pools two processes per case"
    assert (ok.loc[headline, "processes"] == 4).all(), "and re-times the 64 MiB loads in two more"
    # each process times every case in three passes; a pass whose every round waited for a CPU is left out
    samples = ok.loc[~headline, "samples"]
    assert ((samples == 2 * 3) | ((samples < 2 * 3) & (ok.loc[~headline, "rounds_waited"] > 0))).all()
    timed_rounds = ok["rounds_s"].map(json.loads).map(len)  # every round, also those left out
    assert (timed_rounds[(ok["size"] == "medium") & ~headline] == 2 * 3 * 2).all()
    assert (timed_rounds[headline] == 4 * 3 * 2).all()
    left_out = ok["rounds"] + ok["rounds_waited"] == timed_rounds
    kept_all = (ok["rounds"] == timed_rounds) & ok["unstable_reason"].fillna("").str.contains("the machine was busy")
    assert (left_out | kept_all).all(), (
        "a round that waited for a CPU is left out, or the figure says the machine was busy"
    )
    assert (small_run / "raw" / "loads-plan-torch-t1.json").exists()
    for column in ("iqr_s", "q1_s", "q3_s", "low_s", "high_s", "sample_low_s", "sample_high_s", "stability"):
        assert ok[column].notna().all(), column
    assert set(ok["stability"]) <= {"stable", "unstable"}
    unstable = ok[ok["stability"] == "unstable"]
    assert unstable["unstable_reason"].str.len().gt(0).all(), "an unstable figure says why"
    assert ((ok["q1_s"] <= ok["median_s"]) & (ok["median_s"] <= ok["q3_s"])).all()

    saved = ok[(ok["op"] == "save") & (ok["framework"] != "null-adapter")]
    assert (saved["file_bytes"] >= saved["payload_bytes"]).all()
    torch_rows = ok[(ok["framework"] == "torch") & (ok["format"] == "torch")]
    assert (torch_rows["roundtrip"] == "exact").all()
    peak = frame[
        (frame["op"] == "load")
        & (frame["cache"] == "warm")
        & (frame["device"] == "cpu")
        & (frame["framework"] != "null-adapter")
        & (frame["workload"] == "size-64MiB")
    ]
    assert (peak["peak_rss_multiple"] > 0.5).all(), "a load that materializes 64 MiB must add about that much RSS"


def test_every_round_keeps_its_evidence(small_run: Path) -> None:
    """Faults, context switches, run-queue delay and steal per round, aligned with pytest-benchmark's
    own round times, so a slow round can be explained rather than pooled silently."""
    stored = json.loads((small_run / "raw" / "benchmark-torch-t1-p0.json").read_text())["benchmarks"]
    assert stored
    for bench in stored:
        records = bench["extra_info"]["round_evidence"]
        assert [r["seconds"] for r in records] == bench["stats"]["data"]
        assert {"minflt", "majflt", "nvcsw", "nivcsw", "runqueue_s", "steal_s", "waited"} <= set(records[0])
        assert bench["extra_info"]["threads_in_effect"]["torch.get_num_threads"] == 1
    loads = [b for b in stored if b["extra_info"]["op"] == "load" and b["extra_info"]["workload"] == "size-64MiB"]
    faults = [r["minflt"] for b in loads for r in b["extra_info"]["round_evidence"]]
    assert min(faults) >= (64 << 20) // (2 << 20), "materializing 64 MiB faults in at least its huge pages"
    frame = pd.read_csv(small_run / "results.csv")
    assert (frame.loc[frame["status"] == "ok", "minflt_per_round"] >= 0).all()


def test_cuda_rows_say_unavailable_with_a_reason(small_run: Path) -> None:
    frame = pd.read_csv(small_run / "results.csv")
    cuda = frame[frame["device"] == "cuda"]
    assert not cuda.empty
    if (cuda["status"] == "ok").any():
        pytest.skip("a GPU is present; the CUDA rows are timed")
    assert (cuda["status"] == "unavailable").all()
    assert cuda["note"].str.contains("cannot use device 'cuda'").all()
    assert cuda["median_s"].isna().all()


def test_cuda_loads_where_a_gpu_is_present_are_timed_and_equal_the_cpu_loads(small_run: Path) -> None:
    frame = pd.read_csv(small_run / "results.csv")
    loads = frame[(frame["framework"] == "torch") & (frame["op"] == "load")]
    cuda = loads[loads["device"] == "cuda"]
    if not (cuda["status"] == "ok").any():
        pytest.skip(f"no GPU here: {cuda['note'].iloc[0]}")
    assert (cuda["status"] == "ok").all(), cuda[["format", "workload", "status", "note"]]
    keys = ["format", "workload", "cache"]
    paired = cuda.merge(loads[loads["device"] == "cpu"], on=keys, suffixes=("_cuda", "_cpu"))
    assert len(paired) == len(cuda)
    assert (paired["roundtrip_cuda"] == paired["roundtrip_cpu"]).all(), "a cuda load must equal the cpu load"
    pinned = json.loads((small_run / "limits.json").read_text())["h2d_pinned"]["gbps"]
    too_fast = cuda[cuda["gbps"] > pinned]
    assert too_fast.empty, f"cuda loads faster than a pinned host-to-device copy ({pinned:.1f} GB/s): {too_fast}"
    torch_loads = cuda[cuda["format"].isin(["torch", "safetensors"])]
    assert (torch_loads["peak_device_bytes"] >= 0.9 * torch_loads["payload_bytes"]).all(), (
        "a load onto the GPU allocates its payload there (peak device memory per cuda load)"
    )


def test_cpu_rows_have_no_device_memory_figure(small_run: Path) -> None:
    frame = pd.read_csv(small_run / "results.csv")
    assert frame.loc[frame["device"] == "cpu", "peak_device_bytes"].isna().all()


def test_unsupported_cells_are_rows_without_timings(small_run: Path) -> None:
    frame = pd.read_csv(small_run / "results.csv")
    npy = frame[(frame["framework"] == "numpy") & (frame["format"] == "npy")]
    assert set(npy["status"]) == {"unsupported"}
    assert npy["median_s"].isna().all()


def test_resume_skips_finished_frameworks(small_run: Path) -> None:
    before = (small_run / "raw" / "benchmark-numpy-t1-p3.json").stat().st_mtime_ns
    run(RunConfig(frameworks=("numpy",), sizes=("medium",), out=small_run, resume=True, extra_load_processes=2))
    assert (small_run / "raw" / "benchmark-numpy-t1-p3.json").stat().st_mtime_ns == before


def test_peak_memory_measures_model_loads_and_lazy_loads(tmp_path: Path) -> None:
    from bench.timing.peak_memory import measure

    torch_adapter = adapter_or_skip("torch")
    model_file = tmp_path / "mlp.pt"
    torch_adapter.save_mlp(torch_adapter.new_mlp(workloads.mlp_parameters(0)), model_file, "torch")
    arguments = ["-m", "bench.timing.peak_memory", "torch", "torch", "d2l-mlp", str(model_file)]
    done = frameworks.run_child("torch", arguments, timeout_s=300)
    assert done.returncode == 0, done.stderr[-2000:]
    model = json.loads(done.stdout.strip().splitlines()[-1])
    # The MLP (31 KiB) is far below the 16 MiB from which a peak measures the loader (docs/benchmark.md): a first
    # load's fixed costs dominate (about 15x the payload here), so no multiple bounds it from above. But in a fresh
    # process, as the harness measures it, the load reads every byte into memory the process did not hold: a
    # peak below the payload did not see the load (in this process, with freed memory to reuse, it can read 0).
    # A peak not taken from the baseline would be at least the whole process's RSS.
    assert workloads.payload_of("d2l-mlp") <= model["peak_rss_bytes"] < model["baseline_rss_bytes"], model
    state_file = tmp_path / "state.safetensors"
    torch_adapter.save(torch_adapter.from_numpy(workloads.build("size-64MiB")), state_file, "safetensors")
    peak = measure("torch", "safetensors", "size-64MiB", state_file)["peak_rss_bytes"]
    payload = workloads.payload_of("size-64MiB")
    assert 0.5 * payload < peak < 1.5 * payload, "a touched memory map costs its pages once, not a copy"


def test_the_runner_passes_its_plan_as_options_of_the_serbench_plugin() -> None:
    """`pytest -p bench.timing.progress --help` documents the options the runner uses (no hidden variables)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "bench.timing.progress", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    for option in ("--serbench-plan", "--serbench-scratch", "--serbench-outcomes", "--serbench-events"):
        assert option in result.stdout
