"""The `serbench` command line.

Exit statuses: 0 done (compare: no regression), 1 regression found, 2 bad argument or input (one line
naming what is valid; no traceback), 3 internal error, 4 compare: the runs are not comparable, 130
interrupted. SERBENCH_TRACEBACK=1 prints the traceback of an internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import frameworks
from bench import __version__
from bench.errors import NotComparableError, UsageError
from frameworks.errors import SerbenchError

EXIT_REGRESSION, EXIT_USAGE, EXIT_INTERNAL, EXIT_NOT_COMPARABLE, EXIT_INTERRUPTED = 1, 2, 3, 4, 130


class Parser(argparse.ArgumentParser):
    """argparse, with every usage error on one line (the usage block is in --help)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USAGE)


def cmd_support_table(args: argparse.Namespace) -> int:
    from bench.conformance.support import replace_block, support_markdown

    table = support_markdown()
    if args.update_readme:
        _rewrite_readme(Path(args.update_readme), lambda text: replace_block(text, table))
    else:
        sys.stdout.write(table)
    return 0


def _rewrite_readme(readme: Path, change: Callable[[str], str]) -> None:
    """Replace a generated block of a README: read it as a regular file within a cap, write it atomically."""
    from frameworks.files import write_bytes_atomic
    from frameworks.stored import read_bytes

    text = read_bytes(readme, cap=4 << 20, what="README").decode("utf-8")
    write_bytes_atomic(readme, change(text).encode())


def cmd_roundtrip(args: argparse.Namespace) -> int:
    """Run the round-trip matrix now: one line per cell a format holds, whether it is what the suite
    expects, and one line per framework naming the cells its formats cannot hold. Exit 1 on a surprise."""
    from bench import workloads
    from bench.conformance.expectations import expected, meets
    from bench.conformance.roundtrip import roundtrip

    surprises = 0
    for name in args.frameworks:
        try:
            adapter = frameworks.get_adapter(name)
        except ImportError as error:
            print(f"{name:11} unavailable: {error}")
            surprises += 1
            continue
        not_held: dict[str, list[str]] = {}
        for fmt in adapter.formats:
            for workload in workloads.select(tuple(args.sizes)):
                want = expected(name, fmt, workload)
                outcome = roundtrip(adapter, fmt, workload.name)
                if want.status == "unsupported" and outcome.status == "unsupported":
                    not_held.setdefault(fmt, []).append(workload.name)
                    continue
                verdict = "as expected" if meets(outcome, want) else f"UNEXPECTED (expected {want.status})"
                surprises += verdict != "as expected"
                print(f"{name:11} {fmt:14} {workload.name:28} {outcome.summary()}  [{verdict}]")
        if not_held:
            listed = "; ".join(
                f"{fmt}: {len(names)} ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})"
                for fmt, names in not_held.items()
            )
            print(f"{name:11} cannot hold, as expected: {listed}")
    print(f"unexpected outcomes: {surprises}" if surprises else "every outcome is the one the suite expects")
    return 1 if surprises else 0


def cmd_recipes(args: argparse.Namespace) -> int:
    """The d2l File I/O and seed tutorials' recipes, one line each; exit 1 on any unexpected outcome."""
    import tempfile

    from bench.conformance.recipes import run_recipes

    with tempfile.TemporaryDirectory(prefix="serbench-recipes-") as scratch:
        print("running the recipes (about a minute per framework) ...", file=sys.stderr)
        outcomes, status, tail = run_recipes(args.frameworks, Path(scratch) / "outcomes.jsonl")
    for outcome in outcomes:
        print(outcome.line())
    counts = {kind: sum(o.outcome == kind for o in outcomes) for kind in ("passed", "failed", "skipped")}
    if not outcomes or status not in (0, 1):
        raise RuntimeError(f"the recipe checks could not run (pytest exit status {status}): {tail}")
    print(
        f"{len(outcomes)} recipes: {counts['passed']} as expected, {counts['failed']} FAILED, "
        f"{counts['skipped']} skipped here (a missing framework or GPU)"
    )
    return EXIT_REGRESSION if counts["failed"] else 0


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


