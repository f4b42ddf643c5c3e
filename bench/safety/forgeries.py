"""Forged files for the safety matrix and the trust-gate tests, written with struct and zipfile
(no framework): MXNet NDArray lists, torch.save-shaped zips, .npy headers, npz archives, zip bombs."""

from __future__ import annotations

import io
import math
import struct
import zipfile
from pathlib import Path

import numpy as np

BYTEARRAY_8GIB_PICKLE = b"\x80\x02c__builtin__\nbytearray\n\x8a\x05\x00\x00\x00\x00\x02\x85R."
"""A 39-byte protocol-2 pickle of `bytearray(8 << 30)`: torch's weights_only unpickler allows the call."""
NDARRAY_V3 = 0xF993FACA
MX_FLAGS = {"float32": 0, "float64": 1, "int32": 4, "int64": 6}


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
