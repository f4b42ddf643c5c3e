"""The options more than one command takes, each defined once: the argument types that check a value before any
work starts (a value outside a vocabulary is one line naming the valid ones), the option groups, and what
`--update FILE` does.

A vocabulary is read when a parser is built or a value checked, from the registry and the modules that own it;
nothing here imports a framework.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import frameworks


def _names(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item.strip() for item in value.split(",") if item.strip()))


def _vocabulary(what: str, valid: Callable[[], tuple[str, ...]]) -> Callable[[str], tuple[str, ...]]:
    """An argparse type for a comma-separated list whose every item must be one of `valid()`."""

    def parse(value: str) -> tuple[str, ...]:
        names, allowed = _names(value), valid()
        unknown = [name for name in names if name not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"{', '.join(map(repr, unknown)) or 'nothing'} is not {what}: use {', '.join(allowed)}"
            )
        return names

    return parse


def all_formats() -> tuple[str, ...]:
    return tuple(
        dict.fromkeys(fmt for name in frameworks.names() for fmt in frameworks.adapter_class(name).format_names())
    )


def kind_names() -> tuple[str, ...]:
    from bench.kinds import KINDS

    return tuple(KINDS)


def size_names() -> tuple[str, ...]:
    from bench.workloads import SIZES

    return SIZES


def device_names() -> tuple[str, ...]:
    from bench.timing.plan import DEVICES

    return DEVICES


FRAMEWORK_LIST = _vocabulary("a framework", frameworks.names)
FORMAT_LIST = _vocabulary("a format", all_formats)
KIND_LIST = _vocabulary("a kind", kind_names)
SIZE_LIST = _vocabulary("a size", size_names)
DEVICE_LIST = _vocabulary("a device", device_names)


def release(value: str) -> str:
    """An argparse type: a release version (PEP 440), the only strings that name a variant's directory."""
    from frameworks.variants import VERSION

    if not VERSION.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a release version as PEP 440 writes it (for example 0.8.0 or 2.1.0rc1)"
        )
    return value


def package(value: str) -> str:
    """An argparse type: a package name as pip takes it."""
    from frameworks.variants import PACKAGE

    if not PACKAGE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a package name (letters, digits, '.', '-', '_')")
    return value


def _number(value: str, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not {what}") from None


def fraction(value: str) -> float:
    """An argparse type: a number from 0 up to, not including, 1."""
    number = _number(value, "a number")
    if not 0 <= number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a fraction between 0 and 1")
    return number


def seconds(value: str) -> float:
    """An argparse type: a finite number of seconds, 0 or more."""
    number = _number(value, "a number of seconds")
    if not (number >= 0 and number < float("inf")):
        raise argparse.ArgumentTypeError(f"{value} is not a number of seconds, 0 or more")
    return number


def thread_settings(value: str) -> tuple[str, ...]:
    """An argparse type: comma-separated thread settings (a named one, or a positive count)."""
    from bench.timing.plan import THREAD_SETTINGS

    settings = _names(value)
    for setting in settings:
        if setting not in THREAD_SETTINGS and not (setting.isdigit() and int(setting) > 0):
            raise argparse.ArgumentTypeError(
                f"{setting!r} is not a thread setting: use {', '.join(THREAD_SETTINGS)} or a thread count"
            )
    return tuple(dict.fromkeys(settings))


def add_frameworks_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--frameworks", type=FRAMEWORK_LIST, help=f"comma-separated, of {', '.join(frameworks.names())} (default all)"
    )


def add_selection_options(parser: argparse.ArgumentParser) -> None:
    """--frameworks and --formats: which cells of the matrix a command times."""
    add_frameworks_option(parser)
    parser.add_argument(
        "--formats", type=FORMAT_LIST, help=f"comma-separated, of {', '.join(all_formats())} (default all)"
    )


def add_preset_options(parser: argparse.ArgumentParser) -> argparse._MutuallyExclusiveGroup:
    """--quick or --full; the group, for a command with a preset of its own (run --scale)."""
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help="the quick preset (default): up to 64 MiB")
    preset.add_argument("--full", action="store_true", help="the full preset, up to the VGG16-shaped dict")
    return preset


def add_workload_options(parser: argparse.ArgumentParser) -> None:
    """--kinds and --sizes of a timed run (roundtrip's --sizes has its own default)."""
    parser.add_argument(
        "--kinds", type=KIND_LIST, help=f"comma-separated workload kinds, of {', '.join(kind_names())} (default all)"
    )
    parser.add_argument(
        "--sizes",
        type=SIZE_LIST,
        help="comma-separated, of small (KiB), medium (up to 64 MiB), large (the 553 MB VGG16-shaped dict); "
        "default: the preset's",
    )


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """How a timed run is done and where it goes; `runs.run_config` reads them back."""
    parser.add_argument(
        "--devices",
        type=DEVICE_LIST,
        default=("cpu", "cuda"),
        help="comma-separated, of cpu, cuda (default both; cuda loads say 'unavailable' and why without a GPU)",
    )
    parser.add_argument("--out", type=Path, help="run directory, new or empty (default results/<UTC time>-<preset>)")
    parser.add_argument(
        "--resume", action="store_true", help="finish the run in --out: skip the frameworks already done there"
    )
    parser.add_argument(
        "--no-peak-memory", action="store_true", help="skip the peak RSS of a load (measured from 16 MiB payloads)"
    )
    parser.add_argument(
        "--budget",
        type=seconds,
        metavar="SECONDS",
        help="after the planned processes, time the formats an answer cannot tell apart yet in more processes until "
        "it is decided, for up to SECONDS (run: default 0, off; bench: default 120)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        help="pytest processes per framework whose rounds are pooled (quick 2, full 1, bench 1): less noise, more time",
    )
    parser.add_argument(
        "--threads",
        type=thread_settings,
        help="comma-separated thread settings to time every case with: 1 (one thread per framework pool, the "
        "reproducible setting on a small VM), default (the framework's choice), or a count; "
        "default: the preset's (quick and bench: 1; full: 1, plus default for the 64 MiB+ loads)",
    )
    parser.add_argument(
        "--pause-page-reporting",
        action="store_true",
        help="on a VM whose balloon reports free pages to the host (freed memory then faults in the host when "
        "reused), unbind the balloon driver for the run and rebind it after (needs root; make bench passes it)",
    )


def add_safety_timeout_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds before a safety load counts as a hang (default 60)"
    )


def add_update_option(parser: argparse.ArgumentParser, page: str) -> None:
    """--update FILE of a command that prints a generated block: `rewrite_block` writes it into FILE instead."""
    parser.add_argument(
        "--update",
        "--update-readme",
        dest="update_readme",
        type=Path,
        metavar="FILE",
        help=f"rewrite the generated block in FILE ({page})",
    )


def rewrite_block(page: Path, change: Callable[[str], str]) -> None:
    """Replace a generated block of a page: read it as a regular file within a cap, write it atomically."""
    from frameworks.files import write_bytes_atomic
    from frameworks.stored import read_bytes

    text = read_bytes(page, cap=4 << 20, what="README").decode("utf-8")
    write_bytes_atomic(page, change(text).encode())
