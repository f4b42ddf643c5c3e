"""The GPU run's plan: its steps in order, what each measures, and how long each should take there.

Every estimate is the step's payload over documented rates plus fixed costs (`FIGURES`, each with its source:
the H100 machine's own limits from the run of 2026-11-23, this project's VM where nothing else was measured,
and stated assumptions where nothing was). The estimator is checked against the H100 run's measured process
times (tests/test_gpu_plan.py): it must not promise less time than that run took. The dry run fails when
the required steps and the reserve exceed the budget; an optional step is run only where the time left,
after the later required steps' estimates, covers its own (the run rescales it by what the steps before it
really took).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import frameworks
from bench import scale_workloads, workloads
from bench.timing.limits import fresh_copy_rounds
from bench.timing.plan import PRESETS, Case, Preset, plan
from frameworks import scale
from frameworks.base import ShardLoader

BUDGET_S = 480.0
"""The default budget: the whole command ends before 8 minutes (issue 32), inside the device tool's 10 minutes
a command and well inside its 15 minutes a session (start-up included)."""
RESERVE_S = 15.0
"""Kept back at the end: the run record, the archive, and slack for the steps' own bookkeeping."""


@dataclass(frozen=True)
class Figure:
    value: float
    unit: str
    source: str


H100 = "results/reference-gpu-h100-20261123/limits.json (NVIDIA H100 80GB, 16-core Xeon VM of this workplace)"
HERE = "measured on this project's 2-core EPYC VM, 2026-12"
FIGURES = {
    "h2d_pinned": Figure(
        54.7,
        "GB/s",
        f"{H100}; PCIe Gen5 x16, as on the H200 machine: at most 63 GB/s each way (32 GT/s x 16, 128b/130b)",
    ),
    "h2d_pageable": Figure(7.5, "GB/s", H100),
    "d2h": Figure(7.5, "GB/s", "assumed as the pageable host-to-device copy (not measured)"),
    "memcpy": Figure(11.6, "GB/s", H100),
    "disk_write": Figure(1.05, "GB/s", f"{H100} (write + fsync)"),
    "disk_read_warm": Figure(6.87, "GB/s", H100),
    "disk_read_cold": Figure(1.84, "GB/s", H100),
    "first_touch": Figure(1.0, "GB/s", "assumed: the VM backs memory as it is first used (H200.md; 0.4-6 GB/s here)"),
    "normal_f32": Figure(0.2, "GB/s", f"numpy standard_normal float32, 50 M draws/s, {HERE}"),
    "normal_bf16": Figure(0.1, "GB/s", "the same draws kept as bfloat16 (2 bytes each): the scale checkpoints"),
    "crc32": Figure(2.5, "GB/s", f"zlib.crc32 of 512 MiB, {HERE}"),
    "compare": Figure(1.5, "GB/s", "assumed: a round trip's check (copy back, compare every byte)"),
    "load_warm": Figure(
        1.0, "GB/s", "the slow end of the H100 run's torch VGG16 loads, warm (1.42-3.06 GB/s), less a third"
    ),
    "load_cold": Figure(0.9, "GB/s", "the H100 run's torch VGG16 loads, cold (1.26-1.47 GB/s), less a third"),
    "save": Figure(0.6, "GB/s", "the H100 run's VGG16 saves (0.47-1.0 GB/s), the slow end"),
    "scale_warm": Figure(1.0, "GB/s", "the slowest warm 1B load of the committed scale run (1.16 GB/s), less some"),
    "pip_unpack": Figure(0.02, "GB/s", "assumed: pip unzipping wheels into --target"),
    "torch_import": Figure(2.3, "s", f"python3 -c 'import torch', {HERE} (2.28-2.38 s)"),
    "jax_import": Figure(2.4, "s", f"python3 -c 'import jax, flax, orbax.checkpoint', {HERE}"),
    "cuda_init": Figure(1.5, "s", "assumed: a CUDA context on the GPU"),
    "jax_gpu_init": Figure(4.0, "s", "assumed: JAX's CUDA plugin and client start"),
    "pytest_start": Figure(1.5, "s", "assumed: pytest and its plugins, collection of one plan"),
    "round_fixed": Figure(0.02, "s", "per timed round: setup, evidence, malloc_trim (fitted to the H100 run)"),
    "item_fixed": Figure(0.05, "s", "per case and pass: pytest-benchmark's bookkeeping (fitted to the H100 run)"),
    "jax_factor": Figure(
        2.5, "x", "JAX's 64 MiB loads and saves over torch's, reference-quick-20261130 (82 vs 33 ms, 160 vs 62 ms)"
    ),
    "dcp_launch": Figure(10.4, "s", "the slowest torchrun-style launch of the committed scale run (4.7-10.4 s)"),
    "report": Figure(15.0, "s", "assumed: report.md with plots, scale.md, gpu.md"),
}


