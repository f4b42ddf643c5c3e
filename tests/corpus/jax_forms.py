"""Builders of the JAX forms, run in the core environment: Flax's msgpack (`flax.serialization.to_bytes` of a
TrainState after one step), Orbax's StandardCheckpointer directory and a CheckpointManager directory."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from tests.corpus.build import Expected, flatten_tensors

MANAGER_STEP = 5


def _state() -> Any:
    """A Flax linen MLP's TrainState (Adam) after one apply_gradients."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    import optax
    from flax import linen as nn
    from flax.training import train_state

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x: Any) -> Any:
            return nn.Dense(4)(nn.relu(nn.Dense(16)(x)))

    model = MLP()
    inputs = jax.random.normal(jax.random.key(27), (5, 8))
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=model.init(jax.random.key(1), inputs)["params"], tx=optax.adam(1e-3)
    )
    grads = jax.grad(lambda params: jnp.mean(jnp.square(model.apply({"params": params}, inputs))))(state.params)
    return state.apply_gradients(grads=grads)


def _leaf(leaf: Any) -> np.ndarray | None:
    """An array leaf as NumPy; None for a Python scalar (msgpack stores it as a msgpack int or float)."""
    return None if isinstance(leaf, str | bytes | int | float | type(None)) else np.asarray(leaf)


def _orbax_leaf(leaf: Any) -> np.ndarray | None:
    """As Orbax stores a leaf: a Python int or float too, as a 0-d int64 or float64 (its ScalarMetadata)."""
    return np.asarray(leaf) if isinstance(leaf, int | float) else _leaf(leaf)


def _tree() -> dict[str, Any]:
    """The TrainState as the plain tree Orbax and msgpack store ({"step", "params", "opt_state"})."""
    from flax import serialization

    return serialization.to_state_dict(_state())


def flax_msgpack_variables(root: Path) -> Expected:
    """`flax.serialization.to_bytes({"params": params})` written to variables.msgpack: a msgpack map of maps,
    each array a msgpack ext (code 1: dtype, shape, bytes)."""
    from flax import serialization

    variables = {"params": _state().params}
    (root / "variables.msgpack").write_bytes(serialization.to_bytes(variables))
    return Expected(dict(flatten_tensors(serialization.to_state_dict(variables), _leaf)))


def flax_msgpack_train_state(root: Path) -> Expected:
    """`flax.serialization.to_bytes(state)` of the TrainState written to state.msgpack, as flax's own
    `checkpoints.save_checkpoint` did: `step` is a Python int (a msgpack int), the rest arrays; the optax state
    tuple becomes a map keyed "0", "1"."""
    from flax import serialization

    state = _state()
    (root / "state.msgpack").write_bytes(serialization.to_bytes(state))
    return Expected(dict(flatten_tensors(serialization.to_state_dict(state), _leaf)))


def orbax_standard(root: Path) -> Expected:
    """`ocp.StandardCheckpointer().save(dir/"state", tree)`: _CHECKPOINT_METADATA, _METADATA, _sharding,
    manifest.ocdbt and the OCDBT database d/ (plus ocdbt.process_0/)."""
    import orbax.checkpoint as ocp

    tree = _tree()
    with contextlib.closing(ocp.StandardCheckpointer()) as checkpointer:
        checkpointer.save((root / "state").absolute(), tree)
        checkpointer.wait_until_finished()
    return Expected(dict(flatten_tensors(tree, _orbax_leaf)))


def orbax_manager(root: Path) -> Expected:
    """`ocp.CheckpointManager(dir).save(5, args=ocp.args.StandardSave(tree))`: dir/5/ holds
    _CHECKPOINT_METADATA and the item in dir/5/default/ (a StandardCheckpointer directory)."""
    import orbax.checkpoint as ocp

    tree = _tree()
    with ocp.CheckpointManager((root / "checkpoints").absolute()) as manager:
        manager.save(MANAGER_STEP, args=ocp.args.StandardSave(tree))
        manager.wait_until_finished()
    return Expected(dict(flatten_tensors(tree, _orbax_leaf)))
