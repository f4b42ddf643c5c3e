"""JAX adapter (Flax linen, Orbax): d2l's JAX recipe (`jnp.save` / `jnp.load`, pickling a list or a dict),
safetensors through `safetensors.flax`, Orbax's `StandardCheckpointer` (a directory: OCDBT, saved
asynchronously and waited for), and `flax.serialization` msgpack. The MLP is d2l's linen `MLP` with its
`params` pytree; kernels are (in, out), as in Keras.

The adapter turns on `jax_enable_x64` when it imports JAX: with JAX's default, `jnp.asarray` turns every
float64 and int64 array into float32 and int32 before any format sees it (with a warning), and the
conformance matrix would show that conversion in every format instead of what the formats keep. The
setting is recorded with the thread settings of every result.

A user's Orbax directory may be an Orbax `CheckpointManager`'s (`5/default/...`, one directory per step, each
step's items beside its `_CHECKPOINT_METADATA`): the latest step's items are read (one item as the
checkpoint, several under their names), and which step is noted (`frameworks.reading`). A user's msgpack file
(a TrainState from `flax.serialization.to_bytes`) may hold Python scalars (its `step`): `read_arrays` keeps
them as values, which `serbench bench` names and drops.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from frameworks import files, forgeries, gate, reading
from frameworks.base import (
    Adapter,
    FormatSpec,
    check_mlp_file,
    check_mlp_state,
    safetensors_load_file,
    safetensors_spec,
)
from frameworks.errors import FormatMismatchError
from frameworks.findings import (
    NPY_PICKLE_STACKED_LIST,
    SAFETENSORS_KEY_ORDER,
    TRAILING_IGNORED,
    UNCHECKED_DATA,
    UNPICKLES,
    Expectation,
    Finding,
    SafetyFinding,
    fifo_blocks,
)
from frameworks.numpy_adapter import check_npy_size, np_load_tree, npy_forgeries, npy_pickle_spec
from frameworks.trees import leaves, map_tree

FLAX_MLP_SHAPES = {
    "params/hidden/kernel": (20, 256),
    "params/hidden/bias": (256,),
    "params/output/kernel": (256, 10),
    "params/output/bias": (10,),
}
"""The linen MLP's variables as `flax.traverse_util.flatten_dict(..., sep='/')` names them."""
NUMERIC_KINDS = "biufc"
ORBAX_MARKERS = ("_CHECKPOINT_METADATA", "_METADATA")
MSGPACK_FIRST_BYTES = frozenset({*range(0x80, 0x90), 0xDE, 0xDF, 0xC7, 0xC8, 0xC9, *range(0xD4, 0xD9)})
"""What a `flax.serialization.to_bytes` file starts with: a map (a tree) or an extension (one array)."""
MSGPACK_STRING_FIRST = frozenset({*range(0xA0, 0xC0), 0xD9, 0xDA, 0xDB})
"""How a msgpack string starts (fixstr, str 8/16/32): a flax state dict's keys are strings."""
FLAX_EXT_TYPES = frozenset({1, 2, 3})
"""flax.serialization's msgpack extension codes: ndarray, native complex, NumPy scalar."""
STEP_NAME = re.compile(r"\d+")
"""An Orbax CheckpointManager's finalized step directory (a step being written is `5.orbax-checkpoint-tmp-*`)."""


@dataclass
class FlaxModel:
    """A linen module with its variables: what d2l's JAX tab calls `net` and `params`, in one object, so a
    load can fill a clone as it does a torch module."""

    module: Any
    variables: Any
    rng: Any = None
    calls: int = field(default=0)


