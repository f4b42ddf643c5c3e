"""Frameworks' start-up chatter kept out of serbench's output, and nothing else.

TensorFlow 2.21 logs through Abseil, whose messages before `absl::InitializeLog()` go straight to file
descriptor 2 whatever TF_CPP_MIN_LOG_LEVEL says ("oneDNN custom operations are on", "Could not find cuda
drivers"): every `serbench` command that imported it printed them. `native_stderr_filtered` captures the
descriptor around an import, drops the lines that match a known start-up message (`NOISE`) and writes every
other line back to stderr, so a real error still shows. The dropped lines are appended to the file
$SERBENCH_FRAMEWORK_LOG names, where one is set (never through a link), and otherwise discarded.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

LOG_VARIABLE = "SERBENCH_FRAMEWORK_LOG"
NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|oneDNN custom operations are on"
    r"|Could not find cuda drivers on your machine"
    r"|failed call to cuInit"
    r"|Unable to register cu(?:DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions: .* rebuild TensorFlow"
    r"|TF-TRT Warning: Could not find TensorRT"
)
"""Start-up messages of TensorFlow and XLA that say nothing about serbench's work on this machine."""


def split(text: str) -> tuple[str, str]:
    """(the lines to show, the noise), each keeping its line ends."""
    shown, noise = [], []
    for line in text.splitlines(keepends=True):
        (noise if NOISE.search(line) else shown).append(line)
    return "".join(shown), "".join(noise)


@contextlib.contextmanager
def native_stderr_filtered() -> Iterator[None]:
    """Capture file descriptor 2 (C++ and Python writes alike) for the block; then show what is not noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            shown, noise = split(capture.read().decode("utf-8", errors="replace"))
            if shown:
                sys.stderr.write(shown)
                sys.stderr.flush()
            if noise:
                _keep(noise)


def _keep(noise: str) -> None:
    log = os.environ.get(LOG_VARIABLE)
    if not log:
        return
    from frameworks import files

    with contextlib.suppress(OSError), files.open_for_writing(log, append=True) as handle:
        handle.write(noise)
