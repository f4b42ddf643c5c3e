"""Workloads, built once in NumPy from a seeded generator and converted by each adapter.

Nothing is downloaded: the VGG16-shaped state dict is made from the real layer names and shapes.
A workload is a tree of NumPy arrays plus the kind it exercises. Probes (dtypes, edge shapes,
special values) come twice: as a bare tensor and as a one-entry dict, because some formats hold
only one of the two.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from frameworks import files, gate, stored
from frameworks.base import SEED, mlp_parameters
from frameworks.trees import leaves

MLP_INPUT_SHAPE = (2, 20)

DTYPES: dict[str, Any] = {
    "float16": np.float16,
    "bfloat16": ml_dtypes.bfloat16,
    "float32": np.float32,
    "float64": np.float64,
    "int8": np.int8,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "bool": np.bool_,
}

SIZES = ("small", "medium", "large")

VGG16_SHAPES: dict[str, tuple[int, ...]] = {}
for _index, (_out, _in) in zip(
    (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
    (
        (64, 3),
        (64, 64),
        (128, 64),
        (128, 128),
        (256, 128),
        (256, 256),
        (256, 256),
        (512, 256),
        (512, 512),
        (512, 512),
        (512, 512),
        (512, 512),
        (512, 512),
    ),
    strict=True,
):
    VGG16_SHAPES[f"features.{_index}.weight"] = (_out, _in, 3, 3)
    VGG16_SHAPES[f"features.{_index}.bias"] = (_out,)
for _index, (_out, _in) in zip((0, 3, 6), ((4096, 25088), (4096, 4096), (1000, 4096)), strict=True):
    VGG16_SHAPES[f"classifier.{_index}.weight"] = (_out, _in)
    VGG16_SHAPES[f"classifier.{_index}.bias"] = (_out,)
VGG16_PARAMETERS = 138_357_544


@dataclass(frozen=True)
class Workload:
    """A named tree of NumPy arrays; `build` is deterministic."""

    name: str
    kind: str
    group: str
    size: str
    builder: Callable[[], Any] = field(repr=False, compare=False)
    dtype: str = "mixed"
    source: str = ""
    """A user's checkpoint: the path it was read from."""
    as_given: tuple[str, str] | None = None
    """A user's checkpoint read whole by one reader: its (framework, format). That format is a row of the run
    even where it cannot hold a tree (Keras weights): the user's own file, timed as serbench reads it."""

    def build(self) -> Any:
        return self.builder()


def rng(salt: int = 0) -> np.random.Generator:
    return np.random.default_rng([SEED, salt])


def random_array(dtype: Any, shape: tuple[int, ...], salt: int = 0) -> np.ndarray:
    generator = rng(salt)
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return generator.integers(0, 2, size=shape).astype(np.bool_)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return generator.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    return generator.standard_normal(shape, dtype=np.float32).astype(dtype)


def mlp_checkpoint_shape() -> dict[str, dict[str, np.ndarray]]:
    """What an Adam checkpoint of the d2l MLP holds, for sizing: the parameters and two moments each.

    The checkpoint itself is made by each framework's training recipe (`frameworks.training`).
    """
    params = mlp_parameters(0)
    return {
        "model": params,
        "exp_avg": {k: v * 0.1 for k, v in params.items()},
        "exp_avg_sq": {k: v * v for k, v in params.items()},
    }


def mlp_input(seed: int = 0) -> np.ndarray:
    return rng(2_000 + seed).standard_normal(MLP_INPUT_SHAPE, dtype=np.float32)


def _bits(dtype: Any, words: list[int]) -> np.ndarray:
    unsigned = {2: np.uint16, 4: np.uint32, 8: np.uint64}[np.dtype(dtype).itemsize]
    return np.array(words, dtype=unsigned).view(dtype)


SPECIAL_BITS = {
    # quiet NaN with payload, signalling NaN, negative NaN, +inf, -inf, -0.0, +0.0,
    # smallest and largest subnormal, largest finite
    "float16": [0x7E01, 0x7C01, 0xFE00, 0x7C00, 0xFC00, 0x8000, 0x0000, 0x0001, 0x03FF, 0x7BFF],
    "float32": [
        0x7FC00001,
        0x7F800001,
        0xFFC00000,
        0x7F800000,
        0xFF800000,
        0x80000000,
        0,
        0x00000001,
        0x007FFFFF,
        0x7F7FFFFF,
    ],
    "float64": [
        0x7FF8000000000001,
        0x7FF0000000000001,
        0xFFF8000000000000,
        0x7FF0000000000000,
        0xFFF0000000000000,
        0x8000000000000000,
        0,
        1,
        0x000FFFFFFFFFFFFF,
        0x7FEFFFFFFFFFFFFF,
    ],
}