def flatten(tree: Any, separator: str = "/") -> dict[str, Any]:
    """A nested dict as {'a/b': leaf}: `flax.traverse_util.flatten_dict` without importing Flax."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}{separator}{key}" if prefix else str(key), value)
        else:
            out[prefix] = node

    walk("", tree)
    return out


def check_flax_variables(path: Path, format: str, variables: Any, shapes: dict[str, tuple[int, ...]]) -> None:
    """Raise FormatMismatchError unless a loaded tree holds exactly the linen MLP's float32 variables
    (`check_mlp_file` on the tree flattened with '/', against `shapes`)."""
    check_mlp_file(path, format, flatten(variables) if isinstance(variables, dict) else variables, shapes)


# jnp.save / jnp.load ------------------------------------------------------------------------------
def _save_npy(adapter: JaxAdapter, array: Any, path: Path) -> None:
    with open(path, "wb") as handle:
        adapter.jnp.save(handle, array, allow_pickle=False)


def _load_npy(adapter: JaxAdapter, path: Path, device: str) -> Any:
    return adapter.on_device(adapter.jnp.load(path, allow_pickle=False), device)


def _save_npy_pickle(adapter: JaxAdapter, tree: Any, path: Path) -> None:
    """d2l's JAX tab: `jnp.save('mydict.npy', mydict)`; np.save pickles the container and its jax.Arrays."""
    with open(path, "wb") as handle:
        adapter.jnp.save(handle, tree, allow_pickle=True)


def _load_npy_pickle(adapter: JaxAdapter, path: Path, device: str) -> Any:
    """d2l's `jnp.load(..., allow_pickle=True)`: it unwraps a pickled container and turns '<V2' into bfloat16."""
    loaded = np_load_tree(path, allow_pickle=True, load=adapter.jnp.load)
    return adapter.on_device(map_tree(loaded, np.asarray), device)


def _jnp_load(allow_pickle: bool) -> Any:
    def read(adapter: JaxAdapter, path: Path) -> Any:
        return adapter.to_numpy(adapter.jnp.load(path, allow_pickle=allow_pickle))

    return read


JNP_LOAD = {"jnp.load allow_pickle=False": _jnp_load(False), "jnp.load allow_pickle=True": _jnp_load(True)}


# safetensors.flax ---------------------------------------------------------------------------------
def _save_safetensors(adapter: JaxAdapter, tree: dict[str, Any], path: Path) -> None:
    adapter.safetensors.save_file(dict(tree), str(path))


def _load_safetensors(adapter: JaxAdapter, path: Path, device: str) -> dict[str, Any]:
    return adapter.on_device(adapter.safetensors.load_file(str(path)), device)


def _save_mlp_safetensors(adapter: JaxAdapter, model: FlaxModel, path: Path) -> None:
    """What Flax users write: the params flattened with '.' (`hidden.kernel`), as Hugging Face's Flax models do."""
    adapter.safetensors.save_file(flatten(model.variables["params"], "."), str(path))


def _load_mlp_safetensors(adapter: JaxAdapter, path: Path, clone: FlaxModel) -> None:
    flat = adapter.safetensors.load_file(str(path))
    check_flax_variables(
        path,
        "safetensors",
        flat,
        {key.removeprefix("params/").replace("/", "."): shape for key, shape in FLAX_MLP_SHAPES.items()},
    )
    params: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        layer, name = key.split(".")
        params.setdefault(layer, {})[name] = value
    clone.variables = {"params": params}


# Orbax ---------------------------------------------------------------------------------------------
def is_orbax(path: Path) -> bool:
    """A StandardCheckpointer directory or a step of a CheckpointManager (its markers), or a CheckpointManager's
    directory (step directories holding items)."""
    return path.is_dir() and (any((path / name).is_file() for name in ORBAX_MARKERS) or bool(orbax_items(path)[0]))


def _step_items(step: Path) -> list[tuple[str, Path]]:
    """The pytree items of a CheckpointManager step directory: its subdirectories holding `_METADATA`."""
    return [
        (entry.name, entry) for entry in sorted(step.iterdir()) if entry.is_dir() and (entry / "_METADATA").is_file()
    ]


def orbax_items(path: Path) -> tuple[list[tuple[str, Path]], str]:
    """The pytree items a checkpoint directory holds, by name, and what was chosen: the directory itself (a
    StandardCheckpointer directory holds `_METADATA`), a step's items (`5/default`), or the latest step's items
    of a CheckpointManager directory (the highest finalized step). No items: not an Orbax directory."""
    if not path.is_dir():
        return [], ""
    if (path / "_METADATA").is_file():
        return [("", path)], ""
    if items := _step_items(path):
        return items, f"items {', '.join(name for name, _ in items)} of step directory {path.name}"
    steps = sorted(
        (int(entry.name), entry)
        for entry in path.iterdir()
        if entry.is_dir() and STEP_NAME.fullmatch(entry.name) and _step_items(entry)
    )
    if not steps:
        return [], ""
    number, step = steps[-1]
    items = _step_items(step)
    among = (
        f"the latest of {len(steps)} steps ({', '.join(str(n) for n, _ in steps[-5:])})"
        if len(steps) > 1
        else "its only step"
    )
    return items, f"step {number}, {among}; item{'s' if len(items) > 1 else ''} {', '.join(n for n, _ in items)}"