def _all_formats() -> tuple[str, ...]:
    return tuple(
        dict.fromkeys(fmt for name in frameworks.names() for fmt in frameworks.adapter_class(name).format_names())
    )


def _kinds() -> tuple[str, ...]:
    from bench.kinds import KINDS

    return tuple(KINDS)


def _sizes() -> tuple[str, ...]:
    from bench.workloads import SIZES

    return SIZES


def _devices() -> tuple[str, ...]:
    from bench.timing.plan import DEVICES

    return DEVICES


FRAMEWORK_LIST = _vocabulary("a framework", frameworks.names)
FORMAT_LIST = _vocabulary("a format", _all_formats)
KIND_LIST = _vocabulary("a kind", _kinds)
SIZE_LIST = _vocabulary("a size", _sizes)
DEVICE_LIST = _vocabulary("a device", _devices)


def _release(value: str) -> str:
    """An argparse type: a release version (PEP 440), the only strings that name a variant's directory."""
    from frameworks.variants import VERSION

    if not VERSION.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a release version as PEP 440 writes it (for example 0.8.0 or 2.1.0rc1)"
        )
    return value


def _package(value: str) -> str:
    from frameworks.variants import PACKAGE

    if not PACKAGE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a package name (letters, digits, '.', '-', '_')")
    return value


def _thread_settings(value: str) -> tuple[str, ...]:
    from bench.timing.plan import THREAD_SETTINGS

    settings = _names(value)
    for setting in settings:
        if setting not in THREAD_SETTINGS and not (setting.isdigit() and int(setting) > 0):
            raise argparse.ArgumentTypeError(
                f"{setting!r} is not a thread setting: use {', '.join(THREAD_SETTINGS)} or a thread count"
            )
    return tuple(dict.fromkeys(settings))


def _check_out(args: argparse.Namespace, preset: str) -> Path:
    """The run directory: --out, or a new one; an existing non-empty one only with --resume."""
    from bench.timing.rundir import RunDir
    from bench.timing.runner import default_out

    if args.resume and args.out is None:
        raise UsageError("--resume needs --out, the run directory to finish")
    out = args.out or default_out(preset)
    if out.exists() and not args.resume:
        if not out.is_dir() or any(out.iterdir()):
            raise UsageError(
                f"--out {out} already exists and is not empty: add --resume to finish that run, or choose a new "
                "directory (a new run written into an old one would mix their rows)"
            )
    if args.resume and out.exists() and not RunDir(out).env.exists():
        raise UsageError(f"--resume: {out} is not a serbench run directory (no env.json)")
    return out


def _run_config(args: argparse.Namespace, preset: str, out: Path, **overrides: object):
    from bench.timing.runner import RunConfig

    options = {
        "preset": preset,
        "frameworks": args.frameworks,
        "formats": args.formats,
        "kinds": getattr(args, "kinds", None),
        "sizes": getattr(args, "sizes", None),
        "devices": args.devices,
        "out": out,
        "resume": args.resume,
        "peak_memory": not args.no_peak_memory,
        "processes": args.processes,
        "extra_load_processes": getattr(args, "extra_load_processes", None),
        "threads": args.threads,
        "pause_page_reporting": args.pause_page_reporting,
    }
    return RunConfig(**{**options, **overrides})


def _timed_run(command: str, config: object) -> Path | None:
    """Run the benchmark; None (after saying how to resume) when interrupted."""
    from bench.timing.runner import run

    try:
        return run(config)
    except KeyboardInterrupt:
        sys.stderr.write(
            f"serbench {command}: interrupted; finished frameworks are kept: serbench {command} --resume --out "
            f"{config.out} (with the same options) finishes the run\n"
        )
        return None


