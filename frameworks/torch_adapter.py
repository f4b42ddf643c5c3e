"""PyTorch adapter: `torch.save` (pickle in a zip, loaded with `weights_only=True`) and
safetensors through `safetensors.torch`. The MLP is d2l's `nn.Module`; loads go through
`load_state_dict` and `eval()`, as the seeds teach.
"""

from __future__ import annotations

import pickle
import pickletools
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from frameworks import files, forgeries, gate, torch_scale
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
from frameworks.trees import leaves, map_tree

FLOAT8 = ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
"""torch's float8 dtypes; ml_dtypes names them alike, so they reach NumPy bit for bit."""
MAX_PICKLE_BYTES = 256 << 20
TENSOR_GLOBALS = re.compile(
    r"collections OrderedDict|torch\._utils _rebuild_tensor_v[23]|torch\._utils _rebuild_parameter"
    r"|torch \w+Storage|torch\.storage UntypedStorage"
    r"|torch float8_e4m3fn|torch float8_e5m2|torch float8_e4m3fnuz|torch float8_e5m2fnuz"
)
"""What the data.pkl of a `torch.save` of tensors, containers, state_dicts and optimizer states names
(protocol 2, the default; a float8 storage names its dtype, a plain object). torch's own weights_only
allowlist is wider: it admits `builtins.bytearray` (a 407-byte pickle took 3 GiB) and sparse tensors (an
out-of-bounds COO tensor segfaults when used), so serbench checks the pickle's globals against this list first."""
PICKLE_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"}


def _pickle_globals(path: Path, pickle_bytes: bytes) -> set[str]:
    """The 'module name' of every global the pickle names, without running it."""
    names = set()
    try:
        for opcode, argument, _position in pickletools.genops(pickle_bytes):
            if opcode.name == "GLOBAL":
                names.add(str(argument))
            elif opcode.name in ("STACK_GLOBAL", "INST", "OBJ"):
                raise UnsafeLoadError(
                    f"refusing {path}: its data.pkl uses {opcode.name} (a pickle protocol torch.save does not write by "
                    f"default), which serbench does not check; re-save it with torch.save, or load it with torch.load "
                    f"yourself if you trust it"
                )
    except (ValueError, pickle.UnpicklingError) as error:
        raise FormatMismatchError(f"{path} is not a valid 'torch' file: data.pkl is not a pickle ({error})") from None
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
    foreign = sorted(name for name in _pickle_globals(path, pickle_bytes) if not TENSOR_GLOBALS.fullmatch(name))
    if foreign:
        raise UnsafeLoadError(
            f"refusing {path}: its pickle names {', '.join(foreign[:5])}, beyond the tensors, storages and "
            f"containers a state_dict needs (a whole model, or a crafted file). If you trust it, use "
            f"load_whole_model(path, trusted=True)"
        )


def _save_torch(adapter: TorchAdapter, tree: Any, path: Path) -> None:
    adapter.save_to_file(tree, path)


def _load_torch(adapter: TorchAdapter, path: Path, device: str) -> Any:
    return adapter.read_torch_file(path, device)


def _save_state_dict_torch(adapter: TorchAdapter, model: Any, path: Path) -> None:
    adapter.save_to_file(model.state_dict(), path)


def _save_safetensors(adapter: TorchAdapter, tree: dict[str, Any], path: Path) -> None:
    adapter.safetensors.save_file({key: value.contiguous() for key, value in tree.items()}, str(path))


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
    """A 39-byte pickle that torch's weights_only allowlist lets ask for 8 GiB, and a sparse COO tensor whose
    indices lie outside its size (saved with torch's invariant checks off)."""
    torch = adapter.torch
    bytearray_bomb = directory / "pickle-bytearray-8GiB.pt"
    bytearray_bomb.write_bytes(forgeries.torch_zip(forgeries.BYTEARRAY_8GIB_PICKLE))
    sparse = directory / "sparse-out-of-bounds.pt"
    with torch.sparse.check_sparse_tensor_invariants(enable=False):
        torch.save({"value": torch.sparse_coo_tensor([[0, 1 << 30]], [1.0, 2.0], (4,))}, sparse)
    return [forgeries.Forged("pickle-bytearray-8GiB", bytearray_bomb), forgeries.Forged("sparse-out-of-bounds", sparse)]


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
    "torch.save: a zip holding a pickle (data.pkl) and raw storages; loaded with weights_only=True",
    "a zip archive holding data.pkl",
    files.is_torch_zip,
    suffix=".pt",
    unpickles=True,
    validate=check_torch_zip,
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
    specs = (TORCH, SAFETENSORS)
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
            loaded = self.torch.load(path, map_location=device, weights_only=True)
        except pickle.UnpicklingError as error:
            raise UnsafeLoadError(
                f"refusing {path}: it holds pickled objects beyond tensors and containers (a whole "
                f"model, say), which torch.load(weights_only=True) will not rebuild because unpickling "
                f"them runs code. If you trust the file, use load_whole_model(path, trusted=True). "
                f"torch said: {str(error).splitlines()[0][:200]}"
            ) from error
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
        files.expect_format(source, "torch", files.is_torch_zip(source), TORCH.signature)
        if not trusted:
            raise UnsafeLoadError(
                f"refusing to unpickle {source} as a whole model: that runs code from the file. "
                f"Pass trusted=True only for files you made (or load a state_dict instead)."
            )
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
