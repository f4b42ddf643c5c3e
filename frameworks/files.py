"""File plumbing shared by the adapters: atomic writes, path checks and format sniffing.

Sniffing reads a few bytes so that a file of another format gets a clear error naming the
expected format before any framework parser sees it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import resource
import shutil
import stat
import struct
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

from frameworks.errors import FormatMismatchError, UnsafeTargetError

NPY_MAGIC = b"\x93NUMPY"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
MXNET_LIST_MAGIC = 0x112
TF_TABLE_MAGIC = 0xDB4775248B80FB57


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync a file, or every file in a directory and the directory itself."""
    if path.is_dir():
        for child in path.iterdir():
            fsync_tree(child)
        fsync_dir(path)
        return
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


OS_MESSAGES = {
    errno.EFBIG: ("File too large", "os error 27", "Errno 27"),
    errno.ENOSPC: ("No space left on device", "os error 28", "Errno 28"),
}


def _mentions(error: BaseException, needles: tuple[str, ...]) -> bool:
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 10:
        if any(needle in str(current) for needle in needles):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def resource_exhaustion(error: BaseException, temporary: Path, directory: Path) -> OSError | None:
    """If a failed save ran into the file-size limit or a full disk, an OSError saying so.

    Frameworks report these in their own words (torch: "invalid file name", MXNet: "fwrite failed",
    safetensors: "I/O error ... (os error 27)") and some delete the partial file; this turns them
    into one clear error, judged by the partial file's size, the free space, or the OS's message.
    """
    for code, needles in OS_MESSAGES.items():
        if _mentions(error, needles):
            return OSError(code, os.strerror(code))
    soft_limit, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    largest = 0
    if temporary.exists():
        files = [temporary] if temporary.is_file() else [f for f in temporary.rglob("*") if f.is_file()]
        largest = max((f.stat().st_size for f in files), default=0)
    if soft_limit != resource.RLIM_INFINITY and largest >= soft_limit:
        return OSError(
            errno.EFBIG,
            f"File too large: the process's file-size limit (RLIMIT_FSIZE = {soft_limit:,} bytes) stopped the save",
        )
    stats = os.statvfs(directory)
    if stats.f_bavail * stats.f_frsize < 1 << 20:
        return OSError(
            errno.ENOSPC, f"No space left on device: {directory} has {stats.f_bavail * stats.f_frsize:,} bytes free"
        )
    return None


SERBENCH_MARKER = ".serbench"
"""An empty file serbench writes into every directory it saves (a checkpoint directory): only a
directory holding it may be replaced by a later save."""
TEMPORARY_PREFIX = ".tmp-serbench-"
RETIRED_PREFIX = ".old-serbench-"
NAME_MAX = 255
LOCK_NAME = ".serbench-lock"


def _sibling_name(prefix: str, target_name: str) -> str:
    """`{prefix}{pid}-{random}-{target name}`; a name too long for the file system keeps a digest of
    the target's name and its last 40 characters (so `.weights.h5` survives for Keras)."""
    name = f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}-{target_name}"
    if len(name.encode()) <= NAME_MAX:
        return name
    return f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}-{_short_name(target_name)}"


def _short_name(target_name: str) -> str:
    return hashlib.sha256(target_name.encode()).hexdigest()[:16] + "-" + target_name[-40:]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove what an earlier save of `target` left behind when its process died (SIGKILL, a crash):
    siblings named like serbench's temporaries of this target whose process no longer exists, files or
    directories holding serbench's marker (a directory without one is never removed)."""
    removed = []
    ours = {target.name, _short_name(target.name)}
    for entry in os.scandir(target.parent if str(target.parent) else "."):
        prefix = next((p for p in (TEMPORARY_PREFIX, RETIRED_PREFIX) if entry.name.startswith(p)), None)
        if prefix is None:
            continue
        parts = entry.name[len(prefix) :].split("-", 2)
        if len(parts) == 3 and parts[0].isdigit() and parts[2] in ours and not _pid_alive(int(parts[0])):
            found = Path(entry.path)
            if entry.is_dir(follow_symlinks=False) and not is_marked(found):
                continue  # a directory serbench cannot prove it made (a saver's staging, or a user's): kept
            _remove(found)
            removed.append(found)
    return removed


