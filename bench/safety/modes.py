"""Load modes: each (framework, format) is opened with the framework's own loaders under each of their
safety-relevant flags (`FormatSpec.framework_loaders`, declared in the adapter), and with serbench's
default path (which refuses code-running formats), plus its trusted path where the format unpickles.

A mode function takes the adapter and a path and returns a NumPy tree to compare with the valid
file's contents, or raises.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import frameworks

ModeFn = Callable[[frameworks.Adapter, Path], Any]


def _serbench(fmt: str, trusted: bool = False) -> ModeFn:
    def load(adapter: frameworks.Adapter, path: Path) -> Any:
        if adapter.spec(fmt).model_only:
            return adapter.mlp_state(adapter.load_mlp(path, fmt, adapter.blank_mlp(), trusted=trusted))
        return adapter.to_numpy(adapter.load(path, fmt, trusted=trusted))

    return load


def modes_for(framework: str, fmt: str) -> dict[str, ModeFn]:
    """The load modes for one format: the framework's own loaders its adapter declares, and serbench's
    default path for every format serbench offers (so a new format is covered without an edit)."""
    cls = frameworks.adapter_class(framework)
    modes = dict(cls.safety_spec(fmt).framework_loaders)
    if fmt in cls.format_names():
        modes["serbench"] = _serbench(fmt)
        if cls.spec(fmt).executes_code:
            modes["serbench trusted"] = _serbench(fmt, trusted=True)
    return modes