def cmd_run(args: argparse.Namespace) -> int:
    from bench.reporting.report import console_summary, load_run, write_report

    if args.scale:
        return cmd_run_scale(args)
    preset = "full" if args.full else "quick"
    out = _timed_run("run", _run_config(args, preset, _check_out(args, preset)))
    if out is None:
        return EXIT_INTERRUPTED
    print(console_summary(load_run(out)[0]))
    print(f"results: {out}\nreport: {write_report(out)}")
    return 0


def cmd_run_scale(args: argparse.Namespace) -> int:
    """`serbench run --scale`: the LLM-shaped checkpoints, the distributed engine and the scaling sweep."""
    from bench.reporting.scale import write_scale_report
    from bench.scale.runner import ScaleConfig, run

    ignored = [flag for flag, value in (("--resume", args.resume), ("--formats", args.formats)) if value]
    if ignored:
        raise UsageError(f"--scale takes none of {', '.join(ignored)}: its loaders and formats are the scale recipes'")
    out = _check_out(args, "scale")
    config = ScaleConfig(
        out=out,
        data=args.scale_data,
        llm=args.llm,
        devices=args.devices,
        pause_page_reporting=args.pause_page_reporting,
    )
    try:
        run(config)
    except KeyboardInterrupt:
        sys.stderr.write(
            f"serbench run --scale: interrupted; {out} is incomplete (the checkpoints in {args.scale_data} are kept)\n"
        )
        return EXIT_INTERRUPTED
    print(f"results: {out}\nreport: {write_scale_report(out)}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Benchmark the user's own checkpoints: read each once (in a child, behind the trust gate), then time
    every framework and format that can hold it, and answer which to use."""

    from bench import workloads
    from bench.checkpoints import prepare
    from bench.reporting.answer import checkpoint_answer
    from bench.reporting.report import load_run, write_report
    from bench.timing.rundir import RunDir
    from frameworks.files import remove_marked, write_bytes_atomic

    out = _check_out(args, "checkpoint")
    run_dir = RunDir(out)
    created = not out.exists()
    run_dir.prepare()
    try:
        with run_dir.locked():
            entries = prepare(args.paths, run_dir.own_scratch(run_dir.checkpoint_store.name), args.trusted)
            write_bytes_atomic(run_dir.checkpoints, json.dumps({"checkpoints": entries}, indent=1).encode())
            os.environ[workloads.CHECKPOINTS_VARIABLE] = str(run_dir.checkpoints.resolve())  # for every child
            names = tuple(workload.name for workload in workloads.register_checkpoints(run_dir.checkpoints))
            for entry in entries:
                dropped = f"; dropped {len(entry['dropped'])} values that are not tensors" if entry["dropped"] else ""
                print(
                    f"{entry['source']}: {entry['tensor_count']} tensors, {entry['payload_bytes'] / 2**20:.1f} MiB "
                    f"({', '.join(entry['dtypes'])}), {entry['reader']}{dropped}; timed as {entry['name']}",
                    file=sys.stderr,
                )
            out = _timed_run("bench", _run_config(args, "checkpoint", out, workloads=names))
    except BaseException:
        if created and not run_dir.checkpoints.exists():  # a refused checkpoint leaves nothing behind
            remove_marked(run_dir.root, "the run directory this command made")
        raise
    if out is None:
        return EXIT_INTERRUPTED
    report = write_report(out)
    frame = load_run(out)[0]
    for entry in entries:
        print(f"\nFor {entry['source']} on this machine:")
        for line in checkpoint_answer(frame, entry["name"]):
            print(f"  {line}")
    print(f"\nresults: {out}\nreport: {report}")
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    """Time the same cases with several releases of one package, interleaved in one run, and compare them."""
    from bench.version_matrix import run_versions

    preset = "full" if args.full else "quick"
    if args.resume:
        raise UsageError(
            "serbench versions has no --resume: its releases alternate, so an interrupted run starts again"
        )
    out = _check_out(args, f"versions-{args.package}")
    template = _run_config(args, preset, out)
    try:
        report = run_versions(
            args.package, tuple(args.versions), template, out, safety=not args.no_safety, safety_timeout_s=args.timeout
        )
    except KeyboardInterrupt:
        sys.stderr.write(f"serbench versions: interrupted; {out} is incomplete\n")
        return EXIT_INTERRUPTED
    print(f"results: {out}\nreport: {report}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.reporting.report import write_report
    from bench.reporting.versions import RECORD, read_record, write_versions_report

    if os.path.lexists(args.run_dir / RECORD):  # a `serbench versions` run: every release's report, then theirs
        record = read_record(args.run_dir)
        for release in record["versions"]:
            if "not_installable" not in release:
                write_report(args.run_dir / release["label"])
        print(write_versions_report(args.run_dir))
        return 0
    print(write_report(args.run_dir))  # load_run refuses what is not a finished run, in one line
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Exit 0 when clean, 1 on a regression or a case of the base missing from the new run, 2 on bad input,
    4 when the runs come from different machines or package versions (unless --allow-different)."""

    from bench.reporting.compare import (
        about_releases,
        apply_confirmation,
        compare,
        env_of,
        evidence,
        flagged_slower,
        load_any,
        machine_differences,
        machine_of,
        releases_under_test,
        render,
        summary,
    )

    base, new = load_any(args.base), load_any(args.new)
    base_env, new_env = env_of(args.base), env_of(args.new)
    releases = releases_under_test(base_env, new_env)
    differences = [
        difference
        for difference in machine_differences(machine_of(args.base), machine_of(args.new))
        if not about_releases(difference, releases)  # the releases compared are the point, not a difference
    ]
    if differences and not args.allow_different:
        raise NotComparableError(
            "the runs were measured on different machines or package versions ("
            + "; ".join(differences)
            + "), so their times say nothing about the code; --allow-different compares them anyway"
        )
    table = compare(base, new, threshold=args.threshold, noise_floor=args.noise_floor, interleaved=bool(releases))
    if releases and len(flagged_slower(table)):
        table = apply_confirmation(table, {}, "the releases were timed interleaved in one run, as re-timing would")
    elif len(flagged_slower(table)) and not args.no_confirm:
        table = _confirmed(args, table, bool(differences))
    strength = evidence(base_env, new_env)
    result = summary(table, differences, strength)
    print(json.dumps(result, indent=1, default=str) if args.json else render(table, show_all=args.all))
    print(f"serbench compare: evidence: {strength}", file=sys.stderr)
    for difference in differences:
        print(f"serbench compare: WARNING: not the same machine or versions: {difference}", file=sys.stderr)
    if result["missing"]:
        print(
            f"serbench compare: {len(result['missing'])} cases of the base are missing from the new run",
            file=sys.stderr,
        )
    if result["regressions"]:
        print(f"serbench compare: {len(result['regressions'])} regressions found", file=sys.stderr)
    return int(result["exit_status"])


def _confirmed(args: argparse.Namespace, table: object, runs_differ: bool) -> object:
    """Re-time the speed flags, base and new code alternately on this machine, and keep the ones that hold
    (`bench.reporting.confirm`); where that cannot be done the flags stay, with the reason."""
    from bench.reporting.compare import (
        apply_confirmation,
        flagged_slower,
        machine_differences,
        machine_of,
        this_machine,
    )
    from bench.reporting.confirm import Unconfirmable, confirm

    flagged = flagged_slower(table)
    try:
        if not (args.base.is_dir() and args.new.is_dir()):
            raise Unconfirmable("re-timing needs two run directories, not pytest-benchmark files")
        if runs_differ:
            raise Unconfirmable("the runs come from different machines or versions")
        if elsewhere := machine_differences(machine_of(args.new), this_machine()):
            raise Unconfirmable(f"this machine differs from the runs' ({'; '.join(elsewhere)[:300]})")
        print(f"serbench compare: {len(flagged)} cases slower; re-timing them to confirm ...", file=sys.stderr)
        found = confirm(
            args.base,
            args.new,
            flagged,
            args.threshold,
            args.noise_floor,
            progress=lambda text: print(f"serbench compare: {text}", file=sys.stderr),
        )
    except Unconfirmable as reason:
        print(f"serbench compare: the slower cases were not re-timed: {reason}", file=sys.stderr)
        return apply_confirmation(table, {}, str(reason))
    return apply_confirmation(table, found)


def cmd_safety(args: argparse.Namespace) -> int:
    from bench.safety.runner import run_safety

    out = run_safety(args.out, args.frameworks, timeout_s=args.timeout)
    print(f"safety results: {out / 'safety.csv'}, table: {out / 'safety.md'}")
    return 0


def cmd_safety_table(args: argparse.Namespace) -> int:
    from bench.safety.runner import read_safety, safety_markdown

    frame = read_safety(args.source)
    try:
        table = safety_markdown(frame)
    except (ValueError, KeyError, UnicodeDecodeError) as error:
        raise UsageError(f"{args.source} is not a safety.csv written by serbench safety ({error!r:.200})") from None
    if args.update_readme:
        begin = "<!-- safety:begin (generated by `serbench safety-table`; do not edit) -->"
        end = "<!-- safety:end -->"

        def replace(text: str) -> str:
            if begin not in text or end not in text:
                raise UsageError(f"{args.update_readme} has no generated safety block ({begin} ... {end})")
            start, stop = text.index(begin) + len(begin), text.index(end)
            return text[:start] + "\n" + table + "\n" + text[stop:]

        _rewrite_readme(Path(args.update_readme), replace)
    else:
        sys.stdout.write(table)
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from bench.reporting.index import write_index

    print(write_index(args.results))
    return 0


def _add_frameworks_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--frameworks", type=FRAMEWORK_LIST, help=f"comma-separated, of {', '.join(frameworks.names())} (default all)"
    )


