"""A user's own checkpoint as a workload (`serbench bench PATH...`).

A file is recognised by its bytes (each format's sniffer, `frameworks.readers_of`), read once through
the adapter of a framework that reads it (`Adapter.read_arrays`, behind the trust gate), flattened to
one dict of named tensors, and stored where every process of the run rebuilds it exactly
(`workloads.store_arrays`). A directory is read as, in this order:

- shards with their index, the way the Hugging Face tooling lays them out (`model.safetensors.index.json`
  or `pytorch_model.bin.index.json`, whose `weight_map` names each tensor's shard): every shard is read, and
  every tensor must be where the index says. With both indexes (many Hub repositories hold the model both
  ways) the safetensors shards are read, which need no trust, and the reader description says so;
- a format's own directory, where a sniffer recognises it (a TensorFlow checkpoint under any prefix, an
  Orbax checkpoint or CheckpointManager directory, a torch.distributed.checkpoint directory); what the reader
  chose (a prefix, a step) is in the reader description (`frameworks.reading`);
- otherwise the weights files it holds (`save_pretrained` without shards, a peft adapter, accelerate's
  `save_state`): one weights file is read as the checkpoint; a safetensors file and the same model's `.bin`
  beside it are one model, read from the safetensors; several files (a model, its optimizer, its scheduler)
  are read each, the model's tensors under their own names and every other file's under its name
  (`optimizer.state.0.exp_avg`). Files no reader recognises (configs, a README) are left alone; RNG states
  (accelerate's `random_states_*.pkl`) are dropped by name without being read; a pickle that needs --trusted
  is dropped by name when it was not given (and refused when nothing else is left).

A pickle (a torch file, even with weights_only=True) is read only when the user says `trusted`.

Tensors that are one storage in the file (GPT-2's tied embeddings, which torch.save writes once) come back
from a reader as views of the same memory: they are found by it (the same address, dtype, shape and strides),
recorded in the entry (`shared`, sorted groups of names), stored once and rebuilt as one array, so that a
format that keeps the sharing (torch.save) writes them once again; `payload_bytes` counts each of them once.

The reading runs in a child process with a timeout (`python -m bench.checkpoints`), so a file that
crashes or hangs a framework takes down the child, not the command; the child answers one JSON line.
A framework's own exception while reading is an answer too (the file could not be read, and why), not a crash.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

import frameworks
from bench import workloads
from bench.errors import UsageError
from frameworks import environments, files, gate, reading, stored, trees
from frameworks.errors import SerbenchError
from frameworks.trees import count_nodes

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


ROOT_NAME = trees.ROOT_NAME
"""The name of a checkpoint that is one bare tensor, not a container of named ones."""


def flatten(tree: Any, prefix: str | None = None) -> tuple[dict[str, np.ndarray], list[str]]:
    """`frameworks.trees.flatten_tensors`, a name clash refused (see there)."""
    try:
        return trees.flatten_tensors(tree, prefix)
    except trees.NameClash as clash:
        raise Refused(str(clash)) from None


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0][:300] if lines else ''}"


def needs_trust(path: Path) -> str | None:
    """The format of `path` that makes reading it need --trusted (its every reader unpickles), or None."""
    candidates = frameworks.readers_of(path)
    specs = [frameworks.adapter_class(framework).spec(fmt) for framework, fmt in candidates]
    if specs and all(spec.executes_code or spec.unpickles for spec in specs):
        return specs[0].name
    return None


def read_file(path: Path, trusted: bool) -> tuple[Any, str, tuple[str, str]]:
    """The file's tree, which reader read it, and that reader's (framework, format): the first that recognises
    it and imports; what the reader chose while reading (`frameworks.reading`) follows its name."""
    candidates = frameworks.readers_of(path)
    if not candidates:
        formats = sorted({spec.name for name in frameworks.names() for spec in frameworks.adapter_class(name).specs})
        raise Refused(f"{path} is not a checkpoint serbench recognises (it reads {', '.join(formats)})")
    problems: list[str] = []
    trust_for: str | None = None
    for framework, fmt in candidates:  # the next reader gets its turn when one refuses (an .npy of objects)
        spec = frameworks.adapter_class(framework).spec(fmt)
        if (spec.executes_code or spec.unpickles) and not trusted:
            trust_for = trust_for or fmt
            continue
        try:
            adapter = frameworks.get_adapter(framework)
            with reading.collecting() as notes:
                tree = adapter.read_arrays(path, fmt, trusted=trusted)
            # a pickle can name one list a billion times in a few bytes: counted before anything walks it
            gate.check_count(path, fmt, count_nodes(tree, gate.MAX_MEMBERS), "values and containers")
            return tree, f"{framework} ({fmt})" + "".join(f"; {note}" for note in notes), (framework, fmt)
        except (ImportError, SerbenchError) as error:
            problems.append(f"as {fmt} ({framework}): {' '.join(str(error).split())}")
        except Exception as error:  # noqa: BLE001  (a framework's own error on this file is why it cannot be read)
            problems.append(f"as {fmt} ({framework}): {_one_line(error)}")
    if trust_for is not None and not problems:
        raise Refused(
            f"{path} is a {trust_for} file, a pickle: serbench reads it only with --trusted (for files you or a "
            "source you trust made; a pickle can run code, and torch's weights_only reader still parses one)"
        )
    if trust_for is not None:  # a reader that needs no trust refused it: that is the answer, not --trusted
        raise Refused(f"{path} could not be read: {'; '.join(problems)} (as {trust_for} it would need --trusted)")
    raise Refused(f"{path} could not be read: {'; '.join(problems)}")


def _indexes(directory: Path) -> list[Path]:
    return sorted(path for path in directory.glob(f"*{INDEX_SUFFIX}") if path.is_file())


def choose_index(directory: Path) -> tuple[Path, str]:
    """The directory's shard index and, where it held more than one, why this one: of a safetensors index and
    a torch one (a Hub repository holding the model both ways), the safetensors, which needs no trust."""
    indexes = _indexes(directory)
    safetensors = [index for index in indexes if index.name.endswith(f".safetensors{INDEX_SUFFIX}")]
    if len(indexes) == 1:
        return indexes[0], ""
    if len(indexes) > 1 and len(safetensors) == 1:
        others = ", ".join(index.name for index in indexes if index != safetensors[0])
        return safetensors[0], (
            f"{others} not read: the same model's shards in another format, and the safetensors need no --trusted"
        )
    raise Refused(
        f"{directory} holds several shard indexes ({', '.join(index.name for index in indexes)}) and serbench "
        "cannot tell which to read: give a directory holding one"
    )


def read_index(directory: Path) -> tuple[Path, dict[str, str], str]:
    """The directory's shard index (`choose_index`), its weight_map (tensor name -> shard file in the
    directory), and why that index."""
    index, why = choose_index(directory)
    schema = stored.Object(required={"weight_map": stored.MapOf(str)}, extra=True)
    try:
        weight_map = stored.read_json(index, what="shard index", schema=schema, cap=MAX_INDEX_BYTES)["weight_map"]
    except stored.StoredFileError as error:
        raise Refused(str(error)) from None
    for shard in set(weight_map.values()):
        if Path(shard).name != shard or shard in ("", ".", ".."):
            raise Refused(f"{index} names shard {shard!r}, which is not a file in {directory}")
    return index, weight_map, why


def read_sharded(directory: Path, trusted: bool) -> tuple[dict[str, np.ndarray], list[str], str]:
    """Every shard of the index, checked against it: each tensor in the shard the index names, none extra."""
    index, weight_map, why = read_index(directory)
    merged: dict[str, np.ndarray] = {}
    dropped: list[str] = []
    readers = set()
    shards = list(dict.fromkeys(weight_map.values()))
    for shard in shards:
        tree, reader, _ = read_file(directory / shard, trusted)
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
    described = f"{len(shards)} shards via {index.name}, read with {', '.join(sorted(readers))}"
    return ordered, dropped, described + (f" ({why})" if why else "")


RNG_STATES = re.compile(r"random_states(_\d+)?\.pkl")
"""accelerate's `save_state` writes each process's Python, NumPy and torch RNG states here: not tensors."""
MODEL_STEMS = ("model", "pytorch_model", "adapter_model", "diffusion_pytorch_model")
"""The file names (without their ending) Hugging Face and accelerate give a model's own weights."""


