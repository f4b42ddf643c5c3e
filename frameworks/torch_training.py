"""PyTorch's training checkpoint, as its tutorials write one: a single `torch.save` file holding the
model's and the optimizer's state_dicts, epoch and loss (d2l seeds 001, 002); and the BatchNorm/Dropout
variant of the MLP. Found through `TorchAdapter.training_recipe`; torch is imported in the constructor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from frameworks import gate
from frameworks.base import mlp_parameters
from frameworks.training import LEARNING_RATE, TrainingRecipe, batch


class TorchTraining(TrainingRecipe):
    name = "torch"
    checkpoint_format = "torch"
    checkpoint_name = "checkpoint.pt"
    bn_format = "torch"
    bn_name = "bn.pt"

    def __init__(self) -> None:
        super().__init__()
        self.torch = self.adapter.torch

    def new(self, seed: int = 0) -> tuple[Any, Any]:
        model = self.adapter.new_mlp(mlp_parameters(seed)).train()
        return model, self.torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)

    def train(self, model: Any, optimizer: Any, start: int, count: int) -> float:
        loss = self.torch.tensor(float("nan"))
        for step in range(start, start + count):
            inputs, labels = (self.torch.from_numpy(a) for a in batch(step))
            optimizer.zero_grad()
            loss = self.torch.nn.functional.cross_entropy(model(inputs), labels)
            loss.backward()
            optimizer.step()
        return float(loss.detach())

    def write_checkpoint(self, temporary: Path, model: Any, optimizer: Any, epoch: int, loss: float) -> None:
        self.adapter.save_to_file(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "loss": loss},
            temporary,
        )

    def load_checkpoint(self, path: Path, model: Any, optimizer: Any, *, trusted: bool = False) -> tuple[int, float]:
        source = gate.admit(path, self.adapter.spec(self.checkpoint_format), trusted=trusted)
        checkpoint = self.adapter.read_torch_file(source)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        return checkpoint["epoch"], checkpoint["loss"]

    def state(self, model: Any, optimizer: Any) -> dict[str, np.ndarray]:
        arrays = {f"model.{k}": v.detach().numpy().copy() for k, v in model.state_dict().items()}
        for index, slots in optimizer.state_dict()["state"].items():
            for slot, value in slots.items():
                arrays[f"optimizer.{index}.{slot}"] = np.asarray(
                    value.detach().numpy() if hasattr(value, "numpy") else value
                )
        return arrays

    def copy_weights(self, source: Any, target: Any) -> None:
        target.load_state_dict(source.state_dict())

    def bn_model(self, seed: int = 0) -> Any:
        self.torch.manual_seed(seed)
        nn = self.torch.nn
        return nn.Sequential(nn.Linear(20, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 10))

    def bn_forward(self, model: Any, inputs: np.ndarray, training: bool) -> np.ndarray:
        model.train(training)
        with self.torch.no_grad():
            return model(self.torch.from_numpy(inputs)).numpy()

    def bn_train_forward(self, model: Any, inputs: np.ndarray) -> None:
        """One forward pass in training mode: updates the BatchNorm running statistics."""
        model.train()
        model(self.torch.from_numpy(inputs))

    def bn_buffers(self, model: Any) -> dict[str, np.ndarray]:
        return {k: v.numpy().copy() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}

    def write_bn(self, model: Any, temporary: Path) -> None:
        self.adapter.save_to_file(model.state_dict(), temporary)

    def bn_load(self, path: Path, seed: int) -> Any:
        model = self.bn_model(seed)
        source = gate.admit(path, self.adapter.spec(self.bn_format), trusted=False)
        model.load_state_dict(self.adapter.read_torch_file(source))
        return model.eval()
