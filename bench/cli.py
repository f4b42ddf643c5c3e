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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
