"""torch checkpoints beyond `torch.save`'s zip, for the torch adapter: the legacy pickle stream and
torch.distributed.checkpoint (DCP) directories. No torch import at module level: the adapter passes
itself, and torch is `adapter.torch`.

The legacy stream (`torch.save(obj, f, _use_new_zipfile_serialization=False)`, torch's
`_legacy_save`) is pickles one after another: the magic number 0x1950a86a20f9469cfc6c, the protocol
version 1001, the system's facts ({"protocol_version", "little_endian", "type_sizes"}), the object
(each storage a persistent id `("storage", <storage type>, key, location, numel)`), the storage keys,
and then each storage as an 8-byte little-endian element count followed by its bytes. `torch.load`
allocates every storage from the count the object's pickle declares before it reads a byte of it, so
`check_legacy` reads what the pickles declare first: the globals against the allowlist of the zip path,
the system's byte order, every declared storage against the bytes that follow it and against the load
budget. The object's pickle is parsed by an unpickler that gives each allowlisted global as an inert
placeholder and refuses any other, so no code of the file runs.

DCP (`torch.distributed.checkpoint.save`): a directory holding `.metadata`, a pickle of `Metadata`
(every tensor's fully qualified name, shape, dtype and chunks, and where each item lies in the
`*.distcp` files), and the `*.distcp` files (each tensor item a torch.save zip, each other value a
pickle). DCP reads `.metadata` with `pickle.load`, which runs whatever it names: a DCP directory is
read only when trusted. `read_dcp` reads it in this process without a process group, as torch's own
`dcp_to_torch_save` does (`_load_state_dict` with `_EmptyStateDictLoadPlanner`, `no_dist=True`), but
checks what the metadata declares (sizes within the load budget, items inside files of the directory)
before the planner allocates a tensor, and returns the tensors instead of writing a torch.save file.
"""

from __future__ import annotations

import contextlib
import io
import math
import pickle
import pickletools
import re
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from frameworks import gate
from frameworks.errors import FormatMismatchError, ResourceLimitError, UnsafeLoadError, UnsupportedError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
MAX_PICKLE_BYTES = 256 << 20
STORAGE_ITEM_BYTES = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
    "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16,
}  # fmt: skip
"""The storage types a legacy stream names (torch/storage.py's legacy classes) and their element sizes."""
DCP_METADATA = ".metadata"
DCP_NO_DIST_WARNING = "torch.distributed is disabled, unavailable or uninitialized"


class _Inert:
    """What an allowlisted global becomes in `check_legacy`'s unpickler: called, it records its arguments and
    does nothing; it takes whatever pickle does to the object built (items, state, appends)."""

    global_name = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _DeclaredStorages(pickle.Unpickler):
    """Unpickles the legacy stream's object with inert globals, recording each storage its persistent ids declare."""

    def __init__(self, handle: Any, path: Path, allowed: re.Pattern[str]) -> None:
        super().__init__(handle)
        self.path, self.allowed = path, allowed
        self.storages: dict[str, tuple[str, int]] = {}

    def find_class(self, module: str, name: str) -> type:
        full = f"{module} {name}"
        if not self.allowed.fullmatch(full):
            raise UnsafeLoadError(f"refusing {self.path}: its pickle names {full}, beyond what a state_dict needs")
        return type(name, (_Inert,), {"global_name": full})

    def persistent_load(self, pid: Any) -> Any:
        if not (
            isinstance(pid, tuple)
            and len(pid) >= 5
            and pid[0] == "storage"
            and isinstance(pid[1], type)
            and issubclass(pid[1], _Inert)
            and isinstance(pid[2], str)
            and type(pid[4]) is int
            and pid[4] >= 0
        ):
            raise FormatMismatchError(f"{self.path} is not a valid 'torch' file: a persistent id {str(pid)[:80]}")
        kind = pid[1].global_name.removeprefix("torch ")
        if kind not in STORAGE_ITEM_BYTES:
            raise UnsupportedError(f"refusing {self.path}: it holds a {kind}, which serbench does not read")
        declared = self.storages.setdefault(pid[2], (kind, pid[4]))
        if declared != (kind, pid[4]):
            raise FormatMismatchError(f"{self.path} is not a valid 'torch' file: storage {pid[2]} declared twice")
        gate.check_count(self.path, "torch", len(self.storages), "storages")
        return _Inert()


