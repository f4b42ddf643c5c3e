"""The benchmark matrix: adapter x format x workload x device x cache state x operation.

A plan is data (a list of `Case`), written to JSON and handed to the pytest-benchmark module,
so a run can be split per framework, resumed, and reproduced.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import frameworks
from bench import workloads
from bench.null_adapter import NullAdapter

CACHES = ("warm", "cold")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Preset:
    workloads: tuple[str, ...]
    rounds: dict[str, int] = field(default_factory=dict)
    """Timed rounds by workload size, per process."""
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
        ("d2l-dict", "d2l-mlp", "d2l-checkpoint", "size-1MiB", "size-64MiB"),
        {"small": 15, "medium": 5, "large": 3},
        processes=2,
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
        {"small": 30, "medium": 7, "large": 5},
        extra_load_processes=2,
    ),
}
HEADLINE_MIN_BYTES = 64 << 20
"""Loads of workloads this large are the headline figures that extra processes re-time."""

NULL_WORKLOADS = ("d2l-tensor", "size-64MiB")
"""The null adapter's cases: per-call harness overhead, and a copy to compare with memcpy."""


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

    @property
    def id(self) -> str:
        return "|".join((self.framework, self.format, self.workload, self.device, self.cache, self.op))

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "id": self.id}


def _specs(framework: str) -> tuple[frameworks.FormatSpec, ...]:
    return NullAdapter.specs if framework == NullAdapter.name else frameworks.adapter_class(framework).specs


def plan(
    preset: str = "quick",
    framework_names: tuple[str, ...] | None = None,
    formats: tuple[str, ...] | None = None,
    kinds: tuple[str, ...] | None = None,
    sizes: tuple[str, ...] | None = None,
    devices: tuple[str, ...] = DEVICES,
    caches: tuple[str, ...] = CACHES,
    include_null: bool = True,
) -> list[Case]:
    """Every case of the selected matrix, in a stable order."""
    chosen = PRESETS[preset]
    names = tuple(framework_names or frameworks.names())
    if include_null:
        names = (*names, NullAdapter.name)
    cases = []
    for framework in names:
        pool = NULL_WORKLOADS if framework == NullAdapter.name else chosen.workloads
        for spec in _specs(framework):
            if formats and spec.name not in formats and framework != NullAdapter.name:
                continue
            for name in pool:
                workload = workloads.WORKLOADS[name]
                if (kinds and workload.kind not in kinds) or (sizes and workload.size not in sizes):
                    continue
                rounds = chosen.rounds[workload.size]
                if workload.kind not in spec.holds:
                    cases.append(Case(framework, spec.name, name, "cpu", "-", "save", 0, held=False))
                    continue
                cases.append(Case(framework, spec.name, name, "cpu", "-", "save", rounds))
                model_kind = workload.kind in ("mlp", "checkpoint")
                load_devices = ("cpu",) if model_kind or framework == NullAdapter.name else devices
                for device in load_devices:
                    for cache in caches:
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


def write_plan(cases: list[Case], path: Path) -> None:
    from frameworks.files import write_bytes_atomic

    write_bytes_atomic(path, json.dumps([case.as_dict() for case in cases], indent=1).encode())


def read_plan(path: Path) -> list[Case]:
    return [Case(**{k: v for k, v in item.items() if k != "id"}) for item in json.loads(Path(path).read_text())]
