"""Every public entry point that reads a file, per framework, as data.

The trust-gate tests and the safety matrix iterate this list, so an entry point added here (or a
format added to an adapter) is attacked with every canary, FIFO, directory and bomb without a test
being edited; `undeclared_loaders` finds public `*load*` methods that are missing from it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import frameworks
from frameworks import training


@dataclass(frozen=True)
class EntryPoint:
    name: str
    formats: tuple[str, ...]
    read: Callable[[frameworks.Adapter, Path, str, bool], Any]
    """(adapter, path, format, trusted) -> what the entry point returns, as NumPy where it is data."""


def _load(adapter: frameworks.Adapter, path: Path, fmt: str, trusted: bool) -> Any:
    return adapter.to_numpy(adapter.load(path, fmt, trusted=trusted))


def _read_arrays(adapter: frameworks.Adapter, path: Path, fmt: str, trusted: bool) -> Any:
    return adapter.read_arrays(path, fmt, trusted=trusted)


def _load_mlp(adapter: frameworks.Adapter, path: Path, fmt: str, trusted: bool) -> Any:
    clone = adapter.load_mlp(path, fmt, adapter.blank_mlp(), trusted=trusted)
    return adapter.mlp_state(clone)


def _restore_checkpoint(adapter: frameworks.Adapter, path: Path, fmt: str, trusted: bool) -> Any:
    recipe = training.training_recipe(adapter.name)
    model, optimizer = recipe.new(seed=1)
    epoch, loss = recipe.load_checkpoint(path, model, optimizer, trusted=trusted)
    return {"epoch": epoch, "loss": loss, **recipe.state(model, optimizer)}


def _load_bn_model(adapter: frameworks.Adapter, path: Path, fmt: str, trusted: bool) -> Any:
    recipe = training.training_recipe(adapter.name)
    return recipe.bn_buffers(recipe.bn_load(path, seed=1))


def _load_whole_model(adapter: frameworks.Adapter, path: Path, fmt: str, trusted: bool) -> Any:
    return adapter.load_whole_model(path, trusted=trusted)


def entry_points(framework: str) -> list[EntryPoint]:
    """The file-reading entry points of one framework, each with the formats it takes."""
    cls = frameworks.adapter_class(framework)
    points = [
        EntryPoint("Adapter.load", tuple(s.name for s in cls.specs if not s.model_only), _load),
        EntryPoint("Adapter.load_mlp", tuple(s.name for s in cls.specs if "mlp" in s.holds), _load_mlp),
        EntryPoint(
            "Adapter.read_arrays",
            tuple(s.name for s in cls.specs if not s.model_only or s.read_arrays is not None),
            _read_arrays,
        ),
    ]
    if cls.training_recipe:
        recipe = training.recipe_class(framework)
        points.append(
            EntryPoint(f"{recipe.__name__}.load_checkpoint", (recipe.checkpoint_format,), _restore_checkpoint)
        )
        points.append(EntryPoint(f"{recipe.__name__}.bn_load", (recipe.bn_format,), _load_bn_model))
    if cls.whole_model_formats:
        points.append(EntryPoint("Adapter.load_whole_model", cls.whole_model_formats, _load_whole_model))
    return points


def public_loaders(cls: type) -> set[str]:
    """`Class.method` for every public method of `cls` whose name says it loads or reads a file."""
    return {
        f"{cls.__name__}.{name}"
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") and ("load" in name or name.startswith("read_"))
    }


def undeclared_loaders(framework: str) -> set[str]:
    """Public loading methods of the framework's adapter and recipe that `entry_points` does not list."""
    cls = frameworks.adapter_class(framework)
    found = {name.replace(f"{cls.__name__}.", "Adapter.", 1) for name in public_loaders(cls)}
    if cls.training_recipe:
        found |= public_loaders(training.recipe_class(framework))
    declared = {point.name for point in entry_points(framework)}
    return found - declared - {f"Adapter.{name}" for name in cls.gated_readers}
