"""PyTorch adapter: `torch.save` (pickle in a zip, loaded with `weights_only=True`) and
safetensors through `safetensors.torch`. The MLP is d2l's `nn.Module`; loads go through
`load_state_dict` and `eval()`, as the seeds teach.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from frameworks import files
from frameworks.base import Adapter, FormatSpec, check_mlp_state, safetensors_spec
from frameworks.errors import UnsafeLoadError

TORCH = FormatSpec(
    "torch",
    frozenset({"tensor", "list", "dict", "nested", "mlp", "checkpoint"}),
    "torch.save: a zip holding a pickle (data.pkl) and raw storages; loaded with weights_only=True",
    "a zip archive holding data.pkl",
    files.is_torch_zip,
    suffix=".pt",
)
SAFETENSORS = safetensors_spec("load_file maps the file, reading nothing until touched", lazy=True)


def _mlp_class(torch: Any) -> type:
    class MLP(torch.nn.Module):
        """d2l 5.5: Linear(20, 256) -> ReLU -> Linear(256, 10)."""

        def __init__(self) -> None:
            super().__init__()
            self.hidden = torch.nn.Linear(20, 256)
            self.output = torch.nn.Linear(256, 10)

        def forward(self, x: Any) -> Any:
            return self.output(torch.nn.functional.relu(self.hidden(x)))

    return MLP


class TorchAdapter(Adapter):
    name = "torch"
    specs = (TORCH, SAFETENSORS)

    def __init__(self) -> None:
        import ml_dtypes
        import safetensors.torch
        import torch

        self.torch = torch
        self._bfloat16 = ml_dtypes.bfloat16
        self._safetensors = safetensors.torch
        self._mlp = _mlp_class(torch)

    def thread_settings(self) -> dict[str, object]:
        return {
            **super().thread_settings(),
            "torch.get_num_threads": self.torch.get_num_threads(),
            "torch.get_num_interop_threads": self.torch.get_num_interop_threads(),
        }

    def devices(self) -> tuple[str, ...]:
        return ("cpu", "cuda") if self.torch.cuda.is_available() else ("cpu",)

    def device_note(self) -> str:
        if self.torch.version.cuda is None:
            return f"torch {self.torch.__version__} is a CPU-only build"
        return "torch.cuda.is_available() is False: no CUDA device visible"

    def device_of(self, tensor: Any) -> str:
        return tensor.device.type

    def tensor_from_numpy(self, array: np.ndarray) -> Any:
        if array.dtype == self._bfloat16:
            return self.torch.from_numpy(array.view(np.int16)).view(self.torch.bfloat16)
        return self.torch.from_numpy(array)

    def ready(self, tensor: Any) -> np.ndarray | None:
        if tensor.device.type == "cuda":
            self.torch.cuda.synchronize(tensor.device)
            return None
        return self.tensor_to_numpy(tensor)

    def tensor_to_numpy(self, tensor: Any) -> np.ndarray:
        tensor = tensor.detach().cpu()
        if tensor.dtype == self.torch.bfloat16:
            return tensor.view(self.torch.int16).numpy().view(self._bfloat16)
        return tensor.numpy()

    def _save(self, tree: Any, path: Path, format: str) -> None:
        if format == "torch":
            self.save_to_file(tree, path)
        else:
            self._safetensors.save_file({key: value.contiguous() for key, value in tree.items()}, str(path))

    def save_to_file(self, obj: Any, path: Path) -> None:
        """torch.save through a Python file: on a failed write torch's own path writer removes the
        partial file and reports "invalid file name", hiding the cause; a file object keeps it."""
        with open(path, "wb") as handle:
            self.torch.save(obj, handle)

    def _load(self, path: Path, format: str, device: str) -> Any:
        if format == "torch":
            try:
                return self.torch.load(path, map_location=device, weights_only=True)
            except pickle.UnpicklingError as error:
                raise UnsafeLoadError(
                    f"refusing {path}: it holds pickled objects beyond tensors and containers (a whole "
                    f"model, say), which torch.load(weights_only=True) will not rebuild because unpickling "
                    f"them runs code. If you trust the file, use load_whole_model(path, trusted=True). "
                    f"torch said: {str(error).splitlines()[0][:200]}"
                ) from error
        return self._safetensors.load_file(str(path), device=device)

    def load_whole_model(self, path: str | Path, device: str = "cpu", *, trusted: bool = False) -> Any:
        """`torch.load(weights_only=False)` of a `torch.save(model)` file: runs the file's pickle."""
        source = files.require_existing(path)
        files.expect_format(source, "torch", files.is_torch_zip(source), TORCH.signature)
        if not trusted:
            raise UnsafeLoadError(
                f"refusing to unpickle {source} as a whole model: that runs code from the file. "
                f"Pass trusted=True only for files you made (or load a state_dict instead)."
            )
        self.check_device(device)
        return self.torch.load(source, map_location=device, weights_only=False)

    def new_mlp(self, params: dict[str, np.ndarray]) -> Any:
        model = self._mlp()
        self.set_mlp_state(model, params)
        return model.eval()

    def mlp_state(self, model: Any) -> dict[str, np.ndarray]:
        return {key: value.detach().numpy().copy() for key, value in model.state_dict().items()}

    def set_mlp_state(self, model: Any, params: dict[str, np.ndarray]) -> None:
        check_mlp_state(params)
        model.load_state_dict({key: self.torch.tensor(value) for key, value in params.items()})

    def mlp_forward(self, model: Any, inputs: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return model.eval()(self.torch.from_numpy(inputs)).numpy()

    def _save_mlp(self, model: Any, path: Path, format: str) -> None:
        if format == "torch":
            self.save_to_file(model.state_dict(), path)
        else:
            self._safetensors.save_file(model.state_dict(), str(path))

    def _load_mlp(self, path: Path, format: str, clone: Any) -> None:
        if format == "torch":
            state = self.torch.load(path, map_location="cpu", weights_only=True)
        else:
            state = self._safetensors.load_file(str(path))
        clone.load_state_dict(state)
        clone.eval()
