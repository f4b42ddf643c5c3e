"""Training checkpoints in each framework's own idiom, and the BatchNorm/Dropout variant of the MLP.

- PyTorch: one file holding model and optimizer state_dicts, epoch and loss (seeds 001, 002);
- TensorFlow/Keras: `tf.train.Checkpoint(model=..., optimizer=..., epoch=..., loss=...)`;
- MXNet/Gluon: `save_parameters` + `Trainer.save_states` (+ epoch and loss) in one directory.

Each checkpoint is written atomically. The optimizer is Adam, so restoring must bring back its
moments: `train k, checkpoint, restore, train m` equals `train k + m` bit for bit on the CPU.
Frameworks are imported inside the classes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

import frameworks
from bench import workloads
from frameworks import files, gate
from frameworks.errors import FormatMismatchError
from frameworks.files import atomic_path
from frameworks.mxnet_adapter import GLUON_CHECKPOINT

LEARNING_RATE = 1e-2
BATCH = 16


def batch(step: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic training data for one step: inputs (16, 20) float32 and integer labels."""
    generator = np.random.default_rng([workloads.SEED, 5_000, step])
    return generator.standard_normal((BATCH, 20), dtype=np.float32), generator.integers(0, 10, size=BATCH)


class TorchTraining:
    name = "torch"
    checkpoint_format = "torch"
    bn_format = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.adapter = frameworks.get_adapter("torch")

    def new(self, seed: int = 0) -> tuple[Any, Any]:
        model = self.adapter.new_mlp(workloads.mlp_parameters(seed)).train()
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

    def save_checkpoint(self, path: Path, model: Any, optimizer: Any, epoch: int, loss: float) -> None:
        with atomic_path(path) as temporary:
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

    def bn_save(self, model: Any, path: Path) -> None:
        with atomic_path(path) as temporary:
            self.adapter.save_to_file(model.state_dict(), temporary)

    def bn_load(self, path: Path, seed: int) -> Any:
        model = self.bn_model(seed)
        source = gate.admit(path, self.adapter.spec(self.bn_format), trusted=False)
        model.load_state_dict(self.adapter.read_torch_file(source))
        return model.eval()


class KerasTraining:
    name = "tensorflow"
    checkpoint_format = "tf-checkpoint"
    bn_format = "keras-h5"

    def __init__(self) -> None:
        self.adapter = frameworks.get_adapter("tensorflow")
        self.tf, self.keras = self.adapter.tf, self.adapter.keras

    def new(self, seed: int = 0) -> tuple[Any, Any]:
        model = self.adapter.new_mlp(workloads.mlp_parameters(seed))
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

    def save_checkpoint(self, path: Path, model: Any, optimizer: Any, epoch: int, loss: float) -> None:
        with atomic_path(path) as temporary:
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

    def bn_save(self, model: Any, path: Path) -> None:
        with atomic_path(path) as temporary:
            model.save_weights(str(temporary))

    def bn_load(self, path: Path, seed: int) -> Any:
        model = self.bn_model(seed)
        source = gate.regular_source(path, "keras-h5")
        files.expect_format(source, "keras-h5", files.is_hdf5(source), "the HDF5 signature")
        model.load_weights(str(source))
        return model


class GluonTraining:
    name = "mxnet"
    checkpoint_format = "gluon-params"
    bn_format = "gluon-params"

    def __init__(self) -> None:
        self.adapter = frameworks.get_adapter("mxnet")
        self.mx = self.adapter.mx
        from mxnet import autograd, gluon

        self.autograd, self.gluon = autograd, gluon

    def new(self, seed: int = 0) -> tuple[Any, Any]:
        model = self.adapter.new_mlp(workloads.mlp_parameters(seed))
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

    def save_checkpoint(self, path: Path, model: Any, trainer: Any, epoch: int, loss: float) -> None:
        with atomic_path(path) as temporary:
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

    def bn_save(self, model: Any, path: Path) -> None:
        with atomic_path(path) as temporary:
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


RECIPES = {"torch": TorchTraining, "tensorflow": KerasTraining, "mxnet": GluonTraining}


def training_recipe(framework: str) -> Any:
    """The framework's training recipe; ImportError (with the install hint) if it is missing."""
    if framework not in RECIPES:
        raise ValueError(f"no training recipe for {framework!r}; have {', '.join(RECIPES)}")
    frameworks.get_adapter(framework)
    return RECIPES[framework]()


def checkpoint_path_name(framework: str) -> str:
    return {"torch": "checkpoint.pt", "tensorflow": "checkpoint.ckpt", "mxnet": "checkpoint.gluon"}[framework]
