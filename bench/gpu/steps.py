"""The GPU run's steps that measure, each in a process of its own: `python3 -m bench.gpu.steps STEP ...`.

`bench.gpu.run` starts each one in a new process group with the time the budget leaves it, and ends the
group (SIGTERM, then SIGKILL) when that runs out; a step writes every file atomically as it goes, so
whatever it finished is kept. Each writes a small JSON result (`--result`) for the run record.

    cuda    is there a CUDA device, by the torch adapter (the run refuses without one)
    probe   versions, each framework's devices, whether each scale loader imports
    limits  the machine's limits at the size `serbench run` measures them for these workloads
    timing  one framework's `serbench run` cases into the run directory (bench.gpu.plan.TIMING)
    scale   the scale loaders onto the GPU for one LLM-shaped state dict (bench.gpu.plan.SCALE)
    nccl    torch.distributed.checkpoint across GPUs, into the 1B scale record
    report  report.md (serbench's), scale.md of each scale directory, gpu.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import scale_workloads
from bench.environment import environment, gpu_description, versions_here
from bench.gpu import plan
from frameworks.files import write_bytes_atomic

VERSIONS = (
    "torch", "jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda13-pjrt", "flax", "orbax-checkpoint", "safetensors",
    "numpy", "ml-dtypes", "pandas", "matplotlib", "pytest", "pytest-benchmark", "py-cpuinfo", "py-cpuinfo2", "psutil",
    "rich", "tabulate", "packaging", "fastsafetensors", "runai-model-streamer", "instanttensor", "typer", "humanize",
    "nvidia-nccl-cu13", "cupy-cuda13x",
)  # fmt: skip
"""What the probe records the version of (metadata only)."""
SCALE_CHILD_CAP_S = 600


def write_json(path: Path, data: object) -> None:
    write_bytes_atomic(path, json.dumps(data, indent=1, default=str).encode())


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- cuda, probe ----------------------------------------------------------------------------------------


def cuda() -> dict[str, Any]:
    import frameworks

    try:
        adapter = frameworks.get_adapter("torch")
    except ImportError as error:
        return {"cuda": False, "note": str(error).splitlines()[0]}
    return {"cuda": "cuda" in adapter.devices(), "note": adapter.device_note(), "torch": adapter.torch.__version__}


def probe() -> dict[str, Any]:
    import importlib

    import frameworks

    found: dict[str, Any] = {"python": sys.version.split()[0], "executable": sys.executable}
    found["versions"] = versions_here(list(VERSIONS))
    found["gpus"] = gpu_description().splitlines()
    devices = {}
    for name in ("torch", "jax"):
        try:
            adapter = frameworks.get_adapter(name)
            devices[name] = {"devices": list(adapter.devices()), "note": adapter.device_note()}
        except Exception as error:  # noqa: BLE001 - a framework that does not start is a finding, not a crash
            devices[name] = {"devices": [], "note": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
    found["devices"] = devices
    loaders = {}
    for loader in plan.SCALE["scale-llama-1b"].loaders():
        if loader.package:
            try:
                importlib.import_module(loader.package.replace("-", "_"))
                loaders[loader.package] = "imports"
            except Exception as error:  # noqa: BLE001 - recorded: its rows then say why
                loaders[loader.package] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
    found["loaders"] = loaders
    return found


# ---- limits, timing -------------------------------------------------------------------------------------


def limits(out: Path) -> dict[str, Any]:
    from bench.timing import limits as measure

    nbytes = plan.limit_probe_bytes()
    measured = {name: limit.as_dict() for name, limit in measure.measure_all(out, nbytes).items()}
    write_json(out / "limits.json", measured)
    return {"bytes": nbytes, "gbps": {name: value["gbps"] for name, value in measured.items()}}


def timing(out: Path, name: str) -> dict[str, Any]:
    """`serbench run` of one TimingRun into `out`: with --resume semantics, so the limits measured by the limits
    step are used (not measured again) and an earlier framework's chunks stay as they are."""
    from bench.timing.runner import RunConfig, run

    chosen = plan.TIMING[name]
    with plan.gpu_preset() as preset:
        config = RunConfig(
            preset=preset,
            frameworks=(chosen.framework,),
            formats=chosen.formats,
            devices=chosen.devices,
            out=out,
            resume=True,
            peak_memory=False,
            pause_page_reporting=True,
        )
        run(config)
    return {"results": str(out / "results.csv")}