class _NoGlobals(pickle.Unpickler):
    """The stream's small pickles (magic, protocol, system facts, storage keys) name no global."""

    def __init__(self, handle: Any, path: Path) -> None:
        super().__init__(handle)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafeLoadError(f"refusing {self.path}: a pickle of its header names {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise FormatMismatchError(f"{self.path} is not a valid 'torch' file: a persistent id in its header")


def _header_pickle(handle: Any, path: Path, what: str) -> Any:
    try:
        return _NoGlobals(handle, path).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise FormatMismatchError(f"{path} is not a valid 'torch' file: its {what} is not a pickle ({error})") from None


def check_legacy(path: Path, allowed: re.Pattern[str], pickle_globals: Any) -> None:
    """A legacy torch.save stream as torch writes it (see the module docstring), before torch.load reads it.
    `pickle_globals(path, data)` is the zip path's scan of a pickle's globals (its refusals, its messages)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        if _header_pickle(handle, path, "magic number") != LEGACY_MAGIC:
            raise FormatMismatchError(f"{path} is not a valid 'torch' file: its first pickle is not torch's magic")
        protocol = _header_pickle(handle, path, "protocol version")
        if protocol != LEGACY_PROTOCOL:
            raise UnsupportedError(f"{path} is a torch legacy file of protocol {protocol!r}; serbench reads 1001")
        system = _header_pickle(handle, path, "system facts")
        if not isinstance(system, dict) or system.get("little_endian") is not True:
            raise UnsupportedError(
                f"{path} was saved on a big-endian machine or declares no byte order; serbench reads little-endian "
                "torch files only (torch.load would return the bytes unswapped)"
            )
        start = handle.tell()
        try:
            for _ in pickletools.genops(handle):  # to the object's end, parsing without building anything
                pass
        except (ValueError, pickle.UnpicklingError) as error:
            raise FormatMismatchError(
                f"{path} is not a valid 'torch' file: its object is not a pickle ({error})"
            ) from None
        end = handle.tell()
        if end - start > MAX_PICKLE_BYTES:
            raise ResourceLimitError(f"refusing {path}: its object's pickle is {end - start:,} bytes")
        handle.seek(start)
        data = handle.read(end - start)
        pickle_globals(path, data)
        scan = _DeclaredStorages(io.BytesIO(data), path, allowed)
        try:
            scan.load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
            raise FormatMismatchError(f"{path} is not a valid 'torch' file: its object's pickle: {error}") from None
        keys = _header_pickle(handle, path, "list of storages")
        if not isinstance(keys, list) or set(keys) != set(scan.storages) or len(keys) != len(scan.storages):
            raise FormatMismatchError(f"{path} is not a valid 'torch' file: its storage list differs from its object")
        declared = sum(numel * STORAGE_ITEM_BYTES[kind] for kind, numel in scan.storages.values())
        gate.check_declared(path, "torch", declared, "its object's pickle")
        offset = handle.tell()
        for key in keys:
            kind, numel = scan.storages[key]
            handle.seek(offset)
            count = handle.read(8)
            nbytes = numel * STORAGE_ITEM_BYTES[kind]
            if len(count) < 8 or struct.unpack("<q", count)[0] != numel or offset + 8 + nbytes > size:
                raise FormatMismatchError(
                    f"{path} is damaged: storage {key} ({kind} of {numel:,} elements) is not in the file as declared"
                )
            offset += 8 + nbytes


def legacy_bomb(torch: Any, numel: int) -> bytes:
    """A legacy torch.save stream of `{"value": tensor}` whose one FloatStorage declares `numel` elements and
    holds four bytes (the count written after the storage keys says `numel` too): torch.load allocates it."""
    import collections

    class Storage:
        pass

    class Tensor:
        def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
            return (torch._utils._rebuild_tensor_v2, (Storage(), 0, (numel,), (1,), False, collections.OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return ("storage", torch.FloatStorage, "0", "cpu", numel, None) if isinstance(obj, Storage) else None

    body = io.BytesIO()
    Pickler(body, protocol=2).dump({"value": Tensor()})
    head = b"".join(
        pickle.dumps(part, protocol=2)
        for part in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"protocol_version": 1001, "little_endian": True})
    )
    return head + body.getvalue() + pickle.dumps(["0"], protocol=2) + struct.pack("<q", numel) + b"\0" * 4


# torch.distributed.checkpoint ---------------------------------------------------------------------------
@contextlib.contextmanager
def _single_process() -> Iterator[None]:
    """DCP warns that it assumes one process when no process group exists: that is the intent here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=DCP_NO_DIST_WARNING)
        yield


