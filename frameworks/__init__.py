"""Registry of framework adapters.

The registry is data: a framework name maps to the dotted path of its adapter class and the
command that installs the framework. Adapter modules import nothing heavy at module level, and an
adapter imports its framework in its constructor, because a framework may be missing (the GPU
machine has no TensorFlow or MXNet), heavy (TensorFlow takes seconds), or broken (MXNet needs
numpy<2). So `import frameworks` loads no torch, tensorflow, mxnet or jax.

Everything serbench knows about a framework is reached from its adapter class: its formats with
their save, load and validation functions, its MLP, devices, threads, packages and training recipe.
`register` adds an adapter at run time (a plug-in, or a test's); it is carried to the harness's child
processes in SERBENCH_EXTRA_ADAPTERS, so they see the same registry.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import subprocess

from frameworks.base import Adapter, FormatSpec
from frameworks.errors import (
    DeviceUnavailableError,
    FormatMismatchError,
    SerbenchError,
    UnknownFormatError,
    UnsafeLoadError,
    UnsupportedError,
)

REGISTRY: dict[str, tuple[str, str]] = {
    "numpy": ("frameworks.numpy_adapter:NumpyAdapter", "pip install -e .[dev]"),
    "torch": ("frameworks.torch_adapter:TorchAdapter", "pip install -e .[torch]"),
    "tensorflow": ("frameworks.tensorflow_adapter:TensorFlowAdapter", "pip install -e .[tensorflow]"),
    "mxnet": ("frameworks.mxnet_adapter:MXNetAdapter", "pip install -e .[mxnet]"),
    "jax": ("frameworks.jax_adapter:JaxAdapter", "pip install -e .[jax]"),
    "null-adapter": ("frameworks.null_adapter:NullAdapter", "nothing to install"),
}
"""name -> ("module:Class", how to install the framework). The null adapter is a baseline (see `baselines`)."""
BUILT_IN = frozenset(REGISTRY)
"""serbench's own adapters: each lives in one of its environments, and the hint names it."""

EXTRA_ADAPTERS_VARIABLE = "SERBENCH_EXTRA_ADAPTERS"


def register(name: str, target: str, install: str) -> None:
    """Add an adapter ("module:Class") to this process's registry and to every child process it starts."""
    REGISTRY[name] = (target, install)
    extra = _extra_registrations()
    extra[name] = [target, install]
    os.environ[EXTRA_ADAPTERS_VARIABLE] = json.dumps(extra)
    adapter_class.cache_clear()


def unregister(name: str) -> None:
    """Undo `register` (tests)."""
    REGISTRY.pop(name, None)
    extra = _extra_registrations()
    extra.pop(name, None)
    if extra:
        os.environ[EXTRA_ADAPTERS_VARIABLE] = json.dumps(extra)
    else:
        os.environ.pop(EXTRA_ADAPTERS_VARIABLE, None)
    adapter_class.cache_clear()
    get_adapter.cache_clear()


def _extra_registrations() -> dict[str, list[str]]:
    text = os.environ.get(EXTRA_ADAPTERS_VARIABLE, "")
    try:
        extra = json.loads(text) if text else {}
    except json.JSONDecodeError:
        message = f"{EXTRA_ADAPTERS_VARIABLE} is not JSON of name -> [module:Class, install]: {text[:200]!r}"
        raise SystemExit(message) from None
    return extra


REGISTRY.update({name: (target, install) for name, (target, install) in _extra_registrations().items()})

__all__ = [
    "REGISTRY",
    "Adapter",
    "DeviceUnavailableError",
    "FormatMismatchError",
    "FormatSpec",
    "SerbenchError",
    "UnknownFormatError",
    "UnsafeLoadError",
    "UnsupportedError",
    "adapter_class",
    "available",
    "baselines",
    "child_environment",
    "get_adapter",
    "is_baseline",
    "names",
    "python_for",
    "readers_of",
    "register",
    "run_child",
    "runs_here",
    "unregister",
]


