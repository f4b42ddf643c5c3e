"""NumPy adapter: `np.save` (.npy), `np.savez` (.npz), the pickled `np.save` of d2l's TF/JAX
recipe, and safetensors through `safetensors.numpy`. bfloat16 is `ml_dtypes.bfloat16`.

Its MLP is the reference forward pass the other frameworks are checked against.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from frameworks import files, forgeries, gate
from frameworks.base import Adapter, FormatSpec, check_mlp_state, safetensors_load_file, safetensors_spec
from frameworks.errors import FormatMismatchError, ResourceLimitError, UnsafeLoadError
from frameworks.findings import (
    NPY_BFLOAT16,
    NPY_PICKLE_STACKED_LIST,
    SAFETENSORS_KEY_ORDER,
    SAFETENSORS_ORDER,
    TRAILING,
    TRAILING_IGNORED,
    UNCHECKED_DATA,
    UNPICKLES,
    Expectation,
    Finding,
    SafetyFinding,
    fifo_blocks,
)
from frameworks.trees import map_tree

MAX_INFLATION = 100
"""The most an npz's members may inflate over their compressed size, once they are over MAX_INFLATED_FREELY
(deflate reaches about 1000x on zeros; the float tensors of a checkpoint compress by well under 10x)."""
MAX_INFLATED_FREELY = 64 << 20
MAPPING_KINDS = frozenset({"dict", "mlp"})
PICKLE_KINDS = frozenset({"tensor", "list", "dict", "nested", "mlp"})


def _npy_header(handle: Any, path: Path, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from an .npy header at the handle's position, or FormatMismatchError."""
    try:
        major, _minor = np.lib.format.read_magic(handle)
        reader = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _fortran_order, dtype = reader(handle, max_header_size=100_000)
    except ValueError as error:
        raise FormatMismatchError(f"{path}{where} has a damaged .npy header: {error}") from None
    return shape, dtype


def check_npy_size(path: Path, allow_objects: bool = False) -> None:
    """Refuse an .npy whose header declares more bytes than the file holds (a truncated file, or an
    allocation bomb that would make np.load try to allocate terabytes) or than the load budget, and
    an object array unless `allow_objects` (the trusted pickle format)."""
    with open(path, "rb") as handle:
        shape, dtype = _npy_header(handle, path, "")
        header_end = handle.tell()
    if dtype.hasobject:
        if allow_objects:
            return
        raise UnsafeLoadError(
            f"refusing {path}: it is an object array, which loading would unpickle (code from the file could "
            f"run); only the trusted 'npy-pickle' format reads object arrays"
        )
    declared = math.prod(shape) * dtype.itemsize
    available = path.stat().st_size - header_end
    if declared > available:
        raise FormatMismatchError(
            f"{path} is damaged: its .npy header declares shape {shape} of {dtype} ({declared:,} bytes) but "
            f"only {available:,} bytes follow; the file is truncated or forged"
        )
    gate.check_declared(path, "npy", declared, "its array")


def _npz_members(path: Path, archive: zipfile.ZipFile, allow_objects: bool) -> list[zipfile.ZipInfo]:
    """The archive's members, each checked: an .npy whose header matches its size, within the budget."""
    members = archive.infolist()
    gate.check_count(path, "npz", len(members), "members")
    names = [info.filename for info in members]
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise FormatMismatchError(f"{path} is not a valid 'npz' file: it holds the member {twice!r} twice")
    inflated = sum(info.file_size for info in members)
    gate.check_declared(path, "npz", inflated, "its members (uncompressed)")
    compressed = sum(info.compress_size for info in members)
    if inflated > MAX_INFLATED_FREELY and inflated > MAX_INFLATION * max(compressed, 1):
        raise ResourceLimitError(
            f"refusing {path} as 'npz': its members inflate from {compressed:,} to {inflated:,} bytes "
            f"({inflated / max(compressed, 1):,.0f}x), more than the {MAX_INFLATION}x serbench inflates an npz "
            "beyond 64 MiB (a deflate bomb looks like this; real tensors compress far less). If you made it, "
            "save it without compression (np.savez) or load it with np.load yourself"
        )
    for info in members:
        where = f" (member {info.filename!r})"
        if not info.filename.endswith(".npy"):
            raise FormatMismatchError(f"{path}{where} is not an .npy array: an npz holds .npy members only")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise FormatMismatchError(
                f"{path}{where} is compressed with zip method {info.compress_type}; np.savez writes stored or "
                f"deflated members only"
            )
        with archive.open(info) as member:
            shape, dtype = _npy_header(member, path, where)
            header_end = member.tell()
        if dtype.hasobject:
            if allow_objects:
                continue
            raise UnsafeLoadError(
                f"refusing {path}{where}: it is an object array, which loading would unpickle (code from the "
                f"file could run); only the trusted 'npy-pickle' format reads object arrays"
            )
        declared = math.prod(shape) * dtype.itemsize
        if declared != info.file_size - header_end:
            raise FormatMismatchError(
                f"{path}{where} is damaged: its header declares {shape} of {dtype} ({declared:,} bytes) but the "
                f"member holds {info.file_size - header_end:,}"
            )
    return members


