"""PyTorch adapter: `torch.save` (pickle in a zip, loaded with `weights_only=True`; a user's legacy
non-zip stream is read too), safetensors through `safetensors.torch`, and torch.distributed.checkpoint
(`dcp`, a directory, trusted only) for the MLP and for reading a user's checkpoint. The MLP is d2l's
`nn.Module`; loads go through `load_state_dict` and `eval()`, as the seeds teach.

`from_numpy` makes one tensor of each NumPy array object, however many names it has: a user's checkpoint
whose tied weights are one array (`bench.checkpoints`) is saved by torch.save as one storage again.
"""

from __future__ import annotations

import argparse
import functools
import pickle
import pickletools
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from frameworks import files, forgeries, gate, torch_files, torch_scale
from frameworks.base import (
    SAFETENSORS_DTYPES,
    Adapter,
    FormatSpec,
    check_mlp_file,
    check_mlp_state,
    safetensors_load_file,
    safetensors_spec,
)
from frameworks.errors import FormatMismatchError, ResourceLimitError, UnsafeLoadError, UnsupportedError
from frameworks.findings import SAFETENSORS_KEY_ORDER, TRAILING, TRAILING_IGNORED, UNPICKLES, SafetyFinding, fifo_blocks
from frameworks.trees import count_nodes, leaves, map_tree

FLOAT8 = ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
"""torch's float8 dtypes; ml_dtypes names them alike, so they reach NumPy bit for bit."""
MAX_PICKLE_BYTES = 256 << 20
TENSOR_GLOBALS = re.compile(
    r"collections OrderedDict|torch\._utils _rebuild_tensor_v[23]|torch\._utils _rebuild_parameter"
    r"|torch \w+Storage|torch\.storage UntypedStorage"
    r"|torch float8_e4m3fn|torch float8_e5m2|torch float8_e4m3fnuz|torch float8_e5m2fnuz"
    r"|argparse Namespace"
)
"""What the data.pkl of a `torch.save` of tensors, containers, state_dicts and optimizer states names
(protocol 2, the default; a float8 storage names its dtype, a plain object), and `argparse.Namespace`, which
timm's training checkpoints hold (train.py's arguments: a bag of attributes, rebuilt without running a
method of the file; `bench.checkpoints` drops it by name). torch's own weights_only allowlist is wider: it
admits `builtins.bytearray` (a 407-byte pickle took 3 GiB) and sparse tensors (an out-of-bounds COO tensor
segfaults when used), so serbench checks the pickle's globals against this list first."""
SAFE_GLOBALS = (argparse.Namespace,)
"""Globals of TENSOR_GLOBALS that torch's weights_only allowlist lacks: admitted for serbench's reads only."""
WHOLE_MODEL_ADVICE = (
    "serbench reads state_dicts and containers of tensors, trusted or not. To benchmark its tensors, load it in "
    "Python if you trust it (torch.load(path, weights_only=False), or serbench's TorchAdapter.load_whole_model), "
    "torch.save its state_dict (or a dict of the tensors) to a new file, and bench that file"
)
"""What to do with a file whose pickle holds objects beyond tensors (a whole model): it says no flag, because
no flag of the command line reads such a file, and whoever passed --trusted already did."""
PICKLE_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"}


def _pickle_globals(path: Path, pickle_bytes: bytes, what: str = "data.pkl") -> set[str]:
    """The 'module name' of every global the pickle names, without running it."""
    names = set()
    try:
        for opcode, argument, _position in pickletools.genops(pickle_bytes):
            if opcode.name == "GLOBAL":
                names.add(str(argument))
            elif opcode.name in ("STACK_GLOBAL", "INST", "OBJ"):
                raise UnsafeLoadError(
                    f"refusing {path}: its {what} uses {opcode.name} (a pickle protocol torch.save does not write by "
                    f"default), which serbench does not check; re-save it with torch.save, or load it with torch.load "
                    f"yourself if you trust it"
                )
    except (ValueError, pickle.UnpicklingError) as error:
        raise FormatMismatchError(f"{path} is not a valid 'torch' file: {what} is not a pickle ({error})") from None
    return names


