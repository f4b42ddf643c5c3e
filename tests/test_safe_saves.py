"""Saves never destroy what they did not write: a user's directory, a FIFO, a read-only file; and a
save cleans what a killed save of the same target left. Parametrized over every format."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import frameworks
from bench import workloads
from frameworks import training
from frameworks.errors import UnsafeTargetError
from frameworks.files import SERBENCH_MARKER, TEMPORARY_PREFIX
from tests.conftest import adapter_or_skip

CELLS = [(name, spec.name) for name in frameworks.names() for spec in frameworks.adapter_class(name).specs]


def sample_workload(adapter: frameworks.Adapter, fmt: str) -> str | None:
    """A workload the format holds as a tree (the d2l dict or tensor), or None for model-only formats."""
    holds = adapter.spec(fmt).holds
    return "d2l-dict" if "dict" in holds else "d2l-tensor" if "tensor" in holds else None


def save_sample(adapter: frameworks.Adapter, fmt: str, path: Path) -> None:
    if (workload := sample_workload(adapter, fmt)) is not None:
        adapter.save(adapter.from_numpy(workloads.build(workload)), path, fmt)
    else:
        adapter.save_mlp(adapter.new_mlp(workloads.mlp_parameters(0)), path, fmt)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize(("framework", "fmt"), CELLS)
def test_a_users_directory_is_never_replaced(framework: str, fmt: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip(framework)
    target = tmp_path / f"results{adapter.spec(fmt).suffix}"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    with pytest.raises(UnsafeTargetError, match="did not write"):
        save_sample(adapter, fmt, target)
    assert (target / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name], "no temporary left behind"


@pytest.mark.parametrize("framework", training.with_recipes())
def test_a_training_checkpoint_never_replaces_a_users_directory(framework: str, tmp_path: Path) -> None:
    adapter_or_skip(framework)
    recipe = training.training_recipe(framework)
    model, optimizer = recipe.new()
    target = tmp_path / recipe.checkpoint_name
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    with pytest.raises(UnsafeTargetError):
        recipe.save_checkpoint(target, model, optimizer, 1, 0.5)
    assert (target / "thesis.tex").read_text() == "years of work"


@pytest.mark.parametrize(("framework", "fmt"), CELLS)
def test_serbench_replaces_what_it_wrote(framework: str, fmt: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip(framework)
    target = tmp_path / f"twice{adapter.spec(fmt).suffix}"
    save_sample(adapter, fmt, target)
    save_sample(adapter, fmt, target)
    if target.is_dir():
        assert (target / SERBENCH_MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


@pytest.mark.parametrize(("framework", "fmt"), CELLS)
def test_a_fifo_target_is_refused(framework: str, fmt: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip(framework)
    target = tmp_path / f"pipe{adapter.spec(fmt).suffix}"
    os.mkfifo(target)
    with pytest.raises(UnsafeTargetError, match="not a regular file"):
        save_sample(adapter, fmt, target)
    assert stat.S_ISFIFO(os.lstat(target).st_mode)


@pytest.mark.parametrize(("framework", "fmt"), CELLS)
def test_a_read_only_file_keeps_its_protection(framework: str, fmt: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip(framework)
    target = tmp_path / f"frozen{adapter.spec(fmt).suffix}"
    target.write_bytes(b"keep me")
    target.chmod(0o400)
    with pytest.raises(UnsafeTargetError, match="read-only"):
        save_sample(adapter, fmt, target)
    assert target.read_bytes() == b"keep me"
    assert stat.S_IMODE(target.stat().st_mode) == 0o400


@pytest.mark.parametrize(("framework", "fmt"), CELLS)
def test_a_killed_saves_temporary_is_removed_by_the_next_save(framework: str, fmt: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip(framework)
    target = tmp_path / f"model{adapter.spec(fmt).suffix}"
    stale = tmp_path / f"{TEMPORARY_PREFIX}{dead_pid()}-0123abcd-{target.name}"
    stale.write_bytes(b"\0" * 4096)
    in_flight = tmp_path / f"{TEMPORARY_PREFIX}{os.getppid()}-0123abcd-{target.name}"
    in_flight.write_bytes(b"another process is still saving")
    other = tmp_path / f"{TEMPORARY_PREFIX}{dead_pid()}-0123abcd-other{target.name}"
    other.write_bytes(b"a different target's")
    save_sample(adapter, fmt, target)
    assert not stale.exists()
    assert in_flight.exists(), "a live process's temporary is not touched"
    assert other.exists(), "another target's temporary is not touched"


@pytest.mark.parametrize(("framework", "fmt"), CELLS)
def test_the_longest_legal_name_saves_and_loads(framework: str, fmt: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip(framework)
    suffix = adapter.spec(fmt).suffix
    target = tmp_path / ("n" * (255 - len(suffix)) + suffix)
    save_sample(adapter, fmt, target)
    if (workload := sample_workload(adapter, fmt)) is not None:
        loaded = adapter.to_numpy(adapter.load(target, fmt, trusted=True))
        assert repr(loaded) == repr(workloads.build(workload))
    else:
        clone = adapter.load_mlp(target, fmt, adapter.new_mlp(workloads.mlp_parameters(1)), trusted=True)
        assert adapter.mlp_state(clone)["hidden.bias"].tobytes() == workloads.mlp_parameters(0)["hidden.bias"].tobytes()
