"""MXNet 1.9 adapter: d2l's `npx.save` / `npx.load` (the NDArray list file, magic 0x112),
Gluon `save_parameters` for the MLP, and safetensors through NumPy.

MXNet 1.9.1 is the last release: it needs numpy<2 and, on numpy >= 1.24, the alias
`numpy.bool = numpy.bool_` before import. The adapter runs MXNet in NumPy mode (`npx.set_np()`),
as d2l does; legacy `nd` arrays cannot hold 0-d or empty shapes. MXNet has no NumPy bfloat16
interop (it silently turns ml_dtypes.bfloat16 into float32), so bfloat16 is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from frameworks import files
from frameworks.base import Adapter, FormatSpec, check_mlp_state, safetensors_spec
from frameworks.errors import UnsupportedError

MX_NDARRAY = FormatSpec(
    "mx-ndarray",
    frozenset({"tensor", "list", "dict", "mlp"}),
    "npx.save: one NDArray, a flat list or a flat dict of str -> NDArray",
    "the MXNet NDArray-list magic 0x112",
    files.is_mxnet_ndarray_list,
    suffix=".ndarray",
)
GLUON_PARAMS = FormatSpec(
    "gluon-params",
    frozenset({"mlp", "checkpoint"}),
    "Gluon Block.save_parameters: a Block's parameters by structural name",
    "the MXNet NDArray-list magic 0x112",
    files.is_mxnet_ndarray_list,
    suffix=".params",
)
SAFETENSORS = safetensors_spec("through NumPy")


def _mlp_class(nn: Any, npx: Any) -> type:
    class MLP(nn.Block):
        """d2l 5.5: Dense(256, relu) -> Dense(10), shapes given so no deferred init."""

        def __init__(self) -> None:
            super().__init__()
            self.hidden = nn.Dense(256, activation="relu", in_units=20)
            self.output = nn.Dense(10, in_units=256)

        def forward(self, x: Any) -> Any:
            return self.output(self.hidden(x))

    return MLP


class MXNetAdapter(Adapter):
    name = "mxnet"
    specs = (MX_NDARRAY, GLUON_PARAMS, SAFETENSORS)
    # the engine's CPU workers and its OpenMP pool; MXNet has no getter, so the variables are the record
    thread_variables = (*Adapter.thread_variables, "MXNET_CPU_WORKER_NTHREADS")

    def __init__(self) -> None:
        if not hasattr(np, "bool"):
            np.bool = np.bool_  # type: ignore[attr-defined]
        import ml_dtypes
        import mxnet
        import safetensors.numpy
        from mxnet import npx
        from mxnet.gluon import nn

        npx.set_np()
        self.mx = mxnet
        self.npx = npx
        self._bfloat16 = ml_dtypes.bfloat16
        self._safetensors = safetensors.numpy
        self._mlp = _mlp_class(nn, npx)

    def devices(self) -> tuple[str, ...]:
        try:
            gpus = self.mx.context.num_gpus()
        except self.mx.base.MXNetError:
            gpus = 0
        return ("cpu", "cuda") if gpus else ("cpu",)

    def device_note(self) -> str:
        return f"mxnet {self.mx.__version__} sees no GPU (the PyPI wheel is a CPU build)"

    def _context(self, device: str) -> Any:
        return self.mx.gpu(0) if device == "cuda" else self.mx.cpu()

    def device_of(self, tensor: Any) -> str:
        return "cuda" if tensor.ctx.device_type == "gpu" else "cpu"

    def tensor_from_numpy(self, array: np.ndarray) -> Any:
        if array.dtype == self._bfloat16:
            raise UnsupportedError("mxnet cannot hold a bfloat16 NumPy array: it would silently become float32")
        return self.mx.np.array(array, dtype=array.dtype)

    def ready(self, tensor: Any) -> np.ndarray | None:
        """MXNet's engine is asynchronous: wait for the data. `asnumpy` would copy, so no view."""
        tensor.wait_to_read()
        return None

    def tensor_to_numpy(self, tensor: Any) -> np.ndarray:
        return tensor.asnumpy()

    def _save(self, tree: Any, path: Path, format: str) -> None:
        if format == "mx-ndarray":
            self.npx.save(str(path), tree)
        else:
            self._safetensors.save_file(
                {key: np.ascontiguousarray(value) for key, value in self.to_numpy(tree).items()}, str(path)
            )

    def _load(self, path: Path, format: str, device: str) -> Any:
        context = self._context(device)
        if format == "mx-ndarray":
            loaded = self.npx.load(str(path))
            if isinstance(loaded, dict):
                return {key: value.as_in_ctx(context) for key, value in loaded.items()}
            return [value.as_in_ctx(context) for value in loaded]
        arrays = self._safetensors.load_file(str(path))
        return {key: self.mx.np.array(value, dtype=value.dtype, ctx=context) for key, value in arrays.items()}

    # The d2l MLP as a Gluon Block -----------------------------------------------------------
    def new_mlp(self, params: dict[str, np.ndarray]) -> Any:
        model = self._mlp()
        model.initialize()
        self.set_mlp_state(model, params)
        return model

    def mlp_state(self, model: Any) -> dict[str, np.ndarray]:
        return {
            "hidden.weight": model.hidden.weight.data().asnumpy(),
            "hidden.bias": model.hidden.bias.data().asnumpy(),
            "output.weight": model.output.weight.data().asnumpy(),
            "output.bias": model.output.bias.data().asnumpy(),
        }

    def set_mlp_state(self, model: Any, params: dict[str, np.ndarray]) -> None:
        check_mlp_state(params)
        for layer_name in ("hidden", "output"):
            layer = getattr(model, layer_name)
            layer.weight.set_data(self.mx.np.array(params[f"{layer_name}.weight"], dtype=np.float32))
            layer.bias.set_data(self.mx.np.array(params[f"{layer_name}.bias"], dtype=np.float32))

    def mlp_forward(self, model: Any, inputs: np.ndarray) -> np.ndarray:
        return model(self.mx.np.array(inputs, dtype=inputs.dtype)).asnumpy()

    def _save_mlp(self, model: Any, path: Path, format: str) -> None:
        if format == "gluon-params":
            model.save_parameters(str(path))
        else:
            super()._save_mlp(model, path, format)

    def _load_mlp(self, path: Path, format: str, clone: Any) -> None:
        if format == "gluon-params":
            clone.load_parameters(str(path), ctx=self.mx.cpu())
        else:
            super()._load_mlp(path, format, clone)