def _probes() -> dict[str, tuple[str, Callable[[], np.ndarray]]]:
    """Single arrays that stress one property each: name -> (dtype label, builder)."""
    probes: dict[str, tuple[str, Callable[[], np.ndarray]]] = {}
    for salt, (label, dtype) in enumerate(DTYPES.items()):
        probes[f"dtype-{label}"] = (label, functools.partial(random_array, dtype, (3, 5), salt))
    probes["shape-0d"] = ("float32", lambda: np.array(3.5, dtype=np.float32))
    probes["shape-empty"] = ("float32", lambda: np.zeros((0, 3), dtype=np.float32))
    probes["layout-noncontiguous"] = ("int32", lambda: np.arange(48, dtype=np.int32).reshape(6, 8)[::2, 1::3])
    probes["layout-fortran"] = ("float64", lambda: np.asfortranarray(random_array(np.float64, (4, 5), 99)))
    for label, words in SPECIAL_BITS.items():
        probes[f"special-{label}"] = (label, functools.partial(_bits, DTYPES[label], words))
    return probes


def _d2l() -> list[Workload]:
    x = functools.partial(np.arange, 4)
    y = functools.partial(np.zeros, 4, dtype=np.float32)
    return [
        Workload("d2l-tensor", "tensor", "d2l", "small", lambda: x(), "int64"),
        Workload("d2l-list", "list", "d2l", "small", lambda: [x(), y()]),
        Workload("d2l-dict", "dict", "d2l", "small", lambda: {"x": x(), "y": y()}),
        Workload("d2l-mlp", "mlp", "d2l", "small", mlp_parameters, "float32"),
        Workload("d2l-checkpoint", "checkpoint", "d2l", "small", mlp_checkpoint_shape, "float32"),
    ]


def _keys() -> list[Workload]:
    def tensors(keys: list[str]) -> dict[str, np.ndarray]:
        return {key: random_array(np.float32, (2,), salt) for salt, key in enumerate(keys)}

    def batchnorm_state() -> dict[str, np.ndarray]:
        """Seed 002's state_dict: conv + BatchNorm buffers, including a 0-d int64 counter."""
        return {
            "layer1.0.weight": random_array(np.float32, (16, 3, 3, 3), 1),
            "layer1.0.bias": random_array(np.float32, (16,), 2),
            "layer1.1.weight": np.ones(16, np.float32),
            "layer1.1.bias": np.zeros(16, np.float32),
            "layer1.1.running_mean": random_array(np.float32, (16,), 3),
            "layer1.1.running_var": np.abs(random_array(np.float32, (16,), 4)),
            "layer1.1.num_batches_tracked": np.array(7, dtype=np.int64),
        }

    return [
        Workload(
            "keys-unicode",
            "dict",
            "keys",
            "small",
            lambda: tensors(["权重", "ключ", "poids_é", "🙂"]),
            "float32",
        ),
        Workload("keys-long", "dict", "keys", "small", lambda: tensors(["k" * 1000, "short"]), "float32"),
        Workload("keys-dotted", "dict", "keys", "small", batchnorm_state),
        Workload(
            "keys-slash",
            "dict",
            "keys",
            "small",
            lambda: tensors(["encoder/layer_0/kernel", "encoder/layer_0/bias"]),
            "float32",
        ),
        Workload(
            "keys-order",
            "dict",
            "keys",
            "small",
            lambda: tensors(["zeta", "alpha", "mid", "beta"]),
            "float32",
        ),
    ]


def _nested() -> Workload:
    def build() -> dict[str, Any]:
        return {
            "model": {
                "weight": random_array(np.float32, (3, 4), 1),
                "bias": random_array(np.float32, (3,), 2),
            },
            "history": [random_array(np.float64, (2,), 3), random_array(np.float64, (2,), 4)],
            "step": np.array(12, dtype=np.int64),
        }

    return Workload("nested", "nested", "nested", "small", build)


def sized_dict(total_bytes: int, count: int, salt: int) -> dict[str, np.ndarray]:
    """`count` float32 tensors of equal size adding up to `total_bytes`."""
    per_tensor = total_bytes // count // 4
    return {f"layer{i}.weight": random_array(np.float32, (per_tensor,), salt + i) for i in range(count)}


def vgg16_state_dict() -> dict[str, np.ndarray]:
    """VGG16's 32 parameter tensors with the real names and shapes (138M float32, about 553 MB)."""
    generator = rng(3_000)
    return {
        name: generator.standard_normal(shape, dtype=np.float32) * np.float32(0.01)
        for name, shape in VGG16_SHAPES.items()
    }


