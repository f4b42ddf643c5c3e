"""What every framework's training recipe is and shares (`TrainingRecipe`), and how a recipe is found: through
its adapter's `training_recipe` ("module:Class", imported on first use and checked to be a complete
`TrainingRecipe`: `frameworks.recipes`), never by the framework's name.

A recipe trains the d2l MLP with Adam on deterministic batches, writes the framework's own training
checkpoint atomically and restores it through the trust gate, so that `train k, checkpoint, restore,
train m` equals `train k + m` bit for bit on the CPU; it also builds the BatchNorm/Dropout variant.
A recipe's module imports no framework: the recipe imports it when it is constructed.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

import frameworks
from frameworks import recipes
from frameworks.base import SEED
from frameworks.files import atomic_path

LEARNING_RATE = 1e-2
BATCH = 16


def batch(step: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic training data for one step: inputs (16, 20) float32 and integer labels."""
    generator = np.random.default_rng([SEED, 5_000, step])
    return generator.standard_normal((BATCH, 20), dtype=np.float32), generator.integers(0, 10, size=BATCH)


class TrainingRecipe(abc.ABC):
    """One framework's training recipe (see the module docstring). A model and an optimizer are whatever the
    framework calls them (JAX's optimizer is its optax transformation and state); a subclass sets the class
    attributes below and implements the abstract methods; writes are made atomic here, once."""

    name: ClassVar[str]
    """The framework, as registered: the recipe's adapter is `frameworks.get_adapter(name)`."""
    checkpoint_format: ClassVar[str]
    """The adapter's format (`FormatSpec` name) of the training checkpoint: the gate admits a restore as it."""
    checkpoint_name: ClassVar[str]
    """A file (or directory) name for the training checkpoint, with the suffix its framework's tools expect."""
    bn_format: ClassVar[str]
    """The adapter's format of the BatchNorm/Dropout model's saved parameters."""
    bn_name: ClassVar[str]
    """A file (or directory) name for them."""

    def __init__(self) -> None:
        self.adapter: Any = frameworks.get_adapter(self.name)

    # The d2l MLP, trained --------------------------------------------------------------------
    @abc.abstractmethod
    def new(self, seed: int = 0) -> tuple[Any, Any]:
        """A fresh MLP with `mlp_parameters(seed)` in training mode and its Adam optimizer (LEARNING_RATE)."""

    @abc.abstractmethod
    def train(self, model: Any, optimizer: Any, start: int, count: int) -> float:
        """Run `count` Adam steps on `batch(start)`, `batch(start + 1)`, ... (cross-entropy); the last step's loss."""

    def save_checkpoint(self, path: Path, model: Any, optimizer: Any, epoch: int, loss: float) -> None:
        """Write the training checkpoint (model, optimizer, epoch, loss) at `path`, atomically (`atomic_path`)."""
        with atomic_path(path) as temporary:
            self.write_checkpoint(temporary, model, optimizer, epoch, loss)

    @abc.abstractmethod
    def write_checkpoint(self, temporary: Path, model: Any, optimizer: Any, epoch: int, loss: float) -> None:
        """Write the framework's own training checkpoint at `temporary` (nothing there yet) as its tutorials do."""

    @abc.abstractmethod
    def load_checkpoint(self, path: Path, model: Any, optimizer: Any, *, trusted: bool = False) -> tuple[int, float]:
        """Restore `model` and `optimizer` in place from the checkpoint at `path`, which the trust gate admits first
        (refused unless `trusted` where the load unpickles); the saved (epoch, loss)."""

    @abc.abstractmethod
    def state(self, model: Any, optimizer: Any) -> dict[str, np.ndarray]:
        """Every model value (keys `model.*`) and optimizer slot (keys `optimizer.*`) as NumPy copies, with keys
        that are the same for two models built alike (so two states can be compared key by key)."""

    @abc.abstractmethod
    def copy_weights(self, source: Any, target: Any) -> None:
        """Copy `source`'s model parameters into `target` (the optimizer is left alone)."""

    # The BatchNorm/Dropout variant -------------------------------------------------------------
    @abc.abstractmethod
    def bn_model(self, seed: int = 0) -> Any:
        """Linear(20, 256), BatchNorm, ReLU, Dropout(0.5), Linear(256, 10), initialized from `seed`."""

    @abc.abstractmethod
    def bn_forward(self, model: Any, inputs: np.ndarray, training: bool) -> np.ndarray:
        """The model's output for `inputs`, in training mode (dropout on, batch statistics) or in eval mode."""

    @abc.abstractmethod
    def bn_train_forward(self, model: Any, inputs: np.ndarray) -> None:
        """One pass in training mode that updates the BatchNorm running statistics."""

    @abc.abstractmethod
    def bn_buffers(self, model: Any) -> dict[str, np.ndarray]:
        """The BatchNorm running statistics (the model's non-trainable state) as NumPy copies."""

    def bn_save(self, model: Any, path: Path) -> None:
        """Write the BatchNorm model's parameters and statistics at `path`, atomically (`atomic_path`)."""
        with atomic_path(path) as temporary:
            self.write_bn(model, temporary)

    @abc.abstractmethod
    def write_bn(self, model: Any, temporary: Path) -> None:
        """Write the BatchNorm model's parameters and statistics at `temporary` (nothing there yet), as `bn_format`."""

    @abc.abstractmethod
    def bn_load(self, path: Path, seed: int) -> Any:
        """A new `bn_model(seed)` holding what `bn_save` wrote at `path`, which the trust gate checks first (never
        trusted)."""


def with_recipes() -> tuple[str, ...]:
    """The registered frameworks whose adapters declare a training recipe."""
    return tuple(name for name in frameworks.names() if frameworks.adapter_class(name).training_recipe)


def recipe_class(framework: str) -> type[TrainingRecipe]:
    """The recipe class (its module imports no framework); ValueError naming the frameworks that have one, or
    TypeError if the adapter names a class that is not a complete `TrainingRecipe`."""
    target = frameworks.adapter_class(framework).training_recipe
    if not target:
        raise ValueError(f"{framework} has no training recipe; frameworks with one: {', '.join(with_recipes())}")
    return recipes.resolve(target, TrainingRecipe, f"{framework}'s training recipe")


def training_recipe(framework: str) -> TrainingRecipe:
    """The framework's training recipe, ready to use; ImportError (with the install hint) if it is missing."""
    cls = recipe_class(framework)
    frameworks.get_adapter(framework)
    return cls()
