"""Errors raised by every adapter, so callers and tests can tell a gap from a bug.

Each message says what was expected, what was found and what to do.
"""

from __future__ import annotations


class SerbenchError(Exception):
    """Base class of serbench's own errors."""


class UnknownFormatError(SerbenchError, ValueError):
    """A format name the adapter does not offer."""


class UnsupportedError(SerbenchError, ValueError):
    """A format (or framework) that cannot hold this kind of object or dtype."""


class FormatMismatchError(SerbenchError, ValueError):
    """The file on disk is not in the format the caller asked to load."""


class UnsafeLoadError(SerbenchError, PermissionError):
    """Loading this format can execute code from the file; the caller must opt in."""


class DeviceUnavailableError(SerbenchError, RuntimeError):
    """The requested device does not exist here or the framework build lacks it."""


class NotRegularFileError(SerbenchError, ValueError):
    """The path is a FIFO, device, socket or other non-regular file: reading it could block forever."""


class ResourceLimitError(SerbenchError, ValueError):
    """The file declares more data than it holds or than the load budget allows; nothing was allocated."""


class UnsafeTargetError(SerbenchError, PermissionError):
    """A save would destroy something serbench did not write (a directory, a read-only or special file)."""