def _stem(path: Path) -> str:
    return path.name.rsplit(".", 1)[0] if "." in path.name.strip(".") else path.name


def directory_files(directory: Path) -> tuple[list[Path], list[str], list[str]]:
    """What `read_directory` reads of a directory that no format reads whole and no index describes: its
    weights files in the order they are read (the model's own first), what is left out and why (the same model
    in another format, RNG states), and the other files, which no reader recognises (configs, a README)."""
    members = sorted(entry for entry in directory.iterdir() if files.is_regular(entry))
    weights = [entry for entry in members if not RNG_STATES.fullmatch(entry.name) and frameworks.readers_of(entry)]
    left_out = [
        f"{entry.name} (RNG states, not tensors: not read)" for entry in members if RNG_STATES.fullmatch(entry.name)
    ]
    others = [entry.name for entry in members if entry not in weights and not RNG_STATES.fullmatch(entry.name)]
    by_name = {entry.name: entry for entry in weights}
    for entry in list(weights):
        if entry.suffix != ".safetensors":
            continue
        for twin in (f"pytorch_{entry.stem}.bin", f"{entry.stem}.bin", f"{entry.stem}.pt", f"{entry.stem}.pth"):
            if twin in by_name and by_name[twin] in weights:
                weights.remove(by_name[twin])
                left_out.append(f"{twin} (the same model as {entry.name}, in torch's format: not read)")
    weights.sort(key=lambda entry: (_stem(entry) not in MODEL_STEMS, entry.name))
    return weights, left_out, others


