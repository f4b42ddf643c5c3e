"""PyTorch at scale: the loaders people pick for large checkpoints, the writers of sharded ones, and
`torch.distributed.checkpoint` (DCP) across ranks. Found through `TorchAdapter.scale_recipe`.

Loaders (each a `ShardLoader` of the format it reads; every one returns tensors the caller owns):
- safetensors `load_file`, file by file into one dict, as `transformers` does for a sharded model;
  its tensors are the mapped file, so materializing them copies every byte (what `load_state_dict` does);
- fastsafetensors (`SafeTensorsFileLoader`, without GPUDirect Storage), all shards at once;
- Run:ai Model Streamer (`SafetensorsStreamer.stream_files`), with its owned tensors (the default);
- InstantTensor (`instanttensor.safe_open`): CUDA only, by its own account;
- `torch.load(weights_only=True)` of `pytorch_model.bin` files, and with `mmap=True` (issue pytorch#25892:
  without it a load holds the file's bytes twice while it builds the tensors);
- serbench's reference loader: large parallel `preadv` calls into one host buffer (page-locked when the
  target is a GPU) and, for a GPU, asynchronous copies chunk by chunk as the reads finish. A few dozen
  lines, not a product: the report sets every loader beside it to show how close a load can get.

DCP: each rank holds a row shard of every tensor (a DTensor, `Shard(0)`), saves with `dcp.save`; a load
at another world size gives each rank its rows of the same tensors (`dcp.load` reshards). Gloo on the
CPU, NCCL on CUDA. DCP's `.metadata` is a pickle that `dcp.load` reads with `pickle.load`: loading a DCP
checkpoint runs code from it, so `distributed_load` needs `trusted=True`, as any unpickling load does.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from frameworks import scale
from frameworks.base import ShardLoader
from frameworks.errors import DeviceUnavailableError, UnsafeLoadError

READ_CHUNK = 32 << 20
"""Bytes per read of the reference loader: large enough to amortize a syscall, small enough to overlap."""
READERS = 8
"""Reads the reference loader keeps in flight (preadv releases the GIL)."""
ALIGNMENT = 64
"""Where each shard's data starts in the reference loader's buffer (a view of any dtype needs its alignment)."""
DISTRIBUTED_TIMEOUT = datetime.timedelta(minutes=10)

WRITERS = {"safetensors": ("model", ".safetensors"), "torch": ("pytorch_model", ".bin")}
"""The Hugging Face file names of each format (stem, suffix): `model-00001-of-00003.safetensors`,
`pytorch_model-00001-of-00003.bin`, each with its `.index.json`."""


def _nothing() -> None:
    return None


def _device_name(device: str) -> str:
    return "cuda:0" if device == "cuda" else device


def _load_file(recipe: TorchScale, files: list[Path], device: str) -> tuple[dict[str, Any], Callable[[], None]]:
    tensors: dict[str, Any] = {}
    for file in files:
        tensors.update(recipe.adapter.safetensors.load_file(str(file), device=_device_name(device)))
    return tensors, _nothing


def _fastsafetensors(recipe: TorchScale, files: list[Path], device: str) -> tuple[dict[str, Any], Callable[[], None]]:
    from fastsafetensors import SafeTensorsFileLoader, SingleGroup

    loader = SafeTensorsFileLoader(SingleGroup(), _device_name(device), nogds=True, debug_log=False)
    try:
        loader.add_filenames({0: [str(file) for file in files]})
        buffers = loader.copy_files_to_device()
    except BaseException:
        loader.close()
        raise
    tensors = {name: buffers.get_tensor(name) for name in buffers.key_to_rank_lidx}

    def release() -> None:
        buffers.close()
        loader.close()

    return tensors, release


def _runai(recipe: TorchScale, files: list[Path], device: str) -> tuple[dict[str, Any], Callable[[], None]]:
    from runai_model_streamer import SafetensorsStreamer

    with SafetensorsStreamer() as streamer:
        streamer.stream_files([str(file) for file in files], device=_device_name(device))
        tensors = dict(streamer.get_tensors())
    return tensors, _nothing


def _instanttensor(recipe: TorchScale, files: list[Path], device: str) -> tuple[dict[str, Any], Callable[[], None]]:
    import instanttensor

    with instanttensor.safe_open([str(file) for file in files], framework="pt", device=_device_name(device)) as handle:
        tensors = dict(handle.tensors())
    return tensors, _nothing


def _torch_load(mmap: bool) -> Callable[[TorchScale, list[Path], str], tuple[dict[str, Any], Callable[[], None]]]:
    def read(recipe: TorchScale, files: list[Path], device: str) -> tuple[dict[str, Any], Callable[[], None]]:
        torch = recipe.torch
        tensors: dict[str, Any] = {}
        for file in files:
            location = "cpu" if mmap else _device_name(device)
            part = torch.load(file, weights_only=True, mmap=mmap, map_location=location)
            if mmap and device != "cpu":
                part = {name: tensor.to(_device_name(device)) for name, tensor in part.items()}
            tensors.update(part)
        return tensors, _nothing

    return read


def _reference(recipe: TorchScale, files: list[Path], device: str) -> tuple[dict[str, Any], Callable[[], None]]:
    torch = recipe.torch
    layouts, total = [], 0
    for file in files:
        start, header = scale.safetensors_header(file)
        end = max((entry["data_offsets"][1] for entry in header.values()), default=0)
        layouts.append((file, start, end, total, header))
        total += -(-end // ALIGNMENT) * ALIGNMENT  # each shard's data starts aligned for any dtype's view
    host = torch.empty(total, dtype=torch.uint8, pin_memory=device == "cuda")
    target = host if device == "cpu" else torch.empty(total, dtype=torch.uint8, device=_device_name(device))
    buffer = host.numpy()
    chunks = [
        (file, start + offset, base + offset, min(READ_CHUNK, end - offset))
        for file, start, end, base, _ in layouts
        for offset in range(0, end, READ_CHUNK)
    ]
    descriptors: dict[Path, int] = {}

    def read(chunk: tuple[Path, int, int, int]) -> tuple[int, int]:
        file, position, into, length = chunk
        done = 0
        while done < length:
            count = os.preadv(descriptors[file], [memoryview(buffer[into + done : into + length])], position + done)
            if count <= 0:
                raise OSError(f"{file}: short read at byte {position + done:,}")
            done += count
        return into, length

    try:
        for file, *_ in layouts:
            descriptors[file] = os.open(file, os.O_RDONLY)
        with ThreadPoolExecutor(READERS) as pool:
            if device == "cpu":
                list(pool.map(read, chunks))
            else:
                stream = torch.cuda.Stream()
                with torch.cuda.stream(stream):
                    for into, length in pool.map(read, chunks):
                        target[into : into + length].copy_(host[into : into + length], non_blocking=True)
                stream.synchronize()
    finally:
        for descriptor in descriptors.values():
            os.close(descriptor)
    tensors = {}
    for _, _, _, base, header in layouts:
        for name, entry in header.items():
            first, last = entry["data_offsets"]
            dtype = SAFETENSORS_TORCH_DTYPES[entry["dtype"]]
            tensors[name] = target[base + first : base + last].view(dtype).view(entry["shape"])
    return tensors, _nothing


SAFETENSORS_TORCH_DTYPES: dict[str, Any] = {}
"""Filled on first use (torch imported): safetensors dtype code -> torch dtype."""

GPU_ONLY = "InstantTensor only supports CUDA devices (its own error on the CPU: 'only supports CUDA devices for now')"

LOADERS = (
    ShardLoader(
        "safetensors load_file",
        "safetensors",
        "safetensors.torch.load_file per shard into one dict (transformers' way); maps the file",
        _load_file,
        lazy=True,
        package="safetensors",
    ),
    ShardLoader(
        "fastsafetensors",
        "safetensors",
        "fastsafetensors SafeTensorsFileLoader, all shards at once, without GPUDirect Storage (nogds)",
        _fastsafetensors,
        package="fastsafetensors",
    ),
    ShardLoader(
        "runai-model-streamer",
        "safetensors",
        "Run:ai Model Streamer SafetensorsStreamer.stream_files, owned tensors",
        _runai,
        package="runai-model-streamer",
    ),
    ShardLoader(
        "instanttensor",
        "safetensors",
        "InstantTensor safe_open over all shards, owned copies",
        _instanttensor,
        devices=("cuda",),
        only_on=GPU_ONLY,
        package="instanttensor",
    ),
    ShardLoader(
        "torch.load",
        "torch",
        "torch.load(weights_only=True) per pytorch_model.bin shard into one dict",
        _torch_load(mmap=False),
    ),
    ShardLoader(
        "torch.load mmap=True",
        "torch",
        "torch.load(weights_only=True, mmap=True) per shard: the storages map the file",
        _torch_load(mmap=True),
        lazy=True,
    ),
    ShardLoader(
        "reference: parallel preadv",
        "safetensors",
        f"serbench's reference: {READERS} parallel {READ_CHUNK >> 20} MiB preadv into one host buffer (page-locked "
        "for a GPU, then asynchronous copies as reads finish)",
        _reference,
    ),
)
REFERENCE_LOADER = "reference: parallel preadv"


def safety_readers(*names: str) -> dict[str, Callable[[Any, Path], Any]]:
    """Scale loaders as framework loaders of the safety matrix (`FormatSpec.framework_loaders`): one file onto the
    CPU, returned as NumPy, so each has its own row for every hostile and damaged input."""

    def reader(name: str) -> Callable[[Any, Path], Any]:
        loader = next(loader for loader in LOADERS if loader.name == name)

        def read(adapter: Any, path: Path) -> Any:
            tensors, release = loader.read(TorchScale(adapter), [Path(path)], "cpu")
            try:
                return adapter.to_numpy(dict(tensors))
            finally:
                release()

        return read

    return {name: reader(name) for name in names}


class TorchScale(scale.ScaleRecipe):
    """PyTorch's scale recipe (see the module docstring)."""

    loaders = LOADERS
    reference_loader = REFERENCE_LOADER
    writers = WRITERS
    distributed_engine = "torch.distributed.checkpoint"
    distributed_format = "dcp"
    distributed_backends: ClassVar[dict[str, str]] = {"cpu": "gloo", "cuda": "nccl"}
    distributed_load_unpickles = True
    """`dcp.load` reads the checkpoint's `.metadata` with `pickle.load`: `distributed_load` needs trust."""

    def __init__(self, adapter: Any) -> None:
        super().__init__(adapter)
        self.torch = adapter.torch
        if not SAFETENSORS_TORCH_DTYPES:
            torch = self.torch
            SAFETENSORS_TORCH_DTYPES.update(
                {
                    "BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64,
                    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                    "U8": torch.uint8, "U16": torch.uint16, "U32": torch.uint32, "U64": torch.uint64,
                    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
                    "C64": torch.complex64,
                }
            )  # fmt: skip

    # Writing -------------------------------------------------------------------------------
    def tensor(self, array: np.ndarray) -> Any:
        """A CPU tensor sharing `array`'s memory (a bfloat16 array of ml_dtypes becomes torch.bfloat16)."""
        if array.dtype.name == "bfloat16":
            return self.torch.from_numpy(array.view(np.uint16)).view(self.torch.bfloat16)
        return self.torch.from_numpy(array)

    def write_shard(self, shard: dict[str, np.ndarray], path: Path, format_name: str) -> None:
        """safetensors.torch's `save_file` (with transformers' `{"format": "pt"}` metadata) or `torch.save`."""
        tensors = {name: self.tensor(array) for name, array in shard.items()}
        if format_name == "safetensors":
            self.adapter.safetensors.save_file(tensors, str(path), metadata={"format": "pt"})
        else:
            self.torch.save(tensors, path)

    # Loading -------------------------------------------------------------------------------
    def prepare(self, loader: ShardLoader, device: str) -> None:
        """The loader's package imported, and for a GPU the CUDA context created (and the device's peak memory
        mark reset)."""
        super().prepare(loader, device)
        if device != "cpu":
            self.torch.cuda.init()
            self.torch.empty(1, device=_device_name(device))
            self.adapter.reset_device_memory_peak(device)

    def materialize(self, tensors: dict[str, Any], lazy: bool, device: str) -> list[Any]:
        """Every byte resident on its device: a mapped tensor is copied (as load_state_dict copies it into a
        model), an eager one has one byte per page read; CUDA work is waited for. Returns the copies."""
        copies = []
        for tensor in tensors.values():
            if tensor.device.type == "cpu":
                if lazy:
                    tensor = tensor.clone()
                    copies.append(tensor)
                flat = tensor.reshape(-1).view(self.torch.uint8).numpy() if tensor.numel() else None
                if flat is not None:
                    int(flat[::4096].sum(dtype=np.uint64))
        if device != "cpu":
            self.torch.cuda.synchronize()
        return copies

    def host_bytes(self, tensor: Any) -> np.ndarray:
        """The tensor's bytes in host memory, for checking (after the timing)."""
        flat = tensor.detach().contiguous().reshape(-1)
        return flat.view(self.torch.uint8).cpu().numpy()

    def describe(self, tensor: Any) -> tuple[str, tuple[int, ...]]:
        dtype = {self.torch.bfloat16: "bfloat16"}.get(tensor.dtype, str(tensor.dtype).removeprefix("torch."))
        return dtype, tuple(tensor.shape)

    # Distributed ---------------------------------------------------------------------------
    def _init_ranks(self, device: str) -> Any:
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh

        if device != "cpu" and device not in self.adapter.devices():
            raise DeviceUnavailableError(f"no CUDA device here for NCCL ({self.adapter.device_note()})")
        if device != "cpu":
            self.torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))
        dist.init_process_group(self.distributed_backends[device], timeout=DISTRIBUTED_TIMEOUT)
        return dist, init_device_mesh("cuda" if device != "cpu" else "cpu", (dist.get_world_size(),))

    def _sharded(self, mesh: Any, local: Any, shape: tuple[int, ...]) -> Any:
        from torch.distributed.tensor import DTensor, Shard

        stride = tuple(int(np.prod(shape[i + 1 :], dtype=np.int64)) for i in range(len(shape)))
        return DTensor.from_local(local, mesh, [Shard(0)], run_check=False, shape=shape, stride=stride)

    def _source_rows(self, source: list[Path], rank: int, world: int, device: str) -> dict[str, Any]:
        """This rank's rows of every tensor of the source checkpoint (safetensors), on `device`."""
        tensors = {}
        for file in source:
            with self.adapter.safetensors.safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():
                    rows = handle.get_slice(name).get_shape()[0]
                    first, last = scale.row_range(rows, rank, world)
                    tensors[name] = handle.get_slice(name)[first:last].to(_device_name(device))
        return tensors

    def distributed_save(self, source: list[Path], directory: Path, device: str) -> dict[str, object]:
        """Run as one rank of a torchrun-style launch (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): build this
        rank's shards of the source checkpoint, then time `dcp.save` from a barrier to its return."""
        import torch.distributed.checkpoint as dcp

        dist, mesh = self._init_ranks(device)
        try:
            rank, world = dist.get_rank(), dist.get_world_size()
            shapes = {name: tuple(entry["shape"]) for name, entry in scale.source_entries(self.adapter, source).items()}
            local = self._source_rows(source, rank, world, device)
            state = {name: self._sharded(mesh, local[name], shapes[name]) for name in shapes}
            dist.barrier()
            start = time.perf_counter()
            dcp.save(state, checkpoint_id=str(directory))
            seconds = time.perf_counter() - start
            dist.barrier()
            return {"rank": rank, "world": world, "seconds": seconds, "bytes": sum(t.nbytes for t in local.values())}
        finally:
            dist.destroy_process_group()

    def distributed_load(
        self, source: list[Path], directory: Path, device: str, *, trusted: bool = False
    ) -> dict[str, object]:
        """One rank of a load at this launch's world size: empty sharded tensors, `dcp.load` timed from a barrier
        to its return, then this rank's rows compared byte for byte with the source checkpoint's."""
        import torch.distributed.checkpoint as dcp

        if not trusted:
            raise UnsafeLoadError(
                f"refusing to load {directory} with torch.distributed.checkpoint: dcp.load unpickles its .metadata "
                f"(pickle.load), which can run code from the file. Pass trusted=True only for checkpoints you made."
            )
        scale.admit_distributed(directory, self.distributed_engine)
        dist, mesh = self._init_ranks(device)
        try:
            rank, world = dist.get_rank(), dist.get_world_size()
            state = {}
            for name, entry in scale.source_entries(self.adapter, source).items():
                shape = tuple(entry["shape"])
                first, last = scale.row_range(shape[0], rank, world)
                dtype = SAFETENSORS_TORCH_DTYPES[entry["dtype"]]
                local = self.torch.empty((last - first, *shape[1:]), dtype=dtype, device=_device_name(device))
                state[name] = self._sharded(mesh, local, shape)
            dist.barrier()
            start = time.perf_counter()
            dcp.load(state, checkpoint_id=str(directory))
            if device != "cpu":
                self.torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            dist.barrier()
            expected = self._source_rows(source, rank, world, "cpu")
            wrong = [
                name
                for name, tensor in state.items()
                if not np.array_equal(self.host_bytes(tensor.to_local()), self.host_bytes(expected[name]))
            ]
            nbytes = sum(tensor.to_local().nbytes for tensor in state.values())
            return {"rank": rank, "world": world, "seconds": seconds, "bytes": nbytes, "wrong": wrong}
        finally:
            dist.destroy_process_group()