# ---- scale ----------------------------------------------------------------------------------------------


def _prepare_cache(manifest: dict[str, Any], cache: str) -> dict[str, float]:
    """As `serbench run --scale` prepares a round: files read into the page cache, or evicted (and checked)."""
    from bench.timing import pagecache

    files = [Path(path) for path in manifest["files"]]
    for file in files:
        if cache == "warm":
            pagecache.warm(file)
        else:
            pagecache.evict(file)
    fractions = [pagecache.resident_fraction(file) for file in files]
    return {"resident": min(fractions) if cache == "warm" else max(fractions)}


def _load_in_child(framework: str, loader: str, device: str, manifest: Path, timeout_s: float) -> dict[str, Any]:
    """One round in a fresh `bench.scale.child` process (as bench.scale.runner runs it), within `timeout_s`."""
    import frameworks

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(
            {"framework": framework, "loader": loader, "device": device, "rounds": 1, "manifests": [str(manifest)]},
            handle,
        )
    try:
        result = frameworks.run_child(framework, ["-m", "bench.scale.child", handle.name], timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"{loader} on {device} stopped after {timeout_s:.0f} s: the budget's time for it ran out"}
    finally:
        Path(handle.name).unlink(missing_ok=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"{loader} on {device} failed (exit {result.returncode}): {last[:400]}"}
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return lines[0]["rounds"][0]


