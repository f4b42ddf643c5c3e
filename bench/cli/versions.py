"""`serbench versions`: the same cases timed with several releases of one package, interleaved, and compared."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench.cli import resumable
from bench.cli.options import (
    add_preset_options,
    add_run_options,
    add_safety_timeout_option,
    add_selection_options,
    add_workload_options,
    package,
    release,
)
from bench.cli.runs import run_config, run_directory
from bench.errors import UsageError


def add_versions(commands: argparse._SubParsersAction) -> None:
    versions = commands.add_parser(
        "versions",
        help="time the same cases with several releases of one package, interleaved, and compare them",
        description="Build a cached variant of the environment that pins PACKAGE for each VERSION (everything else "
        "as locked; a release that cannot be installed here is reported with pip's reason), time the selected "
        "cases with every release in one run, the releases' processes alternating (A, B, A, B, ...) so the "
        "machine's drift hits each alike, run the safety matrix with each, and write OUT/versions.md: speed per "
        "release with its spread and change against the first VERSION, and every round-trip, status or safety "
        "outcome that changed. Each release's run is OUT/<package>-<version>/, for serbench report and compare.",
    )
    versions.add_argument(
        "package", type=package, help="a package pinned in an environment's lock, e.g. safetensors, numpy, torch"
    )
    versions.add_argument(
        "versions",
        nargs="+",
        metavar="VERSION",
        type=release,
        help="two or more releases as PEP 440 writes them (0.8.0, 2.1.0rc1); the first is the baseline",
    )
    add_preset_options(versions)
    add_selection_options(versions)
    add_workload_options(versions)
    add_run_options(versions)
    versions.add_argument("--no-safety", action="store_true", help="skip the safety matrix of each release")
    versions.add_argument(
        "--variants-dir",
        type=Path,
        metavar="DIR",
        help="where the releases' environments are built and cached (default .venv-versions in the checkout; "
        "also SERBENCH_VARIANTS_DIR)",
    )
    add_safety_timeout_option(versions)
    versions.set_defaults(func=cmd_versions)


def cmd_versions(args: argparse.Namespace) -> int:
    """Time the same cases with several releases of one package, interleaved in one run, and compare them."""
    from bench.version_matrix import run_versions

    preset = "full" if args.full else "quick"
    if args.resume:
        raise UsageError(
            "serbench versions has no --resume: its releases alternate, so an interrupted run starts again"
        )
    if args.budget is not None:
        raise UsageError(
            "serbench versions takes no --budget: its releases alternate process by process and are compared "
            "paired; more --processes narrow their intervals"
        )
    if args.variants_dir is not None:
        from frameworks.variants import DIRECTORY_VARIABLE

        if args.variants_dir.is_symlink() or (args.variants_dir.exists() and not args.variants_dir.is_dir()):
            raise UsageError(f"--variants-dir {args.variants_dir} is not a directory (a link is not followed)")
        os.environ[DIRECTORY_VARIABLE] = str(args.variants_dir.absolute())
    out = run_directory(args, f"versions-{args.package}")
    template = run_config(args, preset, out)
    with resumable(args, f"{out} is incomplete"):
        report = run_versions(
            args.package, tuple(args.versions), template, out, safety=not args.no_safety, safety_timeout_s=args.timeout
        )
    print(f"results: {out}\nreport: {report}")
    return 0
