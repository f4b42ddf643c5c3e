"""The null adapter, the harness's baseline: save and load are in-memory copies, no file, no framework.

Timed through the same harness as the real adapters, it measures the harness's own cost per call
(on a 32-byte tensor) and checks the timing against memcpy (on a 64 MiB dict). It is registered with
`baseline=True`, which is what the plan and the reports ask (not its name): no files, so no page
cache, no cold loads and no peak-memory pass, and it is kept out of every comparison of frameworks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from frameworks.base import Adapter, FormatSpec
from frameworks.trees import map_tree


def _remember(adapter: NullAdapter, tree: Any, path: Path) -> None:
    adapter.store[str(path)] = map_tree(tree, np.copy)


def _recall(adapter: NullAdapter, path: Path, device: str) -> Any:
    return map_tree(adapter.store[str(path)], np.copy)


MEMORY = FormatSpec(
    "memory",
    frozenset({"tensor", "list", "dict", "nested"}),
    "an in-memory copy (no I/O)",
    "a path this adapter saved to",
    lambda path: True,
    save=_remember,
    load=_recall,
)


class NullAdapter(Adapter):
    name = "null-adapter"
    specs = (MEMORY,)
    baseline = True

    def __init__(self) -> None:
        self.store: dict[str, Any] = {}

    def tensor_from_numpy(self, array: np.ndarray) -> np.ndarray:
        return array

    def tensor_to_numpy(self, tensor: np.ndarray) -> np.ndarray:
        return tensor

    def save(self, tree: Any, path: str | Path, format: str) -> None:
        """No file, so no atomic rename: the copy is the save."""
        _remember(self, tree, Path(path))

    def load(self, path: str | Path, format: str, device: str = "cpu", *, trusted: bool = False) -> Any:
        """No file, so nothing for the trust gate to read."""
        return _recall(self, Path(path), device)

    def new_mlp(self, params: dict[str, np.ndarray]) -> Any:
        raise NotImplementedError("the null adapter has no MLP")

    mlp_state = set_mlp_state = mlp_forward = new_mlp
