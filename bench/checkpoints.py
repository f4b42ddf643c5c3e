"""A user's own checkpoint as a workload (`serbench bench PATH...`).

A file is recognised by its bytes (each format's sniffer, `frameworks.readers_of`), read once through
the adapter of a framework that reads it (`Adapter.read_arrays`, behind the trust gate), flattened to
one dict of named tensors, and stored where every process of the run rebuilds it exactly
(`workloads.store_arrays`). A directory of shards is read through its index, the way the Hugging Face
tooling lays them out (`model.safetensors.index.json` or `pytorch_model.bin.index.json`, whose
`weight_map` names each tensor's shard): every shard is read, and every tensor must be where the index
says. A pickle (a torch file, even with weights_only=True) is read only when the user says `trusted`.

The reading runs in a child process with a timeout (`python -m bench.checkpoints`), so a file that
crashes or hangs a framework takes down the child, not the command; the child answers one JSON line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

import frameworks
from bench import workloads
from bench.errors import UsageError
from frameworks import environments, files, gate, stored
from frameworks.errors import SerbenchError

INDEX_SUFFIX = ".index.json"
MAX_INDEX_BYTES = 64 << 20
"""An index larger than this is not an index (the 405B-parameter Llama's is under 100 KiB)."""
READ_TIMEOUT_S = 1800
EXIT_REFUSED = 2


class Refused(Exception):
    """The checkpoint cannot be read as asked; the message is for the user, on one line."""


def workload_name(path: Path, taken: set[str]) -> str:
    """`user-<name>`: the file's name without its format's endings, safe in file names and case ids."""
    stem = path.name
    for ending in (".weights.h5", ".safetensors", ".params", ".npz", ".npy", ".pth", ".pt", ".bin", ".h5"):
        stem = stem.removesuffix(ending)
    base = "user-" + (re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "checkpoint")
    name, counter = base, 2
    while name in taken or name in workloads.WORKLOADS:
        name, counter = f"{base}-{counter}", counter + 1
    return name


ROOT_NAME = "tensor"
"""The name of a checkpoint that is one bare tensor, not a container of named ones."""


def flatten(tree: Any, prefix: str | None = None) -> tuple[dict[str, np.ndarray], list[str]]:
    """A nested checkpoint as one dict of tensors (keys joined with '.', as a state_dict names them; a key is
    kept exactly, the empty one too) and the names of the leaves that are not tensors (an epoch number, a
    string), which a benchmark of tensors drops."""
    arrays: dict[str, np.ndarray] = {}
    dropped: list[str] = []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list | tuple) else None
    if items is None:
        if isinstance(tree, np.ndarray) and tree.dtype.kind in "biufcV":
            arrays[ROOT_NAME if prefix is None else prefix] = tree
        else:
            dropped.append(f"{'value' if prefix is None else prefix or repr('')} ({type(tree).__name__})")
        return arrays, dropped
    for key, value in items:
        name = str(key) if prefix is None else f"{prefix}.{key}"
        inner, lost = flatten(value, name)
        clash = arrays.keys() & inner.keys()
        if clash:
            raise Refused(f"two tensors would both be named {sorted(clash)[0]!r} once the checkpoint is flattened")
        arrays.update(inner)
        dropped += lost
    return arrays, dropped


def read_file(path: Path, trusted: bool) -> tuple[Any, str]:
    """The file's tree and which reader read it: the first (framework, format) that recognises it and imports."""
    candidates = frameworks.readers_of(path)
    if not candidates:
        formats = sorted({spec.name for name in frameworks.names() for spec in frameworks.adapter_class(name).specs})
        raise Refused(f"{path} is not a checkpoint serbench recognises (it reads {', '.join(formats)})")
    problems: list[str] = []
    needs_trust: str | None = None
    for framework, fmt in candidates:  # the next reader gets its turn when one refuses (an .npy of objects)
        spec = frameworks.adapter_class(framework).spec(fmt)
        if (spec.executes_code or spec.unpickles) and not trusted:
            needs_trust = needs_trust or fmt
            continue
        try:
            adapter = frameworks.get_adapter(framework)
            return adapter.read_arrays(path, fmt, trusted=trusted), f"{framework} ({fmt})"
        except (ImportError, SerbenchError) as error:
            problems.append(f"as {fmt} ({framework}): {' '.join(str(error).split())}")
    if needs_trust is not None:
        raise Refused(
            f"{path} is a {needs_trust} file, a pickle: serbench reads it only with --trusted (for files you or a "
            "source you trust made; a pickle can run code, and torch's weights_only reader still parses one)"
            + (f"; other readers refused it: {'; '.join(problems)}" if problems else "")
        )
    raise Refused(f"{path} could not be read: {'; '.join(problems)}")


def read_index(directory: Path) -> tuple[Path, dict[str, str]]:
    """The directory's one `*.index.json` and its weight_map (tensor name -> shard file in the directory)."""
    indexes = sorted(directory.glob(f"*{INDEX_SUFFIX}"))
    if len(indexes) != 1:
        found = ", ".join(path.name for path in indexes) or "none"
        raise Refused(
            f"{directory} is a directory: a sharded checkpoint needs exactly one *{INDEX_SUFFIX} with a weight_map "
            f"(found {found}); give a checkpoint file instead"
        )
    index = indexes[0]
    schema = stored.Object(required={"weight_map": stored.MapOf(str)}, extra=True)
    try:
        weight_map = stored.read_json(index, what="shard index", schema=schema, cap=MAX_INDEX_BYTES)["weight_map"]
    except stored.StoredFileError as error:
        raise Refused(str(error)) from None
    for shard in set(weight_map.values()):
        if Path(shard).name != shard or shard in ("", ".", ".."):
            raise Refused(f"{index} names shard {shard!r}, which is not a file in {directory}")
    return index, weight_map


