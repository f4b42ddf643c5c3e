"""JAX's training checkpoint, as Flax's guides write one: an Orbax `StandardCheckpointer` directory holding
the linen MLP's variables, the optax Adam state, the epoch and the loss, restored into the templates of a
fresh model and optimizer; and the BatchNorm/Dropout variant of the MLP (`batch_stats`, a dropout rng).
Found through `JaxAdapter.training_recipe`; JAX is imported in the constructor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from frameworks import gate
from frameworks.base import mlp_parameters
from frameworks.jax_adapter import FlaxModel, flatten, orbax_restore, orbax_save
from frameworks.training import LEARNING_RATE, TrainingRecipe, batch


@dataclass
class Optimizer:
    """An optax transformation and its state (JAX keeps state outside the optimizer)."""

    transform: Any
    state: Any


def _bn_class(nn: Any) -> type:
    class BatchNormMLP(nn.Module):
        @nn.compact
        def __call__(self, x: Any, training: bool) -> Any:
            x = nn.Dense(256)(x)
            x = nn.BatchNorm(use_running_average=not training, momentum=0.9)(x)
            x = nn.Dropout(0.5, deterministic=not training)(nn.relu(x))
            return nn.Dense(10)(x)

    return BatchNormMLP


class JaxTraining(TrainingRecipe):
    name = "jax"
    checkpoint_format = "orbax"
    checkpoint_name = "checkpoint.orbax"
    bn_format = "orbax"
    bn_name = "bn.orbax"

    def __init__(self) -> None:
        import flax.linen
        import optax

        super().__init__()
        self.jax, self.jnp, self.optax = self.adapter.jax, self.adapter.jnp, optax
        self._bn = _bn_class(flax.linen)
        self._step = self.jax.jit(self._train_step, static_argnums=(0, 2))

    def new(self, seed: int = 0) -> tuple[FlaxModel, Optimizer]:
        model = self.adapter.new_mlp(mlp_parameters(seed))
        transform = self.optax.adam(LEARNING_RATE)
        return model, Optimizer(transform, transform.init(model.variables["params"]))

    def _train_step(self, model: FlaxModel, params: Any, state: Any, transform_state: Any, inputs: Any, labels: Any):
        def loss_of(parameters: Any) -> Any:
            logits = model.module.apply({"params": parameters}, inputs)
            return self.optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = self.jax.value_and_grad(loss_of)(params)
        updates, new_state = state.update(grads, transform_state, params)
        return self.optax.apply_updates(params, updates), new_state, loss

    def train(self, model: FlaxModel, optimizer: Optimizer, start: int, count: int) -> float:
        loss = float("nan")
        params = model.variables["params"]
        for step in range(start, start + count):
            inputs, labels = batch(step)
            params, optimizer.state, loss = self._step(
                _Static(model), params, optimizer.transform, optimizer.state, inputs, labels
            )
        model.variables = {"params": params}
        return float(loss)

    def _tree(self, model: FlaxModel, optimizer: Optimizer, epoch: int = 0, loss: float = 0.0) -> dict[str, Any]:
        return {
            "model": model.variables,
            "optimizer": optimizer.state,
            "epoch": np.int64(epoch),
            "loss": np.float64(loss),
        }

    def write_checkpoint(
        self, temporary: Path, model: FlaxModel, optimizer: Optimizer, epoch: int, loss: float
    ) -> None:
        orbax_save(self.adapter, self._tree(model, optimizer, epoch, loss), temporary)

    def _restore(self, path: Path, template: Any, trusted: bool) -> Any:
        source = gate.admit(path, self.adapter.spec(self.checkpoint_format), trusted=trusted)
        return orbax_restore(self.adapter, source, self.adapter.abstract(template))

    def load_checkpoint(
        self, path: Path, model: FlaxModel, optimizer: Optimizer, *, trusted: bool = False
    ) -> tuple[int, float]:
        restored = self._restore(path, self._tree(model, optimizer), trusted)
        model.variables, optimizer.state = restored["model"], restored["optimizer"]
        return int(restored["epoch"]), float(restored["loss"])

    def state(self, model: FlaxModel, optimizer: Optimizer) -> dict[str, np.ndarray]:
        arrays = {f"model.{key}": np.array(value) for key, value in flatten(model.variables).items()}
        for keys, value in self.jax.tree_util.tree_flatten_with_path(optimizer.state)[0]:
            arrays[f"optimizer{self.jax.tree_util.keystr(keys)}"] = np.array(value)
        return arrays

    def copy_weights(self, source: FlaxModel, target: FlaxModel) -> None:
        target.variables = source.variables

    def bn_model(self, seed: int = 0) -> FlaxModel:
        module = self._bn()
        key = self.jax.random.PRNGKey(seed)
        variables = module.init(key, self.jnp.zeros((1, 20), self.jnp.float32), training=False)
        return FlaxModel(module, variables, rng=self.jax.random.PRNGKey(seed + 1))

    def _dropout_key(self, model: FlaxModel) -> Any:
        model.calls += 1
        return self.jax.random.fold_in(model.rng, model.calls)

    def bn_forward(self, model: FlaxModel, inputs: np.ndarray, training: bool) -> np.ndarray:
        if not training:
            return np.asarray(model.module.apply(model.variables, inputs, training=False))
        out, _ = model.module.apply(
            model.variables, inputs, training=True, rngs={"dropout": self._dropout_key(model)}, mutable=["batch_stats"]
        )
        return np.asarray(out)

    def bn_train_forward(self, model: FlaxModel, inputs: np.ndarray) -> None:
        """One forward pass in training mode: returns the updated running statistics, which are kept."""
        _, updates = model.module.apply(
            model.variables, inputs, training=True, rngs={"dropout": self._dropout_key(model)}, mutable=["batch_stats"]
        )
        model.variables = {**model.variables, **updates}

    def bn_buffers(self, model: FlaxModel) -> dict[str, np.ndarray]:
        return {key: np.array(value) for key, value in flatten(model.variables["batch_stats"]).items()}

    def write_bn(self, model: FlaxModel, temporary: Path) -> None:
        orbax_save(self.adapter, model.variables, temporary)

    def bn_load(self, path: Path, seed: int) -> FlaxModel:
        model = self.bn_model(seed)
        model.variables = self._restore(path, model.variables, trusted=False)
        return model


class _Static:
    """The model passed to the jitted step as a static argument: hashed by its module, which is fixed."""

    def __init__(self, model: FlaxModel) -> None:
        self.module = model.module

    def __hash__(self) -> int:
        return hash(self.module)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Static) and other.module == self.module
