"""The benchmark matrix: adapter x format x workload x device x cache state x operation x threads.

A plan is data (a list of `Case` and the number of passes), written to JSON and handed to the
pytest-benchmark module, so a run can be split per framework and thread setting, resumed, and
reproduced.

Passes: each pytest process times every case `passes` times, pass after pass, a few rounds each,
instead of all of a case's rounds back to back. On this project's VM the cost of a load drifts
in stretches of seconds (a 64 MiB torch.load ran 38-58 ms within one process over 40 s, while a
memcpy of warm buffers did not move), so rounds taken back to back sample one stretch, and their
median moves from run to run; rounds spread over the run sample them all.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import frameworks
from bench import workloads
from bench.kinds import KINDS, timed_as_given

CACHES = ("warm", "cold")
DEVICES = ("cpu", "cuda")
THREAD_SETTINGS = ("1", "default")
"""`1`: every framework's intra-op pools (and BLAS/OpenMP) limited to one thread; `default`: as the
framework chooses. On this 2-vCPU VM one thread is the reproducible setting: a 64 MiB
safetensors.torch load + copy spread 3.2x across processes with default threads, 1.3x with one."""


@dataclass(frozen=True)
class Preset:
    workloads: tuple[str, ...]
    rounds: dict[str, int] = field(default_factory=dict)
    """Timed rounds by workload size, per process and pass."""
    passes: int = 1
    """How often each process times every case, pass after pass (see the module docstring)."""
    threads: tuple[str, ...] = ("1",)
    """Thread settings every case is timed with (see THREAD_SETTINGS)."""
    headline_threads: tuple[str, ...] = ()
    """More thread settings timed for the headline loads only (whether threads help a large load)."""
    processes: int = 1
    """Separate pytest processes per framework whose rounds are pooled: on a VM a whole process can
    run 10-40% slower than the next, which rounds within one process cannot reveal."""
    extra_load_processes: int = 0
    """More processes that time only the headline loads (see `headline_loads`), pooled with the rest.
    On this project's VMs one process's median for a 64 MiB load differs from the next one's by 20-40%
    (with transparent huge pages on or off), so the median of the headline figures needs several
    processes; the quick preset cannot afford them within its 3 minutes."""


PRESETS = {
    "quick": Preset(
        ("d2l-tensor", "d2l-list", "d2l-dict", "nested", "d2l-mlp", "d2l-checkpoint", "size-1MiB", "size-64MiB"),
        {"small": 5, "medium": 2, "large": 1},
        processes=2,
        passes=3,
    ),
    "full": Preset(
        (
            "d2l-tensor",
            "d2l-list",
            "d2l-dict",
            "d2l-mlp",
            "d2l-checkpoint",
            "nested",
            "size-1MiB",
            "size-64MiB",
            "vgg16",
        ),
        {"small": 10, "medium": 3, "large": 2},
        passes=3,
        extra_load_processes=1,
        headline_threads=("default",),
    ),
    "checkpoint": Preset((), {"small": 5, "medium": 3, "large": 2}, passes=3),
}
"""`checkpoint` times users' own checkpoints (`serbench bench`): its workloads are given with the run."""
HEADLINE_MIN_BYTES = 64 << 20
"""Loads of workloads this large are the headline figures that extra processes re-time."""

BASELINE_WORKLOADS = ("d2l-tensor", "size-64MiB")
"""A baseline adapter's cases: per-call harness overhead, and a copy to compare with memcpy."""


CASE_KEY = ("framework", "format", "workload", "device", "cache", "op", "threads")
"""What identifies a case, a row of results.csv and a line of a comparison: `Case.id` joins these with '|'."""


def case_id(values: Any) -> str:
    """The key of a case, a result row or a comparison's row (anything indexed by field), joined with '|'."""
    return "|".join(str(values[field]) for field in CASE_KEY)


@dataclass(frozen=True)
class Case:
    framework: str
    format: str
    workload: str
    device: str
    cache: str
    op: str
    rounds: int
    held: bool = True
    """False where the format cannot hold the workload's kind: reported, not timed."""
    threads: str = "1"
    """The thread setting the case is timed with (see THREAD_SETTINGS)."""

    @property
    def id(self) -> str:
        return case_id(asdict(self))

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "id": self.id}


def _specs(framework: str) -> tuple[frameworks.FormatSpec, ...]:
    return frameworks.adapter_class(framework).specs


