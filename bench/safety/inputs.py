"""Build the safety matrix's input files for one framework (runs in that framework's process).

For each format: the valid file, the damaged variants derived from its bytes, another framework's
file, a directory, a missing path; for pickle-bearing formats the canaries; for npy, safetensors
and MXNet ndarray files an allocation bomb (a header declaring an enormous array).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import struct
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import frameworks
from bench import workloads
from bench.safety import forgeries
from bench.safety.canary import Canary, lambda_source


def safety_formats(framework: str) -> tuple[str, ...]:
    """Every format of the adapter, then those only the safety matrix opens (`Adapter.safety_specs`):
    a new format or framework is in the matrix without an edit here."""
    cls = frameworks.adapter_class(framework)
    return cls.format_names() + tuple(spec.name for spec in cls.safety_specs)


TENSOR_WORKLOAD = "d2l-dict"


@dataclass(frozen=True)
class SafetyInput:
    format: str
    name: str
    path: str
    group: str
    """valid, hostile or damaged"""
    marker: str = ""


def reference(framework: str, fmt: str) -> Any:
    """What a correct load of the valid file gives, as NumPy: the MLP's parameters for a format that holds
    models only, else a dict (or a tensor, for a format that holds one tensor)."""
    spec = frameworks.adapter_class(framework).safety_spec(fmt)
    if spec.model_only:
        return workloads.mlp_parameters(0)
    return workloads.build(TENSOR_WORKLOAD if "dict" in spec.holds else "d2l-tensor")


def suffix(framework: str, fmt: str) -> str:
    return frameworks.adapter_class(framework).safety_spec(fmt).suffix


def save_valid(adapter: frameworks.Adapter, fmt: str, path: Path) -> None:
    spec = adapter.safety_spec(fmt)
    if spec.model_only:
        spec.save_mlp(adapter, adapter.new_mlp(reference(adapter.name, fmt)), path)
    else:
        adapter.save(adapter.from_numpy(reference(adapter.name, fmt)), path, fmt)


def _main_file(path: Path) -> Path:
    """The file whose bytes carry the header and data (a checkpoint directory's data file)."""
    if path.is_dir():
        return next(p for p in sorted(path.iterdir()) if p.name.startswith("ckpt.data"))
    return path


def _zip_data_offset(data: bytes) -> int | None:
    """Start of the tensor bytes in a zip: torch's largest storage record (`*/data/N`), else the largest
    member (an npz's array, a .keras file's weights)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            storages = [info for info in archive.infolist() if "/data/" in info.filename]
            member = max(storages or archive.infolist(), key=lambda info: info.compress_size)
    except zipfile.BadZipFile:
        return None
    name_length, extra_length = struct.unpack("<HH", data[member.header_offset + 26 : member.header_offset + 30])
    start = member.header_offset + 30 + name_length + extra_length
    if member.filename.endswith(".npy"):
        start += data_offset("npy", data[start:])
    return start


def _hdf5_data_offset(data: bytes) -> int | None:
    """File offset of the largest contiguous dataset's bytes in an HDF5 file."""
    import h5py

    datasets: list[tuple[int, int]] = []
    with h5py.File(io.BytesIO(data), "r") as handle:

        def visit(_name: str, item: object) -> None:
            if isinstance(item, h5py.Dataset) and item.id.get_offset() is not None:
                datasets.append((item.size, item.id.get_offset()))

        handle.visititems(visit)
    return max(datasets)[1] if datasets else None


def data_offset(fmt: str, data: bytes) -> int:
    """Where the header ends and array bytes begin (a best estimate for container formats)."""
    if data[:4] == b"PK\x03\x04" and (offset := _zip_data_offset(data)) is not None:
        return offset
    if data[:8] == b"\x89HDF\r\n\x1a\n" and (offset := _hdf5_data_offset(data)) is not None:
        return offset
    if data[:6] == b"\x93NUMPY":
        header_len = struct.unpack("<H", data[8:10])[0] if data[6] == 1 else struct.unpack("<I", data[8:12])[0]
        return (10 if data[6] == 1 else 12) + header_len
    if fmt == "safetensors":
        return 8 + struct.unpack("<Q", data[:8])[0]
    return min(64, len(data) // 4)


def _copy_tree(source: Path, target: Path) -> Path:
    if source.is_dir():
        target.mkdir()
        for child in source.iterdir():
            (target / child.name).write_bytes(child.read_bytes())
    else:
        target.write_bytes(source.read_bytes())
    return target


def damaged_variants(fmt: str, valid: Path, directory: Path, other_file: Path) -> list[tuple[str, Path]]:
    """Every damaged input derived from the valid one: (name, path)."""
    main = _main_file(valid)
    data = main.read_bytes()
    start = data_offset(fmt, data)
    rng = random.Random(0)
    variants: dict[str, bytes] = {
        "zero-length": b"",
        "truncated-1": data[:1],
        "truncated-8": data[:8],
        "truncated-mid-header": data[: max(1, start // 2)],
        "truncated-mid-data": data[: start + max(1, (len(data) - start) // 2)],
        "truncated-size-1": data[:-1],
        "random-bytes": bytes(rng.getrandbits(8) for _ in range(len(data))),
        "flipped-header-byte": _flip(data, max(0, min(start // 2, len(data) - 1))),
        "flipped-data-byte": _flip(data, min(len(data) - 1, start + 1)),
        "garbage-appended": data + b"\xde\xad\xbe\xef" * 64,
    }
    out = []
    full_suffix = "".join(valid.suffixes)  # Keras needs all of ".weights.h5"
    for name, payload in variants.items():
        target = _copy_tree(valid, directory / f"{name}{full_suffix}")
        (_main_file(target) if target.is_dir() else target).write_bytes(payload)
        out.append((name, target))
    foreign = directory / f"other-framework-file{full_suffix}"
    if valid.is_dir():
        foreign.mkdir()
        (foreign / "ckpt.index").write_bytes(other_file.read_bytes())
    else:
        foreign.write_bytes(other_file.read_bytes())
    out.append(("other-framework-file", foreign))
    a_directory = directory / "a-directory"
    a_directory.mkdir()
    out.append(("a-directory", a_directory))
    out.append(("missing-path", directory / f"missing{full_suffix}"))
    return out


def _flip(data: bytes, index: int) -> bytes:
    if not data:
        return data
    mutable = bytearray(data)
    mutable[index] ^= 0xFF
    return bytes(mutable)


def _npy_bomb(path: Path) -> None:
    path.write_bytes(forgeries.npy_header((1 << 40,)) + b"\x00" * 64)


def _safetensors_bomb(path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1 << 38], "data_offsets": [0, 1 << 40]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 64)


def _mxnet_bomb(path: Path) -> None:
    """An NDArray-list file (magic 0x112) holding one float32 array whose shape claims 2^40 elements."""
    array = struct.pack("<I", 0xF993FAC9)  # NDARRAY_V2_MAGIC
    array += struct.pack("<i", 0)  # storage type: dense
    array += struct.pack("<I", 2) + struct.pack("<qq", 1 << 20, 1 << 20)  # ndim, shape
    array += struct.pack("<ii", 1, 0)  # context: cpu(0)
    array += struct.pack("<i", 0)  # dtype float32
    body = struct.pack("<QQ", 0x112, 0) + struct.pack("<Q", 1) + array + b"\x00" * 64 + struct.pack("<Q", 0)
    path.write_bytes(body)


BOMBS = {"npy": _npy_bomb, "npy-pickle": _npy_bomb, "safetensors": _safetensors_bomb, "mx-ndarray": _mxnet_bomb}

ZIP_BOMB_BYTES = 2 << 30
"""Twice the load budget the safety children run with (SAFETY_LOAD_BUDGET in bench.safety.host)."""


def _npz_forgeries(directory: Path, valid: Path) -> dict[str, Path]:
    out = {
        "member-declares-2^40": directory / "member-declares-2^40.npz",
        "non-npy-member": directory / "non-npy-member.npz",
    }
    out["member-declares-2^40"].write_bytes(forgeries.npz_bytes({"value.npy": forgeries.npy_header((1 << 40,))}))
    with zipfile.ZipFile(valid) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    out["non-npy-member"].write_bytes(forgeries.npz_bytes({**members, "readme.txt": b"not an array"}))
    out["deflate-bomb-2GiB"] = forgeries.zero_stream_npz(
        directory / "deflate-bomb-2GiB.npz", ZIP_BOMB_BYTES, zipfile.ZIP_DEFLATED
    )
    return out


def _torch_forgeries(directory: Path) -> dict[str, Path]:
    import torch

    bytearray_bomb = directory / "pickle-bytearray-8GiB.pt"
    bytearray_bomb.write_bytes(forgeries.torch_zip(forgeries.BYTEARRAY_8GIB_PICKLE))
    sparse = directory / "sparse-out-of-bounds.pt"
    with torch.sparse.check_sparse_tensor_invariants(enable=False):
        torch.save({"value": torch.sparse_coo_tensor([[0, 1 << 30]], [1.0, 2.0], (4,))}, sparse)
    return {"pickle-bytearray-8GiB": bytearray_bomb, "sparse-out-of-bounds": sparse}


def _ndarray_list_forgeries(framework: str, directory: Path, fmt: str) -> dict[str, Path]:
    reference_arrays = reference(framework, fmt)
    arrays = {key: np.asarray(value, np.float32) for key, value in reference_arrays.items()}
    out = {}
    ending = frameworks.adapter_class(framework).spec(fmt).suffix
    out["count-2^40"] = directory / f"count-2^40{ending}"
    out["count-2^40"].write_bytes(forgeries.ndarray_list(arrays, count=1 << 40))
    out["name-3GiB"] = directory / f"name-3GiB{ending}"
    out["name-3GiB"].write_bytes(forgeries.ndarray_list(arrays, name_length=3 << 30))
    wrapped = bytearray(forgeries.ndarray_list({"x": np.zeros((2, 2), np.float32)}))
    struct.pack_into("<qq", wrapped, 24 + 12, 1 << 62, 1 << 2)
    out["dims-wrap"] = directory / f"dims-wrap{ending}"
    out["dims-wrap"].write_bytes(bytes(wrapped))
    if fmt == "gluon-params":
        out["mlp-int32-bits"] = directory / "mlp-int32-bits.params"
        out["mlp-int32-bits"].write_bytes(
            forgeries.ndarray_list({key: value.view(np.int32) for key, value in arrays.items()})
        )
    return out


def _output_bias(handle: Any) -> str:
    """The name of the MLP's (10,) bias dataset in a Keras weights file."""
    import h5py

    names: list[str] = []
    handle.visititems(lambda key, item: names.append(key) if isinstance(item, h5py.Dataset) else None)
    return next(key for key in names if handle[key].shape == (10,))


def _keras_h5_forgeries(directory: Path, valid: Path) -> dict[str, Path]:
    import h5py

    out = {}
    for name in ("int64-dataset", "huge-dims-fillvalue"):
        path = directory / f"{name}.weights.h5"
        path.write_bytes(valid.read_bytes())
        with h5py.File(path, "a") as handle:
            target = _output_bias(handle)
            del handle[target]
            if name == "int64-dataset":
                handle.create_dataset(target, data=np.arange(10, dtype=np.int64))
            else:
                handle.create_dataset(target, shape=(1 << 20, 1 << 20), dtype="f4", fillvalue=1.0, chunks=(1, 1024))
        out[name] = path
    return out


def forged_inputs(framework: str, fmt: str, directory: Path, valid: Path) -> dict[str, Path]:
    """Files whose headers declare what they do not hold, or hold what the format should not."""
    if fmt == "npz":
        return _npz_forgeries(directory, valid)
    if fmt == "torch":
        return _torch_forgeries(directory)
    if fmt in ("mx-ndarray", "gluon-params"):
        return _ndarray_list_forgeries(framework, directory, fmt)
    if fmt == "keras-h5":
        return _keras_h5_forgeries(directory, valid)
    return {}


def fifo_inputs(directory: Path, valid: Path) -> dict[str, Path]:
    """A FIFO where the file should be; for a directory format, the data file inside made a FIFO."""
    fifo = directory / f"fifo{''.join(valid.suffixes)}"
    os.mkfifo(fifo)
    out = {"fifo": fifo}
    if valid.is_dir():
        inside = _copy_tree(valid, directory / "fifo-inside-directory")
        data_file = _main_file(inside)
        data_file.unlink()
        os.mkfifo(data_file)
        out["fifo-inside-directory"] = inside
    return out


def _carries(spec: frameworks.FormatSpec, probe: Path, data: bytes) -> bool:
    """Whether the format's sniffer would take `data` as one of its files."""
    probe.write_bytes(data)
    try:
        return spec.sniff(probe)
    finally:
        probe.unlink()


def _keras_zip_probe() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("config.json", "{}")
    return buffer.getvalue()


def hostile_inputs(framework: str, fmt: str, directory: Path, markers: Path) -> list[tuple[str, Path, Path]]:
    """Canaries in every carrier of code the format's sniffer accepts (an .npy or .npz object array, a
    torch zip, a Keras zip with a Lambda layer), plus a bare pickle for every format that carries
    pickles: derived from the spec, so a new format gets the canaries its files could hide."""
    spec = frameworks.adapter_class(framework).safety_spec(fmt)
    probe = directory / "carrier-probe"
    out = []

    def marker(name: str) -> Path:
        return markers / f"{framework}-{fmt}-{name}.marker"

    def write(name: str, filename: str, data: bytes) -> None:
        path = directory / filename
        path.write_bytes(data)
        out.append((name, path, marker(name)))

    probe_canary = Canary(markers / "probe.marker")  # pickled, never loaded
    npy = _carries(spec, probe, forgeries.object_array(probe_canary))
    npz = not npy and _carries(spec, probe, forgeries.object_array(probe_canary, member="x"))
    torch_zip = _carries(spec, probe, forgeries.torch_zip(pickle.dumps({"hook": probe_canary})))
    if npy or npz or torch_zip:
        write("canary-plain-pickle", "canary-plain-pickle.pkl", pickle.dumps(Canary(marker("canary-plain-pickle"))))
    if npy or npz:
        canary = Canary(marker("canary-object-array"))
        write(
            "canary-object-array",
            f"canary-object-array.{'npy' if npy else 'npz'}",
            forgeries.object_array(canary, "x" if npz else None),
        )
    if torch_zip:
        hook = Canary(marker("canary-in-torch-zip"))
        write("canary-in-torch-zip", "canary-in-torch-zip.pt", _torch_canary(hook))
    adapter = frameworks.get_adapter(framework)
    if hasattr(adapter, "whole_model") and _carries(spec, probe, _keras_zip_probe()):
        import keras

        path = directory / "canary-lambda-layer.keras"
        lambda_marker = marker("canary-lambda-layer")
        front = keras.layers.Lambda(eval(lambda_source(lambda_marker)))
        adapter.whole_model(reference(framework, fmt), front).save(path)
        lambda_marker.unlink(missing_ok=True)  # building the model ran the lambda once; start clean
        out.append(("canary-lambda-layer", path, lambda_marker))
    return out


def _torch_canary(hook: Canary) -> bytes:
    """`torch.save` of a dict holding a tensor and the canary where torch is installed, else the same
    layout written by hand (`forgeries.torch_zip`)."""
    try:
        import torch
    except ImportError:
        return forgeries.torch_zip(pickle.dumps({"hook": hook}))
    buffer = io.BytesIO()
    torch.save({"weight": torch.ones(2), "hook": hook}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        assert any(name.endswith("data.pkl") for name in archive.namelist())
    return buffer.getvalue()


def foreign_bytes(framework: str, directory: Path) -> bytes:
    """A small valid file of another framework: an empty MXNet NDArray list, or an .npy where one of the
    adapter's formats reads MXNet lists."""
    empty_list = forgeries.ndarray_list({})
    probe = directory / "foreign-probe"
    if not any(_carries(spec, probe, empty_list) for spec in frameworks.adapter_class(framework).specs):
        return empty_list
    buffer = io.BytesIO()
    np.save(buffer, np.arange(3))
    return buffer.getvalue()


def generate(framework: str, directory: Path) -> list[SafetyInput]:
    """Write every input for `framework` under `directory`; returns the manifest."""
    adapter = frameworks.get_adapter(framework)
    markers = directory / "markers"
    markers.mkdir(parents=True, exist_ok=True)
    other = directory / "other-framework.bin"
    other.write_bytes(foreign_bytes(framework, directory))
    manifest = []
    for fmt in safety_formats(framework):
        fmt_dir = directory / fmt
        fmt_dir.mkdir()
        valid = fmt_dir / f"valid{suffix(framework, fmt)}"
        save_valid(adapter, fmt, valid)
        manifest.append(SafetyInput(fmt, "valid", str(valid), "valid"))
        for name, path, marker in hostile_inputs(framework, fmt, fmt_dir, markers):
            manifest.append(SafetyInput(fmt, name, str(path), "hostile", str(marker)))
        for name, path in damaged_variants(fmt, valid, fmt_dir, other):
            manifest.append(SafetyInput(fmt, name, str(path), "damaged"))
        if fmt in BOMBS:
            bomb = fmt_dir / f"allocation-bomb{suffix(framework, fmt)}"
            BOMBS[fmt](bomb)
            manifest.append(SafetyInput(fmt, "allocation-bomb", str(bomb), "damaged"))
        for name, path in forged_inputs(framework, fmt, fmt_dir, valid).items():
            manifest.append(SafetyInput(fmt, name, str(path), "hostile"))
        for name, path in fifo_inputs(fmt_dir, valid).items():
            manifest.append(SafetyInput(fmt, name, str(path), "hostile"))
    return manifest


def write_manifest(inputs: list[SafetyInput], path: Path) -> None:
    path.write_text(json.dumps([asdict(item) for item in inputs], indent=1))


def read_manifest(path: Path) -> list[SafetyInput]:
    return [SafetyInput(**item) for item in json.loads(path.read_text())]
