"""Load modes: each (framework, format) is opened with the framework's own loader under each of its
safety-relevant flags, and with serbench's default path (which refuses code-running formats).

A mode function takes the adapter and a path and returns a NumPy tree to compare with the valid
file's contents, or raises.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import frameworks
from bench import workloads
from frameworks.numpy_adapter import np_load_tree
from frameworks.trees import map_tree

ModeFn = Callable[[frameworks.Adapter, Path], Any]


def _serbench(fmt: str, trusted: bool = False) -> ModeFn:
    def load(adapter: frameworks.Adapter, path: Path) -> Any:
        if "mlp" in adapter.spec(fmt).holds and "dict" not in adapter.spec(fmt).holds:
            clone = adapter.load_mlp(path, fmt, adapter.new_mlp(workloads.mlp_parameters(1)))
            return adapter.mlp_state(clone)
        return adapter.to_numpy(adapter.load(path, fmt, trusted=trusted))

    return load


def _np_load(allow_pickle: bool) -> ModeFn:
    def load(adapter: frameworks.Adapter, path: Path) -> Any:
        return np_load_tree(path, allow_pickle)

    return load


def _torch_load(weights_only: bool) -> ModeFn:
    def load(adapter: frameworks.Adapter, path: Path) -> Any:
        import torch

        loaded = torch.load(path, weights_only=weights_only, map_location="cpu")
        return adapter.to_numpy(map_tree(loaded, lambda t: t.to_dense() if getattr(t, "is_sparse", False) else t))

    return load


def _safetensors_load_file(module: str) -> ModeFn:
    def load(adapter: frameworks.Adapter, path: Path) -> Any:
        import importlib

        return adapter.to_numpy(importlib.import_module(f"safetensors.{module}").load_file(str(path)))

    return load


def _keras_load_model(safe_mode: bool) -> ModeFn:
    def load(adapter: frameworks.Adapter, path: Path) -> Any:
        import keras

        model = keras.saving.load_model(path, safe_mode=safe_mode)
        hidden, output = model.get_layer("hidden"), model.get_layer("output")
        return {
            "hidden.weight": np.ascontiguousarray(hidden.kernel.numpy().T),
            "hidden.bias": hidden.bias.numpy(),
            "output.weight": np.ascontiguousarray(output.kernel.numpy().T),
            "output.bias": output.bias.numpy(),
        }

    return load


def _keras_load_weights(adapter: frameworks.Adapter, path: Path) -> Any:
    clone = adapter.new_mlp(workloads.mlp_parameters(1))
    clone.load_weights(str(path))
    return adapter.mlp_state(clone)


def _npx_load(adapter: frameworks.Adapter, path: Path) -> Any:
    return adapter.to_numpy(adapter.npx.load(str(path)))


def _gluon_load_parameters(adapter: frameworks.Adapter, path: Path) -> Any:
    clone = adapter.new_mlp(workloads.mlp_parameters(1))
    clone.load_parameters(str(path))
    return adapter.mlp_state(clone)


MODES: dict[tuple[str, str], dict[str, ModeFn]] = {
    ("numpy", "npy"): {
        "np.load allow_pickle=False": _np_load(False),
        "np.load allow_pickle=True": _np_load(True),
        "serbench": _serbench("npy"),
    },
    ("numpy", "npz"): {
        "np.load allow_pickle=False": _np_load(False),
        "np.load allow_pickle=True": _np_load(True),
        "serbench": _serbench("npz"),
    },
    ("numpy", "npy-pickle"): {
        "serbench": _serbench("npy-pickle"),
        "serbench trusted": _serbench("npy-pickle", trusted=True),
    },
    ("numpy", "safetensors"): {
        "safetensors.numpy.load_file": _safetensors_load_file("numpy"),
        "serbench": _serbench("safetensors"),
    },
    ("torch", "torch"): {
        "torch.load weights_only=True": _torch_load(True),
        "torch.load weights_only=False": _torch_load(False),
        "serbench": _serbench("torch"),
    },
    ("torch", "safetensors"): {
        "safetensors.torch.load_file": _safetensors_load_file("torch"),
        "serbench": _serbench("safetensors"),
    },
    ("tensorflow", "npy-pickle"): {
        "serbench": _serbench("npy-pickle"),
        "serbench trusted": _serbench("npy-pickle", trusted=True),
    },
    ("tensorflow", "tf-checkpoint"): {"serbench": _serbench("tf-checkpoint")},
    ("tensorflow", "keras-h5"): {"model.load_weights": _keras_load_weights, "serbench": _serbench("keras-h5")},
    ("tensorflow", "keras"): {
        "keras.saving.load_model safe_mode=True": _keras_load_model(True),
        "keras.saving.load_model safe_mode=False": _keras_load_model(False),
    },
    ("tensorflow", "safetensors"): {
        "safetensors.tensorflow.load_file": _safetensors_load_file("tensorflow"),
        "serbench": _serbench("safetensors"),
    },
    ("mxnet", "mx-ndarray"): {"npx.load": _npx_load, "serbench": _serbench("mx-ndarray")},
    ("mxnet", "gluon-params"): {"Block.load_parameters": _gluon_load_parameters, "serbench": _serbench("gluon-params")},
    ("mxnet", "safetensors"): {"serbench": _serbench("safetensors")},
}


def modes_for(framework: str, fmt: str) -> dict[str, ModeFn]:
    """The load modes for one format: the framework's own loaders listed above, and always serbench's
    default path (plus its trusted path where the format unpickles), so a new format is covered."""
    modes = dict(MODES.get((framework, fmt), {}))
    if fmt in frameworks.adapter_class(framework).format_names():
        modes.setdefault("serbench", _serbench(fmt))
        if frameworks.adapter_class(framework).spec(fmt).executes_code:
            modes.setdefault("serbench trusted", _serbench(fmt, trusted=True))
    return modes
