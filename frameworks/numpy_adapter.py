"""NumPy adapter: `np.save` (.npy), `np.savez` (.npz), the pickled `np.save` of d2l's TF/JAX
recipe, and safetensors through `safetensors.numpy`. bfloat16 is `ml_dtypes.bfloat16`.

Its MLP is the reference forward pass the other frameworks are checked against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from frameworks import files
from frameworks.base import Adapter, FormatSpec, check_mlp_state, safetensors_spec
from frameworks.errors import FormatMismatchError
from frameworks.trees import map_tree

MAPPING_KINDS = frozenset({"dict", "mlp"})
PICKLE_KINDS = frozenset({"tensor", "list", "dict", "nested", "mlp"})

NPY = FormatSpec(
    "npy",
    frozenset({"tensor"}),
    "np.save: exactly one array",
    "the .npy magic b'\\x93NUMPY'",
    files.is_npy,
    suffix=".npy",
)
NPZ = FormatSpec(
    "npz",
    MAPPING_KINDS,
    "np.savez: a zip of named .npy arrays",
    "a zip archive of .npy members",
    files.is_npz,
    suffix=".npz",
)
NPY_PICKLE = FormatSpec(
    "npy-pickle",
    PICKLE_KINDS,
    "np.save(allow_pickle=True): containers become one array or a pickled object array",
    "the .npy magic b'\\x93NUMPY' (np.load also reads .npz)",
    files.is_npy_or_npz,
    executes_code=True,
    suffix=".npy",
)
SAFETENSORS = safetensors_spec()


def check_npy_size(path: Path) -> None:
    """Refuse an .npy whose header declares more bytes than the file holds (a truncated file, or an
    allocation bomb that would make np.load try to allocate terabytes)."""
    with open(path, "rb") as handle:
        major, _minor = np.lib.format.read_magic(handle)
        reader = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _fortran_order, dtype = reader(handle)
        header_end = handle.tell()
    if dtype.hasobject:
        return
    declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    available = path.stat().st_size - header_end
    if declared > available:
        raise FormatMismatchError(
            f"{path} is damaged: its .npy header declares shape {shape} of {dtype} ({declared:,} bytes) but "
            f"only {available:,} bytes follow; the file is truncated or forged"
        )


def save_npy_pickle(tree: Any, path: Path) -> None:
    """d2l's recipe: `np.save` of whatever the caller has, pickling where it must."""
    with open(path, "wb") as handle:
        np.save(handle, tree, allow_pickle=True)


def load_npy_pickle(path: Path) -> Any:
    """d2l's recipe read back: `np.load(allow_pickle=True)` as a tree (see `np_load_tree`)."""
    return np_load_tree(path, allow_pickle=True)


def np_load_tree(path: Path, allow_pickle: bool) -> Any:
    """`np.load`, unwrapping the 0-d object array a pickled container becomes.

    Like `np.load`, it reads an .npz archive too, as a dict.
    """
    loaded = np.load(path, allow_pickle=allow_pickle)
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    if loaded.dtype == object and loaded.ndim == 0:
        return loaded.item()
    return loaded


class NumpyAdapter(Adapter):
    name = "numpy"
    specs = (NPY, NPZ, NPY_PICKLE, SAFETENSORS)

    def __init__(self) -> None:
        import ml_dtypes  # noqa: F401  (registers bfloat16 with NumPy)
        import safetensors.numpy

        self._safetensors = safetensors.numpy

    def tensor_from_numpy(self, array: np.ndarray) -> np.ndarray:
        return np.asarray(array)

    def tensor_to_numpy(self, tensor: Any) -> np.ndarray:
        return np.asarray(tensor)

    def _save(self, tree: Any, path: Path, format: str) -> None:
        if format == "npy":
            with open(path, "wb") as handle:
                np.save(handle, tree, allow_pickle=False)
        elif format == "npz":
            with open(path, "wb") as handle:
                np.savez(handle, **tree)
        elif format == "npy-pickle":
            save_npy_pickle(tree, path)
        else:
            contiguous = {key: np.ascontiguousarray(value) for key, value in tree.items()}
            self._safetensors.save_file(contiguous, str(path))

    def _load(self, path: Path, format: str, device: str) -> Any:
        if format == "npy":
            check_npy_size(path)
            return np.load(path, allow_pickle=False)
        if format == "npz":
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        if format == "npy-pickle":
            return map_tree(load_npy_pickle(path), np.asarray)
        return self._safetensors.load_file(str(path))

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
