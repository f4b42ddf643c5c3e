"""Nothing is lost on save: a save killed halfway, or stopped by a full disk, leaves the previous
file intact and loadable. Each save runs in a child process that is killed or limited."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import frameworks
from bench import workloads
from tests.conftest import adapter_or_skip

DICT_CELLS = [
    (name, spec.name)
    for name in frameworks.names()
    for spec in frameworks.adapter_class(name).specs
    if "dict" in spec.holds
]

CHILD = textwrap.dedent("""
    import resource, signal, sys
    import numpy as np
    import frameworks
    from bench import workloads
    framework, fmt, path, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    adapter = frameworks.get_adapter(framework)
    tree = adapter.from_numpy(workloads.sized_dict(256 << 20, 8, salt=77))
    if limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    print("saving", flush=True)
    try:
        adapter.save(tree, path, fmt)
    except OSError as error:
        print(f"OSError: {error}", flush=True)
        sys.exit(3)
    print("saved", flush=True)
""")


def save_previous(adapter: frameworks.Adapter, fmt: str, path: Path) -> dict[str, np.ndarray]:
    previous = workloads.build("d2l-dict")
    adapter.save(adapter.from_numpy(previous), path, fmt)
    return previous


def assert_intact(adapter: frameworks.Adapter, fmt: str, path: Path, previous: dict[str, np.ndarray]) -> None:
    loaded = adapter.to_numpy(adapter.load(path, fmt, trusted=True))
    assert sorted(loaded) == sorted(previous)
    for key, value in previous.items():
        assert loaded[key].tobytes() == value.tobytes(), key


def temporaries(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith(".tmp-")]


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


@pytest.mark.parametrize(("framework", "fmt"), DICT_CELLS)
def test_sigkill_mid_save_keeps_the_previous_file(framework: str, fmt: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip(framework)
    path = tmp_path / f"state{adapter.spec(fmt).suffix}"
    previous = save_previous(adapter, fmt, path)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, framework, fmt, str(path), "0"], stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            partial = [p for p in temporaries(tmp_path) if _size(p) > 0]
            if partial or child.poll() is not None:
                break
            time.sleep(0.002)
        assert partial, "the child never wrote a temporary file (or finished before it could be killed)"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(60)
    assert child.returncode == -signal.SIGKILL
    assert_intact(adapter, fmt, path, previous)


@pytest.mark.parametrize(("framework", "fmt"), DICT_CELLS)
def test_full_disk_gives_a_clear_error_and_keeps_the_previous_file(framework: str, fmt: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip(framework)
    path = tmp_path / f"state{adapter.spec(fmt).suffix}"
    previous = save_previous(adapter, fmt, path)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, framework, fmt, str(path), str(4 << 20)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 3, (result.stdout, result.stderr[-2000:])
    assert "OSError" in result.stdout
    assert "[Errno 27] saving" in result.stdout, result.stdout
    assert "nothing was replaced" in result.stdout
    assert "File too large" in result.stdout
    assert_intact(adapter, fmt, path, previous)
    assert temporaries(tmp_path) == [], "the failed save left its temporary file behind"
