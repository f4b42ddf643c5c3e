"""Build the safety matrix's input files for one framework (runs in that framework's process).

For each format: the valid file, the damaged variants derived from its bytes, another framework's
file, a directory, a missing path, FIFOs; canaries in every carrier of code its sniffer accepts;
and the format's own forgeries (`FormatSpec.forgeries`: allocation bombs, headers declaring what
the file does not hold), which its adapter writes. Nothing here names a framework or a format.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import frameworks
from bench import workloads
from bench.safety.canary import Canary, lambda_source
from frameworks import forgeries
from frameworks.trees import leaves


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


def _main_file(path: Path, values: Any, data_file: Any = None) -> Path:
    """The file whose bytes carry the header and data: `path`, or in a directory format the one its spec
    names (`FormatSpec.data_file`), else the file that holds the bytes of the largest of the NumPy `values`
    saved in it (else its largest file)."""
    if not path.is_dir():
        return path
    if data_file is not None:
        return data_file(path)
    children = sorted(child for child in path.rglob("*") if child.is_file())
    largest = max(leaves(values), key=lambda array: np.asarray(array).nbytes)
    needle = np.ascontiguousarray(largest).tobytes()
    holding = [child for child in children if needle in child.read_bytes()]
    return holding[0] if holding else max(children, key=lambda child: child.stat().st_size)


def _copy_tree(source: Path, target: Path) -> Path:
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        target.write_bytes(source.read_bytes())
    return target


def damaged_variants(
    valid: Path, values: Any, directory: Path, other_file: Path, data_file: Any = None
) -> list[tuple[str, Path]]:
    """Every damaged input derived from the valid one (which holds the NumPy `values`): (name, path)."""
    main = _main_file(valid, values, data_file)
    data = main.read_bytes()
    start = forgeries.data_offset(data)
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
        (target / main.relative_to(valid) if target.is_dir() else target).write_bytes(payload)
        out.append((name, target))
    foreign = directory / f"other-framework-file{full_suffix}"
    if valid.is_dir():  # the directory with its main file replaced by the other framework's
        _copy_tree(valid, foreign)
        (foreign / main.relative_to(valid)).write_bytes(other_file.read_bytes())
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


def fifo_inputs(directory: Path, valid: Path, values: Any, data_file: Any = None) -> dict[str, Path]:
    """A FIFO where the file should be; for a directory format, the data file inside made a FIFO."""
    fifo = directory / f"fifo{''.join(valid.suffixes)}"
    os.mkfifo(fifo)
    out = {"fifo": fifo}
    if valid.is_dir():
        inside = _copy_tree(valid, directory / "fifo-inside-directory")
        inside_file = inside / _main_file(valid, values, data_file).relative_to(valid)
        inside_file.unlink()
        os.mkfifo(inside_file)
        out["fifo-inside-directory"] = inside
    return out


def _carries(spec: frameworks.FormatSpec, probe: Path, data: bytes) -> bool:
    """Whether the format's sniffer would take `data` as one of its files."""
    probe.write_bytes(data)
    try:
        return spec.sniff(probe)
    finally:
        probe.unlink()


def hostile_inputs(framework: str, fmt: str, directory: Path, markers: Path) -> list[tuple[str, Path, Path]]:
    """Canaries in every carrier of pickles the format's sniffer accepts (an .npy or .npz object array, a
    torch zip) plus a bare pickle, and the format's own carrier of code (`FormatSpec.code_canary`, a
    Keras Lambda layer): derived from the spec, so a new format gets the canaries its files could hide."""
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
        write("canary-in-torch-zip", "canary-in-torch-zip.pt", forgeries.torch_zip(pickle.dumps({"hook": hook})))
    if spec.code_canary:
        code_marker, path = marker("code-canary"), directory / f"code-canary{spec.suffix}"
        adapter = frameworks.get_adapter(framework)
        name = spec.code_canary(adapter, path, lambda_source(code_marker), reference(framework, fmt))
        code_marker.unlink(missing_ok=True)  # building the file may have run the code once; start clean
        out.append((name, path, code_marker))
    return out


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
        values = reference(framework, fmt)
        save_valid(adapter, fmt, valid)
        manifest.append(SafetyInput(fmt, "valid", str(valid), "valid"))
        for name, path, marker in hostile_inputs(framework, fmt, fmt_dir, markers):
            manifest.append(SafetyInput(fmt, name, str(path), "hostile", str(marker)))
        spec = adapter.safety_spec(fmt)
        for name, path in damaged_variants(valid, values, fmt_dir, other, spec.data_file):
            manifest.append(SafetyInput(fmt, name, str(path), "damaged"))
        if spec.forgeries:
            for forged in spec.forgeries(adapter, fmt_dir, valid, values):
                manifest.append(SafetyInput(fmt, forged.name, str(forged.path), forged.group))
        for name, path in fifo_inputs(fmt_dir, valid, values, spec.data_file).items():
            manifest.append(SafetyInput(fmt, name, str(path), "hostile"))
    return manifest


def write_manifest(inputs: list[SafetyInput], path: Path) -> None:
    path.write_text(json.dumps([asdict(item) for item in inputs], indent=1))


def read_manifest(path: Path) -> list[SafetyInput]:
    return [SafetyInput(**item) for item in json.loads(path.read_text())]
