"""A null adapter: save and load are in-memory copies, no file I/O, no framework.

Timed through the same harness as the real adapters, it measures the harness's own cost per call
(on a 32-byte tensor) and checks the timing against memcpy (on a 64 MiB dict).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from frameworks.base import Adapter, FormatSpec
from frameworks.trees import map_tree

MEMORY = FormatSpec(
    "memory",
    frozenset({"tensor", "list", "dict", "nested"}),
    "an in-memory copy (no I/O)",
    "a path this adapter saved to",
    lambda path: True,
)


class NullAdapter(Adapter):
    name = "null-adapter"
    specs = (MEMORY,)

    def __init__(self) -> None:
        self._store: dict[str, Any] = {}

    def tensor_from_numpy(self, array: np.ndarray) -> np.ndarray:
        return array

    def tensor_to_numpy(self, tensor: np.ndarray) -> np.ndarray:
        return tensor

    def save(self, tree: Any, path: str | Path, format: str) -> None:
        self._store[str(path)] = map_tree(tree, np.copy)

    def load(self, path: str | Path, format: str, device: str = "cpu", *, trusted: bool = False) -> Any:
        return map_tree(self._store[str(path)], np.copy)

    def _save(self, tree: Any, path: Path, format: str) -> None:  # pragma: no cover - save is overridden
        raise NotImplementedError

    def _load(self, path: Path, format: str, device: str) -> Any:  # pragma: no cover - load is overridden
        raise NotImplementedError

    def new_mlp(self, params: dict[str, np.ndarray]) -> Any:
        raise NotImplementedError("the null adapter has no MLP")

    mlp_state = set_mlp_state = mlp_forward = new_mlp