def save_dcp(adapter: Any, state_dict: dict[str, Any], path: Path) -> None:
    """`torch.distributed.checkpoint.save(state_dict, checkpoint_id=path)` in this process, no process group."""
    import torch.distributed.checkpoint as dcp

    with _single_process():
        dcp.save(state_dict, checkpoint_id=str(path), no_dist=True)


def dcp_metadata(path: Path) -> Any:
    """`.metadata` unpickled by DCP's own reader (it runs what the pickle names: the gate required trust), and
    checked to be DCP's `Metadata`."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import Metadata

    try:
        metadata = FileSystemReader(str(path)).read_metadata()
    except Exception as error:  # noqa: BLE001  (a pickle can raise anything; the file is at fault)
        raise FormatMismatchError(
            f"{path} is not a valid DCP checkpoint: its {DCP_METADATA} could not be read "
            f"({type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''})"
        ) from None
    if not isinstance(metadata, Metadata) or not isinstance(metadata.state_dict_metadata, dict):
        raise FormatMismatchError(f"{path} is not a valid DCP checkpoint: its {DCP_METADATA} holds no Metadata")
    return metadata


def check_dcp_metadata(adapter: Any, path: Path, metadata: Any) -> None:
    """What the metadata declares, before a tensor is allocated: numeric tensors within the load budget, at most
    gate.MAX_MEMBERS items, each item inside a file of the directory."""
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata, TensorStorageMetadata

    torch = adapter.torch
    entries = metadata.state_dict_metadata
    gate.check_count(path, "dcp", len(entries), "items")
    total = 0
    for name, declared in entries.items():
        if isinstance(declared, TensorStorageMetadata):
            dtype = declared.properties.dtype
            if not isinstance(dtype, torch.dtype):
                raise FormatMismatchError(f"{path} declares {name!r} with dtype {dtype!r}, not a torch dtype")
            total += math.prod(declared.size) * torch.empty((), dtype=dtype).element_size()
        elif not isinstance(declared, BytesStorageMetadata):
            raise FormatMismatchError(f"{path} declares {name!r} as {type(declared).__name__}, not a tensor or bytes")
    gate.check_declared(path, "dcp", total, "its metadata's tensors")
    storage = metadata.storage_data if isinstance(metadata.storage_data, dict) else None
    if storage is None:
        raise FormatMismatchError(f"{path} is not a valid DCP checkpoint: its metadata says where no item lies")
    gate.check_count(path, "dcp", len(storage), "stored items")
    sizes: dict[str, int] = {}
    for index, where in storage.items():
        relative = getattr(where, "relative_path", None)
        if not isinstance(relative, str) or relative in ("", ".", "..") or Path(relative).name != relative:
            raise FormatMismatchError(
                f"{path}: its metadata puts {getattr(index, 'fqn', index)!r} in {relative!r}, not a file beside it"
            )
        if relative not in sizes:
            file = path / relative
            sizes[relative] = file.stat().st_size if file.is_file() else -1
        offset, length = getattr(where, "offset", None), getattr(where, "length", None)
        if type(offset) is not int or type(length) is not int or offset < 0 or length < 0:
            raise FormatMismatchError(f"{path}: its metadata gives {relative!r} a bad offset or length")
        if offset + length > sizes[relative]:
            raise FormatMismatchError(
                f"{path} is damaged: {getattr(index, 'fqn', index)!r} lies at bytes {offset:,}+{length:,} of "
                f"{relative!r}, which has {max(sizes[relative], 0):,}"
            )


def read_dcp(adapter: Any, path: Path) -> dict[str, Any]:
    """Every value of a DCP directory the gate admitted (trusted), as DCP's own reader rebuilds it from the
    metadata: a nested dict of torch tensors (and the non-tensor values it pickled)."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    metadata = dcp_metadata(path)
    check_dcp_metadata(adapter, path, metadata)

    class CheckedReader(FileSystemReader):
        """DCP's file reader, given the metadata that was read and checked (it would unpickle it again)."""

        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            return metadata

    state: dict[str, Any] = {}
    try:
        with _single_process():
            _load_state_dict(
                state, storage_reader=CheckedReader(str(path)), planner=_EmptyStateDictLoadPlanner(), no_dist=True
            )
    except Exception as error:  # noqa: BLE001  (DCP wraps every failure of a rank in its own exception)
        first = str(error).strip().splitlines()
        raise FormatMismatchError(
            f"{path} could not be read as a DCP checkpoint: {type(error).__name__}: {(first or [''])[0][:240]}"
        ) from None
    return state


