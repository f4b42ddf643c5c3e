"""`python3 -m bench.gpu [--dry-run]`: the GPU run, or its plan (see bench.gpu).

Exit statuses: 0 done (dry run: the plan fits and every wheel is in order); 1 a required step did not finish
(dry run: over budget, or a wheel missing, wrong or too large to carry); 2 refused (no CUDA device here) or a
bad argument, in one line; 3 an internal error (SERBENCH_TRACEBACK=1 shows where).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import UsageError

if TYPE_CHECKING:
    from bench.gpu import wheels

PROG = "serbench gpu"
EXIT_PLAN, EXIT_USAGE, EXIT_INTERNAL = 1, 2, 3
DEFAULT_BUDGET_S = 480.0
"""bench.gpu.plan.BUDGET_S, here too: nothing beyond the standard library is imported before a machine without a
GPU is refused (its python3 need not have the harness's packages)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{PROG}: error: {message} (see python3 -m bench.gpu --help)\n")
        raise SystemExit(EXIT_USAGE)


def _budget(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 < seconds <= 600:
        raise argparse.ArgumentTypeError(f"{value} s: a budget is more than 0 and at most 600 s (one device command)")
    return seconds


def steps_of(value: str | None) -> tuple[str, ...] | None:
    """--steps as names, checked against the plan's (UsageError naming the valid ones)."""
    if value is None:
        return None
    from bench.gpu import plan as planning

    names = tuple(dict.fromkeys(item.strip() for item in value.split(",") if item.strip()))
    unknown = [name for name in names if name not in planning.STEP_NAMES]
    if unknown or not names:
        raise UsageError(
            f"--steps: {', '.join(unknown) or 'nothing'} is not a step: use {', '.join(planning.STEP_NAMES)}"
        )
    return names


def no_gpu_here() -> str:
    """Why this machine plainly has no NVIDIA GPU ("" where it may have one: bench.gpu.run then asks torch)."""
    if shutil.which("nvidia-smi") is None and not Path("/dev/nvidiactl").exists():
        return "no NVIDIA GPU here (no nvidia-smi, no /dev/nvidiactl)"
    return ""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python3 -m bench.gpu", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="plan the run and check its wheels (no GPU needed)")
    parser.add_argument(
        "--budget-s",
        type=_budget,
        default=DEFAULT_BUDGET_S,
        help=f"seconds the whole run may take (default {DEFAULT_BUDGET_S:.0f}: it ends before 8 minutes)",
    )
    parser.add_argument(
        "--steps", help="comma-separated steps to run (and check, install, probe, limits, report, always)"
    )
    parser.add_argument("--out", type=Path, help="the run directory (default results/reference-gpu-<gpu>-<date>)")
    parser.add_argument("--tar", type=Path, help="also write the run directory as this .tar.gz (e.g. $OUT/gpu.tgz)")
    parser.add_argument("--wheels-dir", type=Path, help="the carried wheels (default .whl/ in the repository)")
    parser.add_argument("--site", type=Path, help="where the wheels are installed there (default a temp directory)")
    parser.add_argument("--data", type=Path, help="where the scale checkpoints are written (default .scale-data/)")
    parser.add_argument("--gpus", type=int, default=1, help="dry run: the GPUs planned for (nvidia-h200: 1)")
    parser.add_argument("--no-fetch", action="store_true", help="dry run: do not pip download missing wheels")
    return parser


def _mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 1 << 20 else f"{nbytes / 2**10:.0f} KiB"


def expected_installs(checks: list[wheels.WheelCheck]) -> dict[str, str]:
    """What the install step will do with each carried wheel on the image as recorded (wheels.IMAGE_SOURCE)."""
    from bench.gpu import wheels

    packaging = wheels._packaging()
    specifiers = wheels.pyproject_specifiers()
    plans: dict[str, str] = {}
    for check in checks:
        name = check.carried.name
        if name not in specifiers:
            continue
        version = wheels.IMAGE_VERSIONS.get(name)
        if name not in wheels.IMAGE_PACKAGES:
            plans[name] = "installed there: the image lacks it"
        elif version and specifiers[name] and version not in packaging.specifiers.SpecifierSet(specifiers[name]):
            plans[name] = f"installed there: the image's {version} is outside {specifiers[name]}"
        else:
            plans[name] = f"a fallback: the image has {version or 'it'}, which pyproject accepts"
    for check in checks:
        for text in check.requires:
            required = wheels.canonical(packaging.requirements.Requirement(text).name)
            if required in {c.carried.name for c in checks} and required not in plans:
                plans[required] = f"installed with {check.carried.name}, where that is installed"
    return plans


def dry_run(args: argparse.Namespace) -> int:
    from bench.gpu import plan as planning
    from bench.gpu import wheels

    args.wheels_dir = args.wheels_dir or wheels.WHEELS
    selected = steps_of(args.steps)
    carry = wheels.check_carry(args.wheels_dir, fetch_missing=not args.no_fetch)
    installs = expected_installs(carry.checks)
    install_bytes = sum(
        check.size for check in carry.checks if installs.get(check.carried.name, "").startswith("installed there")
    )
    chosen = planning.build_plan(args.budget_s, args.gpus, selected, install_bytes or 12 << 20)
    fits = chosen.optional_fits()
    out = [
        f"{PROG} --dry-run: one run on a GPU machine with {args.gpus} GPU(s), budget {chosen.budget_s:.0f} s "
        f"(reserve {chosen.reserve_s:.0f} s)",
        "",
        f"  {'step':15} {'runs':15} {'estimate':>8}  what (basis)",
    ]
    for step in chosen.steps:
        if step.name in chosen.skipped:
            runs, note = "skipped", chosen.skipped[step.name]
        elif step.required:
            runs, note = "required", ""
        else:
            runs = "if time allows"
            note = (
                "fits after the required steps"
                if fits.get(step.name)
                else "does not fit now: runs only if the steps before it finish early"
            )
        out.append(f"  {step.name:15} {runs:15} {step.estimate_s:6.0f} s  {step.what} ({step.basis})")
        if note:
            out.append(f"  {'':15} {'':15} {'':8}  -> {note}")
    spare = chosen.budget_s - chosen.reserve_s - chosen.required_s
    out += [
        "",
        f"  required: {chosen.required_s:.0f} s + reserve {chosen.reserve_s:.0f} s = "
        f"{chosen.required_s + chosen.reserve_s:.0f} s of {chosen.budget_s:.0f} s: "
        + (f"fits, {spare:.0f} s spare" if spare >= 0 else f"DOES NOT FIT, {-spare:.0f} s over"),
        "",
        f'wheels to carry ({wheels.CARRY_LIST.relative_to(wheels.ROOT)} -> {args.wheels_dir}, carry: [".whl"]):',
    ]
    for check in carry.checks:
        status = "ok" if check.ok else "PROBLEM"
        fetched = ", fetched now" if check.fetched else ""
        name = check.path.name if check.path else "(missing)"
        out.append(
            f"  {check.carried.pin:30} {_mib(check.size):>9}  {status}{fetched}  {name}"
            + (f"\n  {'':30} {'':9}  {installs[check.carried.name]}" if check.carried.name in installs else "")
        )
    for name in carry.extra:
        out.append(f"  (also in {args.wheels_dir.name}/, not listed: {name}: it travels but is not installed)")
    tree = carry.tree_bytes
    total = (tree or 0) + carry.wheels_bytes
    out.append(
        f"  transfer: tree {_mib(tree or 0)} + wheels {_mib(carry.wheels_bytes)} = {_mib(total)} of "
        f"{_mib(wheels.TRANSFER_LIMIT_BYTES)}"
        if tree is not None
        else f"  transfer: not measured ({carry.tree_note})"
    )
    out += ["", "figures the estimates use:"]
    out += [f"  {name:15} {f.value:g} {f.unit}: {f.source}" for name, f in planning.FIGURES.items()]
    problems = chosen.problems() + carry.problems
    out.append("")
    out += [f"PROBLEM: {problem}" for problem in problems] or ["the plan fits and every wheel is in order"]
    print("\n".join(out))
    if problems:
        sys.stderr.write(f"{PROG} --dry-run: {len(problems)} problem(s); the first: {problems[0]}\n")
        return EXIT_PLAN
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    refused = (
        f"{PROG}: refused: {{}}; it measures GPUs only and prints no GPU figure without one "
        "(make gpu-dry-run plans it on any machine)\n"
    )
    try:
        if args.dry_run:
            return dry_run(args)
        if why := no_gpu_here():
            sys.stderr.write(refused.format(why))
            return EXIT_USAGE
        from bench.gpu.run import Options, Refused, run

        options = Options(out=args.out, budget_s=args.budget_s, steps=steps_of(args.steps), tar=args.tar)
        for name, value in (("wheels", args.wheels_dir), ("site", args.site), ("data", args.data)):
            if value:
                setattr(options, name, value)
        try:
            return run(options)
        except Refused as why:
            sys.stderr.write(refused.format(why))
            return EXIT_USAGE
    except (UsageError, OSError) as error:
        sys.stderr.write(f"{PROG}: error: {str(error).splitlines()[0] if str(error) else type(error).__name__}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except Exception as error:
        if os.environ.get("SERBENCH_TRACEBACK"):
            raise
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:500]
        sys.stderr.write(
            f"{PROG}: internal error: {type(error).__name__}: {first} (SERBENCH_TRACEBACK=1 shows where)\n"
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