def read_directory(directory: Path, trusted: bool) -> tuple[dict[str, np.ndarray], list[str], str]:
    """A directory of weights files (see the module docstring)."""
    weights, left_out, others = directory_files(directory)
    if not weights:
        found = ", ".join(others[:8]) or "nothing"
        raise Refused(
            f"{directory} is a directory serbench does not recognise: no format reads it whole, it has no "
            f"*{INDEX_SUFFIX} with a weight_map, and none of its files is a checkpoint (it holds {found}); "
            "give a checkpoint file, or the directory a library saved"
        )
    readable = [entry for entry in weights if trusted or needs_trust(entry) is None]
    if not readable:
        read_file(weights[0], trusted)  # refused: it says why, and that --trusted reads it
    left_out += [
        f"{entry.name} (a {needs_trust(entry)} file, a pickle: read only with --trusted)"
        for entry in weights
        if entry not in readable
    ]
    merged: dict[str, np.ndarray] = {}
    dropped: list[str] = []
    described = []
    for position, entry in enumerate(readable):
        own_names = len(readable) == 1 or (position == 0 and _stem(entry) in MODEL_STEMS)
        prefix = None if own_names else _stem(entry)
        tree, reader, _ = read_file(entry, trusted)
        arrays, lost = flatten(tree, prefix)
        clash = merged.keys() & arrays.keys()
        if clash:
            raise Refused(f"{directory}: {entry.name} and an earlier file both hold {sorted(clash)[0]!r}")
        merged.update(arrays)
        dropped += [f"{entry.name}: {name}" for name in lost]
        described.append((entry.name, reader, prefix))
    if len(readable) == 1 and len(weights) == 1:
        what = f"{described[0][0]}, the directory's one weights file, read with {described[0][1]}"
    else:
        parts = [
            f"{file} with {reader}" + (f" (as {prefix}.*)" if prefix else "") for file, reader, prefix in described
        ]
        what = f"{len(readable)} files of the directory: {', '.join(parts)}"
    beside = f"; beside {', '.join(others[:5])}{', ...' if len(others) > 5 else ''} (not weights)" if others else ""
    return merged, [*left_out, *dropped], what + beside