def _add_selection_options(parser: argparse.ArgumentParser) -> None:
    _add_frameworks_option(parser)
    parser.add_argument(
        "--formats", type=FORMAT_LIST, help=f"comma-separated, of {', '.join(_all_formats())} (default all)"
    )


def _add_run_options(parser: argparse.ArgumentParser) -> None:
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
        "--processes",
        type=int,
        help="pytest processes per framework whose rounds are pooled (quick 2, full 1, bench 1): less noise, more time",
    )
    parser.add_argument(
        "--threads",
        type=_thread_settings,
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


def _llm_names() -> list[str]:
    from bench.scale_workloads import TRANSFORMERS

    return list(TRANSFORMERS)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="serbench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"serbench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    table = commands.add_parser("support-table", help="print the framework x format x kind support table")
    table.add_argument("--update-readme", metavar="README", help="rewrite the generated block in this file")
    table.set_defaults(func=cmd_support_table)

    recipes = commands.add_parser(
        "recipes",
        help="the d2l File I/O and seed tutorials' recipes in every framework: one line each, exit 1 on a change",
        description="Run the Dive into Deep Learning 'File I/O' recipes (a tensor, a list, a dict, the MLP loaded "
        "into a clone with clone(X) == net(X), a training checkpoint) and the seed tutorials' (PyTorch whole model "
        "and weights_only, map_location, transfer learning; bit-exact resume; BatchNorm buffers) in every "
        "framework, and print one line each: ok when the outcome is the expected one (exact, or the recorded "
        "drift), FAIL otherwise. Exit status 1 if any recipe failed.",
    )
    _add_frameworks_option(recipes)
    recipes.set_defaults(func=cmd_recipes)

    matrix = commands.add_parser("roundtrip", help="run the round-trip matrix and print each outcome")
    matrix.add_argument(
        "--frameworks",
        nargs="+",
        default=list(frameworks.names()),
        choices=frameworks.names(),
        help="space-separated frameworks (default all)",
    )
    matrix.add_argument(
        "--sizes",
        nargs="+",
        default=["small"],
        choices=["small", "medium", "large"],
        help="space-separated workload sizes: small (KiB), medium (up to 64 MiB), large (553 MB); default small",
    )
    matrix.set_defaults(func=cmd_roundtrip)

    bench = commands.add_parser("run", help="run the benchmark matrix (pytest-benchmark) and write results")
    preset = bench.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help="the quick preset (default): up to 64 MiB")
    preset.add_argument("--full", action="store_true", help="the full preset, up to the VGG16-shaped dict")
    preset.add_argument(
        "--scale",
        action="store_true",
        help="checkpoints at scale: an LLM-shaped state dict (one file and shards) with every loader, the "
        "distributed checkpoint engines across ranks, and the scaling sweep with fitted costs (about 12 minutes here)",
    )
    _add_selection_options(bench)
    bench.add_argument(
        "--llm",
        choices=_llm_names(),
        help="with --scale: the LLM-shaped workload (default: the largest whose payload fits a sixth of the memory)",
    )
    bench.add_argument(
        "--scale-data",
        type=Path,
        default=Path(".scale-data"),
        help="with --scale: where its checkpoints are written once and kept for later runs (default .scale-data)",
    )
    bench.add_argument(
        "--kinds", type=KIND_LIST, help=f"comma-separated workload kinds, of {', '.join(_kinds())} (default all)"
    )
    bench.add_argument(
        "--sizes",
        type=SIZE_LIST,
        help="comma-separated, of small (KiB), medium (up to 64 MiB), large (the 553 MB VGG16-shaped dict); "
        "default: the preset's",
    )
    _add_run_options(bench)
    bench.add_argument(
        "--extra-load-processes",
        type=int,
        help="more processes that re-time only the 64 MiB+ loads (quick 0, full 2): less noise, more time",
    )
    bench.set_defaults(func=cmd_run)

    mine = commands.add_parser(
        "bench",
        help="benchmark your own checkpoint: every framework and format that can hold its tensors",
        description="Read each checkpoint once (a torch file, safetensors, npz, npy, a Keras .weights.h5, a Gluon "
        ".params or NDArray file, a TensorFlow checkpoint directory, or a directory of shards with a "
        "*.index.json), then time saving and loading its tensors in every framework and format that can hold "
        "them (warm and cold, cpu and cuda), with file size, peak memory and whether it comes back exactly, "
        "and answer: fastest exact load, smallest file, lowest memory, safe for untrusted files.",
    )
    mine.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="a checkpoint file or a shard directory")
    mine.add_argument(
        "--trusted",
        action="store_true",
        help="read pickle-based files (torch .pt/.bin, pickled npy): only for files you or a source you trust made",
    )
    _add_selection_options(mine)
    _add_run_options(mine)
    mine.set_defaults(func=cmd_bench)

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
        "package", type=_package, help="a package pinned in an environment's lock, e.g. safetensors, numpy, torch"
    )
    versions.add_argument(
        "versions",
        nargs="+",
        metavar="VERSION",
        type=_release,
        help="two or more releases as PEP 440 writes them (0.8.0, 2.1.0rc1); the first is the baseline",
    )
    versions_preset = versions.add_mutually_exclusive_group()
    versions_preset.add_argument("--quick", action="store_true", help="the quick preset (default): up to 64 MiB")
    versions_preset.add_argument("--full", action="store_true", help="the full preset, up to the VGG16-shaped dict")
    _add_selection_options(versions)
    versions.add_argument(
        "--kinds", type=KIND_LIST, help=f"comma-separated workload kinds, of {', '.join(_kinds())} (default all)"
    )
    versions.add_argument(
        "--sizes", type=SIZE_LIST, help="comma-separated, of small, medium, large (default: the preset's)"
    )
    _add_run_options(versions)
    versions.add_argument("--no-safety", action="store_true", help="skip the safety matrix of each release")
    versions.add_argument(
        "--timeout", type=float, default=60.0, help="seconds before a safety load counts as a hang (default 60)"
    )
    versions.set_defaults(func=cmd_versions)

    report = commands.add_parser("report", help="write report.md, tables and plots from a run's stored results")
    report.add_argument(
        "run_dir",
        type=Path,
        help="a run directory written by serbench run or bench (results.csv, env.json, ...), or by serbench versions",
    )
    report.set_defaults(func=cmd_report)

    diff = commands.add_parser(
        "compare",
        help="compare two runs: exit 1 on a regression or missing cases, 2 on bad input, 4 if not comparable",
    )
    diff.add_argument("base", type=Path, help="run directory or pytest-benchmark JSON")
    diff.add_argument("new", type=Path, help="run directory or pytest-benchmark JSON")
    diff.add_argument("--threshold", type=float, default=0.10, help="relative slowdown to flag (default 0.10)")
    diff.add_argument(
        "--noise-floor",
        type=float,
        default=0.0,
        help="least relative noise assumed (run-to-run drift a machine shows beyond its IQR)",
    )
    diff.add_argument("--all", action="store_true", help="show unchanged rows too")
    diff.add_argument(
        "--no-confirm",
        action="store_true",
        help="declare slowdowns without re-timing them (default: the slower cases are re-timed, base and new "
        "code alternately on this machine, and only the ones that stay slower are regressions)",
    )
    diff.add_argument("--json", action="store_true", help="print a machine-readable summary instead of the table")
    diff.add_argument(
        "--allow-different",
        action="store_true",
        help="compare runs from different machines or package versions (a warning, not a refusal)",
    )
    diff.set_defaults(func=cmd_compare)

    safety = commands.add_parser("safety", help="hostile and damaged files against every loader, in subprocesses")
    safety.add_argument("--out", type=Path, required=True, help="directory for safety.csv and safety.md")
    _add_frameworks_option(safety)
    safety.add_argument(
        "--timeout", type=float, default=60.0, help="seconds before a load counts as a hang (default 60)"
    )
    safety.set_defaults(func=cmd_safety)

    safety_table = commands.add_parser("safety-table", help="render a safety.csv as Markdown (or into the README)")
    safety_table.add_argument(
        "--source",
        type=Path,
        default=Path("results/reference-safety/safety.csv"),
        help="a safety.csv written by serbench safety (default the committed reference run's)",
    )
    safety_table.add_argument("--update-readme", metavar="README", help="rewrite the generated block in this file")
    safety_table.set_defaults(func=cmd_safety_table)

    index = commands.add_parser("index", help="write results/README.md indexing the stored runs")
    index.add_argument(
        "results", type=Path, nargs="?", default=Path("results"), help="the directory of stored runs (default results)"
    )
    index.set_defaults(func=cmd_index)
    return parser


def main(argv: list[str] | None = None) -> int:
    prog = "serbench"
    try:
        args = build_parser().parse_args(argv)  # inside: SERBENCH_CHECKPOINTS is read when the workloads load
        prog = f"serbench {args.command}"
        return args.func(args)
    except NotComparableError as error:
        sys.stderr.write(f"{prog}: not comparable: {error}\n")
        return EXIT_NOT_COMPARABLE
    except (UsageError, SerbenchError, OSError) as error:
        sys.stderr.write(f"{prog}: error: {_one_line(error)}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return EXIT_INTERRUPTED
    except Exception as error:
        if os.environ.get("SERBENCH_TRACEBACK"):
            raise
        sys.stderr.write(
            f"{prog}: internal error: {type(error).__name__}: {_one_line(error)} (SERBENCH_TRACEBACK=1 shows where)\n"
        )
        return EXIT_INTERNAL


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:500]


if __name__ == "__main__":
    raise SystemExit(main())
