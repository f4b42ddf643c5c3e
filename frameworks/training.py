"""What every framework's training recipe shares, and how a recipe is found: through its adapter's
`training_recipe` ("module:Class", imported on first use), never by the framework's name.

A recipe trains the d2l MLP with Adam on deterministic batches, writes the framework's own training
checkpoint atomically and restores it through the trust gate, so that `train k, checkpoint, restore,
train m` equals `train k + m` bit for bit on the CPU; it also builds the BatchNorm/Dropout variant.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

import frameworks
from frameworks.base import SEED

LEARNING_RATE = 1e-2
BATCH = 16


def batch(step: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic training data for one step: inputs (16, 20) float32 and integer labels."""
    generator = np.random.default_rng([SEED, 5_000, step])
    return generator.standard_normal((BATCH, 20), dtype=np.float32), generator.integers(0, 10, size=BATCH)


def with_recipes() -> tuple[str, ...]:
    """The registered frameworks whose adapters declare a training recipe."""
    return tuple(name for name in frameworks.names() if frameworks.adapter_class(name).training_recipe)


def recipe_class(framework: str) -> type:
    """The recipe class (its module imports no framework), or ValueError naming those that have one."""
    target = frameworks.adapter_class(framework).training_recipe
    if not target:
        raise ValueError(f"{framework} has no training recipe; frameworks with one: {', '.join(with_recipes())}")
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def training_recipe(framework: str) -> Any:
    """The framework's training recipe, ready to use; ImportError (with the install hint) if it is missing."""
    cls = recipe_class(framework)
    frameworks.get_adapter(framework)
    return cls()