def rate(name: str) -> float:
    """A FIGURES value in bytes per second (GB/s figures) or as is."""
    figure = FIGURES[name]
    return figure.value * 1e9 if figure.unit == "GB/s" else figure.value


# ---- what the run measures ------------------------------------------------------------------------------

TIMING_WORKLOADS = ("size-64MiB", "vgg16")
GPU_PRESET_NAME = "gpu"
GPU_PRESET = Preset(TIMING_WORKLOADS, {"small": 5, "medium": 3, "large": 2}, passes=2, threads=("default",))
"""The full preset's rounds in two passes instead of three, one process, the frameworks' default threads (the
GPU machine has 16 cores): 4 rounds over 2 samples per VGG16 load, 6 per 64 MiB load."""


@contextmanager
def gpu_preset() -> Iterator[str]:
    """bench.timing.plan has no GPU preset (the proper home of GPU_PRESET): register it for the block."""
    PRESETS[GPU_PRESET_NAME] = GPU_PRESET
    try:
        yield GPU_PRESET_NAME
    finally:
        PRESETS.pop(GPU_PRESET_NAME, None)


@dataclass(frozen=True)
class TimingRun:
    """One framework's `serbench run` into the run directory (`--resume` adds the next framework to it)."""

    framework: str
    devices: tuple[str, ...]
    formats: tuple[str, ...] | None = None
    baselines: bool = True
    """Whether this step's estimate includes the null adapter (timed with the first framework only)."""

    def cases(self) -> list[Case]:
        with gpu_preset() as preset:
            chosen = plan(preset, (self.framework,), self.formats, devices=self.devices)
        return [case for case in chosen if self.baselines or not frameworks.is_baseline(case.framework)]


TIMING = {
    "timing-torch": TimingRun("torch", ("cpu", "cuda")),
    "timing-jax": TimingRun("jax", ("cuda",), ("safetensors", "orbax", "flax-msgpack"), baselines=False),
}
"""torch on both devices (GPU vs CPU on one machine); JAX's cuda rows only (its CPU rows are the VM's runs'),
in its three checkpoint formats (not the pickle)."""


@dataclass(frozen=True)
class ScaleRun:
    """The scale loaders of one framework's recipe onto the GPU, for one LLM-shaped state dict."""

    model: str
    layout: str
    warm_rounds: int
    cold_rounds: int
    framework: str = "torch"
    format: str = "safetensors"
    device: str = "cuda"

    def workload(self) -> scale_workloads.Transformer:
        """Named and sharded as `serbench run --scale` names them, so its cached checkpoints are shared."""
        model = scale_workloads.TRANSFORMERS[self.model]
        shard = model.payload + 1 if self.layout == "single" else model.max_shard_bytes
        return dataclasses.replace(model, name=f"{model.name}-{self.layout}", max_shard_bytes=shard)

    def loaders(self) -> list[ShardLoader]:
        recipe = scale.recipe_class(self.framework)
        return [loader for loader in recipe.loaders if loader.format == self.format and self.device in loader.devices]

    def rounds(self) -> list[tuple[int, str]]:
        """(round, cache) in the order they run: every loader's first warm, first cold, then the next rounds."""
        counts = {"warm": self.warm_rounds, "cold": self.cold_rounds}
        return [(n, cache) for n in range(max(counts.values())) for cache in ("warm", "cold") if n < counts[cache]]


SCALE = {
    "scale-llama-1b": ScaleRun("llama-1b", "single", warm_rounds=2, cold_rounds=1),
    "scale-llama-8b": ScaleRun("llama-8b", "sharded", warm_rounds=1, cold_rounds=0),
}
"""1B as its Hub copy is (one file), 8B as its Hub copy is (4 shards of at most 5 GB), warm only: its cold
load is the disk's 16 GB, which the 1B cold rows already characterise."""


# ---- estimates ------------------------------------------------------------------------------------------


def process_start_s(framework: str) -> float:
    """A fresh python3 that imports the framework and starts its GPU runtime."""
    if framework == "jax":
        return 0.2 + rate("jax_import") + rate("jax_gpu_init")
    return 0.2 + rate("torch_import") + rate("cuda_init")


def _round_s(case: Case, factor: float) -> float:
    payload = workloads.payload_of(case.workload)
    fixed = rate("round_fixed")
    if case.op == "save":
        return fixed + payload / rate("save") * factor
    if case.op == "open":
        return fixed + (payload / rate("disk_read_warm") if case.cache == "warm" else 0.1)
    setup = payload / rate("disk_read_warm") if case.cache == "warm" else 0.0
    speed = rate("load_warm") if case.cache == "warm" else rate("load_cold")
    return fixed + setup + payload / speed * factor


