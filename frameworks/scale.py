"""Checkpoints at scale, the framework-neutral part: how a state dict is split into shards the way the
Hugging Face tooling lays them out, how a sharded checkpoint is found again from its index (through
the trust gate's rules), what a framework's scale recipe is and shares (`ScaleRecipe`), and how one is
found: through its adapter's `scale_recipe` ("module:Class", imported on first use and checked to be a
complete `ScaleRecipe`: `frameworks.recipes`), never by the framework's name.

The layout is Hugging Face's (`huggingface_hub.split_state_dict_into_shards_factory`, what
`save_pretrained` writes): tensors in state-dict order, a new shard whenever the next tensor would take
the current one past `max_shard_bytes`; a tensor larger than that is put in a shard of its own at once
while the current one goes on filling (HF's storage sharing between tensors is not modelled); files named
`model-00001-of-00003.safetensors`, and `model.safetensors.index.json` holding
`{"metadata": {"total_size": ...}, "weight_map": {tensor name: file name}}`. One shard is written as
`model.safetensors` with no index. It is written here rather than imported because huggingface_hub
would bring an HTTP stack into the core environment for twenty lines of arithmetic.

No framework is imported here, nor by a recipe's module: a recipe reaches its framework through its adapter
when it is constructed.
"""

from __future__ import annotations

import abc
import importlib
import importlib.util
import json
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

import frameworks
from frameworks import gate, recipes, validators
from frameworks.base import ShardLoader
from frameworks.errors import FormatMismatchError, NotRegularFileError, ResourceLimitError, UnsupportedError

INDEX_SUFFIX = ".index.json"
MAX_INDEX_BYTES = 64 << 20
"""An index larger than this is refused before it is parsed (Llama 3.1 405B's is about 100 KB)."""


def safetensors_header(path: Path) -> tuple[int, dict[str, Any]]:
    """The data offset and the tensor entries of a safetensors file (checked by the gate before this is called)."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    header.pop("__metadata__", None)
    return 8 + length, header


def source_entries(adapter: Any, files: list[Path]) -> dict[str, dict[str, Any]]:
    """The tensors (name -> dtype, shape, data offsets) of the safetensors files a distributed row starts from,
    each file admitted by the trust gate as the adapter's safetensors format first."""
    spec = adapter.spec("safetensors")
    entries = {}
    for file in files:
        gate.admit(file, spec, trusted=False)
        entries.update(safetensors_header(file)[1])
    return entries


def admit_distributed(directory: Path, engine: str) -> Path:
    """A distributed checkpoint's directory, checked by the gate before an engine reads it: regular files and
    directories of them only, no links or FIFOs, at most MAX_MEMBERS entries."""
    return gate.regular_source(directory, engine, directory=True, subdirectories=True)


