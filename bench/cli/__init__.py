"""The `serbench` command line.

Exit statuses: 0 done (compare: no regression), 1 regression found, 2 bad argument or input (one line
naming what is valid; no traceback), 3 internal error, or the system's (a full disk, an I/O error), 4 compare:
the runs are not comparable, 5 compare: a case could not be decided (it says why and what would decide it),
130 interrupted (saying what is kept and how to finish). SERBENCH_TRACEBACK=1 prints the traceback of an
error with status 3.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from bench import __version__
from bench.errors import NotComparableError, UsageError
from frameworks.errors import SerbenchError

EXIT_REGRESSION, EXIT_USAGE, EXIT_INTERNAL, EXIT_NOT_COMPARABLE, EXIT_UNDECIDED, EXIT_INTERRUPTED = 1, 2, 3, 4, 5, 130

STORED_VALUE_ERRORS = (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError, OverflowError)
"""What a value a stored run's schema admits but the code cannot use raises, in a command that only reads stored
runs (report, compare, index: `set_defaults(reads_stored_runs=True)`): the stored file's fault, so bad input."""
PATH_ERRNOS = frozenset(
    {
        errno.ENOENT,  # FileNotFoundError
        errno.ENOTDIR,  # NotADirectoryError
        errno.EISDIR,  # IsADirectoryError
        errno.EEXIST,  # FileExistsError
        errno.EACCES,  # PermissionError
        errno.EPERM,  # PermissionError
        errno.ENAMETOOLONG,
        errno.ELOOP,
    }
)
"""The OSErrors that say a path is not what the command needs (missing, a file for a directory or the reverse,
not permitted, already there, unusable as a name): bad input when the path is one the user gave."""


class Parser(argparse.ArgumentParser):
    """argparse, with every usage error on one line (the usage block is in --help)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """Every command's parser, each added by its own module, in the order --help lists them."""
    from bench.cli import bench, compare, conformance, report, run, safety, versions

    parser = Parser(prog="serbench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"serbench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (
        conformance.add_support_table,
        conformance.add_recipes,
        conformance.add_roundtrip,
        run.add_run,
        bench.add_bench,
        versions.add_versions,
        report.add_report,
        compare.add_compare,
        safety.add_safety,
        safety.add_safety_table,
        report.add_index,
    ):
        add(commands)
    return parser


@contextlib.contextmanager
def resumable(args: argparse.Namespace, hint: str) -> Iterator[None]:
    """Within it, a Ctrl-C ends the command with `hint` (what is kept and how to finish), which main says.

    Nothing is caught here: an interrupt leaves the body without running the line after `yield`, so the hint
    stays on `args` for main, the one place that catches KeyboardInterrupt."""
    args.interrupted_hint = hint
    yield
    args.interrupted_hint = None


def main(argv: list[str] | None = None) -> int:
    """Run one command; every error it raises becomes one line on stderr and an exit status (`classify`)."""
    prog, args = "serbench", None
    try:
        args = build_parser().parse_args(argv)  # inside: SERBENCH_CHECKPOINTS is read when the workloads load
        prog = f"serbench {args.command}"
        return args.func(args)
    except KeyboardInterrupt:
        hint = getattr(args, "interrupted_hint", None)
        sys.stderr.write(f"{prog}: interrupted; {hint}\n" if hint else f"{prog}: interrupted\n")
        return EXIT_INTERRUPTED
    except Exception as error:
        status, line = classify(error, args)
        if status == EXIT_INTERNAL and os.environ.get("SERBENCH_TRACEBACK"):
            raise
        sys.stderr.write(f"{prog}: {line}\n")
        return status


def classify(error: Exception, args: argparse.Namespace | None) -> tuple[int, str]:
    """The exit status of an error a command raised, and the line that says it (after the command's name).

    Bad input (2): a UsageError, one of serbench's own errors (a stored file that is not what it must be, the
    trust gate's refusals), an OSError that says a path the user gave is missing or unusable (`PATH_ERRNOS`),
    and in a command that only reads stored runs a value it cannot use. Any other OSError (a full disk, EIO, a
    program that is missing) is the system's and exits 3, as an internal error does."""
    if isinstance(error, NotComparableError):
        return EXIT_NOT_COMPARABLE, f"not comparable: {error}"
    if isinstance(error, UsageError | SerbenchError):
        return EXIT_USAGE, f"error: {one_line(error)}"
    if isinstance(error, OSError):
        if _about_a_given_path(error, args):
            return EXIT_USAGE, f"error: {one_line(error)}"
        return EXIT_INTERNAL, (
            f"system error: {type(error).__name__}: {one_line(error)} (the system's fault, not the input's: a full "
            "disk, a failing device, a missing program; fix it and run again; SERBENCH_TRACEBACK=1 shows where)"
        )
    if isinstance(error, STORED_VALUE_ERRORS) and getattr(args, "reads_stored_runs", False):
        return EXIT_USAGE, (
            f"error: a stored run holds a value serbench cannot use ({type(error).__name__}: "
            f"{one_line(error)[:300]}); was it written by serbench?"
        )
    return EXIT_INTERNAL, (
        f"internal error: {type(error).__name__}: {one_line(error)} (SERBENCH_TRACEBACK=1 shows where)"
    )


def _about_a_given_path(error: OSError, args: argparse.Namespace | None) -> bool:
    """Whether `error` says that a path of the command's arguments (or one inside it, or above it) is missing
    or unusable."""
    if error.errno not in PATH_ERRNOS or args is None:
        return False
    given = [_absolute(path) for path in given_paths(args)]
    for name in (error.filename, error.filename2):
        if name is None or isinstance(name, int):  # an int: a file descriptor, no path
            continue
        path = _absolute(Path(os.fsdecode(name)))
        if any(path == mine or path in mine.parents or mine in path.parents for mine in given):
            return True
    return False


def given_paths(args: argparse.Namespace) -> list[Path]:
    """The paths among the parsed arguments (a command that picks a default run directory records it in
    args.out), so an error about one of them is the user's input."""
    found = []
    for value in vars(args).values():
        values = value if isinstance(value, list | tuple) else [value]
        found += [item for item in values if isinstance(item, Path)]
    return found


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def one_line(error: BaseException) -> str:
    """The error as one line: a newline in it (a path may hold one) is shown as \\n, never cut at."""
    if isinstance(error, OSError) and error.filename is not None:
        text = f"{error.filename}: {error.strerror or error}"
    else:
        text = str(error).strip() or type(error).__name__
    return text.replace("\r", "\\r").replace("\n", "\\n")[:1000]