def read_checkpoint(path: Path, trusted: bool) -> tuple[dict[str, np.ndarray], list[str], str, tuple[str, str] | None]:
    """A file or a directory (see the module docstring) as (tensors by name, what was dropped, how it was read,
    and the one (framework, format) that read it whole: None for shards or a directory of files)."""
    if path.is_dir() and _indexes(path):
        return (*read_sharded(path, trusted), None)
    if path.is_dir() and not frameworks.readers_of(path):
        return (*read_directory(path, trusted), None)
    tree, reader, chosen = read_file(path, trusted)
    arrays, dropped = flatten(tree)
    return arrays, dropped, f"read with {reader}", chosen


def shared_storage(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[list[str]]]:
    """`arrays` with the names that are one tensor in memory (a reader's views of one storage: the same address,
    dtype, shape and strides) holding one array object, and those groups of names, sorted."""
    first: dict[tuple[Any, ...], str] = {}
    groups: dict[str, list[str]] = {}
    out: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        key = (array.__array_interface__["data"][0], array.dtype, array.shape, array.strides)
        owner = first.setdefault(key, name) if array.nbytes else name
        out[name] = out[owner] if owner != name else array
        if owner != name:
            groups.setdefault(owner, [owner]).append(name)
    return out, sorted(sorted(group) for group in groups.values())


def import_checkpoint(source: Path, store: Path, name: str, trusted: bool) -> dict[str, Any]:
    """Read `source`, store its tensors at `store`, and describe it (an entry of checkpoints.json)."""
    arrays, dropped, reader, as_given = read_checkpoint(source, trusted)
    if not arrays:
        raise Refused(f"{source} holds no tensors ({len(dropped)} other values)")
    arrays, shared = shared_storage(arrays)
    tensors = workloads.store_arrays(arrays, store)
    distinct = {id(array): array for array in arrays.values()}.values()
    digest = 0
    for tensor_name, array in arrays.items():  # what the tensors hold, by name: `bench --resume` compares it
        digest = zlib.crc32(tensor_name.encode(), digest)
        digest = zlib.crc32(np.ascontiguousarray(array).reshape(-1).view(np.uint8), digest)
    return {
        "name": name,
        "source": str(source),
        "reader": reader,
        "store": str(store),
        "tensors": tensors,
        "tensor_count": len(tensors),
        "payload_bytes": int(sum(array.nbytes for array in distinct)),
        "payload_counts": "each storage once: the names of a `shared` group are one tensor in the file",
        "shared": shared,
        "dtypes": sorted({array.dtype.name for array in arrays.values()}),
        "dropped": dropped,
        "crc32": digest,
        **({"as_given": {"framework": as_given[0], "format": as_given[1]}} if as_given else {}),
    }


def check_source(path: Path) -> None:
    """UsageError unless `path` is a regular file, or a directory holding only regular files and directories of
    them (no links, FIFOs or devices, at most MAX_MEMBERS entries): checked before any byte is read, so a FIFO
    cannot block the command and a link cannot take the read outside the checkpoint."""
    if not os.path.lexists(path):
        if files.is_regular(Path(f"{path}.index")):
            raise UsageError(
                f"{path}: no such file or directory; it is the prefix of a TensorFlow checkpoint ({path.name}.index "
                f"is beside it): give its directory, {path.parent} (serbench reads the prefix its `checkpoint` file "
                "names, or its only one)"
            )
        raise UsageError(f"{path}: no such file or directory")
    try:
        gate.regular_source(path, "checkpoint", directory=True, subdirectories=True)
    except SerbenchError as error:
        raise UsageError(" ".join(str(error).split())) from None


def _first_reader(path: Path) -> str | None:
    """The framework of the first reader of `path` (of a directory of shards or weights files: of the first file
    it reads), so that the child runs in that framework's environment (`frameworks.environments`)."""
    candidates = frameworks.readers_of(path)
    if path.is_dir() and not candidates:
        if _indexes(path):
            members = sorted(c for c in path.iterdir() if c.is_file() and not c.name.endswith(INDEX_SUFFIX))
        else:
            members = directory_files(path)[0]
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