def plan(
    preset: str = "quick",
    framework_names: tuple[str, ...] | None = None,
    formats: tuple[str, ...] | None = None,
    kinds: tuple[str, ...] | None = None,
    sizes: tuple[str, ...] | None = None,
    devices: tuple[str, ...] = DEVICES,
    caches: tuple[str, ...] = CACHES,
    include_null: bool = True,
    threads: tuple[str, ...] | None = None,
    workload_names: tuple[str, ...] | None = None,
) -> list[Case]:
    """Every case of the selected matrix, in a stable order. `threads` replaces the preset's thread
    settings (its headline-only settings included); `workload_names` its workloads (users' checkpoints)."""
    chosen = PRESETS[preset] if workload_names is None else replace(PRESETS[preset], workloads=workload_names)
    settings = threads or chosen.threads
    cases = [
        case
        for setting in settings
        for case in _cases(chosen, names_of(framework_names, include_null), formats, kinds, sizes, devices, caches)
        for case in [replace(case, threads=setting)]
    ]
    if threads is None:
        base = [case for case in cases if case.threads == settings[0]]
        threaded = [case for case in headline_loads(base) if not frameworks.is_baseline(case.framework)]
        cases += [replace(case, threads=setting) for setting in chosen.headline_threads for case in threaded]
    return cases


def names_of(framework_names: tuple[str, ...] | None, include_null: bool) -> tuple[str, ...]:
    names = tuple(framework_names or frameworks.names())
    return (*names, *frameworks.baselines()) if include_null else names


def _cases(
    chosen: Preset,
    names: tuple[str, ...],
    formats: tuple[str, ...] | None,
    kinds: tuple[str, ...] | None,
    sizes: tuple[str, ...] | None,
    devices: tuple[str, ...],
    caches: tuple[str, ...],
) -> list[Case]:
    cases = []
    for framework in names:
        baseline = frameworks.is_baseline(framework)
        pool = BASELINE_WORKLOADS if baseline else chosen.workloads
        for spec in _specs(framework):
            if formats and spec.name not in formats and not baseline:
                continue
            for name in pool:
                workload = workloads.WORKLOADS[name]
                if (kinds and workload.kind not in kinds) or (sizes and workload.size not in sizes):
                    continue
                rounds = chosen.rounds[workload.size]
                if workload.kind not in spec.holds:
                    cases.append(Case(framework, spec.name, name, "cpu", "-", "save", 0, held=False))
                    if timed_as_given(
                        workload, framework, spec
                    ):  # the user's own file: its loads, as serbench reads it
                        cases += [Case(framework, spec.name, name, "cpu", cache, "load", rounds) for cache in caches]
                    continue
                cases.append(Case(framework, spec.name, name, "cpu", "-", "save", rounds))
                on_devices = KINDS[workload.kind].loads_on_devices and not baseline
                load_devices = devices if on_devices else ("cpu",)
                # a baseline's in-memory copy has no page cache to be cold in: its only limit is memcpy
                load_caches = ("warm",) if baseline else caches
                for device in load_devices:
                    for cache in load_caches:
                        cases.append(Case(framework, spec.name, name, device, cache, "load", rounds))
                        if spec.lazy and device == "cpu":
                            cases.append(Case(framework, spec.name, name, device, cache, "open", rounds))
    return cases


def headline_loads(cases: list[Case]) -> list[Case]:
    """The timed loads of the workloads of at least HEADLINE_MIN_BYTES (none in a small-only run)."""
    return [
        case
        for case in cases
        if case.op == "load" and case.held and workloads.payload_of(case.workload) >= HEADLINE_MIN_BYTES
    ]


def write_plan(cases: list[Case], path: Path, passes: int = 1) -> None:
    from frameworks.files import write_bytes_atomic

    document = {"passes": passes, "cases": [case.as_dict() for case in cases]}
    write_bytes_atomic(path, json.dumps(document, indent=1).encode())


def _plan_schema() -> object:
    from frameworks import stored

    case = stored.Object(
        required={**dict.fromkeys(("framework", "format", "workload", "device", "cache", "op"), str), "rounds": int},
        optional={"held": bool, "threads": str, "id": str},
    )
    passes = stored.Number(minimum=1, integer=True)
    return stored.ListOf(case), stored.Object(required={"passes": passes, "cases": stored.ListOf(case)})


PLAN_SCHEMA = _plan_schema()


def read_plan_file(path: Path) -> tuple[list[Case], int]:
    """The cases and passes of a plan file (a bare list, from runs before passes, is one pass)."""
    from frameworks import stored

    document = stored.read_json(path, what="plan", schema=PLAN_SCHEMA, cap=64 << 20)
    items, passes = (document, 1) if isinstance(document, list) else (document["cases"], document["passes"])
    # runs before the threads axis ran with the frameworks' default threads
    return [Case(**{"threads": "default", **{k: v for k, v in item.items() if k != "id"}}) for item in items], passes


def read_plan(path: Path) -> list[Case]:
    return read_plan_file(path)[0]
