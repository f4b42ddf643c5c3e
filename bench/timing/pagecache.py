"""Page-cache control for warm and cold timings: evict a file, warm it, and check residency.

Eviction is `fsync` then `posix_fadvise(POSIX_FADV_DONTNEED)`; it is checked with `mincore(2)`,
because some filesystems (tmpfs, some overlays) ignore the advice and a "cold" figure that was
really warm must say so.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
MAP_FAILED = ctypes.c_void_p(-1).value


def data_files(path: Path) -> list[Path]:
    """The regular files that make up a saved object (a checkpoint directory has several)."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path]


def evict(path: Path) -> None:
    """Drop the file(s) from the page cache (after writing back dirty pages)."""
    for file in data_files(path):
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def warm(path: Path, chunk: int = 8 << 20) -> None:
    """Read every byte once so the file(s) sit in the page cache."""
    buffer = bytearray(chunk)
    for file in data_files(path):
        with open(file, "rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass


def _file_residency(file: Path) -> tuple[int, int]:
    size = file.stat().st_size
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    if size == 0:
        return 0, 0
    fd = os.open(file, os.O_RDONLY)
    try:
        address = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    finally:
        os.close(fd)
    if address in (None, MAP_FAILED):
        raise OSError(ctypes.get_errno(), f"mmap failed for {file}")
    try:
        vector = (ctypes.c_ubyte * pages)()
        if _libc.mincore(address, size, vector) != 0:
            raise OSError(ctypes.get_errno(), f"mincore failed for {file}")
        return sum(byte & 1 for byte in bytes(vector)), pages
    finally:
        _libc.munmap(address, size)


def resident_fraction(path: Path) -> float:
    """Fraction of the object's pages in the page cache (0.0 after a working eviction)."""
    resident = total = 0
    for file in data_files(path):
        pages_in, pages = _file_residency(file)
        resident += pages_in
        total += pages
    return resident / total if total else 0.0


def size_on_disk(path: Path) -> int:
    return sum(file.stat().st_size for file in data_files(path))
