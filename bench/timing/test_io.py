"""pytest-benchmark cases for one plan (see `bench.timing.plan`), driven by `serbench run`.

The plan file comes from `--serbench-plan` and saved files go under `--serbench-scratch` (options of
the `bench.timing.progress` plugin, which `serbench run` loads). Every case is
timed once per pass, pass after pass (test ids end in `#<pass>`), so its rounds spread over the
process's life. Preparation (building the workload, writing the file, warming or evicting the
cache, building a clone) runs in `setup`, outside the timer. Saves include fsync (the atomic save
path). Loads include materialization (`bench.timing.materialize`); a lazy loader's bare open is its own
`open` case. Figures that are not times go in extra_info: bytes, residency before a cold load,
round-trip outcome, the thread settings in effect, and each round's evidence (`bench.timing.evidence`).
"""

from __future__ import annotations

import ctypes
import gc
from pathlib import Path
from typing import Any

import pytest

import frameworks
from bench import kinds, workloads
from bench.conformance.roundtrip import outcome_of
from bench.environment import versions_here
from bench.timing import evidence, pagecache
from bench.timing.materialize import materialize
from bench.timing.plan import Case, read_plan_file


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per held case and pass of the plan given with --serbench-plan (none without one)."""
    if "case" not in metafunc.fixturenames:
        return
    plan_path = metafunc.config.getoption("serbench_plan", default=None)
    items: list[tuple[Case, int]] = []
    if plan_path:
        cases, passes = read_plan_file(Path(plan_path))
        items = [(case, index) for index in range(passes) for case in cases if case.held]
    metafunc.parametrize(("case", "pass_index"), items, ids=[f"{case.id}#{index}" for case, index in items])


_libc = ctypes.CDLL(None)
_subjects: dict[tuple[str, str], kinds.Subject] = {}


def release_free_memory() -> None:
    """Return freed heap memory to the OS, so every round's load pays for fresh pages as a new process
    would (otherwise a round reuses the previous round's pages or not, depending on what setup did)."""
    gc.collect(1)  # the previous round's cycles are young; a full collection costs ~160 ms with TF loaded
    trim = getattr(_libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


@pytest.fixture(scope="session")
def scratch(pytestconfig: pytest.Config) -> Path:
    """Where saved files go (--serbench-scratch), shared with the peak-memory pass."""
    path = Path(pytestconfig.getoption("serbench_scratch", default=None) or ".")
    path.mkdir(parents=True, exist_ok=True)
    return path


def adapter_for(case: Case) -> frameworks.Adapter:
    try:
        return frameworks.get_adapter(case.framework)
    except ImportError as error:
        pytest.skip(f"unavailable: {error}")


def _subject(case: Case, adapter: frameworks.Adapter) -> kinds.Subject:
    """What the case saves, loads into and compares with, built once per (framework, workload) for
    all passes. The load target (a clone) is built here too, outside the timer: every round loads
    into it again (building a Keras model and optimizer each round would cost more than the load)."""
    key = (case.framework, case.workload)
    if key not in _subjects:
        _subjects[key] = kinds.kind_of(case.workload).subject(adapter, case.workload)
    return _subjects[key]


def test_io(case: Case, pass_index: int, benchmark: Any, scratch: Path) -> None:
    try:
        time_case(case, pass_index, benchmark, scratch)
    except frameworks.UnsupportedError as error:  # a dtype or shape this format cannot hold (a user's checkpoint)
        pytest.skip(f"unsupported: {error}")


def time_case(case: Case, pass_index: int, benchmark: Any, scratch: Path) -> None:
    adapter = adapter_for(case)
    if case.device != "cpu":
        try:
            adapter.check_device(case.device)
        except frameworks.DeviceUnavailableError as error:
            pytest.skip(f"unavailable: {error}")
    workload = workloads.WORKLOADS[case.workload]
    spec = adapter.spec(case.format)
    kind = kinds.kind_of(case.workload)
    path = kinds.saved_path(adapter, case.format, case.workload, scratch)
    subject = _subject(case, adapter)

    def save() -> None:
        kind.save(adapter, subject, path, case.format)

    baseline = adapter.baseline  # no file: nothing in a page cache, nothing on disk
    if case.op != "save" and (baseline or not path.exists()):
        save()
    residency: list[float] = []
    before: list[evidence.Counters] = []
    after: list[evidence.Counters] = []
    device_peaks: list[int | None] = []
    on_device = case.device != "cpu" and case.op == "load"

    def prepare() -> tuple[tuple[Any, ...], dict[str, Any]]:
        if not baseline:
            if case.cache == "cold":
                pagecache.evict(path)
                residency.append(pagecache.resident_fraction(path))
            else:
                pagecache.warm(path)
        release_free_memory()
        if on_device:
            adapter.reset_device_memory_peak(case.device)
        before.append(evidence.sample())
        return (), {}

    def after_round(*_: Any) -> None:
        after.append(evidence.sample())
        if on_device:
            device_peaks.append(adapter.device_memory_peak(case.device))

    def load() -> Any:
        loaded = kind.load(adapter, subject, path, case.format, case.device)
        if case.op == "load" and kind.returns_tree:
            materialize(adapter, loaded, lazy=spec.lazy)
        return loaded

    def timed_load() -> None:
        load()  # the result is dropped inside the round, so a mapped file can be evicted next round

    def timed_save() -> None:
        save()

    def prepare_save() -> tuple[tuple[Any, ...], dict[str, Any]]:
        release_free_memory()
        before.append(evidence.sample())
        return (), {}

    target, setup = (timed_save, prepare_save) if case.op == "save" else (timed_load, prepare)
    benchmark.pedantic(target, setup=setup, teardown=after_round, rounds=case.rounds, warmup_rounds=0, iterations=1)

    info = benchmark.extra_info
    info.update(case.as_dict())
    info["pass"] = pass_index
    info["threads_in_effect"] = adapter.thread_settings()
    info["versions_in_effect"] = versions_here(adapter.packages)
    times = benchmark.stats.stats.data
    info["round_evidence"] = [
        evidence.round_record(start, end, seconds) for start, end, seconds in zip(before, after, times, strict=True)
    ]
    info["kind"] = workload.kind
    info["dtype"] = workload.dtype
    info["size"] = workload.size
    info["payload_bytes"] = workloads.payload_bytes(subject.reference)
    info["file_bytes"] = 0 if baseline else pagecache.size_on_disk(path)
    info["lazy"] = spec.lazy
    info["resident_before_cold"] = max(residency) if residency else None
    measured = [peak for peak in device_peaks if peak is not None]
    info["peak_device_bytes"] = max(measured) if measured else None
    back = kind.state(adapter, subject, load())
    info["roundtrip"] = outcome_of(subject.reference, back).summary()