def scale_rows(chosen: plan.ScaleRun, recipe: Any, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of `serbench run --scale`'s llm record (bench.reporting.scale reads them), one per loader and
    cache; a loader that cannot load onto the device here has one warm row saying why."""
    from frameworks import scale

    rows = []
    reference = scale.recipe_class(chosen.framework).reference_loader
    for loader in chosen.loaders():
        why = recipe.unavailable(loader, chosen.device)
        caches = [cache for cache, count in (("warm", chosen.warm_rounds), ("cold", chosen.cold_rounds)) if count]
        for cache in caches if not why else ["warm"]:
            rows.append(
                {
                    "framework": chosen.framework,
                    "loader": loader.name,
                    "format": loader.format,
                    "layout": chosen.layout,
                    "files": len(scale.checkpoint_files(manifest["checkpoint"], loader.format)),
                    "device": chosen.device,
                    "cache": cache,
                    "payload_bytes": manifest["payload_bytes"],
                    "description": loader.description,
                    "lazy": loader.lazy,
                    "reference": loader.name == reference,
                    "rounds": [],
                    "unavailable": why,
                    "skipped_rounds": [],
                }
            )
    return rows


def scale_record(limits_found: dict[str, Any], model: scale_workloads.Transformer, rows: list, backed: dict) -> dict:
    """A `scale.json` as `serbench run --scale` writes it, with this run's parts only (no sweep, no DCP yet)."""
    return {
        "limits": limits_found,
        "llm": {"workload": dataclasses.asdict(model), "parameters": model.parameters, "rows": rows,
                "memory_backed": backed},
        "distributed": [],
        "sweep": {"max_payload": 0, "rows": []},
    }  # fmt: skip


def scale(out: Path, data: Path, name: str, limits_path: Path, seconds: float, pause: bool = True) -> dict[str, Any]:
    """The scale loaders of `plan.SCALE[name]` onto the GPU, rounds interleaved across loaders (each in a fresh
    process, every tensor checked), within `seconds`: a round that would not finish in the time left (by the
    slowest such round so far, else the plan's estimate) is not started, and is listed under its row's
    `skipped_rounds`. scale.json is rewritten after every round."""
    from bench.scale.runner import back_memory
    from bench.timing import machine
    from frameworks import scale as scale_recipes

    deadline = time.monotonic() + seconds
    chosen = plan.SCALE[name]
    model = scale_workloads.TRANSFORMERS[chosen.model]
    workload = chosen.workload()
    out.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    limits_found = json.loads(limits_path.read_text()) if limits_path.is_file() else {}
    recipe = scale_recipes.scale_recipe(chosen.framework)
    start = machine.snapshot()
    env = environment(out)
    write_json(out / "env.json", env)
    with machine.page_reporting_paused(pause) as reporting:
        say(f"writing {workload.name} as {chosen.format} into {data} ({workload.payload / 1e9:.2f} GB)")
        built = time.monotonic()
        manifest = scale_workloads.build(recipe, workload, chosen.format, data)
        build_s = time.monotonic() - built
        manifest_path = Path(manifest["checkpoint"]).parent / scale_workloads.MANIFEST
        rows = scale_rows(chosen, recipe, manifest)
        backing = 2 * workload.payload
        say(f"touching {backing / 1e9:.1f} GB of memory once, so that no timed load is the first to use it")
        backed = {"bytes": backing, "seconds": back_memory(backing)}
        record = scale_record(limits_found, model, rows, backed)
        write_json(out / "scale.json", record)
        slowest: dict[str, float] = {}  # the longest round of each cache so far, preparation included
        for number, cache in chosen.rounds():
            for row in rows:
                if row["unavailable"] or row["cache"] != cache:
                    continue
                left = deadline - time.monotonic()
                need = 1.25 * slowest[cache] if cache in slowest else plan.scale_child_s(workload.payload, cache)
                if need > left:
                    row["skipped_rounds"].append(
                        f"round {number + 1}: about {need:.0f} s needed, {max(left, 0):.0f} s left in the budget"
                    )
                    continue
                began = time.monotonic()
                state = _prepare_cache(manifest, cache)
                say(f"round {number + 1}: {row['loader']} {chosen.layout} {chosen.device} {cache}")
                result = _load_in_child(
                    chosen.framework, row["loader"], chosen.device, manifest_path, min(left, SCALE_CHILD_CAP_S)
                )
                slowest[cache] = max(slowest.get(cache, 0.0), time.monotonic() - began)
                row["rounds"].append({**result, **state})
                write_json(out / "scale.json", record)
        write_json(out / "scale.json", record)  # with the rounds skipped
    env["machine_busy"] = machine.busy_record(start, machine.snapshot())
    env["page_reporting"] = reporting
    env["scale"] = {"data": str(data), "gpu_run": name, "build_s": build_s}
    write_json(out / "env.json", env)
    skipped = sum(len(row["skipped_rounds"]) for row in rows)
    return {"scale": str(out / "scale.json"), "build_s": build_s, "rounds_skipped": skipped}


def nccl(out: Path, data: Path) -> dict[str, Any]:
    """`serbench run --scale`'s distributed part on the GPUs (NCCL), merged into the 1B scale record."""
    from bench.scale.runner import ScaleConfig, measure_distributed

    record_path = out / "scale.json"
    record = json.loads(record_path.read_text())
    model = scale_workloads.TRANSFORMERS[plan.SCALE["scale-llama-1b"].model]
    config = ScaleConfig(out=out, data=data, devices=("cuda",), distributed_rounds=1)
    record["distributed"] = measure_distributed(config, model, say)
    write_json(record_path, record)
    return {"rows": len(record["distributed"])}


# ---- report ---------------------------------------------------------------------------------------------


def report(out: Path) -> dict[str, Any]:
    from bench.gpu.report import write_gpu_report
    from bench.reporting.report import write_report
    from bench.reporting.scale import write_scale_report

    written = []
    if (out / "results.csv").is_file():
        written.append(str(write_report(out)))
    for record in sorted(out.glob("scale-*/scale.json")):
        written.append(str(write_scale_report(record.parent)))
    written.append(str(write_gpu_report(out)))
    return {"written": written}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.gpu.steps", description=__doc__)
    parser.add_argument("step", choices=("cuda", "probe", "limits", "timing", "scale", "nccl", "report"))
    parser.add_argument("--result", type=Path, required=True, help="where the step's JSON result goes")
    parser.add_argument("--out", type=Path, help="the run directory (scale, nccl: the scale directory)")
    parser.add_argument("--name", help="timing, scale: which run of bench.gpu.plan")
    parser.add_argument("--data", type=Path, help="scale, nccl: where checkpoints are written")
    parser.add_argument("--limits", type=Path, help="scale: the limits.json to record")
    parser.add_argument("--seconds", type=float, default=plan.BUDGET_S, help="scale: the time it may take")
    args = parser.parse_args(argv)
    if args.step == "cuda":
        found = cuda()
    elif args.step == "probe":
        found = probe()
    elif args.step == "limits":
        found = limits(args.out)
    elif args.step == "timing":
        found = timing(args.out, args.name)
    elif args.step == "scale":
        found = scale(args.out, args.data, args.name, args.limits, args.seconds)
    elif args.step == "nccl":
        found = nccl(args.out, args.data)
    else:
        found = report(args.out)
    write_json(args.result, found)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