def _whole(parts: list[tuple[str, Any]]) -> Any:
    """One item's tree as the checkpoint; several items as {item name: tree}."""
    return parts[0][1] if len(parts) == 1 else dict(parts)


def orbax_metadata(adapter: JaxAdapter, path: Path) -> Any:
    """The tree of ArrayMetadata a checkpoint declares (Orbax reads its JSON and the zarr headers)."""
    try:
        with contextlib.closing(adapter.ocp.StandardCheckpointer()) as checkpointer:
            metadata = checkpointer.metadata(path.absolute())
    except (ValueError, KeyError, TypeError, OSError) as error:
        raise FormatMismatchError(f"{path} is not a valid 'orbax' checkpoint: {str(error)[:300]}") from None
    tree = getattr(getattr(metadata, "item_metadata", None), "tree", None)
    if tree is None:
        raise FormatMismatchError(f"{path} is not a valid 'orbax' checkpoint: Orbax finds no tree metadata in it")
    return tree


def orbax_data_file(path: Path) -> Path:
    """The largest node of the checkpoint's OCDBT database (`d/`): small arrays are stored inline in its
    b-tree nodes, larger ones in the data files they point to; the per-process copies are not read back."""
    data = [entry for entry in (path / "d").glob("*") if entry.is_file()] or [
        entry for entry in path.rglob("*") if entry.is_file()
    ]
    return max(data, key=lambda entry: entry.stat().st_size)


def orbax_parts(adapter: JaxAdapter, path: Path) -> list[tuple[str, Path, Any]]:
    """(name, directory, metadata tree) of each item the checkpoint at `path` holds (`orbax_items`)."""
    items, chosen = orbax_items(path)
    if chosen:
        reading.note(chosen)
    return [(name, item, orbax_metadata(adapter, item)) for name, item in items or [("", path)]]


def check_orbax(path: Path) -> None:
    """What the checkpoint declares, before Orbax allocates: numeric arrays, at most gate.MAX_MEMBERS of
    them, their bytes together within the load budget (a forged zarr header declared 64 GiB, which Orbax's
    own limit of 96 GB lets through)."""
    from frameworks import get_adapter

    adapter = get_adapter("jax")
    adapter.checked_orbax = None
    parts = orbax_parts(adapter, path)
    declared_arrays = [leaf for _, _, tree in parts for leaf in adapter.jax.tree.leaves(tree) if leaf is not None]
    gate.check_count(path, "orbax", len(declared_arrays), "arrays")
    total = 0
    for declared in declared_arrays:
        dtype = np.dtype(getattr(declared, "dtype", None) or np.uint8)
        if dtype.kind not in NUMERIC_KINDS and dtype != adapter.jnp.bfloat16:
            raise FormatMismatchError(f"{path} declares an array of {dtype}; serbench reads numeric arrays only")
        total += math.prod(getattr(declared, "shape", None) or ()) * dtype.itemsize
    gate.check_declared(path, "orbax", total, "its arrays' zarr headers")
    adapter.checked_orbax = (path, parts)


def checked_parts(adapter: JaxAdapter, path: Path) -> list[tuple[str, Path, Any]]:
    """The items and metadata `check_orbax` read and checked when the gate admitted `path` (the load that
    follows restores from what was checked, without reading it a second time), else read now."""
    checked, adapter.checked_orbax = adapter.checked_orbax, None
    return checked[1] if checked is not None and checked[0] == path else orbax_parts(adapter, path)