def check_npz(path: Path, allow_objects: bool = False) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            _npz_members(path, archive, allow_objects)
    except zipfile.BadZipFile as error:
        raise FormatMismatchError(f"{path} is not a valid 'npz' file: {error}") from None


def check_npy_or_npz(path: Path) -> None:
    """The trusted pickle format's sizes (object arrays are its point, so they pass)."""
    if files.is_npy(path):
        check_npy_size(path, allow_objects=True)
    else:
        check_npz(path, allow_objects=True)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an npz the gate admitted (`check_npz` checked every member), in member order.
    np.load's NpzFile looks members up by name, which is quadratic in the member count (80,000
    members took 80 s); this reads them in one pass."""
    with zipfile.ZipFile(path) as archive:
        arrays = {}
        for info in archive.infolist():
            with archive.open(info) as member:
                arrays[info.filename[: -len(".npy")]] = np.lib.format.read_array(member, allow_pickle=False)
        return arrays


def save_npy_pickle(tree: Any, path: Path) -> None:
    """d2l's recipe: `np.save` of whatever the caller has, pickling where it must."""
    with open(path, "wb") as handle:
        np.save(handle, tree, allow_pickle=True)


def load_npy_pickle(path: Path) -> Any:
    """d2l's recipe read back: `np.load(allow_pickle=True)` as a tree (see `np_load_tree`)."""
    return np_load_tree(path, allow_pickle=True)


def np_load_tree(path: Path, allow_pickle: bool, load: Callable[..., Any] = np.load) -> Any:
    """`np.load` (or a framework's wrapper of it, `jnp.load`), unwrapping the 0-d object array a pickled
    container becomes.

    Like `np.load`, it reads an .npz archive too, as a dict.
    """
    loaded = load(path, allow_pickle=allow_pickle)
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    if isinstance(loaded, np.ndarray) and loaded.dtype == object and loaded.ndim == 0:
        return loaded.item()
    return loaded


def _save_npy(adapter: Adapter, array: np.ndarray, path: Path) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def _load_npy(adapter: Adapter, path: Path, device: str) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def _save_npz(adapter: Adapter, arrays: dict[str, np.ndarray], path: Path) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _load_npz(adapter: Adapter, path: Path, device: str) -> dict[str, np.ndarray]:
    return read_npz(path)


def _save_npy_pickle(adapter: Adapter, tree: Any, path: Path) -> None:
    save_npy_pickle(tree, path)


def _load_npy_pickle(adapter: Adapter, path: Path, device: str) -> Any:
    return map_tree(load_npy_pickle(path), np.asarray)


def _save_safetensors(adapter: NumpyAdapter, arrays: dict[str, np.ndarray], path: Path) -> None:
    adapter.safetensors.save_file(
        {key: np.require(value, requirements="C") for key, value in arrays.items()}, str(path)
    )


def _load_safetensors(adapter: NumpyAdapter, path: Path, device: str) -> dict[str, np.ndarray]:
    return adapter.safetensors.load_file(str(path))


def _np_load(allow_pickle: bool) -> Any:
    def read(adapter: Adapter, path: Path) -> Any:
        return np_load_tree(path, allow_pickle)

    return read