def check_torch_zip(path: Path, scan_pickle: bool = True) -> None:
    """A torch.save zip as torch writes it: stored (never compressed) records, one data.pkl naming only
    tensor rebuilders and containers, little-endian storages, sizes within the budget."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            gate.check_count(path, "torch", len(members), "zip records")
            compressed = [info.filename for info in members if info.compress_type != zipfile.ZIP_STORED]
            if compressed:
                raise FormatMismatchError(
                    f"{path} is not a torch.save file as torch writes it: records {compressed[:3]} are compressed "
                    f"(torch.save stores records uncompressed; a compressed record can inflate without bound)"
                )
            gate.check_declared(path, "torch", sum(info.file_size for info in members), "its records")
            by_name = {info.filename.split("/", 1)[-1]: info for info in members}
            byteorder = by_name.get("byteorder")
            if byteorder is not None and archive.read(byteorder).strip() != b"little":
                raise UnsupportedError(
                    f"{path} stores its tensors {archive.read(byteorder)[:16]!r}-endian; serbench reads little-endian "
                    f"torch files only (torch.load would return the bytes unswapped)"
                )
            if not scan_pickle:
                return
            pickle_info = by_name["data.pkl"]
            if pickle_info.file_size > MAX_PICKLE_BYTES:
                raise ResourceLimitError(f"refusing {path}: its data.pkl declares {pickle_info.file_size:,} bytes")
            pickle_bytes = archive.read(pickle_info)
    except zipfile.BadZipFile as error:
        raise FormatMismatchError(f"{path} is not a valid 'torch' file: {error}") from None
    _checked_globals(path, pickle_bytes)


def check_torch_file(path: Path) -> None:
    """A torch.save zip (`check_torch_zip`) or a legacy torch.save stream (`torch_files.check_legacy`), each
    checked against the same allowlist of globals before torch.load reads it."""
    if files.is_torch_legacy(path):
        torch_files.check_legacy(path, TENSOR_GLOBALS, functools.partial(_checked_globals, what="object's pickle"))
    else:
        check_torch_zip(path)


def _checked_globals(path: Path, pickle_bytes: bytes, what: str = "data.pkl") -> None:
    """UnsafeLoadError unless the pickle names only TENSOR_GLOBALS (and uses no opcode serbench does not check)."""
    foreign = sorted(name for name in _pickle_globals(path, pickle_bytes, what) if not TENSOR_GLOBALS.fullmatch(name))
    if foreign:
        raise UnsafeLoadError(
            f"refusing {path}: its pickle names {', '.join(foreign[:5])}, beyond the tensors, storages and "
            f"containers a state_dict needs (a whole model, or a crafted file); {WHOLE_MODEL_ADVICE}"
        )


def is_torch_file(path: Path) -> bool:
    return files.is_torch_zip(path) or files.is_torch_legacy(path)


def _save_torch(adapter: TorchAdapter, tree: Any, path: Path) -> None:
    adapter.save_to_file(tree, path)


def _load_torch(adapter: TorchAdapter, path: Path, device: str) -> Any:
    return adapter.read_torch_file(path, device)


def _save_state_dict_torch(adapter: TorchAdapter, model: Any, path: Path) -> None:
    adapter.save_to_file(model.state_dict(), path)


SHARED_MEMORY = "share memory"
"""What safetensors.torch.save_file says when tensors share a storage (it refuses to save them)."""


def _save_safetensors(adapter: TorchAdapter, tree: dict[str, Any], path: Path) -> None:
    """`save_file`; tensors that share a storage (a user's tied weights, kept by `from_numpy`) are refused by it,
    which is an `unsupported` outcome: its `save_model` would drop all but one name of each group (the model
    ties them again when it loads), which is a different file than the one asked for, and copying them would
    time a save that no user of save_file makes."""
    try:
        adapter.safetensors.save_file({key: value.contiguous() for key, value in tree.items()}, str(path))
    except RuntimeError as error:
        if SHARED_MEMORY not in str(error):
            raise
        groups = [sorted(names) for names in _storage_groups(adapter, tree).values() if len(names) > 1]
        raise UnsupportedError(
            f"safetensors.torch.save_file refuses tensors that share one storage ({sorted(groups)[:3]}): "
            "safetensors stores each name's bytes apart and will not store one storage twice; its save_model "
            "keeps one name of each group and needs the model to tie them again on load"
        ) from None


def _storage_groups(adapter: TorchAdapter, tree: dict[str, Any]) -> dict[tuple[int, int], list[str]]:
    groups: dict[tuple[int, int], list[str]] = {}
    for key, value in tree.items():
        storage = value.untyped_storage()
        groups.setdefault((storage.data_ptr(), storage.nbytes()), []).append(key)
    return groups


def _load_safetensors(adapter: TorchAdapter, path: Path, device: str) -> dict[str, Any]:
    return adapter.safetensors.load_file(str(path), device=device)


def _save_state_dict_safetensors(adapter: TorchAdapter, model: Any, path: Path) -> None:
    adapter.safetensors.save_file(model.state_dict(), str(path))


def _load_state_dict(load: Any, format: str) -> Any:
    """A format's MLP restore: its state dict, checked, into the clone with `load_state_dict`."""

    def restore(adapter: TorchAdapter, path: Path, clone: Any) -> None:
        state = load(adapter, path, "cpu")
        check_mlp_file(path, format, state)
        clone.load_state_dict(state)
        clone.eval()

    return restore


def _torch_forgeries(adapter: TorchAdapter, directory: Path, valid: Path, reference: Any) -> list[forgeries.Forged]:
    """A 39-byte pickle that torch's weights_only allowlist lets ask for 8 GiB, a sparse COO tensor whose
    indices lie outside its size (saved with torch's invariant checks off), and a legacy (non-zip) stream whose
    one storage declares 2^40 float32 elements and holds four bytes."""
    torch = adapter.torch
    bytearray_bomb = directory / "pickle-bytearray-8GiB.pt"
    bytearray_bomb.write_bytes(forgeries.torch_zip(forgeries.BYTEARRAY_8GIB_PICKLE))
    sparse = directory / "sparse-out-of-bounds.pt"
    with torch.sparse.check_sparse_tensor_invariants(enable=False):
        torch.save({"value": torch.sparse_coo_tensor([[0, 1 << 30]], [1.0, 2.0], (4,))}, sparse)
    legacy = directory / "legacy-declares-2^40.pt"
    legacy.write_bytes(torch_files.legacy_bomb(torch, 1 << 40))
    return [
        forgeries.Forged("pickle-bytearray-8GiB", bytearray_bomb),
        forgeries.Forged("sparse-out-of-bounds", sparse),
        forgeries.Forged("legacy-declares-2^40", legacy, "damaged"),
    ]


def _torch_load(weights_only: bool, mmap: bool = False) -> Any:
    def read(adapter: TorchAdapter, path: Path) -> Any:
        loaded = adapter.torch.load(path, weights_only=weights_only, map_location="cpu", mmap=mmap)
        # a sparse tensor becomes dense here, as a user's code would make it: that is where a forged one crashes
        return adapter.to_numpy(map_tree(loaded, lambda t: t.to_dense() if getattr(t, "is_sparse", False) else t))

    return read


TORCH_LOAD = {
    "torch.load weights_only=True": _torch_load(True),
    "torch.load weights_only=False": _torch_load(False),
    "torch.load mmap=True weights_only=True": _torch_load(True, mmap=True),
}
"""torch's own reader under both settings of its safety flag, and mapping the file as users of large checkpoints
do (`frameworks.torch_scale`); the safety matrix opens every input with each."""

TORCH = FormatSpec(
    "torch",
    frozenset({"tensor", "list", "dict", "nested", "mlp", "checkpoint"}),
    "torch.save: a zip holding a pickle (data.pkl) and raw storages; loaded with weights_only=True (a legacy "
    "_use_new_zipfile_serialization=False stream of pickles is read too)",
    "a zip archive holding data.pkl, or torch's legacy pickle stream (magic number 0x1950a86a20f9469cfc6c)",
    is_torch_file,
    suffix=".pt",
    unpickles=True,
    validate=check_torch_file,
    save=_save_torch,
    load=_load_torch,
    save_mlp=_save_state_dict_torch,
    load_mlp=_load_state_dict(_load_torch, "torch"),
    framework_loaders=TORCH_LOAD,
    forgeries=_torch_forgeries,
    safety_findings=(
        SafetyFinding(
            ("torch.load weights_only=False",),
            ("canary-*",),
            "code-executed",
            UNPICKLES + " (weights_only=False is the full unpickler; the seeds warn about it)",
        ),
        SafetyFinding(
            ("*",),
            ("flipped-data-byte",),
            "silent-wrong-data",
            "the zip records carry CRC-32s, but torch.load does not check them",
        ),
        SafetyFinding(
            ("*",),
            ("flipped-header-byte",),
            "loaded-exact",
            "the flipped byte is in a zip local-file header, which torch's reader skips in favour of the central "
            "directory",
        ),
        TRAILING_IGNORED,
        *fifo_blocks(TORCH_LOAD),
        SafetyFinding(
            ("torch.load *",),
            ("sparse-out-of-bounds",),
            "silent-wrong-data",
            "torch.load(weights_only=True) accepts a sparse COO tensor whose indices lie outside its size, unchecked "
            "(to_dense returned here without an error; used with dense tensors such a tensor can write out of "
            "bounds). serbench refuses the sparse rebuild function in the pickle",
        ),
        SafetyFinding(
            ("torch.load weights_only=*",),
            ("legacy-declares-2^40",),
            "clear-error",
            "torch.load allocates every storage a legacy stream declares before reading a byte of it (4 TiB here); "
            "the load fails only because the safety child's address space is capped. serbench compares the "
            "declared storages with the bytes that follow and the load budget first",
        ),
        SafetyFinding(
            ("torch.load *",),
            ("pickle-bytearray-8GiB",),
            "memory-blowup",
            "torch's weights_only allowlist includes builtins.bytearray, so a 39-byte pickle asks for 8 GiB; "
            "serbench admits only the globals a state_dict needs",
        ),
    ),
)
TORCH_SAFETENSORS_DTYPES = SAFETENSORS_DTYPES | {"F8_E4M3", "F8_E4M3FNUZ", "F8_E5M2", "F8_E5M2FNUZ", "C64"}
SAFETENSORS = safetensors_spec(
    _save_safetensors,
    _load_safetensors,
    "load_file maps the file, reading nothing until touched",
    lazy=True,
    dtypes=TORCH_SAFETENSORS_DTYPES,
    save_mlp=_save_state_dict_safetensors,
    load_mlp=_load_state_dict(_load_safetensors, "safetensors"),
    framework_loaders={
        **safetensors_load_file("torch"),
        **torch_scale.safety_readers("fastsafetensors", "runai-model-streamer"),
    },
    findings=(
        SafetyFinding(
            ("fastsafetensors",),
            ("garbage-appended",),
            "loaded-exact",
            TRAILING + " (fastsafetensors does not compare the file's size with its header, as safetensors and the "
            "Run:ai streamer do)",
        ),
    ),
)


def _save_mlp_dcp(adapter: TorchAdapter, model: Any, path: Path) -> None:
    torch_files.save_dcp(adapter, model.state_dict(), path)


def _load_mlp_dcp(adapter: TorchAdapter, path: Path, clone: Any) -> None:
    state = torch_files.read_dcp(adapter, path)
    check_mlp_file(path, "dcp", state)
    clone.load_state_dict(state)
    clone.eval()


def _read_dcp(adapter: TorchAdapter, path: Path) -> Any:
    return map_tree(torch_files.read_dcp(adapter, path), adapter._leaf_to_numpy)


DCP_LOADERS = tuple(torch_files.DCP_LOADERS)
DCP = FormatSpec(
    "dcp",
    frozenset({"mlp"}),
    "torch.distributed.checkpoint.save: a directory of .metadata (a pickle of every tensor's name, shape and "
    "chunks) and *.distcp files, saved and read in one process without a process group; trusted only (DCP "
    "unpickles .metadata); a user's DCP directory is read as the tensors it holds",
    "a directory holding DCP's .metadata and *.distcp files",
    files.is_dcp_directory,
    executes_code=True,
    suffix=".dcp",
    directory=True,
    data_file=torch_files.largest_dcp_file,
    save_mlp=_save_mlp_dcp,
    load_mlp=_load_mlp_dcp,
    read_arrays=_read_dcp,
    framework_loaders=torch_files.DCP_LOADERS,
    code_canary=torch_files.dcp_metadata_canary,
    forgeries=torch_files.dcp_forgeries,
    safety_findings=(
        SafetyFinding(
            ("serbench",),
            ("valid",),
            "clear-error",
            "serbench refuses a DCP directory unless trusted=True: DCP unpickles its .metadata",
        ),
        SafetyFinding(
            ("serbench trusted", *DCP_LOADERS),
            ("canary-*",),
            "code-executed",
            UNPICKLES + " (DCP reads .metadata with pickle.load; trusted=True is the explicit opt-in)",
        ),
        SafetyFinding(
            ("serbench trusted", *DCP_LOADERS),
            ("flipped-header-byte", "flipped-data-byte"),
            "silent-wrong-data",
            "a .distcp file holds each item as a torch.save zip at the offset its metadata gives, and nothing checks "
            "the bytes (torch.load does not check the zip's CRC-32s): a flipped byte loads as another value",
        ),
        SafetyFinding(
            ("serbench trusted", *DCP_LOADERS),
            ("garbage-appended",),
            "loaded-exact",
            TRAILING + " (DCP reads each item at the offset and length its metadata gives)",
        ),
        SafetyFinding(
            DCP_LOADERS,
            ("fifo-inside-directory",),
            "hang",
            "DCP opens the .distcp files its metadata names, a FIFO among them, and blocks until a writer comes. "
            "serbench checks every entry is a regular file first",
        ),
    ),
)
"""torch.distributed.checkpoint in one process. Offered for the MLP (a state_dict, what DCP saves), so that the
format is timed and its loads are in the safety matrix with serbench's own paths; `serbench bench` reads a
user's DCP directory through `read_arrays`."""


def _mlp_class(torch: Any) -> type:
    class MLP(torch.nn.Module):
        """d2l 5.5: Linear(20, 256) -> ReLU -> Linear(256, 10)."""

        def __init__(self) -> None:
            super().__init__()
            self.hidden = torch.nn.Linear(20, 256)
            self.output = torch.nn.Linear(256, 10)

        def forward(self, x: Any) -> Any:
            return self.output(torch.nn.functional.relu(self.hidden(x)))

    return MLP


class TorchAdapter(Adapter):
    name = "torch"
    specs = (TORCH, SAFETENSORS, DCP)
    native_mlp_format = "torch"
    whole_model_formats = ("torch",)
    gated_readers = ("read_torch_file",)
    times_host_to_device = True
    packages = ("torch", "safetensors", "ml-dtypes", "fastsafetensors", "runai-model-streamer", "instanttensor")
    findings = (SAFETENSORS_KEY_ORDER,)
    training_recipe = "frameworks.torch_training:TorchTraining"
    scale_recipe = "frameworks.torch_scale:TorchScale"

    def __init__(self) -> None:
        import ml_dtypes
        import safetensors.torch
        import torch

        self.torch = torch
        self.safetensors = safetensors.torch
        self._mlp = _mlp_class(torch)
        # dtypes NumPy lacks, as ml_dtypes names them too, with an integer of their width to move the bits through
        widths = {"bfloat16": (torch.int16, np.int16), **dict.fromkeys(FLOAT8, (torch.uint8, np.uint8))}
        self._through_bits = {
            getattr(torch, name): (np.dtype(getattr(ml_dtypes, name)), *width)
            for name, width in widths.items()
            if hasattr(torch, name) and hasattr(ml_dtypes, name)
        }
        self._from_bits = {dtype: (ours, numpy_bits) for ours, (dtype, _, numpy_bits) in self._through_bits.items()}

    def thread_settings(self) -> dict[str, object]:
        return {
            **super().thread_settings(),
            "torch.get_num_threads": self.torch.get_num_threads(),
            "torch.get_num_interop_threads": self.torch.get_num_interop_threads(),
        }

    def devices(self) -> tuple[str, ...]:
        return ("cpu", "cuda") if self.torch.cuda.is_available() else ("cpu",)

    def device_note(self) -> str:
        if self.torch.version.cuda is None:
            return f"torch {self.torch.__version__} is a CPU-only build"
        return "torch.cuda.is_available() is False: no CUDA device visible"

    def device_of(self, tensor: Any) -> str:
        return tensor.device.type

    def reset_device_memory_peak(self, device: str) -> None:
        if device == "cuda":
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
            self._device_memory_base = self.torch.cuda.memory_allocated()

    def device_memory_peak(self, device: str) -> int | None:
        if device != "cuda":
            return None
        self.torch.cuda.synchronize()
        return self.torch.cuda.max_memory_allocated() - getattr(self, "_device_memory_base", 0)

    def host_to_device_seconds(self, nbytes: int, rounds: int, pinned: bool) -> tuple[list[float], str]:
        self.check_device("cuda")
        torch = self.torch
        device = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
        host = torch.ones(nbytes, dtype=torch.uint8, pin_memory=pinned)
        device.copy_(host)  # the first copy pays for CUDA's set-up, not for the bus
        torch.cuda.synchronize()
        seconds = []
        for _ in range(rounds):
            start = time.perf_counter()
            device.copy_(host, non_blocking=pinned)
            torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
        return seconds, torch.cuda.get_device_name()

    def from_numpy(self, tree: Any) -> Any:
        """The tree's arrays as tensors, one tensor per array object: names that hold the same array (a user's
        tied weights) hold one tensor, which torch.save writes as one storage."""
        made: dict[int, Any] = {}

        def convert(array: np.ndarray) -> Any:
            if id(array) not in made:
                made[id(array)] = self.tensor_from_numpy(array)
            return made[id(array)]

        return map_tree(tree, convert)

    def _leaf_to_numpy(self, leaf: Any) -> Any:
        """A tensor as NumPy; any other leaf (an epoch number, train.py's argparse.Namespace) as it is."""
        return self.tensor_to_numpy(leaf) if isinstance(leaf, self.torch.Tensor) else leaf

    def tensor_from_numpy(self, array: np.ndarray) -> Any:
        if array.dtype in self._from_bits:
            ours, numpy_bits = self._from_bits[array.dtype]
            return self.torch.from_numpy(array.view(numpy_bits)).view(ours)
        return self.torch.from_numpy(array)

    def ready(self, tensor: Any) -> np.ndarray | None:
        if tensor.device.type == "cuda":
            self.torch.cuda.synchronize(tensor.device)
            return None
        return self.tensor_to_numpy(tensor)

    def tensor_to_numpy(self, tensor: Any) -> np.ndarray:
        tensor = tensor.detach().cpu()
        if tensor.dtype in self._through_bits:
            numpy_dtype, torch_bits, _ = self._through_bits[tensor.dtype]
            return tensor.view(torch_bits).numpy().view(numpy_dtype)
        return tensor.numpy()

    def save_to_file(self, obj: Any, path: Path) -> None:
        """torch.save through a Python file: on a failed write torch's own path writer removes the
        partial file and reports "invalid file name", hiding the cause; a file object keeps it."""
        with open(path, "wb") as handle:
            self.torch.save(obj, handle)

    def read_torch_file(self, path: Path, device: str = "cpu") -> Any:
        """`torch.load(weights_only=True)` of a file the gate admitted, then every tensor checked: dense,
        holding data (not `meta`), within the load budget. Every torch-format entry point reads here."""
        try:
            with self.torch.serialization.safe_globals(list(SAFE_GLOBALS)):
                loaded = self.torch.load(path, map_location=device, weights_only=True)
        except pickle.UnpicklingError as error:
            raise UnsafeLoadError(
                f"refusing {path}: it holds pickled objects beyond tensors and containers (a whole model, say), "
                f"which torch.load(weights_only=True) will not rebuild because unpickling them runs code; "
                f"{WHOLE_MODEL_ADVICE}. torch said: {str(error).splitlines()[0][:200]}"
            ) from error
        nodes = count_nodes(loaded, gate.MAX_MEMBERS)
        gate.check_count(path, "torch", nodes, "values and containers (each reference to a shared one counted)")
        count, total = 0, 0
        for tensor in leaves(loaded):
            if not isinstance(tensor, self.torch.Tensor):
                continue
            if tensor.layout != self.torch.strided or tensor.device.type == "meta":
                raise UnsupportedError(
                    f"refusing {path}: it holds a {tensor.layout} tensor on {tensor.device.type}; serbench loads "
                    f"dense tensors with data only (a sparse tensor can index out of bounds, a meta one holds nothing)"
                )
            nbytes = tensor.numel() * tensor.element_size()
            gate.check_declared(path, "torch", nbytes, "a tensor's shape")
            count, total = count + 1, total + nbytes
            gate.check_count(path, "torch", count, "tensors (each reference to a shared storage counted)")
        # pickle memoizes: a few bytes can name one storage a million times, and every name is converted apart
        gate.check_declared(path, "torch", total, "its tensors, each reference to a shared storage counted")
        return loaded

    def load_whole_model(self, path: str | Path, device: str = "cpu", *, trusted: bool = False) -> Any:
        """`torch.load(weights_only=False)` of a `torch.save(model)` file: runs the file's pickle."""
        source = gate.regular_source(path, "torch")
        files.expect_format(source, "torch", is_torch_file(source), TORCH.signature)
        if not trusted:
            raise UnsafeLoadError(
                f"refusing to unpickle {source} as a whole model: that runs code from the file. "
                f"Pass trusted=True only for files you made (or load a state_dict instead)."
            )
        if not files.is_torch_legacy(source):
            check_torch_zip(source, scan_pickle=False)
        self.check_device(device)
        return self.torch.load(source, map_location=device, weights_only=False)

    def new_mlp(self, params: dict[str, np.ndarray]) -> Any:
        model = self._mlp()
        self.set_mlp_state(model, params)
        return model.eval()

    def mlp_state(self, model: Any) -> dict[str, np.ndarray]:
        return {key: value.detach().numpy().copy() for key, value in model.state_dict().items()}

    def set_mlp_state(self, model: Any, params: dict[str, np.ndarray]) -> None:
        check_mlp_state(params)
        model.load_state_dict({key: self.torch.tensor(value) for key, value in params.items()})

    def mlp_forward(self, model: Any, inputs: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return model.eval()(self.torch.from_numpy(inputs)).numpy()
