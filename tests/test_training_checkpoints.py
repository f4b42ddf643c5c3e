"""Training checkpoints in every framework's idiom resume exactly; BatchNorm buffers survive and
eval mode is deterministic where train mode is not (why the seeds insist on model.eval())."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from frameworks.training import batch, training_recipe, with_recipes


def recipe_or_skip(framework: str):
    try:
        return training_recipe(framework)
    except ImportError as error:
        pytest.skip(f"{framework} unavailable: {error}")


def as_bytes(arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {k: np.ascontiguousarray(v).tobytes() for k, v in arrays.items()}


@pytest.mark.parametrize("framework", with_recipes())
def test_checkpoint_resume_is_bit_identical(framework: str, tmp_path: Path) -> None:
    recipe = recipe_or_skip(framework)
    k, m = 3, 4
    straight, straight_opt = recipe.new()
    recipe.train(straight, straight_opt, 0, k + m)

    first, first_opt = recipe.new()
    loss = recipe.train(first, first_opt, 0, k)
    path = tmp_path / recipe.checkpoint_name
    recipe.save_checkpoint(path, first, first_opt, epoch=k, loss=loss)

    resumed, resumed_opt = recipe.new(seed=1)
    epoch, saved_loss = recipe.load_checkpoint(path, resumed, resumed_opt, trusted=True)
    assert (epoch, saved_loss) == (k, loss)
    assert as_bytes(recipe.state(resumed, resumed_opt)) == as_bytes(recipe.state(first, first_opt)), (
        "model and Adam state must come back exactly"
    )
    recipe.train(resumed, resumed_opt, epoch, m)
    assert as_bytes(recipe.state(resumed, resumed_opt)) == as_bytes(recipe.state(straight, straight_opt))


@pytest.mark.parametrize("framework", with_recipes())
def test_weights_without_optimizer_state_do_not_resume_exactly(framework: str) -> None:
    """The control for the test above: fresh Adam moments diverge, so that test can fail."""
    recipe = recipe_or_skip(framework)
    straight, straight_opt = recipe.new()
    recipe.train(straight, straight_opt, 0, 7)
    first, first_opt = recipe.new()
    recipe.train(first, first_opt, 0, 3)
    resumed, resumed_opt = recipe.new(seed=1)
    recipe.copy_weights(first, resumed)
    recipe.train(resumed, resumed_opt, 3, 4)
    model_only = {k: v for k, v in recipe.state(resumed, resumed_opt).items() if k.startswith("model.")}
    straight_model = {k: v for k, v in recipe.state(straight, straight_opt).items() if k.startswith("model.")}
    assert as_bytes(model_only) != as_bytes(straight_model)


@pytest.mark.parametrize("framework", with_recipes())
def test_batchnorm_buffers_survive_and_eval_mode_is_deterministic(framework: str, tmp_path: Path) -> None:
    recipe = recipe_or_skip(framework)
    model = recipe.bn_model()
    inputs, _ = batch(0)
    fresh = recipe.bn_buffers(model)
    recipe.bn_train_forward(model, inputs)
    buffers = recipe.bn_buffers(model)
    assert buffers, "the model must have BatchNorm buffers"
    assert as_bytes(buffers) != as_bytes(fresh), "a training forward must update the running statistics"

    path = tmp_path / recipe.bn_name
    recipe.bn_save(model, path)
    clone = recipe.bn_load(path, seed=1)
    assert as_bytes(recipe.bn_buffers(clone)) == as_bytes(buffers)

    original = recipe.bn_forward(model, inputs, training=False)
    first, second = recipe.bn_forward(clone, inputs, training=False), recipe.bn_forward(clone, inputs, training=False)
    assert first.tobytes() == second.tobytes() == original.tobytes()
    assert not np.array_equal(
        recipe.bn_forward(clone, inputs, training=True), recipe.bn_forward(clone, inputs, training=True)
    ), "dropout must vary in train mode"
