"""The one trust gate: every entry point that reads a file passes through `admit` before any parser.

In order, `admit` checks that the path is a regular file (or, for directory formats, a directory of
regular files only), so a FIFO or device can never block a load; that the bytes are in the format
asked for (the format's sniffer); the trust rule (a format that may run code from the file needs
`trusted=True`, and pickle-backed parts of other formats count as pickle); and the format's own
validator, which compares the sizes the file declares with what it holds and with the load budget
before anything is allocated. Whatever fails raises a `SerbenchError` naming the file, the format
and what was wrong.

The load budget is `SERBENCH_MAX_LOAD_BYTES` if set, else half of the memory available now: a
file may be as large as it likes, but it may not *declare* more than this.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from frameworks import files
from frameworks.errors import NotRegularFileError, ResourceLimitError, UnsafeLoadError

if TYPE_CHECKING:
    from frameworks.base import FormatSpec

MAX_MEMBERS = 100_000
"""Most members (zip records, array-list entries, HDF5 objects) a file may declare."""
BUDGET_VARIABLE = "SERBENCH_MAX_LOAD_BYTES"

KINDS_OF_FILE = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def available_memory() -> int:
    """MemAvailable from /proc/meminfo, in bytes (0 if it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def max_load_bytes() -> int:
    """The most bytes one load may declare: $SERBENCH_MAX_LOAD_BYTES, else half the available memory."""
    configured = os.environ.get(BUDGET_VARIABLE)
    if configured:
        return int(configured)
    return max(available_memory() // 2, 1 << 30)


def check_declared(path: Path, format_name: str, declared: int, what: str) -> None:
    """Raise ResourceLimitError if a file declares more bytes than the load budget."""
    budget = max_load_bytes()
    if declared > budget:
        raise ResourceLimitError(
            f"refusing {path} as {format_name!r}: {what} declares {declared:,} bytes, over the load budget of "
            f"{budget:,} bytes (${BUDGET_VARIABLE}, default half the available memory); nothing was allocated"
        )


def check_count(path: Path, format_name: str, count: int, what: str) -> None:
    if count > MAX_MEMBERS:
        raise ResourceLimitError(
            f"refusing {path} as {format_name!r}: it declares {count:,} {what}, more than the {MAX_MEMBERS:,} "
            f"serbench reads from one file"
        )


def _describe(mode: int) -> str | None:
    return KINDS_OF_FILE.get(stat.S_IFMT(mode))


KERNEL_FILESYSTEMS = frozenset(
    {"proc", "sysfs", "devtmpfs", "devpts", "debugfs", "tracefs", "securityfs", "cgroup", "cgroup2", "configfs",
     "fusectl", "bpf", "pstore", "efivarfs", "mqueue", "binfmt_misc", "nsfs", "rpc_pipefs", "autofs"}
)  # fmt: skip
"""Filesystems whose files are the kernel's interfaces: reading one can block, or change the kernel's state."""


@functools.lru_cache(maxsize=1)
def _mounts() -> tuple[tuple[str, str], ...] | None:
    """(mount point, filesystem type) of this process's mounts, longest point first; None where unknown."""
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return None
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" in fields[6:]:
            point = re.sub(r"\\([0-7]{3})", lambda octal: chr(int(octal.group(1), 8)), fields[4])
            mounts.append((point, fields[fields.index("-", 6) + 1]))
    return tuple(sorted(mounts, key=lambda mount: -len(mount[0])))


def kernel_filesystem(path: str | os.PathLike[str]) -> str | None:
    """The kernel filesystem (procfs, sysfs, devtmpfs ...) holding `path` wherever it is mounted (a container's
    /host/proc, a chroot's), through links; else None. Where the mounts are unknown, /proc, /sys and /dev are."""
    real = os.path.realpath(path)
    mounts = _mounts()
    if mounts is None:
        top = Path(real).parts[1:2]
        return f"/{top[0]}" if top in (("proc",), ("sys",), ("dev",)) else None
    for point, kind in mounts:
        if real == point or real.startswith(point.rstrip("/") + "/"):
            return f"{kind}, mounted at {point}" if kind in KERNEL_FILESYSTEMS else None
    return None


def regular_source(
    path: str | os.PathLike[str], format_name: str, directory: bool = False, subdirectories: bool = False
) -> Path:
    """The path, checked to be a regular file, or a directory holding only regular files (and, with
    `subdirectories`, directories of them, at most MAX_MEMBERS entries in all, no symbolic links)."""
    source = files.require_existing(path)
    mode = os.stat(source).st_mode
    if (kernel := kernel_filesystem(source)) is not None:
        raise NotRegularFileError(
            f"refusing {source} as {format_name!r}: it is a kernel interface ({kernel}), not a file, however it "
            "looks (/proc/kmsg is a 'regular' empty file whose read blocks and consumes the kernel log)"
        )
    if (kind := _describe(mode)) is not None:
        raise NotRegularFileError(
            f"refusing {source} as {format_name!r}: it is {kind}, not a regular file; reading it could block "
            f"forever or never end. Copy the data into a file first."
        )
    if directory and stat.S_ISDIR(mode):
        _check_directory(source, source, format_name, subdirectories, [0])
    return source


def _check_directory(root: Path, folder: Path, format_name: str, subdirectories: bool, seen: list[int]) -> None:
    for entry in sorted(folder.iterdir()):
        seen[0] += 1
        check_count(root, format_name, seen[0], "directory entries")
        entry_mode = os.stat(entry).st_mode if not subdirectories else os.lstat(entry).st_mode
        if stat.S_ISREG(entry_mode):
            continue
        if subdirectories and stat.S_ISDIR(entry_mode):
            _check_directory(root, entry, format_name, subdirectories, seen)
            continue
        if stat.S_ISLNK(entry_mode):
            what = "a symbolic link"
        elif stat.S_ISDIR(entry_mode):
            what = "a directory"
        else:
            what = _describe(entry_mode) or "not a regular file"
        raise NotRegularFileError(
            f"refusing {root} as {format_name!r}: its entry {str(entry.relative_to(root))!r} is {what}; a checkpoint "
            f"directory holds regular files only (a FIFO would block the load, a link or subdirectory can redirect it)"
        )


def admit(path: str | os.PathLike[str], spec: FormatSpec, *, trusted: bool, validate: bool = True) -> Path:
    """Check `path` for a load as `spec` (see the module docstring); return it as a Path. `validate=False`
    leaves the format's validator to the caller (a reader of any parameters, not the MLP's)."""
    source = regular_source(path, spec.name, spec.directory, spec.subdirectories)
    files.expect_format(source, spec.name, spec.sniff(source), spec.signature)
    if spec.executes_code and not trusted:
        raise UnsafeLoadError(
            f"refusing to load {source} as {spec.name!r}: this format unpickles, which can run code from the "
            f"file. Pass trusted=True (CLI: --trusted) only for files you made."
        )
    if validate and spec.validate is not None:
        spec.validate(source)
    return source