def npy_forgeries(adapter: Adapter, directory: Path, valid: Path, reference: Any) -> list[forgeries.Forged]:
    return forgeries.npy_bomb(directory / "allocation-bomb.npy")


def _npz_forgeries(adapter: Adapter, directory: Path, valid: Path, reference: Any) -> list[forgeries.Forged]:
    """A member whose header declares 2^40 elements, a member that is not an .npy, a 2 GiB deflate bomb."""
    declares = directory / "member-declares-2^40.npz"
    declares.write_bytes(forgeries.npz_bytes({"value.npy": forgeries.npy_header((1 << 40,))}))
    with zipfile.ZipFile(valid) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    foreign = directory / "non-npy-member.npz"
    foreign.write_bytes(forgeries.npz_bytes({**members, "readme.txt": b"not an array"}))
    bomb = forgeries.zero_stream_npz(
        directory / "deflate-bomb-2GiB.npz", forgeries.ZIP_BOMB_BYTES, zipfile.ZIP_DEFLATED
    )
    return [
        forgeries.Forged("member-declares-2^40", declares),
        forgeries.Forged("non-npy-member", foreign),
        forgeries.Forged("deflate-bomb-2GiB", bomb),
    ]


NP_LOAD = {"np.load allow_pickle=False": _np_load(False), "np.load allow_pickle=True": _np_load(True)}
"""NumPy's own reader under both settings of its safety flag (the safety matrix opens every input with each)."""


UNPICKLED_BY_NP_LOAD = SafetyFinding(
    ("np.load allow_pickle=True",),
    ("canary-*",),
    "code-executed",
    UNPICKLES + " (np.load with allow_pickle=True unpickles object arrays and plain pickles)",
)
NPY_PICKLE_SAFETY = (
    SafetyFinding(
        ("serbench trusted",),
        ("canary-object-array",),
        "code-executed",
        UNPICKLES + " (trusted=True is the explicit opt-in; a bare pickle is still refused because it lacks the "
        ".npy magic)",
    ),
    SafetyFinding(
        ("serbench",),
        ("valid",),
        "clear-error",
        "serbench refuses pickle-based formats unless trusted=True: safe by default",
    ),
    SafetyFinding(
        ("serbench trusted",),
        ("garbage-appended",),
        "loaded-exact",
        TRAILING + " (untrusted, serbench refuses the format outright)",
    ),
)
"""The npy-pickle format's findings, wherever it is offered (NumPy, TensorFlow)."""


NPY = FormatSpec(
    "npy",
    frozenset({"tensor"}),
    "np.save: exactly one array",
    "the .npy magic b'\\x93NUMPY'",
    files.is_npy,
    suffix=".npy",
    validate=check_npy_size,
    save=_save_npy,
    load=_load_npy,
    framework_loaders=NP_LOAD,
    forgeries=npy_forgeries,
    safety_findings=(
        UNPICKLED_BY_NP_LOAD,
        SafetyFinding(
            ("np.load *",),
            ("allocation-bomb",),
            "memory-blowup",
            "np.load trusts the header's shape and tries to allocate 4 TiB before reading any data; "
            "serbench's npy path checks the declared size against the file first",
        ),
        UNCHECKED_DATA,
        TRAILING_IGNORED,
        *fifo_blocks(NP_LOAD),
    ),
)
NPZ = FormatSpec(
    "npz",
    MAPPING_KINDS,
    "np.savez: a zip of named .npy arrays",
    "a zip archive of .npy members",
    files.is_npz,
    suffix=".npz",
    validate=check_npz,
    save=_save_npz,
    load=_load_npz,
    framework_loaders=NP_LOAD,
    forgeries=_npz_forgeries,
    safety_findings=(
        UNPICKLED_BY_NP_LOAD,
        TRAILING_IGNORED,
        *fifo_blocks(NP_LOAD),
        SafetyFinding(
            ("np.load *",),
            ("member-declares-2^40",),
            "memory-blowup",
            "np.load trusts each member's .npy header and allocates its declared 4 TiB before reading; serbench "
            "compares the declared size with the member's size first",
        ),
        SafetyFinding(
            ("np.load *",),
            ("non-npy-member",),
            "silent-wrong-data",
            "NpzFile returns a member that is not an .npy as raw bytes, as if it were an array",
        ),
        SafetyFinding(
            ("np.load *",),
            ("deflate-bomb-2GiB",),
            "silent-wrong-data",
            "np.load inflates a 2 MB member to 2 GiB with no limit (past the memory cap this is a blow-up); "
            "serbench checks the declared uncompressed sizes against its load budget first",
        ),
    ),
)


