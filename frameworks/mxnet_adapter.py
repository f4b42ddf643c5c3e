"""MXNet 1.9 adapter: d2l's `npx.save` / `npx.load` (the NDArray list file, magic 0x112),
Gluon `save_parameters` for the MLP, and safetensors through NumPy.

MXNet 1.9.1 is the last release: it needs numpy<2 and, on numpy >= 1.24, the alias
`numpy.bool = numpy.bool_` before import. The adapter runs MXNet in NumPy mode (`npx.set_np()`),
as d2l does; legacy `nd` arrays cannot hold 0-d or empty shapes. MXNet has no NumPy bfloat16
interop (it silently turns ml_dtypes.bfloat16 into float32), so bfloat16 is refused.

MXNet's default API (`mx.nd`, Gluon without `npx.set_np()`) writes its NDArray lists with the V2 marker
(legacy shapes), which NumPy mode refuses to load ("not saved in np shape semantics"); such a file (a user's
`net.save_parameters`, `mx.nd.save`, `HybridBlock.export`) is read with `mx.nd.load` with NumPy mode off for
that call, as MXNet's own default reads it, and its arrays then go through NumPy. V3 files (NumPy mode) are
read with `npx.load`. An error MXNet raises on a file is a FormatMismatchError naming the file, never a crash.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frameworks import files, forgeries, gate, reading
from frameworks.base import Adapter, FormatSpec, check_mlp_file, check_mlp_state, safetensors_spec
from frameworks.errors import FormatMismatchError, UnsupportedError
from frameworks.findings import (
    SAFETENSORS_KEY_ORDER,
    TRAILING_IGNORED,
    UNCHECKED_DATA,
    Expectation,
    Finding,
    SafetyFinding,
    fifo_blocks,
)
from frameworks.trees import map_tree

NDARRAY_MAGICS = (0xF993FAC9, 0xF993FACA)
"""NDArray::Save's V2 (legacy shapes) and V3 (NumPy shapes) markers, the ones MXNet 1.9 writes."""
TYPE_FLAGS = {
    0: ("float32", 4), 1: ("float64", 8), 2: ("float16", 2), 3: ("uint8", 1), 4: ("int32", 4), 5: ("int8", 1),
    6: ("int64", 8), 7: ("bool", 1), 8: ("int16", 2), 9: ("uint16", 2), 10: ("uint32", 4), 11: ("uint64", 8),
    12: ("bfloat16", 2),
}  # fmt: skip
MAX_NDIM = 32


