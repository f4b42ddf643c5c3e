"""JAX at scale: Orbax saving and restoring sharded arrays across processes (`jax.distributed`), the JAX
row of serbench's distributed checkpoints. Found through `JaxAdapter.scale_recipe`.

Each rank is a JAX process (`jax.distributed.initialize` from the launcher's RANK, WORLD_SIZE, MASTER_ADDR
and MASTER_PORT; CPU collectives over gloo); the global mesh holds one device per process and every array
is split by rows over it (`PartitionSpec("x")`). A save is `StandardCheckpointer.save` waited for; a load at
another world size restores through abstract arrays that carry the new sharding, so Orbax reads each
process's rows (resharding). JAX has no loader variants of its own here (`loaders` is empty): its
safetensors and msgpack loads are single-file formats the main benchmark times.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from frameworks import scale
from frameworks.errors import DeviceUnavailableError

NUMPY_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool", "C64": "complex64",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
}  # fmt: skip
"""safetensors dtype code -> NumPy dtype name (bfloat16 and float8 through ml_dtypes), for every code a source
checkpoint may hold: a distributed load of the safety matrix's int64 tensors failed with KeyError 'I64'."""


class JaxScale(scale.ScaleRecipe):
    """JAX's scale recipe (see the module docstring)."""

    writers: ClassVar[dict[str, tuple[str, str]]] = {"safetensors": ("model", ".safetensors")}
    distributed_engine = "orbax-checkpoint (jax.distributed)"
    distributed_format = "orbax"
    distributed_backends: ClassVar[dict[str, str]] = {"cpu": "gloo", "cuda": "nccl"}
    distributed_load_unpickles = False
    """Orbax's checkpoint is JSON metadata and tensorstore arrays: restoring it unpickles nothing."""

    def __init__(self, adapter: Any) -> None:
        super().__init__(adapter)
        self.jax = adapter.jax

    def write_shard(self, shard: dict[str, np.ndarray], path: Path, format_name: str) -> None:
        """safetensors.flax's `save_file`: the source checkpoint of a distributed row."""
        self.adapter.safetensors.save_file({name: self.adapter.jnp.asarray(a) for name, a in shard.items()}, path)

    def _init_ranks(self, device: str) -> Any:
        jax = self.jax
        if device == "cpu":
            jax.config.update("jax_platforms", "cpu")
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}",
            num_processes=int(os.environ["WORLD_SIZE"]),
            process_id=int(os.environ["RANK"]),
        )
        if device not in self.adapter.devices():
            raise DeviceUnavailableError(self.adapter.device_note())
        mesh = jax.sharding.Mesh(np.array(jax.devices()), ("x",))
        return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x"))

    def _rows(self, source: list[Path], rank: int, world: int) -> dict[str, np.ndarray]:
        """This process's rows of every tensor of the source checkpoint (safetensors), read from its bytes."""
        import ml_dtypes  # noqa: F401  (registers bfloat16 with NumPy)

        rows = {}
        for file in source:
            start, header = scale.safetensors_header(file)
            mapped = np.memmap(file, dtype=np.uint8, mode="r")  # unmapped when the last view of it is dropped
            for name, entry in header.items():
                shape = tuple(entry["shape"])
                first_byte, last_byte = entry["data_offsets"]
                dtype = np.dtype(NUMPY_DTYPES[entry["dtype"]])
                full = mapped[start + first_byte : start + last_byte].view(dtype).reshape(shape)
                first, last = scale.row_range(shape[0], rank, world)
                rows[name] = np.array(full[first:last])
        return rows

    def distributed_save(self, source: list[Path], directory: Path, device: str) -> dict[str, object]:
        sharding = self._init_ranks(device)
        jax = self.jax
        rank, world = jax.process_index(), jax.process_count()
        scale.source_entries(self.adapter, source)  # the gate admits every source file before it is read
        local = self._rows(source, rank, world)
        state = {name: jax.make_array_from_process_local_data(sharding, rows) for name, rows in local.items()}
        jax.block_until_ready(state)
        checkpointer = self.adapter.ocp.StandardCheckpointer()
        try:
            start = time.perf_counter()
            checkpointer.save(directory.absolute(), state)
            checkpointer.wait_until_finished()
            seconds = time.perf_counter() - start
        finally:
            checkpointer.close()
        return {"rank": rank, "world": world, "seconds": seconds, "bytes": sum(a.nbytes for a in local.values())}

    def distributed_load(
        self, source: list[Path], directory: Path, device: str, *, trusted: bool = False
    ) -> dict[str, object]:
        """Orbax's checkpoint is JSON metadata and tensorstore arrays (nothing is unpickled), so no trust is
        needed; the rows are compared byte for byte with the source's."""
        scale.admit_distributed(directory, self.distributed_engine)
        sharding = self._init_ranks(device)
        jax = self.jax
        rank, world = jax.process_index(), jax.process_count()
        target = {
            name: jax.ShapeDtypeStruct(tuple(entry["shape"]), np.dtype(NUMPY_DTYPES[entry["dtype"]]), sharding=sharding)
            for name, entry in scale.source_entries(self.adapter, source).items()
        }
        checkpointer = self.adapter.ocp.StandardCheckpointer()
        try:
            start = time.perf_counter()
            restored = checkpointer.restore(directory.absolute(), target)
            jax.block_until_ready(restored)
            seconds = time.perf_counter() - start
        finally:
            checkpointer.close()
        expected = self._rows(source, rank, world)
        wrong, nbytes = [], 0
        for name, array in restored.items():
            (shard,) = array.addressable_shards
            data = np.asarray(shard.data)
            nbytes += data.nbytes
            if data.tobytes() != expected[name].tobytes():
                wrong.append(name)
        return {"rank": rank, "world": world, "seconds": seconds, "bytes": nbytes, "wrong": wrong}
