"""Builders of the Keras and TensorFlow forms, run in the core environment: Keras 3 `save_weights`, and the
object-graph checkpoints of `tf.train.Checkpoint(...).save()` and `.write()`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tests.corpus.build import Expected


def _trained() -> tuple[Any, Any, Any]:
    """A small Keras model (Dense, BatchNormalization, Dense) and its Adam after one training step; tf."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(27)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(4),
        ]
    )
    optimizer = keras.optimizers.Adam(1e-3)
    inputs = tf.random.stateless_normal((5, 8), seed=(2, 7))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(inputs, training=True)))
    optimizer.apply_gradients(
        zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables, strict=True)
    )
    return model, optimizer, tf


def _values(variables: list[Any]) -> dict[str, np.ndarray]:
    """Variables' values, named by their index: these forms are matched by value (the reader names them)."""
    return {f"{index}:{variable.name}": np.array(variable.numpy()) for index, variable in enumerate(variables)}


def _checked(tf: Any, prefix: str, expected: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The expectation, after checking that the checkpoint holds exactly that many numeric variables."""
    stored = [name for name, _ in tf.train.list_variables(prefix) if name != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    if len(stored) != len(expected):
        raise AssertionError(f"{prefix} holds {len(stored)} variables, the objects saved {len(expected)}: {stored}")
    return expected


def keras_weights(root: Path) -> Expected:
    """Keras 3 `model.save_weights("model.weights.h5")`: HDF5, `layers/<layer>/vars/<i>` datasets."""
    model, _, _ = _trained()
    model.save_weights(str(root / "model.weights.h5"))
    return Expected(_values(model.weights))


def checkpoint_save(root: Path) -> Expected:
    """`tf.train.Checkpoint(model=model, optimizer=optimizer).save(dir/"ckpt")`: ckpt-1.index,
    ckpt-1.data-00000-of-00001 and the `checkpoint` state file naming ckpt-1; the model's variables, Adam's
    (iterations, learning rate, moments) and the Checkpoint's own save_counter."""
    model, optimizer, tf = _trained()
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    prefix = checkpoint.save(str(root / "ckpt"))
    saved = [*model.weights, *optimizer.variables, checkpoint.save_counter]
    return Expected(_checked(tf, prefix, _values(saved)))


def checkpoint_write(root: Path) -> Expected:
    """`tf.train.Checkpoint(net=model, step=tf.Variable(7)).write(dir/"ckpt")`: ckpt.index and ckpt.data-*,
    no state file, its root objects named by the user (not serbench's `tree`)."""
    model, _, tf = _trained()
    step = tf.Variable(7, dtype=tf.int64)
    prefix = tf.train.Checkpoint(net=model, step=step).write(str(root / "ckpt"))
    return Expected(_checked(tf, prefix, {**_values(model.weights), "step": np.array(step.numpy())}))