def names() -> tuple[str, ...]:
    """Every registered framework, installed or not (baselines are not frameworks: see `baselines`)."""
    return tuple(name for name in REGISTRY if not adapter_class(name).baseline)


def baselines() -> tuple[str, ...]:
    """The registered baseline adapters, timed beside the frameworks to measure the harness itself."""
    return tuple(name for name in REGISTRY if adapter_class(name).baseline)


def is_baseline(name: str) -> bool:
    """Whether `name` is a baseline; False for a name not registered here (a row of an old run)."""
    return name in REGISTRY and adapter_class(name).baseline


@functools.cache
def adapter_class(name: str) -> type[Adapter]:
    """The adapter class (its module imports no framework), for reading `specs` cheaply."""
    if name not in REGISTRY:
        raise ValueError(f"unknown framework {name!r}; registered: {', '.join(REGISTRY)}")
    module_name, class_name = REGISTRY[name][0].split(":")
    return getattr(importlib.import_module(module_name), class_name)


@functools.cache
def get_adapter(name: str) -> Adapter:
    """The adapter for `name`, importing its framework now; ImportError says how to install it."""
    cls = adapter_class(name)
    try:
        return cls()
    except ImportError as error:
        raise ImportError(f"framework {name!r} is not usable here ({error}); {install_hint(name)}") from error


def install_hint(name: str) -> str:
    """How to get `name` working: its environment and the Makefile target that builds it, where serbench
    has environments; else the package extra (an adapter registered at run time names its own)."""
    from frameworks import environments

    environment = environments.ENVIRONMENTS.get(getattr(adapter_class(name), "environment", ""))
    if environment is None or name not in BUILT_IN:
        return f"install it with: {REGISTRY[name][1]}"
    where = f"{environment.directory}, built by `make setup` (or `make test` / `make bench`)"
    if environments.runs_here(environment.name):
        return f"it lives in {where}: rebuild it with `make setup`"
    return f"it runs in its own environment, {where}; serbench commands start it there"


def python_for(name: str) -> str:
    """The interpreter that runs `name`'s work: its environment's (`frameworks.environments`)."""
    from frameworks import environments

    return environments.python_for(adapter_class(name).environment)


def child_environment(name: str) -> dict[str, str]:
    """os.environ for a child process that runs `name`'s work (it knows its environment)."""
    from frameworks import environments

    return environments.child_environment(adapter_class(name).environment)


def run_child(name: str, arguments: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """`python ARGUMENTS` in `name`'s environment (`frameworks.environments.run`)."""
    from frameworks import environments

    return environments.run(adapter_class(name).environment, arguments, timeout_s)


def runs_here(name: str) -> bool:
    """Whether `name`'s environment is this interpreter's (its adapter can be used in this process)."""
    from frameworks import environments

    return environments.runs_here(adapter_class(name).environment)


def readers_of(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """(framework, format) pairs that can read `path` as arrays (`Adapter.read_arrays`): their sniffer
    recognises its bytes; best first: formats whose usual file name ending it has, then registry order.
    Imports no framework."""
    from pathlib import Path

    source = Path(path)
    found: list[tuple[int, str, str]] = []
    for name in names():
        for spec in adapter_class(name).specs:
            if spec.directory != source.is_dir() or (spec.model_only and spec.read_arrays is None):
                continue
            try:
                recognised = spec.sniff(source)
            except OSError:
                recognised = False
            if recognised:
                found.append((0 if spec.suffix and source.name.endswith(spec.suffix) else 1, name, spec.name))
    return [(name, fmt) for _, name, fmt in sorted(found, key=lambda item: item[0])]


def available() -> tuple[str, ...]:
    """The frameworks that import here. This imports each framework (seconds for TensorFlow)."""
    usable = []
    for name in names():
        try:
            get_adapter(name)
        except ImportError:
            continue
        usable.append(name)
    return tuple(usable)
