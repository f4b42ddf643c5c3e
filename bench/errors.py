"""Errors the command line reports as one line with exit status 2: the user's input was wrong."""

from __future__ import annotations


class UsageError(ValueError):
    """A bad argument, or a file or directory given that is not what the command reads."""


class NotComparableError(UsageError):
    """Two runs come from different machines or package versions (`serbench compare` exits 4)."""
