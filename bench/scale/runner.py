"""`serbench run --scale`: checkpoints at the scale users struggle with, measured and checked.

1. The machine's limits (memcpy, disk read warm and cold, host-to-device), as in every run.
2. The largest LLM-shaped state dict that fits (`bench.scale_workloads.TRANSFORMERS`: payload at most a
   sixth of the available memory, so the loader that doubles it still fits twice), in every format a scale
   loader reads, as one file and as Hugging Face shards. Every available loader on every device, warm and
   cold, each round in a fresh process (how a model is loaded: once, at start), rounds interleaved across
   the loaders so a slow stretch of the machine hits them all: time, peak memory as a multiple of the
   payload, and a bit-exact check of every tensor.
3. The framework's distributed checkpoint engine: N ranks save, M load (2 -> 1 and 1 -> 2), real processes.
4. The scaling sweep (warm): payload from 1 MiB up (64 tensors, one file), tensor count at 64 MiB (1 to
   10,000), file count at 64 MiB (1 to 16 shards); each loader's costs per file, tensor and byte fitted.

Everything lands in the run directory as `scale.json` (every round), `env.json` and the report
(`bench.reporting.scale`).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import frameworks
from bench import scale_workloads as workloads
from bench.environment import environment
from bench.timing import limits, machine, pagecache
from frameworks import distributed, files, gate, scale

MiB = 1 << 20
CHILD_TIMEOUT_S = 1800
LLM_MEMORY_FRACTION = 6
"""An LLM workload is chosen only if its payload is at most 1/6 of the memory available."""
SWEEP_MEMORY_FRACTION = 8


@dataclass(frozen=True)
class ScaleConfig:
    out: Path
    data: Path
    """Where the generated checkpoints are kept between runs (gitignored; several GB)."""
    llm: str | None = None
    """The LLM workload (default: the largest that fits)."""
    llm_rounds: int = 3
    sweep_processes: int = 2
    sweep_rounds: int = 3
    sweep_max_payload: int | None = None
    tensor_counts: tuple[int, ...] = (1, 10, 100, 1000, 10_000)
    file_counts: tuple[int, ...] = (1, 2, 4, 8, 16)
    distributed_rounds: int = 2
    worlds: tuple[tuple[int, int], ...] = ((2, 1), (1, 2))
    devices: tuple[str, ...] = ("cpu", "cuda")
    caches: tuple[str, ...] = ("warm", "cold")
    pause_page_reporting: bool = False
    limit_bytes: int = 512 * MiB


def choose_llm(available: int, requested: str | None = None) -> workloads.Transformer:
    """The requested LLM workload, or the largest real one whose payload fits LLM_MEMORY_FRACTION times."""
    if requested:
        return workloads.TRANSFORMERS[requested]
    fitting = [
        model
        for model in workloads.TRANSFORMERS.values()
        if model.name != "llama-tiny" and model.payload * LLM_MEMORY_FRACTION <= available
    ]
    return max(fitting, key=lambda model: model.payload) if fitting else workloads.TRANSFORMERS["llama-tiny"]


def sweep_points(max_payload: int, tensor_counts: tuple[int, ...], file_counts: tuple[int, ...]) -> list[Any]:
    """The sweep's synthetic checkpoints: payload x4 from 1 MiB; tensors and files at 64 MiB (or the largest)."""
    payloads = [MiB]
    while payloads[-1] * 4 <= max_payload:
        payloads.append(payloads[-1] * 4)
    middle = min(64 * MiB, payloads[-1])
    points = [workloads.Synthetic(payload, 64, 1) for payload in payloads]
    points += [workloads.Synthetic(middle, count, 1) for count in tensor_counts]
    points += [workloads.Synthetic(middle, 64, count) for count in file_counts]
    return list(dict.fromkeys(points))


def _run_child(framework: str, loader: str, device: str, manifests: list[str], rounds: int) -> list[dict]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(
            {"framework": framework, "loader": loader, "device": device, "rounds": rounds, "manifests": manifests},
            handle,
        )
    try:
        result = frameworks.run_child(framework, ["-m", "bench.scale.child", handle.name], CHILD_TIMEOUT_S)
    finally:
        Path(handle.name).unlink(missing_ok=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{loader} on {device} failed (exit {result.returncode}): {last}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def _manifest_path(manifest: dict[str, Any]) -> str:
    return str(Path(manifest["checkpoint"]).parent / workloads.MANIFEST)


def _prepare_cache(manifest: dict[str, Any], cache: str) -> dict[str, object]:
    files = [Path(path) for path in manifest["files"]]
    if cache == "warm":
        for file in files:
            pagecache.warm(file)
        return {"resident": min(pagecache.resident_fraction(file) for file in files)}
    for file in files:
        pagecache.evict(file)
    return {"resident": max(pagecache.resident_fraction(file) for file in files)}


class Progress:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def say(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.0f} s] {message}", file=sys.stderr, flush=True)