def row_range(rows: int, rank: int, world: int) -> tuple[int, int]:
    """The rows of a tensor split by rows over `world` ranks that `rank` holds (torch.chunk's split, which DTensor's
    Shard(0) and JAX's row sharding both use: ceil-sized pieces, the last ones shorter or empty)."""
    size = -(-rows // world)
    return min(rank * size, rows), min((rank + 1) * size, rows)


def shard_names(count: int, stem: str = "model", suffix: str = ".safetensors") -> list[str]:
    if count == 1:
        return [f"{stem}{suffix}"]
    return [f"{stem}-{number:05d}-of-{count:05d}{suffix}" for number in range(1, count + 1)]


def index_name(stem: str = "model", suffix: str = ".safetensors") -> str:
    return f"{stem}{suffix}{INDEX_SUFFIX}"


def shard_plan(sizes: Sequence[tuple[str, int]], max_shard_bytes: int) -> list[list[str]]:
    """Tensor names per shard, in order, as Hugging Face splits a state dict (see the module docstring)."""
    if max_shard_bytes <= 0:
        raise ValueError(f"max_shard_bytes must be positive, not {max_shard_bytes}")
    shards: list[list[str]] = []
    current: list[str] = []
    size = 0
    for name, nbytes in sizes:
        if nbytes > max_shard_bytes:  # a tensor larger than a shard gets one of its own, at once
            shards.append([name])
            continue
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(name)
        size += nbytes
    if current:
        shards.append(current)
    return shards


def index_document(plan: list[list[str]], total_size: int, stem: str = "model", suffix: str = ".safetensors") -> dict:
    names = shard_names(len(plan), stem, suffix)
    return {
        "metadata": {"total_size": total_size},
        "weight_map": {tensor: file for file, shard in zip(names, plan, strict=True) for tensor in shard},
    }


def save_sharded(
    arrays: dict[str, Any],
    directory: Path,
    naming: tuple[str, str],
    max_shard_bytes: int,
    write: Callable[[dict[str, Any], Path], None],
) -> Path:
    """Split `arrays` (NumPy) into shards as Hugging Face does, `write(shard, path)` each with the framework's own
    writer, and write the index when there are several; returns what a loader is given (the file or the index)."""
    stem, suffix = naming
    directory.mkdir(parents=True, exist_ok=True)
    plan = shard_plan([(name, array.nbytes) for name, array in arrays.items()], max_shard_bytes)
    names = shard_names(len(plan), stem, suffix)
    for file_name, shard in zip(names, plan, strict=True):
        write({name: arrays[name] for name in shard}, directory / file_name)
    if len(plan) == 1:
        return directory / names[0]
    index = directory / index_name(stem, suffix)
    total = sum(array.nbytes for array in arrays.values())
    index.write_text(json.dumps(index_document(plan, total, stem, suffix), indent=2))
    return index


def checkpoint_files(path: str | os.PathLike[str], format_name: str = "safetensors") -> list[Path]:
    """The files of a checkpoint: `path` itself if it is one file, or the shards its index names, in
    order. The index is checked before it is trusted: it must be small, its weight map a mapping of
    strings to plain file names (no directories: an index cannot send a load outside its folder), and
    every shard a regular file beside it."""
    source = gate.regular_source(path, format_name)
    if not source.name.endswith(INDEX_SUFFIX):
        return [source]
    size = source.stat().st_size
    if size > MAX_INDEX_BYTES:
        raise ResourceLimitError(f"refusing {source}: an index of {size:,} bytes (at most {MAX_INDEX_BYTES:,})")
    try:
        document = json.loads(source.read_bytes())
        weight_map = document["weight_map"]
    except (ValueError, KeyError, TypeError, RecursionError) as error:
        what = "nested too deeply" if isinstance(error, RecursionError) else f"{type(error).__name__}: {error}"
        raise FormatMismatchError(f"refusing {source}: not a shard index ({what})") from None
    if not isinstance(weight_map, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in weight_map.items()
    ):
        raise FormatMismatchError(f"refusing {source}: its weight_map is not a mapping of tensor names to file names")
    if not weight_map:
        raise FormatMismatchError(f"refusing {source}: its weight_map names no tensor")
    shards = sorted(set(weight_map.values()))
    gate.check_count(source, format_name, len(shards), "shards")
    for name in shards:
        if name in ("", ".", "..") or Path(name).name != name or "\\" in name:
            raise FormatMismatchError(
                f"refusing {source}: it names the shard {name!r}, which is not a file name in the index's folder"
            )
        if (source.parent / name).is_symlink():
            raise NotRegularFileError(
                f"refusing {source}: its shard {name!r} is a symbolic link, which can point outside the index's folder"
            )
    files = [gate.regular_source(source.parent / name, format_name) for name in shards]
    if format_name == "safetensors":
        _check_index_against_headers(source, weight_map, files, format_name)
    return files


def _check_index_against_headers(source: Path, weight_map: dict[str, str], files: list[Path], format_name: str) -> None:
    """Every tensor is in the shard the index names, and no shard holds a tensor the index does not map there
    (else a load silently misses tensors or lets one shard's copy overwrite another's)."""
    for file in files:
        validators.safetensors_header(file, frozenset(validators.SAFETENSORS_ITEM_BYTES))
        held = set(safetensors_header(file)[1])
        mapped = {tensor for tensor, shard in weight_map.items() if shard == file.name}
        if held != mapped:
            extra, missing = sorted(held - mapped)[:3], sorted(mapped - held)[:3]
            raise FormatMismatchError(
                f"refusing {source}: shard {file.name!r} does not hold what the index maps to it "
                f"(unmapped tensors {extra}, missing tensors {missing})"
            )


LOADING = ("materialize", "host_bytes", "describe")
"""What a recipe that declares `loaders` defines itself (the loader child calls them around each load)."""
DISTRIBUTED = ("distributed_backends", "distributed_load_unpickles", "distributed_save", "distributed_load")
"""What a recipe that names a `distributed_engine` defines itself (the rank launcher and the tests use them)."""


class ScaleRecipe(abc.ABC):
    """One framework's scale recipe: it writes a Hugging Face sharded checkpoint with the framework's own writer
    (every recipe), loads one with each of its `loaders` (if it declares any) and saves and loads a distributed
    checkpoint with its `distributed_engine` (if it names one). A subclass sets the class attributes, implements
    the abstract methods and, for each capability it declares, that capability's methods (LOADING,
    DISTRIBUTED): checked when the class is defined. Constructed with the framework's adapter."""

    writers: ClassVar[dict[str, tuple[str, str]]]
    """The formats `save_checkpoint` writes, each with its Hugging Face file names (stem, suffix):
    `("model", ".safetensors")` is `model-00001-of-00003.safetensors` and `model.safetensors.index.json`."""
    loaders: ClassVar[tuple[ShardLoader, ...]] = ()
    """The ways users load a large checkpoint in this framework, each timed by `serbench run --scale`."""
    reference_loader: ClassVar[str] = ""
    """The name of the loader (one of `loaders`) the report sets the others beside, or "" for none."""
    distributed_engine: ClassVar[str] = ""
    """The distributed checkpoint engine, as the report names it, or "" for none."""
    distributed_format: ClassVar[str] = ""
    """The adapter's format of the directory the engine writes ("dcp"): the safety matrix attacks the job entry
    point (`python -m frameworks.distributed JOB.json`) with that format's hostile files."""
    distributed_backends: ClassVar[dict[str, str]] = {}
    """The collective backend of each device the engine runs on ("cpu": "gloo"); a device not here has none."""
    distributed_load_unpickles: ClassVar[bool] = False
    """Whether the engine's load unpickles (then `distributed_load` refuses unless trusted, and the tests say so)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A declared capability without its methods, or a reference loader that is not a loader, is a defect of
        the recipe, reported when its module is imported (not when a scale run first reaches it)."""
        super().__init_subclass__(**kwargs)
        below = cls.__mro__[: cls.__mro__.index(ScaleRecipe)]
        needed = {
            "loaders": LOADING if cls.loaders else (),
            "a distributed_engine": DISTRIBUTED if cls.distributed_engine else (),
        }
        for declared, names in needed.items():
            if missing := [name for name in names if not any(name in vars(klass) for klass in below)]:
                raise TypeError(f"{cls.__name__} declares {declared} but does not define {', '.join(missing)}")
        if bool(cls.distributed_engine) != bool(cls.distributed_format):
            raise TypeError(f"{cls.__name__}: a distributed_engine and its distributed_format are declared together")
        if cls.reference_loader and cls.reference_loader not in {loader.name for loader in cls.loaders}:
            raise TypeError(
                f"{cls.__name__}: reference_loader {cls.reference_loader!r} is not one of its loaders "
                f"({', '.join(loader.name for loader in cls.loaders) or 'none'})"
            )

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter

    def _unsupported(self, operation: str, capability: str) -> UnsupportedError:
        return UnsupportedError(f"{self.adapter.name}'s scale recipe cannot {operation}: it declares no {capability}")

    # Writing -------------------------------------------------------------------------------
    def save_checkpoint(
        self, arrays: dict[str, np.ndarray], directory: Path, format_name: str, max_shard_bytes: int
    ) -> Path:
        """Write `arrays` (NumPy) as Hugging Face lays out a checkpoint of `format_name` (one of `writers`), each
        shard with `write_shard`; returns what a loader is given (the single file, or the index)."""
        if format_name not in self.writers:
            raise UnsupportedError(
                f"{self.adapter.name}'s scale recipe writes no {format_name!r} checkpoint; it writes "
                f"{', '.join(self.writers)}"
            )

        def write(shard: dict[str, np.ndarray], path: Path) -> None:
            self.write_shard(shard, path, format_name)

        return save_sharded(arrays, directory, self.writers[format_name], max_shard_bytes, write)

    @abc.abstractmethod
    def write_shard(self, shard: dict[str, np.ndarray], path: Path, format_name: str) -> None:
        """Write one shard's arrays (NumPy) at `path` in `format_name`, with the framework's own writer."""

    # Loading -------------------------------------------------------------------------------
    def unavailable(self, loader: ShardLoader, device: str) -> str:
        """Why `loader` cannot load onto `device` here ("" if it can): a device it does not support (its own
        words), a device this build of the framework lacks, or its package missing."""
        if device not in loader.devices:
            return loader.only_on
        if device != "cpu" and device not in self.adapter.devices():
            return f"no CUDA device here ({self.adapter.device_note()})"
        if loader.package and importlib.util.find_spec(loader.package.replace("-", "_")) is None:
            return f"{loader.package} is not installed here (pip install {loader.package})"
        return ""

    def prepare(self, loader: ShardLoader, device: str) -> None:
        """What a loader needs before its first load and a user pays once per process, kept out of the timed
        load: here its package imported (a framework adds its device context)."""
        if loader.package:
            importlib.import_module(loader.package.replace("-", "_"))

    def device_peak(self, device: str) -> int | None:
        """Peak bytes the load allocated on the GPU (None on the CPU: the host's RSS is measured apart)."""
        return self.adapter.device_memory_peak(device) if device != "cpu" else None

    def materialize(self, tensors: dict[str, Any], lazy: bool, device: str) -> list[Any]:
        """Make every byte of the loaded `tensors` resident on its device (a `lazy` loader's mapped tensors are
        copied, as loading them into a model copies them) and wait for the device; returns the copies."""
        raise self._unsupported("materialize loaded tensors", "loaders")

    def host_bytes(self, tensor: Any) -> np.ndarray:
        """A loaded tensor's bytes in host memory as a flat uint8 array, for checking (after the timing)."""
        raise self._unsupported("read a loaded tensor's bytes", "loaders")

    def describe(self, tensor: Any) -> tuple[str, tuple[int, ...]]:
        """A loaded tensor's dtype, in NumPy's (and ml_dtypes') words, and its shape."""
        raise self._unsupported("describe a loaded tensor", "loaders")

    # Distributed ---------------------------------------------------------------------------
    def distributed_save(self, source: list[Path], directory: Path, device: str) -> dict[str, object]:
        """As one rank of a torchrun-style launch (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): this rank's rows of
        the source checkpoint's tensors (safetensors files, admitted by the gate) saved into `directory` with the
        engine, timed; {"rank", "world", "seconds", "bytes"}."""
        raise self._unsupported("save a distributed checkpoint", "distributed_engine")

    def distributed_load(
        self, source: list[Path], directory: Path, device: str, *, trusted: bool = False
    ) -> dict[str, object]:
        """As one rank: this rank's rows loaded from `directory` with the engine at this launch's world size
        (refused unless `trusted` if the engine unpickles), timed, then compared byte for byte with the source's;
        {"rank", "world", "seconds", "bytes", "wrong": names that differ}."""
        raise self._unsupported("load a distributed checkpoint", "distributed_engine")


def with_scale_recipes() -> tuple[str, ...]:
    """The registered frameworks whose adapters declare a scale recipe."""
    return tuple(name for name in frameworks.names() if frameworks.adapter_class(name).scale_recipe)


def recipe_class(framework: str) -> type[ScaleRecipe]:
    """The recipe class (its module imports no framework): its `loaders` can be read without the framework;
    ValueError naming the frameworks that have one, or TypeError if the adapter names a class that is not a
    complete `ScaleRecipe`."""
    target = frameworks.adapter_class(framework).scale_recipe
    if not target:
        raise ValueError(
            f"{framework} has no scale recipe; frameworks with one: {', '.join(with_scale_recipes()) or 'none'}"
        )
    return recipes.resolve(target, ScaleRecipe, f"{framework}'s scale recipe")


def loaders() -> list[tuple[str, ShardLoader]]:
    """(framework, ShardLoader) of every scale recipe, in registry order."""
    return [(framework, loader) for framework in with_scale_recipes() for loader in recipe_class(framework).loaders]


def scale_recipe(framework: str) -> ScaleRecipe:
    """The framework's scale recipe (its loaders, writers and distributed engine), ready to use;
    ValueError naming the frameworks that have one; ImportError (with the install hint) if it is missing."""
    cls = recipe_class(framework)
    return cls(frameworks.get_adapter(framework))
