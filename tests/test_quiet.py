"""Frameworks' start-up chatter is kept out of serbench's output, and nothing else is (`frameworks.quiet`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import frameworks
from frameworks import quiet

NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796304108.669215   27582 port.cc:153] oneDNN custom operations are on. You may see ...\n"
    "I0000 00:00:1796304108.670596   27582 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU ...\n"
)


def test_native_noise_is_dropped_and_kept_in_the_log_and_a_real_error_still_shows(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "frameworks.log"
    monkeypatch.setenv(quiet.LOG_VARIABLE, str(log))
    with quiet.native_stderr_filtered():
        os.write(2, NOISE.encode())  # as C++ writes it: to the descriptor, past sys.stderr
        os.write(2, b"E0000 tensorflow: something real went wrong\n")
    err = capfd.readouterr().err
    assert err == "E0000 tensorflow: something real went wrong\n"
    assert log.read_text() == NOISE


def test_a_link_planted_as_the_log_is_not_written_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "frameworks.log").symlink_to(victim)
    monkeypatch.setenv(quiet.LOG_VARIABLE, str(tmp_path / "frameworks.log"))
    with quiet.native_stderr_filtered():
        os.write(2, NOISE.encode())
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("framework", frameworks.names())
def test_importing_a_framework_prints_no_start_up_chatter(framework: str) -> None:
    """What every command that touches TensorFlow printed: two oneDNN/CUDA lines per import."""
    code = f"import frameworks; frameworks.get_adapter({framework!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and "is not usable here" in done.stderr:
        pytest.skip(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert not quiet.NOISE.search(done.stderr), done.stderr[-2000:]
    assert done.stderr.strip() == "", done.stderr[-2000:]