def orbax_save(adapter: JaxAdapter, tree: Any, path: Path) -> None:
    """`StandardCheckpointer.save` returns once the arrays are copied to host memory and writes them on a
    background thread; the save is timed until `wait_until_finished`, when the directory is complete."""
    checkpointer = adapter.ocp.StandardCheckpointer()
    before = set(threading.enumerate())
    try:
        checkpointer.save(path.absolute(), tree)
        checkpointer.wait_until_finished()
    except BaseException:
        # its background threads may still write metadata into what they staged: let them end first (a
        # refused save, such as a zero-size array, raises while Orbax's signalling thread is still creating
        # the staging directory, which then fails loudly on a closed executor), then close and clean up
        with contextlib.suppress(Exception):
            checkpointer.wait_until_finished()
        _join_orbax_threads(before)
        with contextlib.suppress(Exception):
            checkpointer.close()
        _remove_staged(path)
        raise
    checkpointer.close()


def _join_orbax_threads(before: set[threading.Thread], limit_s: float = 10.0) -> None:
    """Wait (up to `limit_s`) for the signalling threads Orbax started since `before` (its futures'
    `_SignalingThread`); its executors' long-lived workers are left to `close`."""
    deadline = time.monotonic() + limit_s
    for thread in set(threading.enumerate()) - before:
        if type(thread).__name__.endswith("SignalingThread"):
            thread.join(max(0.0, deadline - time.monotonic()))


def _remove_staged(path: Path, quiet_s: float = 1.0, limit_s: float = 10.0) -> None:
    """After a failed save, remove the directory Orbax staged (NAME.orbax-checkpoint-tmp) until it stays
    gone: tensorstore's writes that were in flight when one failed go on in its own threads, which
    `wait_until_finished` does not wait for, and recreate the directories they write into."""
    staged = path.parent / f"{path.name}.orbax-checkpoint-tmp"
    start = last_seen = time.monotonic()
    while time.monotonic() - last_seen < quiet_s and time.monotonic() - start < limit_s:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)
            last_seen = time.monotonic()
        time.sleep(0.05)


def orbax_restore(adapter: JaxAdapter, path: Path, target: Any) -> Any:
    with contextlib.closing(adapter.ocp.StandardCheckpointer()) as checkpointer:
        return checkpointer.restore(path.absolute(), target)


def _load_orbax(adapter: JaxAdapter, path: Path, device: str) -> Any:
    """Restored onto `device` through an abstract target built from the checkpoint's metadata, each array
    with a sharding on that device: Orbax's way to choose where a restore lands."""
    sharding = adapter.sharding(device)

    def restore(item: Path, tree: Any) -> Any:
        target = adapter.jax.tree.map(
            lambda declared: adapter.jax.ShapeDtypeStruct(declared.shape, declared.dtype, sharding=sharding), tree
        )
        return orbax_restore(adapter, item, target)

    return _whole([(name, restore(item, tree)) for name, item, tree in checked_parts(adapter, path)])


def _save_mlp_orbax(adapter: JaxAdapter, model: FlaxModel, path: Path) -> None:
    orbax_save(adapter, model.variables, path)


def _load_mlp_orbax(adapter: JaxAdapter, path: Path, clone: FlaxModel) -> None:
    check_flax_variables(
        path, "orbax", _whole([(name, tree) for name, _, tree in checked_parts(adapter, path)]), FLAX_MLP_SHAPES
    )
    clone.variables = orbax_restore(adapter, path, adapter.abstract(clone.variables))


def _orbax_reader(name: str) -> Any:
    def read(adapter: JaxAdapter, path: Path) -> Any:
        with contextlib.closing(getattr(adapter.ocp, name)()) as checkpointer:
            return adapter.to_numpy(checkpointer.restore(Path(path).absolute()))

    return read


ORBAX_LOADERS = {
    "ocp.StandardCheckpointer().restore": _orbax_reader("StandardCheckpointer"),
    "ocp.PyTreeCheckpointer().restore": _orbax_reader("PyTreeCheckpointer"),
}


def _orbax_forgeries(adapter: JaxAdapter, directory: Path, valid: Path, reference: Any) -> list[forgeries.Forged]:
    """The valid checkpoint with one array's zarr header (inside the OCDBT database, rewritten through
    tensorstore) declaring a (2^17, 2^17) float32 array, 64 GiB of fill value: under Orbax's 96 GB limit."""
    import tensorstore

    forged = directory / "zarray-declares-64GiB.orbax"
    shutil.copytree(valid, forged)
    store = tensorstore.KvStore.open({"driver": "ocdbt", "base": f"file://{forged.absolute()}/"}).result()
    key = next(name for name in store.list().result() if name.endswith(b"/.zarray"))
    header = json.loads(store.read(key).result().value)
    header.update(shape=[1 << 17, 1 << 17], chunks=[1, 1 << 14], dtype="<f4", fill_value=1.0)
    store.write(key, json.dumps(header).encode()).result()
    return [forgeries.Forged("zarray-declares-64GiB", forged, "damaged")]