def npy_pickle_spec(holds: frozenset[str], description: str, load: Any, save: Any = _save_npy_pickle) -> FormatSpec:
    """d2l's pickled `np.save`, as the NumPy, TensorFlow and JAX adapters offer it: the same files and checks;
    `load(adapter, path, device)` turns what np.load unpickled into the adapter's tensors, and `save` is
    the framework's own call where it has one (`jnp.save`)."""
    return FormatSpec(
        "npy-pickle",
        holds,
        description,
        "the .npy magic b'\\x93NUMPY' (np.load also reads .npz)",
        files.is_npy_or_npz,
        executes_code=True,
        suffix=".npy",
        validate=check_npy_or_npz,
        save=save,
        load=load,
        forgeries=npy_forgeries,
        safety_findings=NPY_PICKLE_SAFETY,
    )


NPY_PICKLE = npy_pickle_spec(
    PICKLE_KINDS,
    "np.save(allow_pickle=True): containers become one array or a pickled object array",
    _load_npy_pickle,
)
SAFETENSORS = safetensors_spec(_save_safetensors, _load_safetensors, framework_loaders=safetensors_load_file("numpy"))


FINDINGS = (
    Finding(
        ("npy", "npy-pickle"),
        ("dtype-bfloat16/tensor",),
        Expectation("drift", NPY_BFLOAT16, ("root: dtype bfloat16 -> |V2",)),
    ),
    Finding(
        ("npz",),
        ("dtype-bfloat16/dict",),
        Expectation("drift", NPY_BFLOAT16, ("root['value']: dtype bfloat16 -> |V2",)),
    ),
    NPY_PICKLE_STACKED_LIST,
    SAFETENSORS_KEY_ORDER,
    Finding(
        ("safetensors",),
        ("d2l-mlp",),
        Expectation(
            "drift",
            (
                SAFETENSORS_ORDER,
                "the NumPy 'model' is the loaded dict itself, while the other frameworks load by name into a module",
            ),
            ("root: key order changed",),
        ),
    ),
)
"""Where this adapter does not round-trip exactly, and why (see `frameworks.findings`)."""


class NumpyAdapter(Adapter):
    name = "numpy"
    specs = (NPY, NPZ, NPY_PICKLE, SAFETENSORS)
    native_mlp_format = "npz"
    packages = ("numpy", "safetensors", "ml-dtypes")
    findings = FINDINGS

    def __init__(self) -> None:
        import ml_dtypes  # noqa: F401  (registers bfloat16 with NumPy)
        import safetensors.numpy

        self.safetensors = safetensors.numpy

    def tensor_from_numpy(self, array: np.ndarray) -> np.ndarray:
        return np.asarray(array)

    def tensor_to_numpy(self, tensor: Any) -> np.ndarray:
        return np.asarray(tensor)

    # The MLP is a dict of float32 arrays with a NumPy forward pass.
    def new_mlp(self, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        model: dict[str, np.ndarray] = {}
        self.set_mlp_state(model, params)
        return model

    def mlp_state(self, model: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {key: value.copy() for key, value in model.items()}

    def set_mlp_state(self, model: dict[str, np.ndarray], params: dict[str, np.ndarray]) -> None:
        check_mlp_state(params)
        model.clear()
        model.update({key: np.array(value, dtype=np.float32) for key, value in params.items()})

    def mlp_forward(self, model: dict[str, np.ndarray], inputs: np.ndarray) -> np.ndarray:
        hidden = np.maximum(inputs @ model["hidden.weight"].T + model["hidden.bias"], 0)
        return hidden @ model["output.weight"].T + model["output.bias"]