def timing_s(cases: list[Case], passes: int) -> float:
    """One pytest process per framework: its start, each workload built once, each file saved once, then per
    pass and case pytest's bookkeeping, the timed rounds with their setup, and one more load with the
    round-trip check (`bench.timing.test_io`)."""
    total = 0.0
    for framework in dict.fromkeys(case.framework for case in cases):
        mine = [case for case in cases if case.framework == framework and case.held]
        if not mine:
            continue
        factor = rate("jax_factor") if framework == "jax" else 1.0
        total += process_start_s(framework) + rate("pytest_start")
        total += sum(workloads.payload_of(name) for name in {c.workload for c in mine}) / rate("normal_f32")
        files = {(c.format, c.workload) for c in mine if c.op != "save"}
        total += sum(workloads.payload_of(w) / rate("save") * factor for _, w in files)
        for case in mine:
            payload = workloads.payload_of(case.workload)
            check = payload / rate("load_warm") * factor + payload / rate("compare")
            total += passes * (rate("item_fixed") + case.rounds * _round_s(case, factor) + check)
    return total


def limits_s(nbytes: int) -> float:
    """`bench.timing.limits.measure_all`: memcpy (two buffers, 8 copies), fresh_copy (a source and a new
    mapping faulted per round), disk (a random payload, 3 writes with
    fsync, 4 warm and 3 cold reads), host-to-device (pinned and pageable buffers, 6 copies each)."""
    memcpy = 2 * nbytes / rate("first_touch") + 8 * nbytes / rate("memcpy")
    memcpy += (1 + 2 * fresh_copy_rounds(nbytes)) * nbytes / rate("first_touch")  # fresh_copy: source, 2 policies
    disk = nbytes / rate("normal_f32") + 3 * nbytes / rate("disk_write")
    disk += 4 * nbytes / rate("disk_read_warm") + 3 * nbytes / rate("disk_read_cold")
    h2d = 2 * nbytes / rate("first_touch") + 6 * nbytes / rate("h2d_pinned") + 6 * nbytes / rate("h2d_pageable")
    return process_start_s("torch") + memcpy + disk + h2d


def limit_probe_bytes() -> int:
    """The buffer size `serbench run` measures its limits with for these workloads (bench.timing.runner)."""
    largest = max(workloads.payload_of(name) for name in TIMING_WORKLOADS)
    return min(max(largest, 64 << 20), 1 << 30)


def scale_build_s(payload: int) -> float:
    """Drawing the state dict (bfloat16), writing it (safetensors), its manifest's CRC-32 of every tensor."""
    return (
        process_start_s("torch")
        + payload / rate("normal_bf16")
        + payload / rate("disk_write")
        + payload / rate("crc32")
    )


def scale_child_s(payload: int, cache: str) -> float:
    """One fresh loader process: start and imports, the load, the check (every tensor copied back, CRC-32),
    and the parent's cache preparation (a warm round reads the files into the page cache first)."""
    load = payload / rate("scale_warm") if cache == "warm" else payload / rate("disk_read_cold") * 1.25
    check = payload / rate("d2h") + payload / rate("crc32")
    prepare = payload / rate("disk_read_warm") if cache == "warm" else 0.1
    return process_start_s("torch") + 0.5 + load + check + prepare


def scale_s(run: ScaleRun) -> float:
    payload = run.workload().payload
    backing = 2 * payload / rate("first_touch")  # bench.scale.runner.back_memory, before the first round
    children = sum(scale_child_s(payload, cache) for _, cache in run.rounds()) * len(run.loaders())
    return scale_build_s(payload) + backing + children


def nccl_s(payload: int) -> float:
    """torch.distributed.checkpoint over NCCL, 2 ranks -> 1 and 1 -> 2, one round: 4 launches, each writing or
    reading the payload."""
    return 4 * (rate("dcp_launch") + payload / rate("disk_write"))


# ---- the plan -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    what: str
    required: bool
    estimate_s: float
    basis: str
    needs: tuple[str, ...] = ()
    """Distributions the step needs on the machine (after the install step); missing: skipped, and why."""
    min_gpus: int = 1


HARNESS = ("numpy", "ml-dtypes", "pandas", "psutil", "rich")
TIMING_NEEDS = (*HARNESS, "pytest", "pytest-benchmark")
REPORT_NEEDS = (*HARNESS, "matplotlib", "tabulate")


