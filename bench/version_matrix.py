"""`serbench versions PACKAGE V1 V2 ...`: the same cases timed with several releases of one package,
interleaved in one run, and one report comparing them.

Each release is a version variant of the environment that pins the package (`frameworks.variants`):
everything else exactly as locked. The benchmark runs every variant's processes in turn (A, B, A, B,
...; `bench.timing.runner.run_interleaved`), so the machine's drift during the run hits every release
alike; each release gets a complete run directory (`OUT/<package>-<version>/`, which `serbench report`
and `serbench compare` read like any run), its own safety matrix under it (`.../safety/`), and
`OUT/versions.md` compares them (`bench.reporting.versions`). A release that cannot be installed
here is a row of that report saying why.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import replace
from pathlib import Path

import frameworks
from bench.errors import UsageError
from bench.reporting.versions import LABEL
from bench.timing.runner import RunConfig, run_interleaved
from frameworks import environments, files
from frameworks.files import write_bytes_atomic
from frameworks.variants import NotInstallable, Variant

RECORD = "versions.json"


def frameworks_using(package: str, chosen: tuple[str, ...] | None) -> tuple[str, tuple[str, ...]]:
    """The environment whose lock pins `package`, and the frameworks to time in it: `chosen`, or every
    framework that is the package or declares it (`Adapter.packages`), in the first environment (core
    first) that has one. UsageError, naming what is valid, when that is not one environment."""
    wanted = environments.normalize(package)

    def uses(name: str) -> bool:
        declared = {environments.normalize(p) for p in frameworks.adapter_class(name).packages}
        return name == wanted or wanted in declared

    names = [name for name in frameworks.names() if not frameworks.is_baseline(name)]
    if chosen is None:
        order = sorted(environments.ENVIRONMENTS, key=lambda env: env != environments.HOME)
        for environment in order:
            found = tuple(n for n in names if uses(n) and frameworks.adapter_class(n).environment == environment)
            if found:
                chosen = found
                break
        else:
            raise UsageError(
                f"no framework uses {package!r}: name one with --frameworks, or a package some framework declares "
                f"({', '.join(sorted({p for n in names for p in frameworks.adapter_class(n).packages}))})"
            )
    homes = {frameworks.adapter_class(name).environment for name in chosen}
    if len(homes) != 1:
        raise UsageError(
            f"--frameworks {','.join(chosen)} run in different environments ({', '.join(sorted(homes))}); a versions "
            "run replaces a package in one environment: choose frameworks of one"
        )
    (environment,) = homes
    if wanted not in environments.ENVIRONMENTS[environment].pins():
        home = environments.ENVIRONMENTS[environment]
        pinned = ", ".join(sorted(home.pins()))
        raise UsageError(
            f"{package!r} is not in the {environment} environment's lock ({home.lock}); "
            f"a versions run replaces one of its pins: {pinned}"
        )
    return environment, tuple(chosen)


def build_variants(environment: str, package: str, versions: tuple[str, ...]) -> list[dict[str, object]]:
    """Each release's variant record, or `{"label", "version", "not_installable": why}`; said as it goes."""
    records = []
    for version in versions:
        variant = Variant(environment, package, version)
        print(f"serbench versions: preparing {package} {version} ...", file=sys.stderr, flush=True)
        try:
            records.append(variant.build())
        except NotInstallable as reason:
            print(f"serbench versions: {package} {version} is left out: {reason}", file=sys.stderr)
            records.append(
                {"label": variant.label, "package": package, "version": version, "not_installable": str(reason)}
            )
    return records


def run_versions(
    package: str,
    versions: tuple[str, ...],
    template: RunConfig,
    out: Path,
    safety: bool = True,
    safety_timeout_s: float = 60.0,
) -> Path:
    """Build, time interleaved, check safety per release, and write the comparison; returns its report."""
    from bench.reporting.report import write_report
    from bench.reporting.versions import write_versions_report
    from bench.safety.runner import run_safety

    if len(set(versions)) < 2:
        raise UsageError(f"give at least two different versions of {package} to compare (got {', '.join(versions)})")
    environment, chosen = frameworks_using(package, template.frameworks)
    records = build_variants(environment, package, tuple(dict.fromkeys(versions)))
    installed = [record for record in records if "not_installable" not in record]
    if len(installed) < 2:
        reasons = "; ".join(f"{r['version']}: {r['not_installable']}" for r in records if "not_installable" in r)
        raise UsageError(f"fewer than two of the versions install here, nothing to compare ({reasons})")
    labels = [str(record["label"]) for record in installed]
    if unplain := [label for label in labels if not LABEL.fullmatch(label)]:  # where each release's run is written
        raise UsageError(f"a variant's record names its release {unplain[0]!r}, not a plain directory name in {out}")
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    matrix = f"{out.resolve()} {started}"  # the one run these releases were interleaved in
    configs = [
        replace(
            template,
            frameworks=chosen,
            out=out / str(record["label"]),
            resume=False,
            variant={**record, "matrix": matrix},
            interleaved_with=[label for label in labels if label != record["label"]],
        )
        for record in installed
    ]
    summary = {
        "package": package,
        "environment": environment,
        "frameworks": list(chosen),
        "preset": template.preset,
        "date": started,
        "versions": records,
        "order": "per framework, process 1 of each release in the order given, then process 2 of each, and so on",
        "safety": safety,
    }
    files.own_directory(out)  # refused where it is a link: the record and every release's run go inside
    write_bytes_atomic(out / RECORD, json.dumps(summary, indent=1).encode())
    try:
        run_interleaved(configs)
    except UsageError:
        (out / RECORD).unlink(missing_ok=True)  # refused before anything was timed: no record of a run left
        raise
    for config in configs:
        if safety:
            with config.interpreter():
                run_safety(Path(config.out) / "safety", chosen, timeout_s=safety_timeout_s)
        write_report(Path(config.out))
    return write_versions_report(out)