def read_sharded(directory: Path, trusted: bool) -> tuple[dict[str, np.ndarray], list[str], str]:
    """Every shard of the index, checked against it: each tensor in the shard the index names, none extra."""
    index, weight_map = read_index(directory)
    merged: dict[str, np.ndarray] = {}
    dropped: list[str] = []
    readers = set()
    shards = list(dict.fromkeys(weight_map.values()))
    for shard in shards:
        tree, reader = read_file(directory / shard, trusted)
        readers.add(reader)
        arrays, lost = flatten(tree)
        expected = {name for name, where in weight_map.items() if where == shard}
        if set(arrays) != expected:
            missing, extra = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
            raise Refused(
                f"{directory / shard} does not hold what {index.name} says: missing {missing[:3]}, extra {extra[:3]}"
            )
        merged.update(arrays)
        dropped += [f"{shard}: {name}" for name in lost]
    ordered = {name: merged[name] for name in weight_map}
    return ordered, dropped, f"{len(shards)} shards via {index.name}, read with {', '.join(sorted(readers))}"


def read_checkpoint(path: Path, trusted: bool) -> tuple[dict[str, np.ndarray], list[str], str]:
    """A file or a directory of shards as (tensors by name, what was dropped, how it was read)."""
    if path.is_dir() and (any(path.glob(f"*{INDEX_SUFFIX}")) or not frameworks.readers_of(path)):
        return read_sharded(path, trusted)  # a directory that is no format's own needs a shard index
    tree, reader = read_file(path, trusted)
    arrays, dropped = flatten(tree)
    return arrays, dropped, f"read with {reader}"


def import_checkpoint(source: Path, store: Path, name: str, trusted: bool) -> dict[str, Any]:
    """Read `source`, store its tensors at `store`, and describe it (an entry of checkpoints.json)."""
    arrays, dropped, reader = read_checkpoint(source, trusted)
    if not arrays:
        raise Refused(f"{source} holds no tensors ({len(dropped)} other values)")
    tensors = workloads.store_arrays(arrays, store)
    return {
        "name": name,
        "source": str(source),
        "reader": reader,
        "store": str(store),
        "tensors": tensors,
        "tensor_count": len(tensors),
        "payload_bytes": int(sum(array.nbytes for array in arrays.values())),
        "dtypes": sorted({array.dtype.name for array in arrays.values()}),
        "dropped": dropped,
    }


def check_source(path: Path) -> None:
    """UsageError unless `path` is a regular file, or a directory holding only regular files and directories of
    them (no links, FIFOs or devices, at most MAX_MEMBERS entries): checked before any byte is read, so a FIFO
    cannot block the command and a link cannot take the read outside the checkpoint."""
    if not os.path.lexists(path):
        raise UsageError(f"{path}: no such file or directory")
    try:
        gate.regular_source(path, "checkpoint", directory=True, subdirectories=True)
    except SerbenchError as error:
        raise UsageError(" ".join(str(error).split())) from None


def _first_reader(path: Path) -> str | None:
    """The framework of the first reader of `path` (of a shard directory: of its first file), so that
    the child runs in that framework's environment (`frameworks.environments`)."""
    candidates = frameworks.readers_of(path)
    if path.is_dir() and not candidates:
        members = sorted(c for c in path.iterdir() if c.is_file() and not c.name.endswith(INDEX_SUFFIX))
        candidates = next(filter(None, map(frameworks.readers_of, members)), [])
    return candidates[0][0] if candidates else None


def prepare(paths: list[Path], directory: Path, trusted: bool, timeout_s: float = READ_TIMEOUT_S) -> list[dict]:
    """Read each checkpoint in a child process (see the module docstring); UsageError says why one could not be."""
    files.own_directory(directory)  # no link may redirect the stored tensors
    entries: list[dict] = []
    for path in paths:
        check_source(path)
        name = workload_name(path, {entry["name"] for entry in entries})
        reader = _first_reader(path)
        environment = frameworks.adapter_class(reader).environment if reader else environments.HOME
        arguments = ["-m", "bench.checkpoints", str(path), str(directory / f"{name}.npz"), name]
        arguments += ["--trusted"] if trusted else []
        try:
            result = environments.run(environment, arguments, timeout_s)
        except subprocess.TimeoutExpired:
            raise UsageError(f"{path}: reading it took over {timeout_s:.0f} s; it was stopped") from None
        lines = result.stdout.strip().splitlines()
        if result.returncode == EXIT_REFUSED:
            raise UsageError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"{path}: refused")
        if result.returncode != 0 or not lines:
            last = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
            raise UsageError(f"{path}: the reader crashed ({last[:300]})")
        entry = stored.parse_json(lines[-1], f"the reader of {path}", "checkpoint entry")
        stored.check(entry, workloads.CHECKPOINTS_SCHEMA.required["checkpoints"].item, f"the reader of {path}", "entry")
        entries.append(entry)
    return entries


def main(argv: list[str]) -> int:
    source, store, name, *flags = argv
    try:
        entry = import_checkpoint(Path(source), Path(store), name, "--trusted" in flags)
    except (Refused, SerbenchError, ValueError, OSError) as error:
        print(" ".join(str(error).split())[:1000], file=sys.stderr)
        return EXIT_REFUSED
    print(json.dumps(entry))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