def largest_dcp_file(path: Path) -> Path:
    """The checkpoint's largest `.distcp` file (where its tensors' bytes are), for the safety matrix."""
    return max((entry for entry in path.glob("*.distcp") if entry.is_file()), key=lambda entry: entry.stat().st_size)


def _mlp_template(adapter: Any) -> dict[str, Any]:
    """Empty tensors shaped like the MLP's state_dict: what `dcp.load` fills."""
    return {key: adapter.torch.empty_like(value) for key, value in adapter.blank_mlp().state_dict().items()}


def _dcp_load(adapter: Any, path: Path) -> Any:
    """`torch.distributed.checkpoint.load` into the MLP's state_dict, as a user restores a model."""
    import torch.distributed.checkpoint as dcp

    state = _mlp_template(adapter)
    with _single_process():
        dcp.load(state, checkpoint_id=str(path))
    return adapter.to_numpy(state)


def _dcp_to_torch_save(adapter: Any, path: Path) -> Any:
    """`dcp_to_torch_save` into a temporary file, then `torch.load(weights_only=True)` of it: torch's own
    conversion of a DCP directory to one file."""
    import tempfile

    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory() as scratch:
        converted = Path(scratch) / "converted.pt"
        with _single_process():
            dcp_to_torch_save(str(path), str(converted))
        return adapter.to_numpy(adapter.torch.load(converted, weights_only=True, map_location="cpu"))


DCP_LOADERS = {"dcp.load": _dcp_load, "dcp_to_torch_save": _dcp_to_torch_save}
"""torch's own readers of a DCP directory (the safety matrix opens every input with each)."""


class _EvalOnLoad:
    """Pickles as a call of eval on serbench's canary source (never input): unpickling it runs the canary."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (eval, (f"({self.source})(None)",))


def dcp_metadata_canary(adapter: Any, path: Path, source: str, reference: Any) -> str:
    """A valid DCP directory of the MLP whose `.metadata` is a pickle that calls the lambda `source` when read."""
    save_dcp(adapter, _mlp_state(adapter, reference), path)
    (path / DCP_METADATA).write_bytes(pickle.dumps(_EvalOnLoad(source)))
    return "canary-dcp-metadata"


def _mlp_state(adapter: Any, reference: dict[str, Any]) -> dict[str, Any]:
    return adapter.new_mlp(reference).state_dict()


def dcp_forgeries(adapter: Any, directory: Path, valid: Path, reference: Any) -> list[Any]:
    """The valid directory with its metadata declaring the first tensor (2^20, 2^20): 4 TiB of float32."""
    import shutil

    import torch.distributed.checkpoint as dcp  # noqa: F401  (the metadata's classes unpickle from it)

    from frameworks import forgeries

    forged = directory / "metadata-declares-2^40.dcp"
    shutil.copytree(valid, forged)
    with open(valid / DCP_METADATA, "rb") as handle:
        metadata = pickle.load(handle)  # serbench's own valid file, written just before
    name = next(iter(metadata.state_dict_metadata))
    metadata.state_dict_metadata[name].size = adapter.torch.Size([1 << 20, 1 << 20])
    (forged / DCP_METADATA).write_bytes(pickle.dumps(metadata))
    return [forgeries.Forged("metadata-declares-2^40", forged, "damaged")]