# flax.serialization msgpack ------------------------------------------------------------------------
def is_flax_msgpack(path: Path) -> bool:
    """What `flax.serialization.to_bytes` writes: a map whose first key is a string (an empty map is the whole
    file), or one flax extension (an array). An HDF5 file (0x89 'H') and a legacy torch stream (0x80 0x02)
    start with a map's first byte too: the byte after it tells them apart."""
    start = files.head(path, 8)  # b"" for a directory
    if not start or start[0] not in MSGPACK_FIRST_BYTES:
        return False
    first = start[0]
    if 0x80 <= first <= 0x8F or first in (0xDE, 0xDF):
        width = 0 if first <= 0x8F else 2 if first == 0xDE else 4
        count = first & 0x0F if width == 0 else int.from_bytes(start[1 : 1 + width], "big")
        if count == 0:
            return path.stat().st_size == 1 + width
        return len(start) > 1 + width and start[1 + width] in MSGPACK_STRING_FIRST
    type_at = {0xC7: 2, 0xC8: 3, 0xC9: 5}.get(first, 1)  # ext 8/16/32 carry a length before the type; fixext not
    return len(start) > type_at and start[type_at] in FLAX_EXT_TYPES


def check_msgpack_size(path: Path) -> None:
    """msgpack_restore reads the whole file and its arrays view those bytes (msgpack bounds every length by
    the buffer): what a file can make the reader allocate is about its own size, checked against the budget."""
    gate.check_declared(path, "flax-msgpack", path.stat().st_size, "its size")


SCALAR_LEAVES = (bool, int, float, complex, str, bytes, type(None))
"""Python values a msgpack tree can hold beside arrays (a TrainState's `step`)."""


def read_msgpack(adapter: JaxAdapter, path: Path, scalars: bool = False) -> Any:
    """`flax.serialization.msgpack_restore` of the file's bytes: a tree of NumPy arrays (a list comes back as
    a dict keyed '0', '1', ...); every leaf checked numeric (or, with `scalars`, a Python scalar), its errors as
    FormatMismatchError."""
    import msgpack

    try:
        tree = adapter.serialization.msgpack_restore(path.read_bytes())
    except (ValueError, TypeError, KeyError, RecursionError, msgpack.exceptions.UnpackException) as error:
        raise FormatMismatchError(f"{path} is not a valid 'flax-msgpack' file: {str(error)[:300]}") from None
    found = leaves(tree)
    gate.check_count(path, "flax-msgpack", len(found), "leaves")
    odd = [
        type(leaf).__name__
        for leaf in found
        if not (scalars and isinstance(leaf, SCALAR_LEAVES))
        and (not isinstance(leaf, np.ndarray) or leaf.dtype.kind not in NUMERIC_KINDS + "V")
    ]
    if odd:
        raise FormatMismatchError(f"{path} holds leaves that are not numeric arrays: {sorted(set(odd))[:5]}")
    return tree


def read_msgpack_arrays(adapter: JaxAdapter, path: Path) -> Any:
    """A user's msgpack file as NumPy: its arrays, and its Python scalars as values (see the module docstring)."""
    check_msgpack_size(path)
    return read_msgpack(adapter, path, scalars=True)


def _save_msgpack(adapter: JaxAdapter, tree: Any, path: Path) -> None:
    path.write_bytes(adapter.serialization.to_bytes(tree))


def _load_msgpack(adapter: JaxAdapter, path: Path, device: str) -> Any:
    return adapter.on_device(read_msgpack(adapter, path), device)


def _save_mlp_msgpack(adapter: JaxAdapter, model: FlaxModel, path: Path) -> None:
    path.write_bytes(adapter.serialization.to_bytes(model.variables))