def steps(install_bytes: int = 12 << 20) -> list[Step]:
    """Every step of the run, in order, with its estimate."""
    probe = limit_probe_bytes()
    found = [
        Step("check", "a CUDA device, through the torch adapter", True, process_start_s("torch"), "process start"),
        Step(
            "install",
            "the carried wheels the image lacks (pip --no-index --no-deps --target)",
            True,
            2.0 + install_bytes / rate("pip_unpack"),
            f"{install_bytes / 2**20:.1f} MiB of wheels at the assumed unpack rate",
        ),
        Step(
            "probe",
            "versions, devices of torch and JAX, the loaders import",
            True,
            process_start_s("torch") + process_start_s("jax") + 1.0,
            "torch and JAX start on the GPU",
        ),
        Step(
            "limits",
            "memcpy, disk write/read warm/cold, pinned and pageable host-to-device copies",
            True,
            limits_s(probe),
            f"{probe / 1e6:.0f} MB buffers (the size serbench run uses for these workloads)",
            needs=("torch",),
        ),
    ]
    for name, run in TIMING.items():
        cases = run.cases()
        held = [case for case in cases if case.held]
        found.append(
            Step(
                name,
                f"{run.framework}: {', '.join(TIMING_WORKLOADS)}, {'+'.join(run.devices)} loads warm and cold, saves, "
                "GPU peak memory",
                True,
                timing_s(cases, GPU_PRESET.passes),
                f"{len(held)} cases, {sum(c.rounds for c in held) * GPU_PRESET.passes} timed rounds, "
                f"{sum(workloads.payload_of(c.workload) * c.rounds for c in held) * GPU_PRESET.passes / 1e9:.0f} GB "
                "through them",
                needs=(*TIMING_NEEDS, run.framework),
            )
        )
    for name, run in SCALE.items():
        payload = run.workload().payload
        found.append(
            Step(
                name,
                f"{len(run.loaders())} {run.framework} loaders to {run.device}, {run.model} ({run.layout}, "
                f"{payload / 1e9:.2f} GB): {run.warm_rounds} warm, {run.cold_rounds} cold round(s) each",
                name == "scale-llama-1b",
                scale_s(run),
                f"build {scale_build_s(payload):.0f} s, {len(run.loaders()) * len(run.rounds())} fresh loader "
                "processes",
                needs=("torch", "safetensors"),
            )
        )
    payload = SCALE["scale-llama-1b"].workload().payload
    found.append(
        Step(
            "nccl",
            "torch.distributed.checkpoint over NCCL, 2 ranks -> 1 and 1 -> 2 (the 1B state dict)",
            False,
            nccl_s(payload),
            "4 launches",
            needs=("torch",),
            min_gpus=2,
        )
    )
    found.append(Step("report", "report.md, scale.md, gpu.md", True, rate("report"), "assumed", needs=REPORT_NEEDS))
    return found


STEP_NAMES = ("check", "install", "probe", "limits", *TIMING, *SCALE, "nccl", "report")
ALWAYS = ("check", "install", "probe", "limits", "report")
"""Run whatever `--steps` selects: the others depend on them (the limits are what each figure is set against)."""


@dataclass
class Plan:
    steps: list[Step]
    budget_s: float = BUDGET_S
    reserve_s: float = RESERVE_S
    gpus: int = 1
    skipped: dict[str, str] = field(default_factory=dict)
    """Steps that will not run, and why (not selected; too few GPUs)."""

    def chosen(self) -> list[Step]:
        return [step for step in self.steps if step.name not in self.skipped]

    @property
    def required_s(self) -> float:
        return sum(step.estimate_s for step in self.chosen() if step.required)

    def optional_fits(self) -> dict[str, bool]:
        """Whether each optional step fits, in order, after the required ones and the optional ones before it."""
        spare = self.budget_s - self.reserve_s - self.required_s
        fits = {}
        for step in self.chosen():
            if not step.required:
                fits[step.name] = step.estimate_s <= spare
                spare -= step.estimate_s if fits[step.name] else 0.0
        return fits

    def problems(self) -> list[str]:
        over = self.required_s + self.reserve_s - self.budget_s
        if over > 0:
            return [
                f"the required steps need {self.required_s:.0f} s and {self.reserve_s:.0f} s are kept in reserve: "
                f"{over:.0f} s over the {self.budget_s:.0f} s budget"
            ]
        return []


def build_plan(
    budget_s: float = BUDGET_S, gpus: int = 1, selected: tuple[str, ...] | None = None, install_bytes: int = 12 << 20
) -> Plan:
    unknown = [name for name in selected or () if name not in STEP_NAMES]
    if unknown:
        raise ValueError(f"unknown step {', '.join(unknown)}: the steps are {', '.join(STEP_NAMES)}")
    found = Plan(steps(install_bytes), budget_s, RESERVE_S, gpus)
    for step in found.steps:
        if selected is not None and step.name not in selected and step.name not in ALWAYS:
            found.skipped[step.name] = "not selected (--steps)"
        elif gpus < step.min_gpus:
            found.skipped[step.name] = (
                f"needs {step.min_gpus} GPUs (NCCL runs one rank per GPU); this machine has {gpus}"
            )
    return found
