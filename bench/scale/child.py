"""One process loading checkpoints with one loader: `python -m bench.scale.child JOB.json`.

For each checkpoint of the job, `rounds` times: admit every file through the trust gate (untimed: the same
for every loader), let the loader prepare what a process pays once (its package imported, a CUDA context),
settle, record the RSS and reset the kernel's peak mark (`/proc/self/clear_refs`), then
time the loader's read plus the materialization (a mapped tensor copied, an eager one touched page by
page, CUDA waited for), read the peak (VmHWM minus the RSS before: the most memory the load needed at any
moment, counting mapped file pages once touched) and how much of the RSS at the end is mapped file pages
(RssFile: page cache the kernel can take back under pressure, unlike the copies), and only then check
every tensor against the manifest: names, dtypes, shapes and CRC-32 of the bytes. Prints one JSON object per checkpoint.
"""

from __future__ import annotations

import json
import sys
import time
import zlib
from typing import Any

from bench.scale_workloads import read_manifest
from bench.timing import peak_memory
from frameworks import gate, scale, stored
from frameworks.errors import SerbenchError


def check(recipe: Any, tensors: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """What differs between the loaded tensors and the manifest (empty: bit-exact)."""
    expected = manifest["tensors"]
    wrong = [f"missing {name}" for name in expected if name not in tensors]
    wrong += [f"unexpected {name}" for name in tensors if name not in expected]
    for name, tensor in tensors.items():
        if name not in expected:
            continue
        dtype, shape = recipe.describe(tensor)
        entry = expected[name]
        if (dtype, list(shape)) != (entry["dtype"], entry["shape"]):
            wrong.append(f"{name}: {dtype}{list(shape)}, expected {entry['dtype']}{entry['shape']}")
        elif zlib.crc32(recipe.host_bytes(tensor)) != entry["crc32"]:
            wrong.append(f"{name}: its bytes differ (CRC-32)")
    return wrong


def load_once(recipe: Any, loader: Any, manifest: dict[str, Any], device: str) -> dict[str, Any]:
    import frameworks

    spec = frameworks.adapter_class(recipe.adapter.name).spec(loader.format)
    files = scale.checkpoint_files(manifest["checkpoint"], loader.format)
    for file in files:
        gate.admit(file, spec, trusted=False)
    recipe.prepare(loader, device)
    peak_memory.settle()
    baseline = peak_memory.status_bytes("VmRSS")
    file_baseline = peak_memory.status_bytes("RssFile")
    method = peak_memory.reset_peak()
    start = time.perf_counter()
    tensors, release = loader.read(recipe, files, device)
    copies = recipe.materialize(tensors, loader.lazy and device == "cpu", device)
    seconds = time.perf_counter() - start
    peak = peak_memory.peak_rss(method) - baseline
    mapped = peak_memory.status_bytes("RssFile") - file_baseline
    device_peak = recipe.device_peak(device)
    checked = dict(tensors)
    if copies:
        checked = dict(zip(tensors, copies, strict=True))
    wrong = check(recipe, checked, manifest)
    del checked, copies, tensors
    release()
    peak_memory.settle()
    return {
        "seconds": seconds,
        "peak_rss_bytes": max(peak, 0),
        "mapped_file_bytes": max(mapped, 0),
        "device_peak_bytes": device_peak,
        "baseline_rss_bytes": baseline,
        "peak_method": method,
        "wrong": wrong[:5],
    }


MAX_ROUNDS = 1000
JOB_SCHEMA = stored.Object(
    required={
        "framework": str,
        "loader": str,
        "device": stored.OneOf("cpu", "cuda"),
        "rounds": stored.Number(minimum=1, integer=True),
        "manifests": stored.ListOf(str),
    }
)


def main() -> int:
    if len(sys.argv) != 2:
        raise stored.StoredFileError("usage: python -m bench.scale.child JOB.json (started by serbench run --scale)")
    job = stored.read_json(sys.argv[1], what="scale job", schema=JOB_SCHEMA, cap=1 << 20)
    if job["rounds"] > MAX_ROUNDS:
        raise stored.StoredFileError(
            f"{sys.argv[1]}: {job['rounds']:,} rounds, more than the {MAX_ROUNDS} a job may ask"
        )
    if job["framework"] not in scale.with_scale_recipes():
        raise stored.StoredFileError(
            f"{sys.argv[1]}: {job['framework']!r} has no scale recipe (those with one: "
            f"{', '.join(scale.with_scale_recipes())})"
        )
    recipe = scale.scale_recipe(job["framework"])
    loader = next((loader for loader in recipe.loaders if loader.name == job["loader"]), None)
    if loader is None:
        raise stored.StoredFileError(f"{sys.argv[1]}: {job['framework']} has no scale loader {job['loader']!r}")
    for manifest_path in job["manifests"]:
        manifest = read_manifest(manifest_path)
        rounds = [load_once(recipe, loader, manifest, job["device"]) for _ in range(job["rounds"])]
        print(json.dumps({"manifest": manifest_path, "rounds": rounds}), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (SerbenchError, FileNotFoundError) as error:  # a missing file is named in one line too
        print(f"bench.scale.child: {' '.join(str(error).split())[:500]}", file=sys.stderr)
        sys.exit(2)
