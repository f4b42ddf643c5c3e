"""Validators shared by several adapters: check what a file declares before a parser allocates.

Each raises a SerbenchError naming the file, the format and what was wrong. Format-specific
validators of one framework live in its adapter module; these serve formats every adapter offers.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from frameworks import gate
from frameworks.errors import FormatMismatchError, UnsupportedError

SAFETENSORS_ITEM_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "C64": 8,
    "F8_E4M3": 1, "F8_E4M3FNUZ": 1, "F8_E5M2": 1, "F8_E5M2FNUZ": 1,
}  # fmt: skip
SAFETENSORS_MAX_HEADER = 100_000_000
"""The safetensors library's own limit on the JSON header."""


def _damaged(path: Path, format_name: str, what: str) -> FormatMismatchError:
    return FormatMismatchError(f"{path} is not a valid {format_name!r} file: {what}")


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object, refused where it names a key twice (a reader would keep one of the two silently)."""
    found: dict = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"it names {key!r} twice")
        found[key] = value
    return found


def safetensors_header(path: Path, dtypes: frozenset[str]) -> None:
    """Every tensor's dtype is one this reader returns, and its shape fits its byte range in the file."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        if header_size > min(SAFETENSORS_MAX_HEADER, size - 8):
            raise _damaged(path, "safetensors", f"its header claims {header_size:,} bytes, the file has {size:,}")
        try:
            header = json.loads(handle.read(header_size), object_pairs_hook=_no_duplicate_keys)
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise _damaged(path, "safetensors", f"its header is not JSON ({str(error)[:200]})") from None
    if not isinstance(header, dict):
        raise _damaged(path, "safetensors", "its header is not a JSON object")
    gate.check_count(path, "safetensors", len(header), "tensors")
    data_bytes = size - 8 - header_size
    total = 0
    ranges = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise _damaged(path, "safetensors", f"tensor {name!r} has no description")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in SAFETENSORS_ITEM_BYTES:
            raise _damaged(path, "safetensors", f"tensor {name!r} has unknown dtype {dtype!r}")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise _damaged(path, "safetensors", f"tensor {name!r} has shape {shape!r}, not a list of sizes")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data_bytes
        ):
            raise _damaged(path, "safetensors", f"tensor {name!r} has byte range {offsets!r} outside the file's data")
        nbytes = math.prod(shape) * SAFETENSORS_ITEM_BYTES[dtype]
        if nbytes != offsets[1] - offsets[0]:
            raise _damaged(
                path,
                "safetensors",
                f"tensor {name!r} of {dtype}{shape} needs {nbytes:,} bytes, its range has {offsets[1] - offsets[0]:,}",
            )
        if dtype not in dtypes:
            raise UnsupportedError(
                f"{path}: tensor {name!r} is {dtype}, which this framework's safetensors reader cannot return "
                f"(it reads {', '.join(sorted(dtypes))}); load the file with a framework that has {dtype}"
            )
        total += nbytes
        ranges.append((offsets[0], offsets[1], name))
    _check_tiling(path, sorted(ranges), data_bytes)
    gate.check_declared(path, "safetensors", total, "its tensors")


def _check_tiling(path: Path, ranges: list[tuple[int, int, str]], data_bytes: int) -> None:
    """The tensors' byte ranges, in order, tile the data exactly, as the safetensors library requires: each
    starts where the one before ends (no overlap, so no two tensors alias the same bytes; no gap), and the
    last ends where the file does. A reader that trusts the offsets (serbench's reference loader, a memory
    map) would otherwise return aliased or shifted tensors silently."""
    position = 0
    for start, end, name in ranges:
        if start != position:
            what = (
                "overlaps the tensor before it" if start < position else f"leaves a gap of {start - position:,} bytes"
            )
            raise _damaged(path, "safetensors", f"tensor {name!r} starts at byte {start:,} and {what}")
        position = end
    if position != data_bytes:
        raise _damaged(
            path,
            "safetensors",
            f"its tensors end at byte {position:,} of the data but the file holds {data_bytes:,} (bytes appended or "
            "a tensor missing)",
        )