def check_target(target: Path) -> None:
    """Refuse a save that would destroy what serbench did not write: a directory without serbench's
    marker, a FIFO, device or socket, or a read-only file (whose protection a rename would drop)."""
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        if not is_marked(target):  # the one marker rule: a regular file, not a link to any file
            raise UnsafeTargetError(
                f"refusing to save to {target}: it is an existing directory that serbench did not write (it has no "
                f"{SERBENCH_MARKER} marker), and replacing it would delete its files. Choose a new path, or remove it."
            )
    elif not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise UnsafeTargetError(f"refusing to save to {target}: it is not a regular file (a FIFO, device or socket)")
    elif stat.S_ISREG(mode) and not mode & 0o222:
        raise UnsafeTargetError(
            f"refusing to save to {target}: the file is read-only (mode {stat.S_IMODE(mode):o}); replacing it would "
            f"drop that protection. Make it writable first if you mean to overwrite it."
        )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; on success fsync it, rename it over `path`, fsync the dir.

    The temporary name ends with the target's name, so suffix-checking savers (Keras wants
    `.weights.h5`) accept it, and carries the saving process's id, so a later save of the same
    target removes what a killed save left. If the body raises, the temporary is removed and `path`
    is untouched (a saver that stages elsewhere removes that itself: the Orbax save does). A directory
    the saver made gets serbench's marker and is swapped in with two renames. `check_target` says what
    is never overwritten.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot save to {target}: directory {directory} does not exist")
    check_target(target)
    remove_stale_temporaries(target)
    temporary = directory / _sibling_name(TEMPORARY_PREFIX, target.name)
    try:
        try:
            yield temporary
        except Exception as error:
            cause = resource_exhaustion(error, temporary, directory)
            if cause is None:
                raise
            raise OSError(
                cause.errno,
                f"saving {target} failed, nothing was replaced (a previous file there is intact): {cause.strerror}",
            ) from error
        if not temporary.exists():
            raise FileNotFoundError(f"the saver wrote nothing at {temporary}")
        if temporary.is_dir():
            (temporary / SERBENCH_MARKER).touch()
        fsync_tree(temporary)
        replaces_a_directory = target.is_dir() and not target.is_symlink()
        if replaces_a_directory or (temporary.is_dir() and target.exists()):
            retired = directory / _sibling_name(RETIRED_PREFIX, target.name)
            os.replace(target, retired)
            os.replace(temporary, target)
            _remove(retired)
        else:
            os.replace(temporary, target)
        fsync_dir(directory)
    finally:
        _remove(temporary)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically (results files use this too)."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_figure(figure: object, path: str | os.PathLike[str], dpi: int = 110) -> None:
    """A matplotlib figure as a PNG at `path`, atomically (never through a link planted there)."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)  # type: ignore[attr-defined]
    write_bytes_atomic(path, buffer.getvalue())


def open_for_writing(
    path: str | os.PathLike[str], *, append: bool = False, replace: bool = False, encoding: str | None = "utf-8"
):
    """`path` opened for writing (truncated unless `append`), refusing to write through a link: a symbolic
    link there is refused by the open itself (O_NOFOLLOW), a hard link (a second name for another file) and
    anything not a regular file are refused before a byte is written or truncated. With `replace`, a file
    or link already at `path` (in a directory serbench owns: a run's raw/) is unlinked first and a new file
    made in its place, as a rename would. For logs and JSON-lines files that a process writes as it goes; a
    file written whole goes through `write_bytes_atomic`."""
    target = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | (os.O_APPEND if append else 0)
    if replace:
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISDIR(os.lstat(target).st_mode):
                target.unlink()
        flags |= os.O_EXCL
    try:
        descriptor = os.open(target, flags, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UnsafeTargetError(
                f"refusing to write {target}: it is a symbolic link, and writing would change the file it points to; "
                "remove the link"
            ) from None
        raise
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
        os.close(descriptor)
        what = "not a regular file" if not stat.S_ISREG(status.st_mode) else f"a file with {status.st_nlink} names"
        raise UnsafeTargetError(
            f"refusing to write {target}: it is {what}, so writing would change a file serbench did not make; remove it"
        )
    os.set_blocking(descriptor, True)
    if not append:
        os.ftruncate(descriptor, 0)
    if encoding is None:
        return os.fdopen(descriptor, "ab" if append else "wb")
    return os.fdopen(descriptor, "a" if append else "w", encoding=encoding)


def own_directory(path: str | os.PathLike[str]) -> Path:
    """`path` as a directory serbench writes into, made if missing (with its parents): refused if it is a
    symbolic link or anything but a directory, since what is written there would land elsewhere."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    mode = os.lstat(directory).st_mode
    if not stat.S_ISDIR(mode):
        what = "a symbolic link" if stat.S_ISLNK(mode) else "not a directory"
        raise UnsafeTargetError(
            f"refusing to write into {directory}: it is {what}, so what serbench writes would land elsewhere; "
            "remove it or choose another directory"
        )
    return directory


def mark(directory: Path) -> None:
    """Leave serbench's marker in a directory it made, so that only it may later be replaced or removed."""
    write_bytes_atomic(Path(directory) / SERBENCH_MARKER, b"")


def is_regular(path: Path) -> bool:
    """Whether `path` is itself a regular file (not a link to one)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def is_marked(directory: Path) -> bool:
    """Whether `directory` is a real directory (not a link) holding serbench's marker."""
    try:
        return stat.S_ISDIR(os.lstat(directory).st_mode) and is_regular(Path(directory) / SERBENCH_MARKER)
    except FileNotFoundError:
        return False


def remove_marked(directory: str | os.PathLike[str], what: str) -> None:
    """Remove `directory` if it is missing or serbench made it (its marker); else UnsafeTargetError: serbench
    deletes only what a marker proves it wrote."""
    target = Path(directory)
    if not os.path.lexists(target):
        return
    if not is_marked(target):
        raise UnsafeTargetError(
            f"refusing to remove {target} ({what}): serbench did not make it (no {SERBENCH_MARKER} marker in it), and "
            "it may hold your files; move it away or choose another directory"
        )
    shutil.rmtree(target)


_HELD: dict[str, int] = {}
"""The directories this process holds locked, with how many blocks hold each (a block inside another is free)."""


@contextlib.contextmanager
def locked(directory: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Hold an exclusive lock on `directory` (a `.serbench-lock` file in it) for the block; UnsafeTargetError,
    naming the holder, if another process holds it (two writers would interleave their files). Within one
    process the lock nests: `serbench bench` holds it while it reads checkpoints and while it times them."""
    import fcntl

    key = os.path.realpath(directory)
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    path = Path(directory) / LOCK_NAME
    with open_for_writing(path, append=True) as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle_read = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(handle_read, "rb") as holder_file:
                holder = holder_file.read(200).decode(errors="replace").strip()[:60] or "another process"
            raise UnsafeTargetError(
                f"{directory} is being written by {holder} ({what}); wait for it to finish, or choose another directory"
            ) from None
        handle.truncate(0)
        handle.write(f"serbench pid {os.getpid()}\n")
        handle.flush()
        _HELD[key] = 1
        try:
            yield
        finally:
            _HELD.pop(key, None)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def require_existing(path: str | os.PathLike[str]) -> Path:
    """Return `path` as a Path, or raise FileNotFoundError naming it."""
    resolved = Path(path)
    if not resolved.exists():
        raise FileNotFoundError(2, "No such file or directory (nothing to load)", str(resolved))
    return resolved


def head(path: Path, size: int = 16) -> bytes:
    """The first `size` bytes of a regular file (b"" for a directory or anything else): opened non-blocking
    and checked on the descriptor, so a sniffer never waits on a FIFO swapped in after a path was checked."""
    if path.is_dir():
        return b""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb", buffering=0) as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return b""
        return handle.read(size)


def is_npy(path: Path) -> bool:
    return head(path, 6) == NPY_MAGIC


def is_zip_with(path: Path, member_suffix: str) -> bool:
    if head(path, 4) != ZIP_MAGIC:
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(member_suffix) for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


def is_npz(path: Path) -> bool:
    return is_zip_with(path, ".npy") or _is_empty_zip(path)


def is_npy_or_npz(path: Path) -> bool:
    return is_npy(path) or is_npz(path)


def _is_empty_zip(path: Path) -> bool:
    return head(path, 4) == b"PK\x05\x06"


def is_torch_zip(path: Path) -> bool:
    return is_zip_with(path, "data.pkl")


def is_safetensors(path: Path) -> bool:
    start = head(path, 9)
    if len(start) < 9:
        return False
    (header_size,) = struct.unpack("<Q", start[:8])
    return start[8:9] == b"{" and 0 < header_size <= path.stat().st_size - 8


def is_hdf5(path: Path) -> bool:
    return head(path, 8) == HDF5_MAGIC


def is_mxnet_ndarray_list(path: Path) -> bool:
    start = head(path, 8)
    return len(start) == 8 and struct.unpack("<Q", start)[0] == MXNET_LIST_MAGIC


def tf_checkpoint_index(path: Path) -> Path | None:
    """The `.index` file of a checkpoint saved by serbench (a directory holding `ckpt.*`)."""
    index = path / "ckpt.index"
    if not index.is_file() or index.stat().st_size < 8:
        return None
    with open(index, "rb") as handle:
        handle.seek(-8, os.SEEK_END)
        (magic,) = struct.unpack("<Q", handle.read(8))
    return index if magic == TF_TABLE_MAGIC else None


def is_tf_checkpoint(path: Path) -> bool:
    return path.is_dir() and tf_checkpoint_index(path) is not None


def expect_format(path: Path, format_name: str, sniff: bool, what: str) -> None:
    """Raise FormatMismatchError unless the sniffer recognised the file."""
    if not sniff:
        found = "a directory" if path.is_dir() else f"a file starting with {head(path, 8)!r}"
        raise FormatMismatchError(
            f"{path} is not a {format_name!r} file: expected {what}, found {found}. "
            f"Load it with the format that wrote it."
        )


TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
TORCH_LEGACY_HEAD = b"\x80\x02\x8a\x0a" + TORCH_LEGACY_MAGIC.to_bytes(10, "little") + b"."
"""How a legacy `torch.save(..., _use_new_zipfile_serialization=False)` stream starts: a protocol-2 pickle of
torch's magic number (PROTO 2, LONG1 of 10 bytes, STOP)."""
DCP_METADATA = ".metadata"


def is_torch_legacy(path: Path) -> bool:
    """A legacy torch.save stream (no zip): its first pickle is torch's magic number."""
    return head(path, len(TORCH_LEGACY_HEAD)) == TORCH_LEGACY_HEAD


def is_dcp_directory(path: Path) -> bool:
    """A torch.distributed.checkpoint directory: `.metadata` beside at least one `*.distcp` file."""
    return (
        path.is_dir() and is_regular(path / DCP_METADATA) and any(is_regular(entry) for entry in path.glob("*.distcp"))
    )


def _is_tf_table(index: Path) -> bool:
    """A TensorFlow table (a checkpoint's `.index`): it ends with the table magic."""
    if not is_regular(index) or index.stat().st_size < 8:
        return False
    with open(index, "rb") as handle:
        handle.seek(-8, os.SEEK_END)
        (magic,) = struct.unpack("<Q", handle.read(8))
    return magic == TF_TABLE_MAGIC


def tf_checkpoint_prefixes(path: Path) -> list[str]:
    """The prefixes of the TensorFlow checkpoints in a directory, sorted: `P` for each `P.index` that is a
    TensorFlow table with at least one `P.data-*` beside it (`tf.train.Checkpoint.save` writes `ckpt-1`,
    `ckpt-2`, ...; `write` and serbench write one prefix)."""
    if not path.is_dir():
        return []
    names = sorted(entry.name for entry in path.iterdir())
    prefixes = []
    for name in names:
        prefix = name.removesuffix(".index")
        if prefix == name or not prefix or not _is_tf_table(path / name):
            continue
        if any(other.startswith(f"{prefix}.data-") and is_regular(path / other) for other in names):
            prefixes.append(prefix)
    return prefixes


def is_tf_object_checkpoint(path: Path) -> bool:
    """A directory holding a TensorFlow checkpoint under any prefix (see `tf_checkpoint_prefixes`)."""
    return bool(tf_checkpoint_prefixes(path))
