"""Forged files for the safety matrix and the trust-gate tests, written with struct and zipfile
(no framework): MXNet NDArray lists, torch.save-shaped zips, .npy headers, npz archives, zip bombs,
allocation bombs; and where a file's array bytes begin (`data_offset`), for the damaged variants.
The adapters build their formats' hostile files (`FormatSpec.forgeries`) from these."""

from __future__ import annotations

import io
import json
import math
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BYTEARRAY_8GIB_PICKLE = b"\x80\x02c__builtin__\nbytearray\n\x8a\x05\x00\x00\x00\x00\x02\x85R."
"""A 39-byte protocol-2 pickle of `bytearray(8 << 30)`: torch's weights_only unpickler allows the call."""
ZIP_BOMB_BYTES = 2 << 30
"""Twice the load budget the safety children run with (SAFETY_LOAD_BUDGET in bench.safety.host)."""
NDARRAY_V3 = 0xF993FACA
MX_FLAGS = {"float32": 0, "float64": 1, "int32": 4, "int64": 6}


@dataclass(frozen=True)
class Forged:
    """One file a format's `FormatSpec.forgeries` wrote for the safety matrix: `hostile` if it declares
    what it does not hold or holds what the format must refuse, `damaged` for an allocation bomb."""

    name: str
    path: Path
    group: str = "hostile"


def ndarray_list(arrays: dict[str, np.ndarray], *, count: int | None = None, name_length: int | None = None) -> bytes:
    """An MXNet NDArray-list file (npx.save / save_parameters) built with struct; `count` and
    `name_length` forge the declared array count and the first name's length."""
    body = struct.pack("<QQQ", 0x112, 0, len(arrays) if count is None else count)
    for array in arrays.values():
        body += struct.pack("<Iii", NDARRAY_V3, 0, array.ndim) + struct.pack(f"<{array.ndim}q", *array.shape)
        body += struct.pack("<iii", 1, 0, MX_FLAGS[str(array.dtype)]) + array.tobytes()
    body += struct.pack("<Q", len(arrays))
    for index, name in enumerate(arrays):
        length = name_length if (name_length is not None and index == 0) else len(name.encode())
        body += struct.pack("<Q", length) + name.encode()
    return body


def torch_zip(
    pickle_bytes: bytes,
    records: dict[str, bytes] | None = None,
    method: int = zipfile.ZIP_STORED,
    byteorder: bytes = b"little",
) -> bytes:
    """A zip laid out like torch.save's: archive/data.pkl, version, byteorder, data/N records."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        archive.writestr("archive/byteorder", byteorder)
        for name, data in (records or {}).items():
            archive.writestr(f"archive/{name}", data)
        archive.writestr("archive/version", b"3\n")
    return buffer.getvalue()


def npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def object_array(value: object, member: str | None = None) -> bytes:
    """`value` pickled inside an object array: an .npy, or with `member` an npz holding it under that name."""
    array = np.array([value], dtype=object)
    buffer = io.BytesIO()
    if member is None:
        np.save(buffer, array, allow_pickle=True)
    else:
        np.savez(buffer, **{member: array})
    return buffer.getvalue()


def npz_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def zero_stream_npz(path: Path, nbytes: int, method: int) -> Path:
    """An npz whose one member is `nbytes` of zeros behind a valid header, compressed (a zip bomb)."""
    elements = nbytes // 4
    with zipfile.ZipFile(path, "w", compression=method) as archive, archive.open("x.npy", "w", force_zip64=True) as out:
        out.write(npy_header((elements,)))
        chunk = bytes(64 << 20)
        for _ in range(math.ceil(nbytes / len(chunk))):
            out.write(chunk)
    return path


def npy_bomb(path: Path) -> list[Forged]:
    """An .npy header declaring 2^40 float32 elements, followed by 64 bytes."""
    path.write_bytes(npy_header((1 << 40,)) + b"\x00" * 64)
    return [Forged("allocation-bomb", path, "damaged")]


def safetensors_bomb(path: Path) -> list[Forged]:
    """A safetensors header declaring a 1 TiB tensor, followed by 64 bytes."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [1 << 38], "data_offsets": [0, 1 << 40]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 64)
    return [Forged("allocation-bomb", path, "damaged")]


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
        start += data_offset(data[start:])
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


def data_offset(data: bytes) -> int:
    """Where the header ends and array bytes begin (a best estimate for container formats)."""
    if data[:4] == b"PK\x03\x04" and (offset := _zip_data_offset(data)) is not None:
        return offset
    if data[:8] == b"\x89HDF\r\n\x1a\n" and (offset := _hdf5_data_offset(data)) is not None:
        return offset
    if data[:6] == b"\x93NUMPY":
        header_len = struct.unpack("<H", data[8:10])[0] if data[6] == 1 else struct.unpack("<I", data[8:12])[0]
        return (10 if data[6] == 1 else 12) + header_len
    if len(data) > 9 and data[8:9] == b"{" and 8 + struct.unpack("<Q", data[:8])[0] <= len(data):
        return 8 + struct.unpack("<Q", data[:8])[0]  # safetensors: a header length, then its JSON
    return min(64, len(data) // 4)
