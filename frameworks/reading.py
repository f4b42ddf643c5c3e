"""What a reader chose while reading a checkpoint serbench did not write: which prefix of a TensorFlow
checkpoint directory, which step and item of an Orbax CheckpointManager directory, which legacy MXNet
semantics. A reader says it with `note`; `serbench bench` (`bench.checkpoints`) collects the notes of
one read (`collecting`) into the entry's reader description, so that what was read is on record.

Standard library only: adapters and the harness both import it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_notes: list[list[str]] = []


def note(text: str) -> None:
    """Record what the current read chose (nothing happens outside `collecting`)."""
    if _notes:
        _notes[-1].append(text)


@contextlib.contextmanager
def collecting() -> Iterator[list[str]]:
    """The notes of the reads inside the block, in order."""
    notes: list[str] = []
    _notes.append(notes)
    try:
        yield notes
    finally:
        _notes.pop()