@dataclass(frozen=True)
class DeclaredArray:
    """One array as an NDArray-list file declares it (read without MXNet)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    legacy: bool = False
    """Saved with the V2 marker (MXNet's default, legacy shape semantics), not in NumPy mode's V3."""


class _Reader:
    """Reads headers and seeks over data, so checking a large file reads a few bytes per array."""

    def __init__(self, path: Path, handle: Any) -> None:
        self.path, self.handle, self.size = path, handle, os.fstat(handle.fileno()).st_size

    def take(self, fmt: str, what: str) -> tuple[int, ...]:
        size = struct.calcsize(fmt)
        data = self.handle.read(size)
        if len(data) < size:
            raise self.damaged(f"it ends inside {what}")
        return struct.unpack(fmt, data)

    def skip(self, nbytes: int, what: str) -> None:
        remaining = self.size - self.handle.tell()
        if nbytes > remaining:
            raise self.damaged(f"{what} declares {nbytes:,} bytes, only {remaining:,} remain")
        self.handle.seek(nbytes, os.SEEK_CUR)

    def damaged(self, what: str) -> FormatMismatchError:
        return FormatMismatchError(f"{self.path} is not a valid MXNet NDArray-list file: {what}")


def read_ndarray_list(path: Path) -> list[DeclaredArray]:
    """Parse an `npx.save` / `save_parameters` file's headers without MXNet: counts, dims, dtypes and
    names are checked against the bytes that follow before MXNet (which trusts them) allocates."""
    with open(path, "rb") as handle:
        return _read_ndarray_list(_Reader(path, handle))


def _read_ndarray_list(reader: _Reader) -> list[DeclaredArray]:
    path = reader.path
    magic, _reserved, count = reader.take("<QQQ", "the list header")
    if magic != files.MXNET_LIST_MAGIC:
        raise reader.damaged(f"magic {magic:#x}, expected {files.MXNET_LIST_MAGIC:#x}")
    gate.check_count(path, "mx-ndarray", count, "arrays")
    arrays: list[tuple[str, tuple[int, ...], bool]] = []
    total = 0
    for index in range(count):
        what = f"array {index}"
        (array_magic, storage) = reader.take("<Ii", what)
        if array_magic not in NDARRAY_MAGICS:
            raise reader.damaged(f"{what} has marker {array_magic:#x}; MXNet 1.9 writes {NDARRAY_MAGICS[1]:#x}")
        if storage != 0:
            raise UnsupportedError(f"{path}: {what} is a sparse array (storage type {storage}); serbench reads dense")
        (ndim,) = reader.take("<i", what)
        legacy = array_magic == NDARRAY_MAGICS[0]
        if ndim == -1 or (ndim == 0 and legacy):
            arrays.append(("none", (), legacy))
            continue
        if not 0 <= ndim <= MAX_NDIM:
            raise reader.damaged(f"{what} declares {ndim} dimensions")
        shape = reader.take(f"<{ndim}q", what)
        if any(size < 0 for size in shape):
            raise reader.damaged(f"{what} declares shape {shape}")
        _device_type, _device_id, type_flag = reader.take("<iii", what)
        if type_flag not in TYPE_FLAGS:
            raise reader.damaged(f"{what} declares unknown dtype flag {type_flag}")
        dtype, item_bytes = TYPE_FLAGS[type_flag]
        nbytes = math.prod(shape) * item_bytes
        reader.skip(nbytes, f"{what} ({dtype}{list(shape)})")
        total += nbytes
        arrays.append((dtype, shape, legacy))
    gate.check_declared(path, "mx-ndarray", total, "its arrays")
    (name_count,) = reader.take("<Q", "the name count")
    if name_count not in (0, count):
        raise reader.damaged(f"it declares {count} arrays but {name_count:,} names")
    names = []
    for index in range(name_count):
        (length,) = reader.take("<Q", f"name {index}")
        if length > reader.size - reader.handle.tell():
            raise reader.damaged(f"name {index} declares {length:,} bytes")
        names.append(reader.handle.read(length).decode("utf-8", "replace"))
    labels = names or [str(index) for index in range(count)]
    if len({legacy for _, _, legacy in arrays}) > 1:
        raise reader.damaged("it mixes V2 (legacy) and V3 (NumPy mode) arrays, which MXNet never writes together")
    return [
        DeclaredArray(name, dtype, shape, legacy) for name, (dtype, shape, legacy) in zip(labels, arrays, strict=True)
    ]


def check_ndarray_list(path: Path) -> None:
    read_ndarray_list(path)


def is_legacy(declared: list[DeclaredArray]) -> bool:
    """Whether a checked NDArray list was written by MXNet's legacy (non-NumPy) API: its V2 marker."""
    return bool(declared) and declared[0].legacy


def _mxnet_error(adapter: MXNetAdapter, path: Path, error: Exception) -> FormatMismatchError:
    """MXNet's error (a C++ traceback in its message) as one line naming the file."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and not line.startswith(("  ", "["))]
    reason = next((line for line in reversed(lines) if "Traceback" not in line), type(error).__name__)
    return FormatMismatchError(f"{path} could not be read by MXNet {adapter.mx.__version__}: {reason[:300]}")


def _load_arrays(adapter: MXNetAdapter, path: Path) -> Any:
    """The file's arrays as MXNet loads them: `npx.load` (NumPy mode, V3 files), or for a V2 file `mx.nd.load`
    with NumPy mode off for that call, its arrays as NumPy (legacy NDArrays do not mix with NumPy mode's)."""
    try:
        if not is_legacy(read_ndarray_list(path)):
            return adapter.npx.load(str(path))
        reading.note("MXNet's legacy (V2) arrays, read with mx.nd.load outside NumPy mode")
        with adapter.mx.util.np_array(False), adapter.mx.util.np_shape(False):
            loaded = adapter.mx.nd.load(str(path))
            if isinstance(loaded, dict):
                return {key: value.asnumpy() for key, value in loaded.items()}
            return [value.asnumpy() for value in loaded]
    except adapter.mx.base.MXNetError as error:
        raise _mxnet_error(adapter, path, error) from None


def _save_ndarray(adapter: MXNetAdapter, tree: Any, path: Path) -> None:
    adapter.npx.save(str(path), tree)


def _load_ndarray(adapter: MXNetAdapter, path: Path, device: str) -> Any:
    context = adapter.context(device)

    def on_device(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return adapter.mx.np.array(value, dtype=value.dtype, ctx=context)
        return value.as_in_ctx(context)

    loaded = _load_arrays(adapter, path)
    if isinstance(loaded, dict):
        return {key: on_device(value) for key, value in loaded.items()}
    return [on_device(value) for value in loaded]


def _save_parameters(adapter: MXNetAdapter, model: Any, path: Path) -> None:
    model.save_parameters(str(path))


def _load_parameters(adapter: MXNetAdapter, path: Path, clone: Any) -> None:
    declared = read_ndarray_list(path)
    check_mlp_file(path, "gluon-params", {array.name: array for array in declared})
    if is_legacy(declared):  # NumPy mode's load_parameters refuses a V2 file: set what mx.nd.load read
        adapter.set_mlp_state(clone, _load_arrays(adapter, path))
        return
    try:
        clone.load_parameters(str(path), ctx=adapter.mx.cpu())
    except adapter.mx.base.MXNetError as error:
        raise _mxnet_error(adapter, path, error) from None


def _read_parameters(adapter: MXNetAdapter, path: Path) -> Any:
    """Any Gluon params file (a user's model, not only the MLP) as {structural name: array}, after the
    NDArray-list header check."""
    check_ndarray_list(path)
    return map_tree(
        _load_arrays(adapter, path), lambda value: value if isinstance(value, np.ndarray) else value.asnumpy()
    )


def _save_safetensors(adapter: MXNetAdapter, tree: dict[str, Any], path: Path) -> None:
    arrays = {key: np.require(value, requirements="C") for key, value in adapter.to_numpy(tree).items()}
    adapter.safetensors.save_file(arrays, str(path))


def _load_safetensors(adapter: MXNetAdapter, path: Path, device: str) -> dict[str, Any]:
    context = adapter.context(device)
    arrays = adapter.safetensors.load_file(str(path))
    return {key: adapter.mx.np.array(value, dtype=value.dtype, ctx=context) for key, value in arrays.items()}


def _npx_load(adapter: MXNetAdapter, path: Path) -> Any:
    return adapter.to_numpy(adapter.npx.load(str(path)))


def _block_load_parameters(adapter: MXNetAdapter, path: Path) -> Any:
    clone = adapter.blank_mlp()
    clone.load_parameters(str(path))
    return adapter.mlp_state(clone)


def _ndarray_list_forgeries(directory: Path, suffix: str, reference: Any) -> list[forgeries.Forged]:
    """NDArray lists declaring 2^40 arrays, a 3 GiB key, or dims whose product wraps to 0 in 64 bits."""
    arrays = {key: np.asarray(value, np.float32) for key, value in reference.items()}
    count, name, wrap = (directory / f"{stem}{suffix}" for stem in ("count-2^40", "name-3GiB", "dims-wrap"))
    count.write_bytes(forgeries.ndarray_list(arrays, count=1 << 40))
    name.write_bytes(forgeries.ndarray_list(arrays, name_length=3 << 30))
    wrapped = bytearray(forgeries.ndarray_list({"x": np.zeros((2, 2), np.float32)}))
    struct.pack_into("<qq", wrapped, 24 + 12, 1 << 62, 1 << 2)
    wrap.write_bytes(bytes(wrapped))
    return [
        forgeries.Forged("count-2^40", count),
        forgeries.Forged("name-3GiB", name),
        forgeries.Forged("dims-wrap", wrap),
    ]


def _allocation_bomb(path: Path) -> list[forgeries.Forged]:
    """An NDArray-list file (magic 0x112, V2 arrays) holding one float32 array whose shape claims 2^40
    elements and no data."""
    array = struct.pack("<I", 0xF993FAC9)  # NDARRAY_V2_MAGIC
    array += struct.pack("<i", 0)  # storage type: dense
    array += struct.pack("<I", 2) + struct.pack("<qq", 1 << 20, 1 << 20)  # ndim, shape
    array += struct.pack("<ii", 1, 0)  # context: cpu(0)
    array += struct.pack("<i", 0)  # dtype float32
    path.write_bytes(struct.pack("<QQ", 0x112, 0) + struct.pack("<Q", 1) + array + b"\x00" * 64 + struct.pack("<Q", 0))
    return [forgeries.Forged("allocation-bomb", path, "damaged")]


def _mx_ndarray_forgeries(adapter: MXNetAdapter, directory: Path, valid: Path, reference: Any) -> list[Any]:
    return [
        *_allocation_bomb(directory / "allocation-bomb.ndarray"),
        *_ndarray_list_forgeries(directory, ".ndarray", reference),
    ]


def _gluon_params_forgeries(adapter: MXNetAdapter, directory: Path, valid: Path, reference: Any) -> list[Any]:
    """The NDArray-list forgeries, and the MLP's parameters stored as int32 bits."""
    int32_bits = directory / "mlp-int32-bits.params"
    int32_bits.write_bytes(
        forgeries.ndarray_list({key: np.asarray(value, np.float32).view(np.int32) for key, value in reference.items()})
    )
    return [*_ndarray_list_forgeries(directory, ".params", reference), forgeries.Forged("mlp-int32-bits", int32_bits)]


COUNT_RESERVED = SafetyFinding(
    ("npx.load", "Block.load_parameters"),
    ("count-2^40",),
    "memory-blowup",
    "MXNet reserves space for the array count the file declares before reading any array (std::bad_alloc)",
)


MX_NDARRAY = FormatSpec(
    "mx-ndarray",
    frozenset({"tensor", "list", "dict", "mlp"}),
    "npx.save: one NDArray, a flat list or a flat dict of str -> NDArray",
    "the MXNet NDArray-list magic 0x112",
    files.is_mxnet_ndarray_list,
    suffix=".ndarray",
    validate=check_ndarray_list,
    save=_save_ndarray,
    load=_load_ndarray,
    framework_loaders={"npx.load": _npx_load},
    forgeries=_mx_ndarray_forgeries,
    safety_findings=(
        SafetyFinding(
            ("npx.load",),
            ("flipped-header-byte",),
            "memory-blowup",
            "MXNet trusts the shape in the file's array header; one flipped byte asks for a huge allocation "
            "(std::bad_alloc), contained here by the address-space cap; serbench's header check refuses it",
        ),
        TRAILING_IGNORED,
        *fifo_blocks(("npx.load",)),
        COUNT_RESERVED,
        SafetyFinding(
            ("npx.load",),
            ("dims-wrap",),
            "silent-wrong-data",
            "MXNet multiplies the declared dims in 64-bit arithmetic: 2^62 x 4 wraps to 0 elements and the array "
            "loads empty; serbench multiplies without overflow and compares with the bytes that follow",
        ),
    ),
)
GLUON_PARAMS = FormatSpec(
    "gluon-params",
    frozenset({"mlp", "checkpoint"}),
    "Gluon Block.save_parameters: a Block's parameters by structural name",
    "the MXNet NDArray-list magic 0x112",
    files.is_mxnet_ndarray_list,
    suffix=".params",
    validate=check_ndarray_list,
    save_mlp=_save_parameters,
    load_mlp=_load_parameters,
    read_arrays=_read_parameters,
    framework_loaders={"Block.load_parameters": _block_load_parameters},
    forgeries=_gluon_params_forgeries,
    safety_findings=(UNCHECKED_DATA, TRAILING_IGNORED, *fifo_blocks(("Block.*",)), COUNT_RESERVED),
)
GLUON_CHECKPOINT = FormatSpec(
    "gluon-checkpoint",
    frozenset({"checkpoint"}),
    "a directory of save_parameters (model.params), Trainer.save_states (trainer.states) and progress.json",
    "a directory holding model.params, trainer.states and progress.json",
    lambda path: all((path / name).is_file() for name in ("model.params", "trainer.states", "progress.json")),
    executes_code=True,
    directory=True,
)
"""The training checkpoint on disk. Trainer.save_states pickles the optimizer's updater, and
load_states unpickles it: the checkpoint counts as pickle, so restoring it needs trusted=True."""
SAFETENSORS = safetensors_spec(
    _save_safetensors,
    _load_safetensors,
    "through NumPy",
    dtypes=frozenset({"F64", "F32", "F16", "I64", "I32", "I16", "I8", "U8", "BOOL"}),
)


def _mlp_class(nn: Any, npx: Any) -> type:
    class MLP(nn.Block):
        """d2l 5.5: Dense(256, relu) -> Dense(10), shapes given so no deferred init."""

        def __init__(self) -> None:
            super().__init__()
            self.hidden = nn.Dense(256, activation="relu", in_units=20)
            self.output = nn.Dense(10, in_units=256)

        def forward(self, x: Any) -> Any:
            return self.output(self.hidden(x))

    return MLP


FINDINGS = (
    Finding(
        ("mx-ndarray", "gluon-params", "safetensors"),
        ("dtype-bfloat16/*",),
        Expectation(
            "unsupported",
            "MXNet has no NumPy bfloat16 interop: mx.np.array silently turns "
            "ml_dtypes.bfloat16 into float32, so the adapter refuses it",
        ),
    ),
    SAFETENSORS_KEY_ORDER,
    Finding(
        ("mx-ndarray",),
        ("d2l-tensor", "*/tensor"),
        Expectation(
            "drift",
            "npx.save stores a list of arrays, so a single array comes back as a "
            "one-element list (the d2l chapter prints `[array([0., 1., 2., 3.])]`)",
            ("root: tensor -> list of 1",),
        ),
    ),
)
"""Where this adapter does not round-trip exactly, and why (see `frameworks.findings`)."""


class MXNetAdapter(Adapter):
    name = "mxnet"
    specs = (MX_NDARRAY, GLUON_PARAMS, SAFETENSORS)
    native_mlp_format = "gluon-params"
    packages = ("mxnet", "numpy", "safetensors", "ml-dtypes")
    environment = "mxnet"  # MXNet 1.9.1 needs numpy<2: its own environment (frameworks/environments.py)
    findings = FINDINGS
    training_recipe = "frameworks.mxnet_training:GluonTraining"
    # the engine's CPU workers and its OpenMP pool; MXNet has no getter, so the variables are the record
    thread_variables = (*Adapter.thread_variables, "MXNET_CPU_WORKER_NTHREADS")

    def __init__(self) -> None:
        with warnings.catch_warnings():  # numpy 1.26 warns that np.bool will come back; MXNet 1.9 needs it now
            warnings.simplefilter("ignore", FutureWarning)
            missing = not hasattr(np, "bool")
        if missing:
            np.bool = np.bool_  # type: ignore[attr-defined]
        import ml_dtypes
        import mxnet
        import safetensors.numpy
        from mxnet import npx
        from mxnet.gluon import nn

        npx.set_np()
        self.mx = mxnet
        self.npx = npx
        self._bfloat16 = ml_dtypes.bfloat16
        self.safetensors = safetensors.numpy
        self._mlp = _mlp_class(nn, npx)

    def devices(self) -> tuple[str, ...]:
        try:
            gpus = self.mx.context.num_gpus()
        except self.mx.base.MXNetError:
            gpus = 0
        return ("cpu", "cuda") if gpus else ("cpu",)

    def device_note(self) -> str:
        return f"mxnet {self.mx.__version__} sees no GPU (the PyPI wheel is a CPU build)"

    def context(self, device: str) -> Any:
        return self.mx.gpu(0) if device == "cuda" else self.mx.cpu()

    def device_of(self, tensor: Any) -> str:
        return "cuda" if tensor.ctx.device_type == "gpu" else "cpu"

    def tensor_from_numpy(self, array: np.ndarray) -> Any:
        if array.dtype == self._bfloat16:
            raise UnsupportedError("mxnet cannot hold a bfloat16 NumPy array: it would silently become float32")
        return self.mx.np.array(array, dtype=array.dtype)

    def ready(self, tensor: Any) -> np.ndarray | None:
        """MXNet's engine is asynchronous: wait for the data. `asnumpy` would copy, so no view."""
        tensor.wait_to_read()
        return None

    def tensor_to_numpy(self, tensor: Any) -> np.ndarray:
        return tensor.asnumpy()

    # The d2l MLP as a Gluon Block -----------------------------------------------------------
    def new_mlp(self, params: dict[str, np.ndarray]) -> Any:
        model = self._mlp()
        model.initialize()
        self.set_mlp_state(model, params)
        return model

    def mlp_state(self, model: Any) -> dict[str, np.ndarray]:
        return {
            "hidden.weight": model.hidden.weight.data().asnumpy(),
            "hidden.bias": model.hidden.bias.data().asnumpy(),
            "output.weight": model.output.weight.data().asnumpy(),
            "output.bias": model.output.bias.data().asnumpy(),
        }

    def set_mlp_state(self, model: Any, params: dict[str, np.ndarray]) -> None:
        check_mlp_state(params)
        for layer_name in ("hidden", "output"):
            layer = getattr(model, layer_name)
            layer.weight.set_data(self.mx.np.array(params[f"{layer_name}.weight"], dtype=np.float32))
            layer.bias.set_data(self.mx.np.array(params[f"{layer_name}.bias"], dtype=np.float32))

    def mlp_forward(self, model: Any, inputs: np.ndarray) -> np.ndarray:
        return model(self.mx.np.array(inputs, dtype=inputs.dtype)).asnumpy()
