"""Registry of framework adapters.

The registry is data: a framework name maps to the dotted path of its adapter class and the
command that installs the framework. Adapter modules import nothing heavy at module level, and an
adapter imports its framework in its constructor, because a framework may be missing (the GPU
machine has no TensorFlow or MXNet), heavy (TensorFlow takes seconds), or broken (MXNet needs
numpy<2). So `import frameworks` loads no torch, tensorflow or mxnet.
"""

from __future__ import annotations

import functools
import importlib

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
}

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
    "get_adapter",
    "names",
]


def names() -> tuple[str, ...]:
    """Every registered framework, installed or not."""
    return tuple(REGISTRY)


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
        raise ImportError(
            f"framework {name!r} is not usable here ({error}); install it with: {REGISTRY[name][1]}"
        ) from error


def available() -> tuple[str, ...]:
    """The frameworks that import here. This imports each framework (seconds for TensorFlow)."""
    usable = []
    for name in REGISTRY:
        try:
            get_adapter(name)
        except ImportError:
            continue
        usable.append(name)
    return tuple(usable)