def back_memory(nbytes: int) -> float:
    """Touch `nbytes` of fresh memory once and free it; returns the seconds it took.

    A VM's host may back guest memory only when it is first touched (measured here: 0.4 GB/s for never-used
    memory, against 3.6 GB/s later), so the first loads of a run, which fault in gigabytes the guest never
    used, would pay the host's cost and the later ones not (seen here: one round of three taking 2-6x as
    long). With the balloon's page reporting paused the freed pages stay backed, so touching the memory the
    loads will need once, before the first timed round, gives every round the same memory."""
    start = time.perf_counter()
    block = np.ones(nbytes, dtype=np.uint8)
    del block
    return time.perf_counter() - start


def measure_llm(config: ScaleConfig, model: workloads.Transformer, say: Callable[[str], None]) -> dict[str, Any]:
    loaders = scale.loaders()
    formats = sorted({(framework, loader.format) for framework, loader in loaders})
    checkpoints: dict[tuple[str, str, str], dict[str, Any]] = {}
    for framework, format_name in formats:
        recipe = scale.scale_recipe(framework)
        for layout in ("single", "sharded"):
            shard = model.max_shard_bytes if layout == "sharded" else model.payload + 1
            workload = dataclasses.replace(model, name=f"{model.name}-{layout}", max_shard_bytes=shard)
            say(f"writing {workload.name} as {format_name} (once; kept in {config.data})")
            checkpoints[(framework, format_name, layout)] = workloads.build(recipe, workload, format_name, config.data)
    cases, rows = [], []
    for framework, loader in loaders:
        recipe = scale.scale_recipe(framework)
        for device in config.devices:
            why = recipe.unavailable(loader, device)
            for layout in ("single", "sharded"):
                manifest = checkpoints[(framework, loader.format, layout)]
                for cache in config.caches if device == "cpu" or not why else ("warm",):
                    row = {
                        "framework": framework,
                        "loader": loader.name,
                        "format": loader.format,
                        "layout": layout,
                        "files": len(scale.checkpoint_files(manifest["checkpoint"], loader.format)),
                        "device": device,
                        "cache": cache,
                        "payload_bytes": manifest["payload_bytes"],
                        "description": loader.description,
                        "lazy": loader.lazy,
                        "reference": loader.name == scale.recipe_class(framework).reference_loader,
                        "rounds": [],
                        "unavailable": why,
                    }
                    rows.append(row)
                    if not why:
                        cases.append((row, manifest))
    backing = min(LLM_MEMORY_FRACTION // 2 * model.payload, gate.available_memory() // 2)
    say(f"touching {backing / 1e9:.1f} GB of memory once, so that no timed load is the first to use it")
    backed_seconds = back_memory(backing)
    for round_number in range(config.llm_rounds):
        for row, manifest in cases:
            state = _prepare_cache(manifest, row["cache"])
            say(
                f"round {round_number + 1}/{config.llm_rounds}: "
                f"{row['loader']} {row['layout']} {row['device']} {row['cache']}"
            )
            try:
                (result,) = _run_child(row["framework"], row["loader"], row["device"], [_manifest_path(manifest)], 1)
                record = {**result["rounds"][0], **state}
            except (RuntimeError, subprocess.SubprocessError) as error:
                record = {"error": str(error), **state}
            row["rounds"].append(record)
    return {
        "workload": dataclasses.asdict(model),
        "parameters": model.parameters,
        "rows": rows,
        "memory_backed": {"bytes": backing, "seconds": backed_seconds},
    }


def measure_distributed(
    config: ScaleConfig, model: workloads.Transformer, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    rows = []
    for framework in scale.with_scale_recipes():
        recipe = scale.scale_recipe(framework)
        engine = getattr(recipe, "distributed_engine", "")
        if not engine:
            continue
        single = dataclasses.replace(model, name=f"{model.name}-single", max_shard_bytes=model.payload + 1)
        source = [Path(path) for path in workloads.build(recipe, single, "safetensors", config.data)["files"]]
        source = [path for path in source if path.name.endswith(".safetensors")]
        for device in config.devices:
            backend = recipe.distributed_backends.get(device, "")
            unavailable = (
                "" if device in recipe.adapter.devices() else f"no CUDA device here ({recipe.adapter.device_note()})"
            )
            for save_world, load_world in config.worlds:
                row = {
                    "framework": framework,
                    "engine": engine,
                    "backend": backend,
                    "device": device,
                    "save_ranks": save_world,
                    "load_ranks": load_world,
                    "payload_bytes": model.payload,
                    "rounds": [],
                    "unavailable": unavailable,
                }
                rows.append(row)
                if unavailable:
                    continue
                for round_number in range(config.distributed_rounds):
                    holder = config.data / f"dcp-{framework}-{save_world}to{load_world}"
                    files.remove_marked(holder, "a distributed checkpoint of an earlier round")
                    files.own_directory(holder)
                    files.mark(holder)
                    directory = holder / "checkpoint"
                    say(
                        f"{engine}: {save_world} ranks save, {load_world} load "
                        f"({round_number + 1}/{config.distributed_rounds})"
                    )
                    try:
                        saved = distributed.launch(framework, "save", save_world, source, directory, device)
                        pagecache.evict(directory)
                        # this run wrote the checkpoint: its metadata may be a pickle (DCP's is), so trust is explicit
                        loaded = distributed.launch(
                            framework, "load", load_world, source, directory, device, trusted=True
                        )
                        size = pagecache.size_on_disk(directory)
                        row["rounds"].append({"save": saved, "load": loaded, "size_on_disk": size})
                    except (RuntimeError, TimeoutError) as error:
                        row["rounds"].append({"error": str(error)})
                    finally:
                        files.remove_marked(holder, "a distributed checkpoint this round wrote")
    return rows


def measure_sweep(config: ScaleConfig, say: Callable[[str], None]) -> dict[str, Any]:
    max_payload = config.sweep_max_payload or min(1 << 30, gate.available_memory() // SWEEP_MEMORY_FRACTION)
    points = sweep_points(max_payload, config.tensor_counts, config.file_counts)
    loaders = [(framework, loader) for framework, loader in scale.loaders()]
    manifests: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for framework, loader in loaders:
        key = (framework, loader.format)
        if key not in manifests:
            recipe = scale.scale_recipe(framework)
            say(f"writing {len(points)} sweep checkpoints as {loader.format}")
            manifests[key] = [workloads.build(recipe, point, loader.format, config.data) for point in points]
    rows = []
    for framework, loader in loaders:
        why = scale.scale_recipe(framework).unavailable(loader, "cpu")
        for point, manifest in zip(points, manifests[(framework, loader.format)], strict=True):
            rows.append(
                {
                    "framework": framework,
                    "loader": loader.name,
                    "format": loader.format,
                    "point": point.name,
                    "files": len(scale.checkpoint_files(manifest["checkpoint"], loader.format)),
                    "tensors": point.tensors,
                    "payload_bytes": manifest["payload_bytes"],
                    "samples": [],
                    "peaks": [],
                    "wrong": [],
                    "unavailable": why,
                }
            )
    for process in range(config.sweep_processes):
        for framework, loader in loaders:
            mine = [row for row in rows if row["loader"] == loader.name and row["framework"] == framework]
            if mine[0]["unavailable"]:
                continue
            chosen = manifests[(framework, loader.format)]
            for manifest in chosen:
                pagecache.warm(Path(manifest["checkpoint"]).parent)
            say(f"sweep {process + 1}/{config.sweep_processes}: {loader.name} ({len(chosen)} checkpoints)")
            try:
                results = _run_child(
                    framework, loader.name, "cpu", [_manifest_path(m) for m in chosen], config.sweep_rounds
                )
            except (RuntimeError, subprocess.SubprocessError) as error:
                for row in mine:
                    row["wrong"].append(str(error))
                continue
            for row, result in zip(mine, results, strict=True):
                row["samples"].append([entry["seconds"] for entry in result["rounds"]])
                row["peaks"].append(max(entry["peak_rss_bytes"] for entry in result["rounds"]))
                row["wrong"] += [problem for entry in result["rounds"] for problem in entry["wrong"]]
    return {"max_payload": max_payload, "rows": rows}


def run(config: ScaleConfig) -> Path:
    out = files.own_directory(config.out)
    files.own_directory(config.data)
    progress = Progress()
    start = machine.snapshot()
    # two scale runs on one data directory rebuilt and removed each other's checkpoints: one at a time
    with files.locked(config.data, "a scale run's checkpoints"), files.locked(out, "a scale run"):
        with machine.page_reporting_paused(config.pause_page_reporting) as reporting:
            progress.say("measuring the machine's limits")
            measured = {
                name: limit.as_dict() for name, limit in limits.measure_all(config.data, config.limit_bytes).items()
            }
            model = choose_llm(gate.available_memory(), config.llm)
            llm = measure_llm(config, model, progress.say)
            dcp = measure_distributed(config, model, progress.say)
            sweep = measure_sweep(config, progress.say)
        env = environment(out)
        env["machine_busy"] = machine.busy_record(start, machine.snapshot())
        env["page_reporting"] = reporting
        env["scale"] = {"data": str(config.data), "config": {k: str(v) for k, v in dataclasses.asdict(config).items()}}
        record = {"limits": measured, "llm": llm, "distributed": dcp, "sweep": sweep}
        files.write_bytes_atomic(out / "env.json", json.dumps(env, indent=1, default=str).encode())
        files.write_bytes_atomic(out / "scale.json", json.dumps(record, indent=1).encode())
    progress.say(f"done: {out}")
    return out
