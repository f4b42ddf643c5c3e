"""The one save/load interface every framework adapter implements.

An adapter converts trees to and from NumPy, saves and loads them in each format its framework
really uses, and builds the d2l "File I/O" MLP (20 -> 256 -> 10, ReLU). Subclasses import their
framework in `__init__`, never at module top, so the registry can read `formats` cheaply and
`import frameworks` stays light.

Canonical MLP parameters are NumPy float32 arrays named `hidden.weight` (256, 20), `hidden.bias`,
`output.weight` (10, 256), `output.bias`: weights in (out, in) layout, as in PyTorch and Gluon.
"""

from __future__ import annotations

import abc
import functools
import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from frameworks import files, forgeries, gate, validators
from frameworks.errors import (
    DeviceUnavailableError,
    FormatMismatchError,
    UnknownFormatError,
    UnsupportedError,
)
from frameworks.findings import NO_CHECKSUM, Finding, SafetyFinding, fifo_blocks
from frameworks.trees import map_tree, tree_kind

SAFETENSORS_DTYPES = frozenset(
    {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"}
)
"""Safetensors dtype codes a NumPy-based reader can return (no float8, no complex)."""

TREE_KINDS = frozenset({"tensor", "list", "dict", "nested"})
"""The kinds a format stores through its `save` and `load` (the MLP and checkpoints have their own paths)."""

MLP_SHAPES = {
    "hidden.weight": (256, 20),
    "hidden.bias": (256,),
    "output.weight": (10, 256),
    "output.bias": (10,),
}

SEED = 20_250_505
"""The seed of every generated array in serbench (workloads, MLP parameters, training batches)."""


def mlp_parameters(seed: int = 0) -> dict[str, np.ndarray]:
    """d2l MLP parameters, PyTorch's default init: uniform(+-1/sqrt(fan_in)), float32."""
    generator = np.random.default_rng([SEED, 1_000 + seed])
    params = {}
    for name, shape in MLP_SHAPES.items():
        fan_in = MLP_SHAPES[name.replace("bias", "weight")][1]
        bound = 1 / np.sqrt(fan_in)
        params[name] = generator.uniform(-bound, bound, size=shape).astype(np.float32)
    return params


@dataclass(frozen=True)
class FormatSpec:
    """What one storage format is, as data."""

    name: str
    holds: frozenset[str]
    """Kinds (see `frameworks.trees.KINDS`) the format can store."""
    description: str
    signature: str
    """What a file of this format starts with, for error messages."""
    sniff: Callable[[Path], bool]
    executes_code: bool = False
    """Loading may run code from the file (pickle), so `trusted=True` is required."""
    suffix: str = ""
    """The file name ending this format's files conventionally have (Keras insists on its own)."""
    lazy: bool = False
    """`load` returns tensors backed by a memory map: nothing is read until they are touched."""
    directory: bool = False
    """A file of this format is a directory of regular files (a TensorFlow checkpoint)."""
    subdirectories: bool = False
    """The directory may hold directories of regular files too (an Orbax checkpoint); never links."""
    data_file: Callable[[Path], Path] | None = None
    """For a directory format whose array bytes are not stored as written (compressed): the file in a
    checkpoint that holds them, which the safety matrix's damaged variants damage."""
    validate: Callable[[Path], None] | None = None
    """Checks the sizes, counts and types the file declares against what it holds and the load budget,
    before any framework parser allocates; raises a SerbenchError (see `frameworks.gate`)."""
    save: Callable[[Any, Any, Path], None] | None = None
    """`save(adapter, tree, path)`: writes a tree of the adapter's tensors (required if it holds a tree kind)."""
    load: Callable[[Any, Path, str], Any] | None = None
    """`load(adapter, path, device)`: reads a file the gate admitted back as a tree of the adapter's tensors."""
    save_mlp: Callable[[Any, Any, Path], None] | None = None
    """`save_mlp(adapter, model, path)`, where the format stores a model its own way; otherwise the
    model's state dict is saved with `save`."""
    load_mlp: Callable[[Any, Path, Any], None] | None = None
    """`load_mlp(adapter, path, clone)`: restores the file into `clone`; otherwise `load` then
    `Adapter.set_mlp_state`, after `check_mlp_file`."""
    framework_loaders: Mapping[str, Callable[[Any, Path], Any]] = field(default_factory=dict)
    """The framework's own readers of this format under each of their safety flags, by label
    (`"torch.load weights_only=True"`): `reader(adapter, path)` returns what it read as a NumPy tree.
    The safety matrix opens every input with each of them beside serbench's own load."""
    forgeries: Callable[[Any, Path, Path, Any], list[Any]] | None = None
    """For the safety matrix: `forgeries(adapter, directory, valid, reference)` writes, in `directory`, the
    files of this format that declare what they do not hold, bombs, and content it must refuse, given a
    valid file and the NumPy values in it; returns them as `frameworks.forgeries.Forged`."""
    safety_findings: tuple[SafetyFinding, ...] = ()
    """What this format's loaders (serbench's and `framework_loaders`) do with the safety matrix's inputs
    where it is not the default (the valid file loads exactly, the rest is a clear error)."""
    code_canary: Callable[[Any, Path, str, Any], str] | None = None
    """For a format that can carry code other than pickles: `code_canary(adapter, path, source, reference)`
    writes at `path` a valid file whose loading calls the Python lambda `source`; returns the input's name."""
    read_arrays: Callable[[Any, Path], Any] | None = None
    """`read_arrays(adapter, path)`: a file of this format that serbench did not write (a user's checkpoint,
    any parameters, not only the MLP's) as a NumPy tree, for a format whose `load` cannot read one (a Keras
    weights file needs its model); it checks what the file declares itself. Tree formats use `load`."""
    uses: tuple[str, ...] = ()
    """Packages beyond the framework itself that this format's save and load call (pip names): a
    `serbench versions` run of one of them takes the framework's other formats as its controls."""
    unpickles: bool = False
    """The file is a pickle read by a restricted unpickler (torch's weights_only=True): no code runs, but a
    pickle parser reads it, so `serbench bench` asks for --trusted as it does for `executes_code`."""

    @property
    def model_only(self) -> bool:
        """The format stores a model's parameters, not trees (Keras weights, Gluon params)."""
        return self.save is None

    def tree_save(self) -> Callable[[Any, Any, Path], None]:
        """`save`, or UnsupportedError for a format that holds no tree."""
        if self.save is None:
            raise UnsupportedError(f"format {self.name!r} holds only {', '.join(sorted(self.holds))}, not a tree")
        return self.save

    def tree_load(self) -> Callable[[Any, Path, str], Any]:
        """`load`, or UnsupportedError for a format that holds no tree."""
        if self.load is None:
            raise UnsupportedError(f"format {self.name!r} holds only {', '.join(sorted(self.holds))}, not a tree")
        return self.load

    def missing_functions(self) -> list[str]:
        """The save/load functions this spec needs for the kinds it holds but lacks: each pair comes whole,
        trees need `save` and `load`, and the MLP needs one of the two pairs."""
        missing = []
        for writer, reader in (("save", "load"), ("save_mlp", "load_mlp")):
            if (getattr(self, writer) is None) != (getattr(self, reader) is None):
                missing.append(reader if getattr(self, reader) is None else writer)
        if self.save is None and (self.holds & TREE_KINDS or ("mlp" in self.holds and self.save_mlp is None)):
            missing += ["save", "load"]
        return missing


@dataclass(frozen=True)
class ShardLoader:
    """One way users load a checkpoint of flat tensors at scale (one file, or shards with an index): a
    loader variant of the format it reads, declared by a framework's scale recipe (`frameworks.scale`).
    `serbench run --scale` times it, and the tests hold it to reading every tensor bit-exactly."""

    name: str
    format: str
    """The format of the files it reads (a `FormatSpec` name of its framework): the gate admits each file as that."""
    description: str
    read: Callable[[Any, list[Path], str], tuple[dict[str, Any], Callable[[], None]]]
    """`read(recipe, files, device)`: every tensor of the checkpoint's files, by name, on `device`, and what
    releases them (a loader's own buffers): called after the tensors were checked."""
    lazy: bool = False
    """The tensors are backed by a memory map (nothing read until touched): materializing copies them."""
    devices: tuple[str, ...] = ("cpu", "cuda")
    """The devices it loads onto; on another it is "unavailable" with `only_on`'s reason."""
    only_on: str = ""
    """Why it cannot load onto the devices it lacks (its own documentation's words)."""
    package: str = ""
    """The distribution it needs beyond the framework (pip name), recorded in env.json; missing: unavailable."""


def _safetensors_forgeries(adapter: Any, directory: Path, valid: Path, reference: Any) -> list[Any]:
    return forgeries.safetensors_bomb(directory / "allocation-bomb.safetensors")


def safetensors_spec(
    save: Callable[[Any, Any, Path], None],
    load: Callable[[Any, Path, str], Any],
    note: str = "",
    lazy: bool = False,
    dtypes: frozenset[str] = SAFETENSORS_DTYPES,
    findings: tuple[SafetyFinding, ...] = (),
    **functions: Any,
) -> FormatSpec:
    """The safetensors format as every adapter offers it (a flat dict of str -> tensor), written and read
    with the adapter's `save` and `load`; `dtypes` are the safetensors dtype codes its reader can return;
    `findings`: what the adapter's other loaders of the format do (ahead of the shared ones)."""
    return FormatSpec(
        "safetensors",
        frozenset({"dict", "mlp"}),
        "safetensors: a flat dict of str -> tensor" + (f"; {note}" if note else ""),
        "an 8-byte header length then a JSON header",
        files.is_safetensors,
        suffix=".safetensors",
        uses=("safetensors",),
        lazy=lazy,
        validate=functools.partial(validators.safetensors_header, dtypes=dtypes),
        save=save,
        load=load,
        forgeries=_safetensors_forgeries,
        safety_findings=(
            *findings,
            SafetyFinding(
                ("*",),
                ("flipped-data-byte",),
                "silent-wrong-data",
                NO_CHECKSUM + " (safetensors validates the header, not the data)",
            ),
            *fifo_blocks(functions.get("framework_loaders", {})),
        ),
        **functions,
    )


def safetensors_load_file(module: str) -> dict[str, Callable[[Any, Path], Any]]:
    """`safetensors.<module>.load_file` as a framework loader of the safety matrix."""

    def read(adapter: Adapter, path: Path) -> Any:
        return adapter.to_numpy(importlib.import_module(f"safetensors.{module}").load_file(str(path)))

    return {f"safetensors.{module}.load_file": read}


class Adapter(abc.ABC):
    """Common interface; see the module docstring."""

    name: ClassVar[str]
    specs: ClassVar[tuple[FormatSpec, ...]]
    baseline: ClassVar[bool] = False
    """A harness baseline (the null adapter): timed like a framework, but no framework, file or MLP;
    reports keep it out of every comparison between frameworks."""
    safety_specs: ClassVar[tuple[FormatSpec, ...]] = ()
    """Formats serbench does not offer but the safety matrix opens with the framework's own loaders
    (a whole Keras model, which can carry code in a Lambda layer)."""
    findings: ClassVar[tuple[Finding, ...]] = ()
    """Where the framework does not round-trip exactly, with the reason (first match wins; see
    `frameworks.findings`): the conformance suite asserts them and the support table shows them."""
    packages: ClassVar[tuple[str, ...]] = ()
    """The distributions (as pip names them) whose versions a result depends on: recorded in env.json."""
    environment: ClassVar[str] = "core"
    """The Python environment the framework runs in (`frameworks.environments`): its benchmark
    processes, safety loads, checkpoint reads and tests run with that environment's interpreter."""
    training_recipe: ClassVar[str] = ""
    """"module:Class" of the framework's training recipe (see `frameworks.training`), if it has one."""
    whole_model_formats: ClassVar[tuple[str, ...]] = ()
    """Formats that `load_whole_model(path, trusted=...)` reads: a pickled model, code and all."""
    gated_readers: ClassVar[tuple[str, ...]] = ()
    """Public methods that read a file only after a format's `load` admitted it through the gate."""
    times_host_to_device: ClassVar[bool] = False
    """Whether `host_to_device_seconds` is implemented (then it measures the machine's host-to-device limit)."""
    native_mlp_format: ClassVar[str] = ""
    """The format the framework's own tutorial saves a model's parameters in (cross-framework tests)."""
    scale_recipe: ClassVar[str] = ""
    """"module:Class" of the framework's scale recipe (see `frameworks.scale`): its loaders of large sharded
    checkpoints (`ShardLoader`), its writers of them, and its distributed checkpoint engine, if any."""
    thread_variables: ClassVar[tuple[str, ...]] = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    """Environment variables that size this framework's thread pools; read when it is imported."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A format that cannot save or load what it claims to hold is a defect of the adapter, reported
        when its module is imported (not when a benchmark first reaches that format)."""
        super().__init_subclass__(**kwargs)
        for spec in (*cls.__dict__.get("specs", ()), *cls.__dict__.get("safety_specs", ())):
            if missing := spec.missing_functions():
                raise TypeError(
                    f"{cls.__name__}: format {spec.name!r} holds {sorted(spec.holds)} but has no {', '.join(missing)}"
                )

    @classmethod
    def thread_env(cls, threads: str) -> dict[str, str | None]:
        """The environment a process needs for a thread setting ("default" or a count), set before
        the framework is imported; None removes a variable (the framework's default applies)."""
        return {name: None if threads == "default" else str(int(threads)) for name in cls.thread_variables}

    def thread_settings(self) -> dict[str, object]:
        """The thread settings in effect in this process, as the framework reports them."""
        return {name: os.environ.get(name, "unset") for name in self.thread_variables}

    @classmethod
    def format_names(cls) -> tuple[str, ...]:
        return tuple(spec.name for spec in cls.specs)

    @property
    def formats(self) -> tuple[str, ...]:
        return self.format_names()

    @classmethod
    def spec(cls, format_name: str) -> FormatSpec:
        for spec in cls.specs:
            if spec.name == format_name:
                return spec
        raise UnknownFormatError(
            f"{cls.name} has no format {format_name!r}; valid formats: {', '.join(cls.format_names())}"
        )

    @classmethod
    def safety_spec(cls, format_name: str) -> FormatSpec:
        """A format the safety matrix opens: one of `specs`, or of `safety_specs`."""
        for spec in cls.safety_specs:
            if spec.name == format_name:
                return spec
        return cls.spec(format_name)

    # Tensors -------------------------------------------------------------------------------
    def devices(self) -> tuple[str, ...]:
        """Devices this build of the framework can load onto here."""
        return ("cpu",)

    def check_device(self, device: str) -> None:
        if device not in self.devices():
            raise DeviceUnavailableError(
                f"{self.name} cannot use device {device!r} here: available {self.devices()} ({self.device_note()})"
            )

    def device_note(self) -> str:
        return "this adapter loads to host memory only"

    def device_of(self, tensor: Any) -> str:
        """Where a loaded tensor lives, in the device axis's words ("cpu" or "cuda")."""
        return "cpu"

    def reset_device_memory_peak(self, device: str) -> None:
        """Start measuring the peak memory a load adds on `device` (see `device_memory_peak`)."""
        return None

    def device_memory_peak(self, device: str) -> int | None:
        """Peak bytes allocated on `device` since `reset_device_memory_peak`, above what was allocated
        then; None where the framework cannot say (and always for the host: its RSS is measured apart)."""
        return None

    def host_to_device_seconds(self, nbytes: int, rounds: int, pinned: bool) -> tuple[list[float], str]:
        """Seconds for each of `rounds` copies of `nbytes` from host memory (page-locked if `pinned`) to
        the accelerator, waited for, and the device's name: the machine's host-to-device limit.
        DeviceUnavailableError (saying why) where this adapter has no accelerator here."""
        raise DeviceUnavailableError(f"{self.name} cannot copy to an accelerator ({self.device_note()})")

    @abc.abstractmethod
    def tensor_from_numpy(self, array: np.ndarray) -> Any:
        """One NumPy array as a framework tensor, same dtype, shape and bits."""

    @abc.abstractmethod
    def tensor_to_numpy(self, tensor: Any) -> np.ndarray:
        """One framework tensor as a NumPy array (bfloat16 as ml_dtypes.bfloat16)."""

    def ready(self, tensor: Any) -> np.ndarray | None:
        """Block until `tensor`'s data is complete; return a zero-copy host view, or None if none exists."""
        return self.tensor_to_numpy(tensor)

    def from_numpy(self, tree: Any) -> Any:
        return map_tree(tree, self.tensor_from_numpy)

    def to_numpy(self, tree: Any) -> Any:
        return map_tree(tree, self.tensor_to_numpy)

    # Save and load -------------------------------------------------------------------------
    def check_holds(self, spec: FormatSpec, kind: str) -> None:
        if kind not in spec.holds:
            raise UnsupportedError(
                f"format {spec.name!r} of {self.name} cannot hold a {kind}: it holds "
                f"{', '.join(sorted(spec.holds))} ({spec.description})"
            )

    def save(self, tree: Any, path: str | Path, format: str) -> None:
        """Save a tree of this framework's tensors; the file appears atomically."""
        spec = self.spec(format)
        self.check_holds(spec, tree_kind(tree))
        with files.atomic_path(path) as temporary:
            self._save(tree, temporary, spec)

    def load(self, path: str | Path, format: str, device: str = "cpu", *, trusted: bool = False) -> Any:
        """Load a tree saved in `format`, with its tensors on `device`."""
        spec = self.spec(format)
        self.check_holds_trees(spec)
        self.check_device(device)
        source = gate.admit(path, spec, trusted=trusted)
        return spec.tree_load()(self, source, device)

    def read_arrays(self, path: str | Path, format: str, *, trusted: bool = False) -> Any:
        """A file of `format` that serbench did not write (a user's checkpoint), through the gate, as a tree
        whose tensors are NumPy arrays; leaves that are not tensors (an epoch number, a name) stay as they are."""
        spec = self.spec(format)
        if spec.read_arrays is None:
            self.check_holds_trees(spec)
        source = gate.admit(path, spec, trusted=trusted, validate=spec.read_arrays is None)
        if spec.read_arrays is not None:
            return spec.read_arrays(self, source)
        return map_tree(spec.tree_load()(self, source, "cpu"), self._leaf_to_numpy)

    def _leaf_to_numpy(self, leaf: Any) -> Any:
        return leaf if isinstance(leaf, str | bytes | int | float | complex | None) else self.tensor_to_numpy(leaf)

    def check_holds_trees(self, spec: FormatSpec) -> None:
        if spec.model_only:
            raise UnsupportedError(
                f"format {spec.name!r} of {self.name} holds only {', '.join(sorted(spec.holds))}, not a tree of "
                f"tensors: use load_mlp ({spec.description})"
            )

    def _save(self, tree: Any, path: Path, spec: FormatSpec) -> None:
        """Write to `path` (the temporary the save renames into place)."""
        spec.tree_save()(self, tree, path)

    # The d2l MLP ---------------------------------------------------------------------------
    @abc.abstractmethod
    def new_mlp(self, params: dict[str, np.ndarray]) -> Any:
        """A fresh d2l MLP holding `params` (canonical layout)."""

    @abc.abstractmethod
    def mlp_state(self, model: Any) -> dict[str, np.ndarray]:
        """The model's parameters in canonical names and layout."""

    @abc.abstractmethod
    def set_mlp_state(self, model: Any, params: dict[str, np.ndarray]) -> None: ...

    @abc.abstractmethod
    def mlp_forward(self, model: Any, inputs: np.ndarray) -> np.ndarray:
        """Forward pass in inference mode, as NumPy."""

    def blank_mlp(self) -> Any:
        """A model of the MLP's architecture with zero parameters, to load a file into."""
        return self.new_mlp({key: np.zeros(shape, np.float32) for key, shape in MLP_SHAPES.items()})

    def mlp_formats(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.specs if "mlp" in spec.holds)

    def save_mlp(self, model: Any, path: str | Path, format: str) -> None:
        """Save the model's parameters (not its code), as the d2l chapter does."""
        spec = self.spec(format)
        self.check_holds(spec, "mlp")
        with files.atomic_path(path) as temporary:
            self._save_mlp(model, temporary, spec)

    def load_mlp(self, path: str | Path, format: str, clone: Any, *, trusted: bool = False) -> Any:
        """Load saved parameters into `clone` (a model of the same architecture) and return it.

        The file passes the trust gate like any load, and its parameters must be the MLP's, float32,
        in the MLP's shapes: a framework that would cast float64 or integer bits silently is not asked."""
        spec = self.spec(format)
        self.check_holds(spec, "mlp")
        source = gate.admit(path, spec, trusted=trusted)
        if spec.load_mlp is not None:
            spec.load_mlp(self, source, clone)
        else:
            state = self.to_numpy(spec.tree_load()(self, source, "cpu"))
            check_mlp_file(source, spec.name, state)
            self.set_mlp_state(clone, state)
        return clone

    def _save_mlp(self, model: Any, path: Path, spec: FormatSpec) -> None:
        """The format's own model save, else the state dict of framework tensors saved like any dict."""
        if spec.save_mlp is not None:
            spec.save_mlp(self, model, path)
        else:
            spec.tree_save()(self, self.from_numpy(self.mlp_state(model)), path)


def check_mlp_state(params: dict[str, np.ndarray]) -> None:
    """Raise ValueError if `params` is not a complete canonical MLP state."""
    found = {key: tuple(np.shape(value)) for key, value in params.items()}
    if found != MLP_SHAPES:
        raise ValueError(f"expected MLP parameters {MLP_SHAPES}, found {found}")


def dtype_name(value: Any) -> str:
    """'float32' for a float32 NumPy array, torch tensor (torch.float32) or declared array."""
    return str(getattr(value, "dtype", type(value).__name__)).removeprefix("torch.")


def check_mlp_file(path: Path, format: str, params: Any, shapes: Mapping[str, tuple[int, ...]] = MLP_SHAPES) -> None:
    """Raise FormatMismatchError unless a loaded file held exactly the MLP's parameters, as float32: by
    default in canonical names and layout, else the framework's own (`shapes`, a flat name -> shape)."""
    if not isinstance(params, dict):
        raise FormatMismatchError(f"{path} ({format!r}) holds a {type(params).__name__}, not the MLP's parameters")
    found = {key: (dtype_name(value), tuple(np.shape(value))) for key, value in params.items()}
    wanted = {key: ("float32", shape) for key, shape in shapes.items()}
    if found != wanted:
        names = sorted(set(found) | set(wanted))
        wrong = {key: found.get(key, "missing") for key in names if found.get(key) != wanted.get(key)}
        raise FormatMismatchError(
            f"{path} ({format!r}) does not hold the MLP's float32 parameters: wrong or missing {wrong}; expected "
            f"{ {key: f'float32{shape}' for key, shape in shapes.items()} }"
        )
