"""Each kind of workload is one strategy (`bench.kinds`) that the round trip, the benchmark and the
peak-memory child share, so a kind cannot work in one of them and not in another."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import frameworks
from bench import kinds, workloads
from frameworks.training import recipe_class, with_recipes
from tests.conftest import adapter_or_skip


@pytest.mark.parametrize("kind", sorted({workload.kind for workload in workloads.WORKLOADS.values()}))
def test_every_workload_kind_has_a_strategy(kind: str) -> None:
    assert isinstance(kinds.KINDS[kind], kinds.Kind)


def test_only_trees_load_onto_devices() -> None:
    """A model loads where its clone lives; a tree can be sent to an accelerator."""
    assert {name for name, kind in kinds.KINDS.items() if kind.loads_on_devices} == {"tensor", "list", "dict", "nested"}


@pytest.mark.parametrize("framework", with_recipes())
def test_the_peak_memory_child_restores_a_training_checkpoint(framework: str, tmp_path: Path) -> None:
    """The child loads a checkpoint the way the benchmark does (before, it sent it to Adapter.load), started as
    the harness starts it: a fresh process in the framework's environment."""
    adapter = adapter_or_skip(framework)
    format = recipe_class(framework).checkpoint_format
    kind = kinds.kind_of("d2l-checkpoint")
    subject = kind.subject(adapter, "d2l-checkpoint")
    path = kinds.saved_path(adapter, format, "d2l-checkpoint", tmp_path)
    kind.save(adapter, subject, path, format)
    arguments = ["-m", "bench.timing.peak_memory", framework, format, "d2l-checkpoint", str(path)]
    done = frameworks.run_child(framework, arguments, timeout_s=300)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    # The checkpoint (93 KiB) is far below the 16 MiB from which a peak measures the loader (docs/benchmark.md):
    # a first load's fixed costs dominate (5x to 50x the payload here), so no multiple bounds it from above. But
    # in a fresh process the load reads every byte into memory the process did not hold: a peak below the
    # payload did not see the load (in the test process itself, with freed memory to reuse, it read 0). A peak
    # not taken from the baseline would be at least the whole process's RSS.
    payload = workloads.payload_of("d2l-checkpoint")
    assert payload <= record["peak_rss_bytes"] < record["baseline_rss_bytes"], record


@pytest.mark.parametrize("framework", with_recipes())
def test_a_checkpoint_load_fills_the_fresh_model_and_optimizer(framework: str, tmp_path: Path) -> None:
    """The load target is restored in place: its state equals the trained one, and differed before."""
    adapter = adapter_or_skip(framework)
    format = recipe_class(framework).checkpoint_format
    kind = kinds.CHECKPOINT
    subject = kind.subject(adapter, "d2l-checkpoint")
    path = kinds.saved_path(adapter, format, "d2l-checkpoint", tmp_path)
    kind.save(adapter, subject, path, format)
    before = kind.state(adapter, subject, subject.target)
    assert any(
        key not in before or before[key].shape != value.shape or (before[key] != value).any()
        for key, value in subject.reference.items()
    )
    loaded = kind.load(adapter, subject, path, format)
    restored = kind.state(adapter, subject, loaded)
    assert restored.keys() == subject.reference.keys()
    for key, value in subject.reference.items():
        assert (restored[key] == value).all(), key