def _load_mlp_msgpack(adapter: JaxAdapter, path: Path, clone: FlaxModel) -> None:
    """Flax's recipe, `from_bytes(template, data)`, in its two steps: the file parsed once, checked to hold
    the MLP's variables (from_bytes takes whatever shape and dtype the file has), then `from_state_dict`
    into the clone's template."""
    state = read_msgpack(adapter, path)
    check_flax_variables(path, "flax-msgpack", state, FLAX_MLP_SHAPES)
    clone.variables = adapter.serialization.from_state_dict(clone.variables, state)


def _msgpack_restore(adapter: JaxAdapter, path: Path) -> Any:
    return adapter.serialization.msgpack_restore(Path(path).read_bytes())


def _msgpack_forgeries(adapter: JaxAdapter, directory: Path, valid: Path, reference: Any) -> list[forgeries.Forged]:
    """A map whose one array extension declares 2^40 float32 elements and holds 4 bytes."""
    import msgpack

    array = msgpack.packb([[1 << 20, 1 << 20], b"float32", b"\0" * 4])
    forged = directory / "ext-declares-2^40.msgpack"
    forged.write_bytes(msgpack.packb({"value": msgpack.ExtType(1, array)}))
    return [forgeries.Forged("ext-declares-2^40", forged)]


# The specs ---------------------------------------------------------------------------------------------
NPY = FormatSpec(
    "npy",
    frozenset({"tensor"}),
    "jnp.save / jnp.load: exactly one array (jnp.load turns numpy's '<V2' back into bfloat16)",
    "the .npy magic b'\\x93NUMPY'",
    files.is_npy,
    suffix=".npy",
    validate=check_npy_size,
    save=_save_npy,
    load=_load_npy,
    framework_loaders=JNP_LOAD,
    forgeries=npy_forgeries,
    safety_findings=(
        SafetyFinding(
            ("jnp.load allow_pickle=True",),
            ("canary-*",),
            "code-executed",
            UNPICKLES + " (jnp.load is np.load underneath: allow_pickle=True unpickles)",
        ),
        SafetyFinding(
            ("jnp.load *",),
            ("allocation-bomb",),
            "memory-blowup",
            "jnp.load is np.load underneath: it trusts the header's shape and allocates 4 TiB before reading",
        ),
        UNCHECKED_DATA,
        TRAILING_IGNORED,
        *fifo_blocks(JNP_LOAD),
    ),
)
NPY_PICKLE = npy_pickle_spec(
    frozenset({"tensor", "list", "dict", "nested", "mlp"}),
    "d2l's JAX recipe, jnp.save of a list or dict: np.save stacks a list into one array or pickles the "
    "container and its jax.Arrays; jnp.load(allow_pickle=True)",
    _load_npy_pickle,
    save=_save_npy_pickle,
)
SAFETENSORS = safetensors_spec(
    _save_safetensors,
    _load_safetensors,
    "through safetensors.flax; the MLP's params flattened as 'hidden.kernel', ...",
    save_mlp=_save_mlp_safetensors,
    load_mlp=_load_mlp_safetensors,
    framework_loaders=safetensors_load_file("flax"),
)
ORBAX = FormatSpec(
    "orbax",
    frozenset({"list", "dict", "nested", "mlp", "checkpoint"}),
    "Orbax StandardCheckpointer: a directory (OCDBT database of zarr arrays, zstd, and JSON metadata); "
    "save returns before the write ends and serbench waits for it; restored onto a device through an "
    "abstract target with a sharding there",
    "a directory holding _CHECKPOINT_METADATA",
    is_orbax,
    suffix=".orbax",
    directory=True,
    subdirectories=True,
    validate=check_orbax,
    data_file=orbax_data_file,
    save=orbax_save,
    load=_load_orbax,
    save_mlp=_save_mlp_orbax,
    load_mlp=_load_mlp_orbax,
    uses=("orbax-checkpoint", "tensorstore"),
    framework_loaders=ORBAX_LOADERS,
    forgeries=_orbax_forgeries,
    safety_findings=(
        TRAILING_IGNORED,
        SafetyFinding(
            tuple(ORBAX_LOADERS),
            ("fifo-inside-directory",),
            "hang",
            "Orbax checks that the checkpoint is a directory, then opens the files inside it, a FIFO among them, "
            "and blocks until a writer comes. serbench checks every entry is a regular file first",
        ),
        SafetyFinding(
            tuple(ORBAX_LOADERS),
            ("zarray-declares-64GiB",),
            "clear-error",
            "Orbax's own read limit (96 GB by default) lets a 64 GiB array through; here the read fails only "
            "because the safety child's address space is capped. serbench checks the declared sizes first",
        ),
    ),
)
FLAX_MSGPACK = FormatSpec(
    "flax-msgpack",
    frozenset({"tensor", "list", "dict", "nested", "mlp"}),
    "flax.serialization.to_bytes / msgpack_restore: a msgpack map of arrays as extension types",
    "a msgpack map or extension",
    is_flax_msgpack,
    suffix=".msgpack",
    uses=("msgpack",),
    validate=check_msgpack_size,
    save=_save_msgpack,
    load=_load_msgpack,
    save_mlp=_save_mlp_msgpack,
    load_mlp=_load_mlp_msgpack,
    read_arrays=read_msgpack_arrays,
    framework_loaders={"flax.serialization.msgpack_restore": _msgpack_restore},
    forgeries=_msgpack_forgeries,
    safety_findings=(
        UNCHECKED_DATA,
        *fifo_blocks(("flax.serialization.msgpack_restore",)),
    ),
)

