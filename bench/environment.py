"""The environment every result is recorded with: versions, CPU, GPU, kernel, filesystem, commit.

Versions come from package metadata, so recording them imports no framework.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import psutil

import frameworks
from frameworks import environments

HARNESS_PACKAGES = ("numpy", "pandas", "pytest-benchmark", "matplotlib")


def packages(environment: str | None = None) -> tuple[str, ...]:
    """The harness's packages, then those each registered adapter (of `environment`, or all) says its
    framework is made of."""
    declared = [
        package
        for name in frameworks.REGISTRY
        if environment is None or frameworks.adapter_class(name).environment == environment
        for package in frameworks.adapter_class(name).packages
    ]
    return tuple(dict.fromkeys([*HARNESS_PACKAGES, *declared]))


def versions_here(names: tuple[str, ...] | list[str]) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _versions_in(environment: str, names: tuple[str, ...]) -> dict[str, str]:
    """The versions `environment`'s interpreter has (package metadata only: nothing is imported)."""
    code = "import json, sys; from bench.environment import versions_here as v; print(json.dumps(v(sys.argv[1:])))"
    try:
        return json.loads(environments.run(environment, ["-c", code, *names], 60, check=True).stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as error:
        return {name: f"unknown ({type(error).__name__})" for name in names}


def package_versions() -> dict[str, str]:
    """Every package a result depends on, as the interpreter that runs it has it: this one's for the
    harness and its frameworks (unless a version variant replaces it, `frameworks.variants`); another
    environment's (`frameworks.environments`) under `package [environment]`."""
    here = environments.current()
    if here is None:  # one interpreter for everything (a machine without the environments)
        return versions_here(packages())
    used = {frameworks.adapter_class(name).environment for name in frameworks.REGISTRY} | {here}
    versions: dict[str, str] = {}
    for environment in sorted(used, key=lambda name: name != here):
        names = packages(environment)
        found = versions_here(names) if environments.runs_here(environment) else _versions_in(environment, names)
        suffix = "" if environment == here else f" [{environment}]"
        versions.update({f"{name}{suffix}": version for name, version in found.items()})
    return versions


def environments_record() -> dict[str, dict[str, str]]:
    """Each environment's interpreter and the frameworks that run in it."""
    record = {}
    for environment in environments.ENVIRONMENTS.values():
        names = [n for n in frameworks.REGISTRY if frameworks.adapter_class(n).environment == environment.name]
        record[environment.name] = {
            "interpreter": environments.python_for(environment.name),
            "frameworks": ", ".join(names),
            "lock": environment.lock,
        }
    return record


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_description() -> str:
    """The GPU as nvidia-smi describes it, or why there is none."""
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "none (nvidia-smi not found)"
    return result.stdout.strip() or f"none (nvidia-smi: {result.stderr.strip()[:100]})"


def filesystem_of(path: Path) -> dict[str, str]:
    """Device, mount point and type of the filesystem holding `path`."""
    path = Path(path).resolve()
    best = None
    for partition in psutil.disk_partitions(all=True):
        mount = Path(partition.mountpoint)
        if (path == mount or mount in path.parents) and (best is None or len(str(mount)) > len(best.mountpoint)):
            best = partition
    if best is None:
        return {"path": str(path), "type": "unknown"}
    return {"path": str(path), "mountpoint": best.mountpoint, "type": best.fstype, "device": best.device}


def transparent_huge_pages() -> dict[str, str]:
    """The kernel's THP mode (the selected one of e.g. `always [madvise] never`): numpy asks for huge
    pages on large arrays, and on this project's VM a fresh 64 MiB copy takes 13 ms with them and
    51 ms without, so the mode moves every figure that allocates."""
    modes = {}
    for name in ("enabled", "defrag"):
        try:
            text = Path(f"/sys/kernel/mm/transparent_hugepage/{name}").read_text()
        except OSError:
            modes[name] = "unknown"
            continue
        selected = [word[1:-1] for word in text.split() if word.startswith("[")]
        modes[name] = selected[0] if selected else text.strip()
    return modes


def git_commit(repo: Path) -> str:
    """HEAD, with "-dirty" when code differs from it. A tree copied to another machine (the GPU
    machine gets one, with a stale .git) is told its commit through SERBENCH_GIT_COMMIT, which
    then comes first and says where it came from."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(  # untracked code counts too; results/ is where runs write
            ["git", "status", "--porcelain", "--", ".", ":!results"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        found = commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        found = "unknown"
    given = os.environ.get("SERBENCH_GIT_COMMIT")
    return f"{given} (from SERBENCH_GIT_COMMIT; git here says {found})" if given else found


def environment(out_dir: Path) -> dict[str, object]:
    memory = psutil.virtual_memory()
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "kernel": platform.release(),
        "cpu": cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "ram_bytes": memory.total,
        "gpu": gpu_description(),
        "filesystem": filesystem_of(out_dir),
        "transparent_huge_pages": transparent_huge_pages(),
        "git_commit": git_commit(Path(__file__).resolve().parent.parent),
        "versions": package_versions(),
        "environments": environments_record(),
    }
