"""Keras's training checkpoint: `tf.train.Checkpoint(model=..., optimizer=..., epoch=..., loss=...)`
in a directory; and the BatchNorm/Dropout variant of the MLP, saved with `save_weights`. Found through
`TensorFlowAdapter.training_recipe`; TensorFlow is imported in the constructor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from frameworks import files, gate
from frameworks.base import mlp_parameters
from frameworks.training import LEARNING_RATE, TrainingRecipe, batch


class KerasTraining(TrainingRecipe):
    name = "tensorflow"
    checkpoint_format = "tf-checkpoint"
    checkpoint_name = "checkpoint.ckpt"
    bn_format = "keras-h5"
    bn_name = "bn.weights.h5"

    def __init__(self) -> None:
        super().__init__()
        self.tf, self.keras = self.adapter.tf, self.adapter.keras

    def new(self, seed: int = 0) -> tuple[Any, Any]:
        model = self.adapter.new_mlp(mlp_parameters(seed))
        optimizer = self.keras.optimizers.Adam(LEARNING_RATE)
        optimizer.build(model.trainable_variables)
        return model, optimizer

    def train(self, model: Any, optimizer: Any, start: int, count: int) -> float:
        loss_fn = self.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        loss = float("nan")
        for step in range(start, start + count):
            inputs, labels = batch(step)
            with self.tf.GradientTape() as tape:
                loss = loss_fn(labels, model(inputs, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return float(loss)

    def _checkpoint(self, model: Any, optimizer: Any, epoch: int = 0, loss: float = 0.0) -> Any:
        return self.tf.train.Checkpoint(
            model=model,
            optimizer=optimizer,
            epoch=self.tf.Variable(epoch),
            loss=self.tf.Variable(loss, dtype=self.tf.float64),
        )

    def write_checkpoint(self, temporary: Path, model: Any, optimizer: Any, epoch: int, loss: float) -> None:
        temporary.mkdir()
        self._checkpoint(model, optimizer, epoch, loss).write(str(temporary / "ckpt"))

    def load_checkpoint(self, path: Path, model: Any, optimizer: Any, *, trusted: bool = False) -> tuple[int, float]:
        source = gate.admit(path, self.adapter.spec(self.checkpoint_format), trusted=trusted)
        checkpoint = self._checkpoint(model, optimizer)
        checkpoint.read(str(source / "ckpt")).assert_consumed()
        return int(checkpoint.epoch.numpy()), float(checkpoint.loss.numpy())

    def state(self, model: Any, optimizer: Any) -> dict[str, np.ndarray]:
        """Positional keys: Keras names variables per instance (mlp_2/dense_4/...)."""
        arrays = {f"model.{i}": v.numpy().copy() for i, v in enumerate(model.weights)}
        arrays.update({f"optimizer.{i}": np.asarray(v.numpy()).copy() for i, v in enumerate(optimizer.variables)})
        return arrays

    def copy_weights(self, source: Any, target: Any) -> None:
        target.set_weights(source.get_weights())

    def bn_model(self, seed: int = 0) -> Any:
        self.keras.utils.set_random_seed(seed)
        layers = self.keras.layers
        model = self.keras.Sequential(
            [
                self.keras.Input((20,)),
                layers.Dense(256),
                layers.BatchNormalization(),
                layers.ReLU(),
                layers.Dropout(0.5),
                layers.Dense(10),
            ]
        )
        return model

    def bn_forward(self, model: Any, inputs: np.ndarray, training: bool) -> np.ndarray:
        return model(inputs, training=training).numpy()

    def bn_train_forward(self, model: Any, inputs: np.ndarray) -> None:
        model(inputs, training=True)

    def bn_buffers(self, model: Any) -> dict[str, np.ndarray]:
        return {f"{v.name}.{i}": v.numpy().copy() for i, v in enumerate(model.non_trainable_weights)}

    def write_bn(self, model: Any, temporary: Path) -> None:
        model.save_weights(str(temporary))

    def bn_load(self, path: Path, seed: int) -> Any:
        model = self.bn_model(seed)
        source = gate.regular_source(path, "keras-h5")
        files.expect_format(source, "keras-h5", files.is_hdf5(source), "the HDF5 signature")
        model.load_weights(str(source))
        return model