LIST_AS_DICT = (
    "flax's state dict stores a list as a map keyed '0', '1', ...; msgpack_restore without a template returns that map"
)
PYTREE_ORDER = (
    "JAX flattens a dict's keys in sorted order (its pytree registry) and Orbax restores the flattened tree: "
    "a dict's insertion order is lost"
)

FINDINGS: tuple[Finding, ...] = (
    NPY_PICKLE_STACKED_LIST,
    SAFETENSORS_KEY_ORDER,
    Finding(
        ("flax-msgpack",),
        ("d2l-list",),
        Expectation("drift", LIST_AS_DICT, ("root: list -> dict with keys ['0', '1']",)),
    ),
    Finding(
        ("flax-msgpack",),
        ("nested",),
        Expectation("drift", LIST_AS_DICT, ("root['history']: list -> dict with keys ['0', '1']",)),
    ),
    Finding(
        ("orbax",),
        ("shape-empty/dict",),
        Expectation(
            "error",
            "Orbax refuses to save an array with zero elements ('Cannot save arrays with zero size')",
            error="ValueError",
        ),
    ),
    Finding(
        ("orbax",),
        ("nested",),
        Expectation("drift", PYTREE_ORDER, ("root: key order changed", "root['model']: key order changed")),
    ),
    Finding(
        ("orbax",),
        ("keys-unicode", "keys-dotted", "keys-slash", "keys-order", "size-64MiB", "vgg16"),
        Expectation("drift", PYTREE_ORDER, ("root: key order changed",)),
    ),
)
"""Where this adapter does not round-trip exactly, and why (see `frameworks.findings`)."""


def _mlp_class(nn: Any) -> type:
    class MLP(nn.Module):
        """d2l's JAX tab: Dense(256) -> relu -> Dense(10)."""

        def setup(self) -> None:
            self.hidden = nn.Dense(256)
            self.output = nn.Dense(10)

        def __call__(self, x: Any) -> Any:
            return self.output(nn.relu(self.hidden(x)))

    return MLP


