"""One strategy per kind of workload: what a case saves, what a load fills, and what is compared.

- a tree (tensor, list, dict, nested) is saved with `Adapter.save` and read back with `Adapter.load`,
  on any device the adapter has;
- the d2l MLP is a model: `save_mlp`, then `load_mlp` into a clone initialised differently;
- a training checkpoint is the framework's training recipe (model and optimizer after two Adam
  steps), restored into a fresh model and optimizer;
- a user's checkpoint in a format that cannot hold a tree (Keras weights) is still a row in the format it came
  in (`timed_as_given`): its own file, where it is, loaded as serbench reads it (`read_arrays`, untrusted).

The benchmark (`bench.timing.test_io`), the round trip (`bench.conformance.roundtrip`) and the
peak-memory child all go through `kind_of(workload)`, so no caller branches on a kind's name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import workloads
from frameworks import Adapter, FormatSpec, UnsupportedError, gate
from frameworks.errors import SerbenchError
from frameworks.trees import flatten_tensors


@dataclass
class Subject:
    """One workload made for one framework.

    `reference` is the NumPy tree a load must give back; `native` is what is saved; `target` is what a
    load fills (a clone, a fresh model and optimizer; None for a tree, which a load creates)."""

    reference: Any = None
    native: Any = None
    target: Any = None
    recipe: Any = None
    loss: float = float("nan")
    workload: str = ""


def timed_as_given(workload: workloads.Workload, framework: str, spec: FormatSpec) -> bool:
    """Whether `spec`, which cannot hold `workload`, is still timed: it is the format a user's checkpoint came in,
    read whole by this framework (`Workload.as_given`), and it reads arrays without trust (a stored run never
    decides that a pickle is loaded trusted)."""
    return (
        workload.kind not in spec.holds
        and workload.as_given == (framework, spec.name)
        and spec.read_arrays is not None
        and not (spec.executes_code or spec.unpickles)
    )


def _given(adapter: Adapter, subject: Subject, format: str) -> bool:
    return bool(subject.workload) and timed_as_given(
        workloads.WORKLOADS[subject.workload], adapter.name, adapter.spec(format)
    )


class Kind:
    """A tree of tensors: `Adapter.save` / `Adapter.load`."""

    loads_on_devices = True
    """Loads can target an accelerator (a model's device is its own: it loads where its clone lives)."""
    returns_tree = True
    """`load` returns a new tree, whose pages a benchmark must touch; a model is filled in place."""

    def subject(self, adapter: Adapter, workload: str) -> Subject:
        reference = workloads.build(workload)
        return Subject(reference, adapter.from_numpy(reference), workload=workload)

    def load_only(self, adapter: Adapter, workload: str) -> Subject:
        """Only what `load` needs, nothing to save or compare (the peak-memory child measures from here)."""
        return Subject(workload=workload)

    def save(self, adapter: Adapter, subject: Subject, path: Path, format: str) -> None:
        if _given(adapter, subject, format):  # serbench cannot write this format: the case reads the user's file
            raise UnsupportedError(f"{path}, the checkpoint as given, is no longer there: nothing to load")
        adapter.save(subject.native, path, format)

    def load(self, adapter: Adapter, subject: Subject, path: Path, format: str, device: str = "cpu") -> Any:
        """Load what `save` wrote (trusted: serbench wrote it) and return what holds the loaded values; the
        user's own file as serbench reads it (untrusted: serbench did not write it), its tensors by name."""
        if _given(adapter, subject, format):
            return flatten_tensors(adapter.read_arrays(path, format, trusted=False))[0]
        return adapter.load(path, format, device, trusted=True)

    def state(self, adapter: Adapter, subject: Subject, loaded: Any) -> Any:
        """The loaded values as a NumPy tree, to compare with `subject.reference`."""
        return adapter.to_numpy(loaded)


class ModelKind(Kind):
    """The d2l MLP: saved with `save_mlp`, loaded into a clone whose own initialisation differs."""

    loads_on_devices = False
    returns_tree = False

    def subject(self, adapter: Adapter, workload: str) -> Subject:
        reference = workloads.build(workload)
        return Subject(reference, adapter.new_mlp(reference), self.load_only(adapter, workload).target)

    def load_only(self, adapter: Adapter, workload: str) -> Subject:
        return Subject(target=adapter.new_mlp(workloads.mlp_parameters(seed=1)))

    def save(self, adapter: Adapter, subject: Subject, path: Path, format: str) -> None:
        adapter.save_mlp(subject.native, path, format)

    def load(self, adapter: Adapter, subject: Subject, path: Path, format: str, device: str = "cpu") -> Any:
        return adapter.load_mlp(path, format, subject.target, trusted=True)

    def state(self, adapter: Adapter, subject: Subject, loaded: Any) -> Any:
        return adapter.mlp_state(loaded)


class CheckpointKind(ModelKind):
    """The framework's training checkpoint: two Adam steps, saved in its idiom, restored into fresh
    objects; every model and optimizer value is compared. The format is the recipe's own."""

    def subject(self, adapter: Adapter, workload: str) -> Subject:
        subject = self.load_only(adapter, workload)
        native = subject.recipe.new(0)
        subject.loss = subject.recipe.train(*native, 0, 2)
        subject.native, subject.reference = native, subject.recipe.state(*native)
        return subject

    def load_only(self, adapter: Adapter, workload: str) -> Subject:
        from frameworks.training import training_recipe

        if not adapter.training_recipe:
            raise UnsupportedError(f"{adapter.name} has no optimizer, so no training checkpoint")
        recipe = training_recipe(adapter.name)
        return Subject(target=recipe.new(1), recipe=recipe)

    def save(self, adapter: Adapter, subject: Subject, path: Path, format: str) -> None:
        subject.recipe.save_checkpoint(path, *subject.native, epoch=2, loss=subject.loss)

    def load(self, adapter: Adapter, subject: Subject, path: Path, format: str, device: str = "cpu") -> Any:
        subject.recipe.load_checkpoint(path, *subject.target, trusted=True)
        return subject.target

    def state(self, adapter: Adapter, subject: Subject, loaded: Any) -> Any:
        return subject.recipe.state(*loaded)


TREE, MODEL, CHECKPOINT = Kind(), ModelKind(), CheckpointKind()
KINDS: dict[str, Kind] = {
    "tensor": TREE,
    "list": TREE,
    "dict": TREE,
    "nested": TREE,
    "mlp": MODEL,
    "checkpoint": CHECKPOINT,
}
"""Every workload kind (`Workload.kind`) and its strategy; `tests/test_kinds.py` checks none is missing."""


def kind_of(workload: str) -> Kind:
    """The strategy for a named workload."""
    return KINDS[workloads.WORKLOADS[workload].kind]


def saved_path(adapter: Adapter | type[Adapter], format: str, workload: str, directory: Path) -> Path:
    """Where a case's saved file lives: the benchmark writes it, the peak-memory pass finds it. A user's checkpoint
    timed as given (`timed_as_given`) is its own file, where it is (a link to it resolved, as it was read): read,
    never written or removed; it must be a regular file or a real directory (a stored run naming a FIFO, a device
    or nothing is refused before anything opens it)."""
    given = workloads.WORKLOADS.get(workload)
    if given is not None and timed_as_given(given, adapter.name, adapter.spec(format)):
        source = Path(os.path.realpath(given.source))  # a file given as a link (the Hugging Face cache's) is read
        spec = adapter.spec(format)
        if source.is_dir() and not spec.directory:
            raise UnsupportedError(f"{given.source}, the checkpoint as given, is a directory, not a {format} file")
        try:  # a regular file, or a directory of them for a directory format; no FIFO, device, /proc file, link
            return gate.regular_source(source, format, directory=spec.directory, subdirectories=spec.directory)
        except (SerbenchError, OSError) as refused:
            raise UnsupportedError(f"{given.source}, the checkpoint as given, cannot be read: {refused}") from None
    stem = f"{adapter.name}-{format}-{workload}".replace("/", "_")
    return Path(directory) / f"{stem}{adapter.spec(format).suffix}"
