"""Gluon's training checkpoint: `save_parameters` + `Trainer.save_states` + epoch and loss in one
directory (GLUON_CHECKPOINT, which counts as pickle: `load_states` unpickles); and the BatchNorm/Dropout
variant of the MLP. Found through `MXNetAdapter.training_recipe`; MXNet is imported in the constructor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from frameworks import gate
from frameworks.base import mlp_parameters
from frameworks.errors import FormatMismatchError
from frameworks.mxnet_adapter import GLUON_CHECKPOINT
from frameworks.training import BATCH, LEARNING_RATE, TrainingRecipe, batch


class GluonTraining(TrainingRecipe):
    name = "mxnet"
    checkpoint_format = "gluon-params"
    checkpoint_name = "checkpoint.gluon"
    bn_format = "gluon-params"
    bn_name = "bn.params"

    def __init__(self) -> None:
        super().__init__()
        self.mx = self.adapter.mx
        from mxnet import autograd, gluon

        self.autograd, self.gluon = autograd, gluon

    def new(self, seed: int = 0) -> tuple[Any, Any]:
        model = self.adapter.new_mlp(mlp_parameters(seed))
        return model, self.gluon.Trainer(model.collect_params(), "adam", {"learning_rate": LEARNING_RATE})

    def train(self, model: Any, trainer: Any, start: int, count: int) -> float:
        loss_fn = self.gluon.loss.SoftmaxCrossEntropyLoss()
        loss = None
        for step in range(start, start + count):
            inputs, labels = batch(step)
            with self.autograd.record():
                loss = loss_fn(model(self.mx.np.array(inputs)), self.mx.np.array(labels.astype(np.float32)))
            loss.backward()
            trainer.step(BATCH)
        return float(loss.mean()) if loss is not None else float("nan")

    def write_checkpoint(self, temporary: Path, model: Any, trainer: Any, epoch: int, loss: float) -> None:
        temporary.mkdir()
        model.save_parameters(str(temporary / "model.params"))
        trainer.save_states(str(temporary / "trainer.states"))
        (temporary / "progress.json").write_text(json.dumps({"epoch": epoch, "loss": loss}))

    def load_checkpoint(self, path: Path, model: Any, trainer: Any, *, trusted: bool = False) -> tuple[int, float]:
        """Trainer.load_states unpickles, so the checkpoint is refused unless `trusted` (see GLUON_CHECKPOINT)."""
        source = gate.admit(path, GLUON_CHECKPOINT, trusted=trusted)
        progress = read_progress(source / "progress.json")
        self.adapter.load_mlp(source / "model.params", "gluon-params", model)
        trainer.load_states(str(source / "trainer.states"))
        return progress["epoch"], progress["loss"]

    def state(self, model: Any, trainer: Any) -> dict[str, np.ndarray]:
        arrays = {f"model.{i}": p.data().asnumpy() for i, p in enumerate(model.collect_params().values())}
        updater = trainer._updaters[0]
        for index, slots in sorted(updater.states.items()):
            for slot, value in enumerate(slots if isinstance(slots, tuple | list) else (slots,)):
                arrays[f"optimizer.{index}.{slot}"] = value.asnumpy()
        return arrays

    def copy_weights(self, source: Any, target: Any) -> None:
        for (_, src), (_, dst) in zip(source.collect_params().items(), target.collect_params().items(), strict=True):
            dst.set_data(src.data())

    def bn_model(self, seed: int = 0) -> Any:
        self.mx.random.seed(seed)
        nn = self.gluon.nn
        model = nn.HybridSequential()
        model.add(
            nn.Dense(256, in_units=20),
            nn.BatchNorm(in_channels=256),
            nn.Activation("relu"),
            nn.Dropout(0.5),
            nn.Dense(10, in_units=256),
        )
        model.initialize(self.mx.init.Xavier())
        return model

    def bn_forward(self, model: Any, inputs: np.ndarray, training: bool) -> np.ndarray:
        with self.autograd.record(train_mode=training):
            return model(self.mx.np.array(inputs)).asnumpy()

    def bn_train_forward(self, model: Any, inputs: np.ndarray) -> None:
        """MXNet 1.x updates BatchNorm's running statistics in the backward pass, so run one."""
        with self.autograd.record(train_mode=True):
            output = model(self.mx.np.array(inputs)).sum()
        output.backward()
        self.mx.nd.waitall()

    def bn_buffers(self, model: Any) -> dict[str, np.ndarray]:
        params = model.collect_params().items()
        return {k.split("_", 1)[-1] + f".{i}": v.data().asnumpy() for i, (k, v) in enumerate(params) if "running" in k}

    def write_bn(self, model: Any, temporary: Path) -> None:
        model.save_parameters(str(temporary))

    def bn_load(self, path: Path, seed: int) -> Any:
        model = self.bn_model(seed)
        source = gate.admit(path, self.adapter.spec(self.bn_format), trusted=False)
        model.load_parameters(str(source))
        return model


def read_progress(path: Path) -> dict[str, Any]:
    """The progress.json of a Gluon checkpoint the gate admitted (so a regular file):
    {"epoch": int, "loss": float}, or a FormatMismatchError."""
    size = path.stat().st_size
    if size > 4096:
        raise FormatMismatchError(f"{path} is {size:,} bytes; a progress record is a few dozen")
    try:
        progress = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FormatMismatchError(f"{path} is not JSON: {error}") from None
    if not (
        isinstance(progress, dict)
        and type(progress.get("epoch")) is int
        and isinstance(progress.get("loss"), int | float)
        and not isinstance(progress.get("loss"), bool)
    ):
        raise FormatMismatchError(f"{path} holds {str(progress)[:100]}, not {{'epoch': int, 'loss': float}}")
    return progress
