"""pytest-benchmark cases for one plan (see `bench.plan`), driven by `serbench run`.

The plan file comes from $SERBENCH_PLAN and saved files go under $SERBENCH_SCRATCH. Preparation
(building the workload, writing the file, warming or evicting the cache, building a clone) runs
in `setup`, outside the timer. Saves include fsync (the atomic save path). Loads include
materialization (`bench.materialize`); a lazy loader's bare open is its own `open` case. Figures
that are not times (bytes, residency before a cold load, round-trip outcome) go in extra_info.
"""

from __future__ import annotations

import ctypes
import gc
import os
from pathlib import Path
from typing import Any

import pytest

import frameworks
from bench import pagecache, workloads
from bench.materialize import materialize
from bench.null_adapter import NullAdapter
from bench.plan import Case, read_plan
from bench.recipes.training import training_recipe
from bench.roundtrip import outcome_of

PLAN = (
    [case for case in read_plan(Path(os.environ["SERBENCH_PLAN"])) if case.held]
    if os.environ.get("SERBENCH_PLAN")
    else []
)
_null = NullAdapter()
_libc = ctypes.CDLL(None)


def release_free_memory() -> None:
    """Return freed heap memory to the OS, so every round's load pays for fresh pages as a new process
    would (otherwise a round reuses the previous round's pages or not, depending on what setup did)."""
    gc.collect(1)  # the previous round's cycles are young; a full collection costs ~160 ms with TF loaded
    trim = getattr(_libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def scratch_dir() -> Path:
    path = Path(os.environ.get("SERBENCH_SCRATCH", "."))
    path.mkdir(parents=True, exist_ok=True)
    return path


def adapter_for(case: Case) -> frameworks.Adapter:
    if case.framework == NullAdapter.name:
        return _null
    try:
        return frameworks.get_adapter(case.framework)
    except ImportError as error:
        pytest.skip(f"unavailable: {error}")


def file_for(case: Case, suffix: str, scratch: Path) -> Path:
    """Where a case's saved file lives; the peak-memory pass finds the same file here."""
    stem = f"{case.framework}-{case.format}-{case.workload}".replace("/", "_")
    return scratch / f"{stem}{suffix}"


@pytest.mark.parametrize("case", PLAN, ids=[case.id for case in PLAN])
def test_io(case: Case, benchmark: Any) -> None:
    adapter = adapter_for(case)
    if case.device != "cpu":
        try:
            adapter.check_device(case.device)
        except frameworks.DeviceUnavailableError as error:
            pytest.skip(f"unavailable: {error}")
    workload = workloads.WORKLOADS[case.workload]
    spec = adapter.spec(case.format)
    reference = workloads.build(case.workload)
    is_mlp, is_checkpoint = workload.kind == "mlp", workload.kind == "checkpoint"
    path = file_for(case, spec.suffix, scratch_dir())
    if is_checkpoint:
        recipe = training_recipe(case.framework)
        native = recipe.new(0)
        last_loss = recipe.train(*native, 0, 2)
        reference = recipe.state(*native)
    else:
        native = adapter.new_mlp(reference) if is_mlp else adapter.from_numpy(reference)

    def save() -> None:
        if is_checkpoint:
            recipe.save_checkpoint(path, *native, epoch=2, loss=last_loss)
        elif is_mlp:
            adapter.save_mlp(native, path, case.format)
        else:
            adapter.save(native, path, case.format)

    if case.op != "save" and (case.framework == NullAdapter.name or not path.exists()):
        save()
    residency: list[float] = []
    # One clone per case, built outside the timer: every round loads into it again (building a Keras
    # model and optimizer each round would cost more than the load).
    clone: Any = None
    if is_mlp:
        clone = adapter.new_mlp(workloads.mlp_parameters(seed=1))
    elif is_checkpoint:
        clone = recipe.new(1)

    def prepare() -> tuple[tuple[Any, ...], dict[str, Any]]:
        if case.framework != NullAdapter.name:
            if case.cache == "cold":
                pagecache.evict(path)
                residency.append(pagecache.resident_fraction(path))
            else:
                pagecache.warm(path)
        release_free_memory()
        return (clone,), {}

    def load(clone: Any) -> Any:
        if is_checkpoint:
            recipe.load_checkpoint(path, *clone)
            return clone
        if is_mlp:
            return adapter.load_mlp(path, case.format, clone)
        tree = adapter.load(path, case.format, case.device, trusted=True)
        if case.op == "load":
            materialize(adapter, tree, lazy=spec.lazy)
        return tree

    def timed_load(clone: Any) -> None:
        load(clone)  # the result is dropped inside the round, so a mapped file can be evicted next round

    def timed_save() -> None:
        save()

    def prepare_save() -> tuple[tuple[Any, ...], dict[str, Any]]:
        release_free_memory()
        return (), {}

    if case.op == "save":
        benchmark.pedantic(timed_save, setup=prepare_save, rounds=case.rounds, warmup_rounds=0, iterations=1)
    else:
        benchmark.pedantic(timed_load, setup=prepare, rounds=case.rounds, warmup_rounds=0, iterations=1)

    info = benchmark.extra_info
    info.update(case.as_dict())
    info["kind"] = workload.kind
    info["dtype"] = workload.dtype
    info["size"] = workload.size
    info["payload_bytes"] = workloads.payload_bytes(reference)
    info["file_bytes"] = 0 if case.framework == NullAdapter.name else pagecache.size_on_disk(path)
    info["lazy"] = spec.lazy
    info["resident_before_cold"] = max(residency) if residency else None
    loaded = load(clone)
    if is_checkpoint:
        back = recipe.state(*loaded)
    else:
        back = adapter.mlp_state(loaded) if is_mlp else adapter.to_numpy(loaded)
    info["roundtrip"] = outcome_of(reference, back).summary()