def _sizes() -> list[Workload]:
    mib = 1 << 20
    return [
        Workload("size-1MiB", "dict", "size", "medium", lambda: sized_dict(mib, 8, 10), "float32"),
        Workload("size-64MiB", "dict", "size", "medium", lambda: sized_dict(64 * mib, 16, 20), "float32"),
        Workload("vgg16", "dict", "size", "large", vgg16_state_dict, "float32"),
    ]


def _catalogue() -> dict[str, Workload]:
    workloads = _d2l()
    for name, (dtype, builder) in _probes().items():
        workloads.append(Workload(f"{name}/tensor", "tensor", name.split("-")[0], "small", builder, dtype))
        workloads.append(
            Workload(
                f"{name}/dict",
                "dict",
                name.split("-")[0],
                "small",
                functools.partial(lambda b: {"value": b()}, builder),
                dtype,
            )
        )
    workloads += _keys()
    workloads.append(_nested())
    workloads += _sizes()
    return {workload.name: workload for workload in workloads}


WORKLOADS: dict[str, Workload] = _catalogue()

CHECKPOINTS_VARIABLE = "SERBENCH_CHECKPOINTS"
"""Path of a run's checkpoints.json (`serbench bench`): users' checkpoints registered as workloads in every
process of the run, the pytest and peak-memory children included."""
MIB = 1 << 20


def size_of(payload: int) -> str:
    """The size class of a payload, as the built-in workloads use them (rounds per case follow it)."""
    return "small" if payload < MIB else "medium" if payload <= 64 * MIB else "large"


def store_arrays(arrays: dict[str, np.ndarray], path: Path) -> list[dict[str, Any]]:
    """Write a user's tensors where every process of a run can rebuild them exactly (an uncompressed npz of
    their bytes, so bfloat16 and other ml_dtypes survive), atomically; returns name, dtype and shape of each.
    Member `i` holds the `i`th tensor's bytes; an array object that several names hold (tensors that are one
    storage in the checkpoint, the entry's `shared` groups) is written once, as its first name's member."""
    entries = [{"name": name, "dtype": array.dtype.name, "shape": list(array.shape)} for name, array in arrays.items()]
    members: dict[str, np.ndarray] = {}
    written: set[int] = set()
    for index, array in enumerate(arrays.values()):
        if id(array) not in written:
            written.add(id(array))
            members[str(index)] = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    with files.atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, **members)
    return entries


def _read_stored(
    path: str, entries: list[dict[str, Any]], shared: list[list[str]] | None = None
) -> dict[str, np.ndarray]:
    """The tensors `store_arrays` wrote, by name, in order; the names of each `shared` group as one array object
    (the first name's), as they were one storage in the checkpoint."""
    from frameworks.numpy_adapter import NPZ, read_npz

    members = read_npz(gate.admit(path, NPZ, trusted=False))
    order = {entry["name"]: index for index, entry in enumerate(entries)}
    first_of = {name: min(group, key=order.__getitem__) for group in shared or [] for name in group}
    arrays: dict[str, np.ndarray] = {}
    for index, entry in enumerate(entries):
        first = first_of.get(entry["name"], entry["name"])
        if first != entry["name"]:
            arrays[entry["name"]] = arrays[first]
            continue
        raw = members.get(str(index))
        dtype = np.dtype(entry["dtype"])
        if raw is None or raw.dtype != np.uint8 or raw.size != dtype.itemsize * int(np.prod(entry["shape"])):
            raise stored.StoredFileError(f"{path} does not hold tensor {entry['name']!r} as its checkpoints.json says")
        arrays[entry["name"]] = raw.view(dtype).reshape(entry["shape"])
    return arrays


CHECKPOINTS_SCHEMA = stored.Object(
    required={
        "checkpoints": stored.ListOf(
            stored.Object(
                required={
                    "name": str,
                    "source": str,
                    "store": str,
                    "payload_bytes": stored.COUNT,
                    "tensors": stored.ListOf(
                        stored.Object(required={"name": str, "dtype": str, "shape": stored.ListOf(stored.COUNT)})
                    ),
                },
                extra=True,
            ),
            max_items=1000,
        )
    }
)


SHARED_SCHEMA = stored.ListOf(stored.ListOf(str))
"""An entry's `shared`: groups of tensor names that are one storage in the checkpoint."""


