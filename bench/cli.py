"""The `serbench` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import frameworks


def cmd_support_table(args: argparse.Namespace) -> int:
    from bench.support import replace_block, support_markdown

    table = support_markdown()
    if args.update_readme:
        readme = Path(args.update_readme)
        readme.write_text(replace_block(readme.read_text(), table))
    else:
        sys.stdout.write(table)
    return 0


def cmd_roundtrip(args: argparse.Namespace) -> int:
    """Run the round-trip matrix now and print what each framework really preserves."""
    from bench import workloads
    from bench.roundtrip import roundtrip

    for name in args.frameworks:
        try:
            adapter = frameworks.get_adapter(name)
        except ImportError as error:
            print(f"{name:11} unavailable: {error}")
            continue
        for fmt in adapter.formats:
            for workload in workloads.select(tuple(args.sizes)):
                print(f"{name:11} {fmt:14} {workload.name:28} {roundtrip(adapter, fmt, workload.name).summary()}")
    return 0


def _names(value: str) -> tuple[str, ...]:
    return tuple(item for item in value.split(",") if item)


def cmd_run(args: argparse.Namespace) -> int:
    from bench.runner import RunConfig, run, summary

    config = RunConfig(
        preset="full" if args.full else "quick",
        frameworks=args.frameworks,
        formats=args.formats,
        kinds=args.kinds,
        sizes=args.sizes,
        devices=args.devices,
        out=args.out,
        resume=args.resume,
        peak_memory=not args.no_peak_memory,
    )
    out = run(config)
    print(summary(out))
    from bench.report import write_report

    print(f"results: {out}\nreport: {write_report(out)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import write_report

    print(write_report(args.run_dir))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.compare import compare, has_regression, load_any, render

    table = compare(load_any(args.base), load_any(args.new), threshold=args.threshold)
    print(render(table, show_all=args.all))
    if has_regression(table):
        print("serbench compare: regression found", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="serbench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    table = commands.add_parser("support-table", help="print the framework x format x kind support table")
    table.add_argument("--update-readme", metavar="README", help="rewrite the generated block in this file")
    table.set_defaults(func=cmd_support_table)

    matrix = commands.add_parser("roundtrip", help="run the round-trip matrix and print each outcome")
    matrix.add_argument("--frameworks", nargs="+", default=list(frameworks.names()), choices=frameworks.names())
    matrix.add_argument("--sizes", nargs="+", default=["small"], choices=["small", "medium", "large"])
    matrix.set_defaults(func=cmd_roundtrip)

    bench = commands.add_parser("run", help="run the benchmark matrix (pytest-benchmark) and write results")
    preset = bench.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help="the quick preset (default): up to 64 MiB")
    preset.add_argument("--full", action="store_true", help="the full preset, up to the VGG16-shaped dict")
    bench.add_argument("--frameworks", type=_names, help="comma-separated, e.g. torch,numpy")
    bench.add_argument("--formats", type=_names, help="comma-separated format names")
    bench.add_argument("--kinds", type=_names, help="comma-separated kinds: tensor,list,dict,nested,mlp")
    bench.add_argument("--sizes", type=_names, help="comma-separated sizes: small,medium,large")
    bench.add_argument("--devices", type=_names, default=("cpu", "cuda"), help="cpu,cuda (default both)")
    bench.add_argument("--out", type=Path, help="run directory (default results/<UTC time>-<preset>)")
    bench.add_argument("--resume", action="store_true", help="skip the frameworks already done in --out")
    bench.add_argument("--no-peak-memory", action="store_true", help="skip the per-load subprocess RSS figures")
    bench.set_defaults(func=cmd_run)

    report = commands.add_parser("report", help="write report.md, tables and plots from a run's stored results")
    report.add_argument("run_dir", type=Path)
    report.set_defaults(func=cmd_report)

    diff = commands.add_parser("compare", help="compare two runs; exit 1 on a regression")
    diff.add_argument("base", type=Path, help="run directory or pytest-benchmark JSON")
    diff.add_argument("new", type=Path, help="run directory or pytest-benchmark JSON")
    diff.add_argument("--threshold", type=float, default=0.10, help="relative slowdown to flag (default 0.10)")
    diff.add_argument("--all", action="store_true", help="show unchanged rows too")
    diff.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