class JaxAdapter(Adapter):
    name = "jax"
    specs = (NPY, NPY_PICKLE, SAFETENSORS, ORBAX, FLAX_MSGPACK)
    native_mlp_format = "orbax"
    packages = ("jax", "jaxlib", "flax", "orbax-checkpoint", "tensorstore", "optax", "msgpack", "safetensors")
    findings = FINDINGS
    training_recipe = "frameworks.jax_training:JaxTraining"
    scale_recipe = "frameworks.jax_scale:JaxScale"
    thread_variables = (*Adapter.thread_variables, "XLA_FLAGS")

    @classmethod
    def thread_env(cls, threads: str) -> dict[str, str | None]:
        """XLA's CPU client sizes its pools from XLA_FLAGS (a count there is a flag, not the variable's
        value): one thread also turns off Eigen's multi-threading. "default" removes XLA_FLAGS."""
        env = super().thread_env(threads)
        if threads != "default":
            count = int(threads)
            eigen = "false" if count == 1 else "true"
            env["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen={eigen} intra_op_parallelism_threads={count}"
        return env

    def __init__(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import flax.linen
        import flax.serialization
        import jax
        import jax.numpy as jnp
        import ml_dtypes  # noqa: F401  (registers bfloat16 with NumPy)
        import orbax.checkpoint as ocp
        import safetensors.flax

        jax.config.update("jax_enable_x64", True)
        self.jax, self.jnp, self.ocp = jax, jnp, ocp
        self.serialization = flax.serialization
        self.safetensors = safetensors.flax
        self._mlp = _mlp_class(flax.linen)
        self.checked_orbax: tuple[Path, Any] | None = None
        """(path, metadata) of the checkpoint the gate last admitted (`check_orbax`), for its restore."""

    def thread_settings(self) -> dict[str, object]:
        return {
            **super().thread_settings(),
            "jax_enable_x64": bool(self.jax.config.jax_enable_x64),
            "jax backend": self.jax.default_backend(),
        }

    # Devices ------------------------------------------------------------------------------------
    def _gpus(self) -> list[Any]:
        try:
            return list(self.jax.devices("gpu"))
        except RuntimeError:
            return []

    def devices(self) -> tuple[str, ...]:
        return ("cpu", "cuda") if self._gpus() else ("cpu",)

    def device_note(self) -> str:
        return f"jax {self.jax.__version__} has no GPU backend here (jax.devices('gpu') is empty or unavailable)"

    def jax_device(self, device: str) -> Any:
        return self._gpus()[0] if device == "cuda" else self.jax.devices("cpu")[0]

    def sharding(self, device: str) -> Any:
        return self.jax.sharding.SingleDeviceSharding(self.jax_device(device))

    def device_of(self, tensor: Any) -> str:
        devices = getattr(tensor, "devices", None)
        return "cuda" if devices and next(iter(devices())).platform == "gpu" else "cpu"

    def on_device(self, tree: Any, device: str) -> Any:
        """Every leaf a jax.Array on `device` (`jax.device_put`)."""
        target = self.jax_device(device)
        return map_tree(tree, lambda leaf: self.jax.device_put(leaf, target))

    def abstract(self, tree: Any) -> Any:
        """The tree's shapes, dtypes and shardings: the target Orbax restores into."""
        return self.jax.tree.map(
            lambda leaf: self.jax.ShapeDtypeStruct(
                np.shape(leaf), leaf.dtype, sharding=getattr(leaf, "sharding", None) or self.sharding("cpu")
            ),
            tree,
        )

    # Tensors ------------------------------------------------------------------------------------
    def tensor_from_numpy(self, array: np.ndarray) -> Any:
        return self.jnp.asarray(array)

    def tensor_to_numpy(self, tensor: Any) -> np.ndarray:
        return np.asarray(self.jax.device_get(tensor))

    def ready(self, tensor: Any) -> np.ndarray | None:
        """`block_until_ready`, then a zero-copy host view where the array lives on the CPU."""
        if hasattr(tensor, "block_until_ready"):
            tensor.block_until_ready()
            if self.device_of(tensor) == "cuda":
                return None
        return np.asarray(tensor)

    # The d2l MLP as a linen module and its variables ---------------------------------------------
    def new_mlp(self, params: dict[str, np.ndarray]) -> FlaxModel:
        model = FlaxModel(self._mlp(), None)
        self.set_mlp_state(model, params)
        return model

    def mlp_state(self, model: FlaxModel) -> dict[str, np.ndarray]:
        params = model.variables["params"]
        return {
            "hidden.weight": np.ascontiguousarray(np.asarray(params["hidden"]["kernel"]).T),
            "hidden.bias": np.array(params["hidden"]["bias"]),
            "output.weight": np.ascontiguousarray(np.asarray(params["output"]["kernel"]).T),
            "output.bias": np.array(params["output"]["bias"]),
        }

    def set_mlp_state(self, model: FlaxModel, params: dict[str, np.ndarray]) -> None:
        check_mlp_state(params)
        layer = {
            name: {
                "kernel": self.jnp.asarray(params[f"{name}.weight"].T),
                "bias": self.jnp.asarray(params[f"{name}.bias"]),
            }
            for name in ("hidden", "output")
        }
        model.variables = {"params": layer}

    def mlp_forward(self, model: FlaxModel, inputs: np.ndarray) -> np.ndarray:
        return np.asarray(model.module.apply(model.variables, self.jnp.asarray(inputs)))