def read_checkpoints(manifest: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The entries of a run's checkpoints.json: a regular file within its cap, of CHECKPOINTS_SCHEMA, each name a
    user workload's (`user-...`), each dtype one NumPy knows, and each `shared` group two or more of its tensors'
    names, of one dtype and shape, in no other group."""
    document = stored.read_json(manifest, what="checkpoints.json", schema=CHECKPOINTS_SCHEMA, cap=256 << 20)
    for entry in document["checkpoints"]:
        if not re.fullmatch(r"user-[A-Za-z0-9._-]+", entry["name"]):
            raise stored.StoredFileError(f"{manifest}: {entry['name']!r} is not the name of a user's checkpoint")
        for tensor in entry["tensors"]:
            try:
                dtype = np.dtype(tensor["dtype"])
            except TypeError:
                raise stored.StoredFileError(f"{manifest}: {tensor['dtype']!r} is not a dtype") from None
            if dtype.kind not in "biufcV" or dtype.hasobject:  # a structured "O,i4" is kind V and holds objects
                raise stored.StoredFileError(f"{manifest}: {tensor['dtype']!r} is not a tensor's dtype (no objects)")
        stored.check(entry.get("shared", []), SHARED_SCHEMA, f"{manifest} ({entry['name']})", "shared groups")
        if "as_given" in entry:
            _check_as_given(entry["as_given"], f"{manifest} ({entry['name']})")
        described = {tensor["name"]: (tensor["dtype"], tuple(tensor["shape"])) for tensor in entry["tensors"]}
        grouped = [name for group in entry.get("shared", []) for name in group]
        for group in entry.get("shared", []):
            if len(group) < 2 or any(name not in described for name in group):
                raise stored.StoredFileError(f"{manifest}: shared group {group[:4]} is not two or more of its tensors")
            if len({described[name] for name in group}) != 1:
                raise stored.StoredFileError(f"{manifest}: shared group {group[:4]} has tensors of different shapes")
        if len(grouped) != len(set(grouped)):
            raise stored.StoredFileError(f"{manifest}: a tensor is in two shared groups of {entry['name']}")
    return document["checkpoints"]


AS_GIVEN_SCHEMA = stored.Object(required={"framework": str, "format": str})


def _check_as_given(value: Any, where: str) -> None:
    """An entry's `as_given`: a registered framework and one of its adapter's formats."""
    import frameworks

    stored.check(value, AS_GIVEN_SCHEMA, where, "as_given")
    if value["framework"] not in frameworks.names():
        raise stored.StoredFileError(f"{where}: as_given names {value['framework']!r}, not a registered framework")
    if value["format"] not in frameworks.adapter_class(value["framework"]).format_names():
        raise stored.StoredFileError(f"{where}: as_given names {value['format']!r}, not a {value['framework']} format")


def register_checkpoints(manifest: str | os.PathLike[str]) -> list[Workload]:
    """Add the checkpoints listed in a run's checkpoints.json to WORKLOADS (group `user`, kind `dict`)."""
    added = []
    for entry in read_checkpoints(manifest):
        dtypes = {tensor["dtype"] for tensor in entry["tensors"]}
        workload = Workload(
            entry["name"],
            "dict",
            "user",
            size_of(entry["payload_bytes"]),
            functools.partial(_read_stored, entry["store"], entry["tensors"], entry.get("shared", [])),
            dtypes.pop() if len(dtypes) == 1 else "mixed",
            entry["source"],
            (entry["as_given"]["framework"], entry["as_given"]["format"]) if "as_given" in entry else None,
        )
        WORKLOADS[workload.name] = workload
        added.append(workload)
    return added


if os.environ.get(CHECKPOINTS_VARIABLE):
    register_checkpoints(os.environ[CHECKPOINTS_VARIABLE])


def select(sizes: tuple[str, ...] = ("small",), kinds: tuple[str, ...] | None = None) -> list[Workload]:
    return [w for w in WORKLOADS.values() if w.size in sizes and (kinds is None or w.kind in kinds)]


@functools.lru_cache(maxsize=64)
def _cached(builder: Callable[[], Any]) -> Any:
    return builder()


def build(name: str) -> Any:
    """The workload's tree; small and medium ones are cached (callers must not mutate them). The cache is
    keyed by the workload's builder, not its name: a name registered again (a second checkpoint called
    `user-model` in one process) builds the new checkpoint, never the one cached under that name."""
    workload = WORKLOADS[name]
    if workload.size == "large":
        return workload.build()
    return _cached(workload.builder)


def payload_bytes(tree: Any) -> int:
    """Bytes of a tree's tensors, each array object once: names that are one storage (tied weights, which
    `_read_stored` returns as one object) are one payload, as in the checkpoint they came from."""
    distinct = {id(leaf): leaf for leaf in leaves(tree)}
    return sum(np.asarray(leaf).nbytes for leaf in distinct.values())


@functools.cache
def payload_of(name: str) -> int:
    """Payload bytes of a named workload (built once, even for the large ones)."""
    return payload_bytes(build(name))
