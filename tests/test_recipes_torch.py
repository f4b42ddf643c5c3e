"""The PyTorch seeds' recipes (000, 001, 002, 004), each checked for the behaviour it promises."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import frameworks
from bench import workloads
from bench.recipes import torch_recipes as recipes
from tests.conftest import adapter_or_skip

torch = pytest.importorskip("torch", reason="the PyTorch recipes need torch")


def state_bytes(model: object) -> dict[str, bytes]:
    return {k: v.detach().numpy().tobytes() for k, v in model.state_dict().items()}


def test_checkpoint_resume_is_bit_identical_to_uninterrupted_training(tmp_path: Path) -> None:
    """Train k steps, checkpoint (model + Adam moments + epoch + loss), restore into fresh objects,
    train m more: the result equals k + m uninterrupted steps bit for bit."""
    k, m = 3, 4
    straight, straight_opt = recipes.mlp_with_adam()
    recipes.train_steps(straight, straight_opt, 0, k + m)

    first, first_opt = recipes.mlp_with_adam()
    loss = recipes.train_steps(first, first_opt, 0, k)
    path = tmp_path / "checkpoint.pt"
    recipes.save_checkpoint(path, first, first_opt, epoch=k, loss=loss)

    resumed, resumed_opt = recipes.mlp_with_adam(seed=1)
    epoch, saved_loss = recipes.load_checkpoint(path, resumed, resumed_opt)
    assert (epoch, saved_loss) == (k, loss)
    assert "exp_avg_sq" in resumed_opt.state_dict()["state"][0], "Adam's second moments must be restored"
    recipes.train_steps(resumed, resumed_opt, epoch, m)
    assert state_bytes(resumed) == state_bytes(straight)


def test_resume_without_optimizer_state_is_not_identical(tmp_path: Path) -> None:
    """The control: restoring only the weights (fresh Adam moments) diverges, so the test above can fail."""
    straight, straight_opt = recipes.mlp_with_adam()
    recipes.train_steps(straight, straight_opt, 0, 7)
    first, first_opt = recipes.mlp_with_adam()
    recipes.train_steps(first, first_opt, 0, 3)
    resumed, resumed_opt = recipes.mlp_with_adam(seed=1)
    resumed.load_state_dict(first.state_dict())
    recipes.train_steps(resumed, resumed_opt, 3, 4)
    assert state_bytes(resumed) != state_bytes(straight)


def test_bn_dropout_buffers_survive_and_eval_mode_is_deterministic(tmp_path: Path) -> None:
    model = recipes.bn_mlp().train()
    inputs, _ = recipes.batch(0)
    model(inputs)  # one training forward updates running_mean, running_var, num_batches_tracked
    path = tmp_path / "bn.pt"
    torch.save(model.state_dict(), path)
    clone = recipes.bn_mlp(seed=1)
    clone.load_state_dict(torch.load(path, weights_only=True))
    assert {k for k in clone.state_dict() if "running" in k or "num_batches" in k} == {
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    }
    assert state_bytes(clone) == state_bytes(model)
    assert int(clone.state_dict()["1.num_batches_tracked"]) == 1

    clone.eval()
    with torch.no_grad():
        first, second = clone(inputs), clone(inputs)
        original = model.eval()(inputs)
    assert first.numpy().tobytes() == second.numpy().tobytes() == original.numpy().tobytes()
    clone.train()
    with torch.no_grad():
        assert not torch.equal(clone(inputs), clone(inputs)), "train mode (dropout) must vary: why eval() matters"


WHOLE_MODEL_SAVER = textwrap.dedent("""
    import sys, torch
    class TinyNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(3, 2)
    torch.manual_seed(0)
    torch.save(TinyNet(), sys.argv[1])
""")


def test_whole_model_needs_the_class_and_trust(tmp_path: Path) -> None:
    adapter = adapter_or_skip("torch")
    path = tmp_path / "whole.pt"
    subprocess.run([sys.executable, "-c", WHOLE_MODEL_SAVER, str(path)], check=True, timeout=120)

    with pytest.raises(frameworks.UnsafeLoadError, match=r"beyond tensors.*load_whole_model"):
        adapter.load(path, "torch")
    with pytest.raises(frameworks.UnsafeLoadError, match="trusted=True"):
        adapter.load_whole_model(path)
    with pytest.raises(AttributeError, match="TinyNet"):
        adapter.load_whole_model(path, trusted=True)  # the class is not importable here


def test_whole_model_loads_where_the_class_is_importable(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    script = WHOLE_MODEL_SAVER + textwrap.dedent("""
        import frameworks
        model = frameworks.get_adapter("torch").load_whole_model(sys.argv[1], trusted=True)
        assert type(model).__name__ == "TinyNet" and model.layer.weight.shape == (2, 3)
        print("loaded", type(model).__name__)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120, check=True
    )
    assert "loaded TinyNet" in result.stdout


def test_map_location_cpu_to_cpu(tmp_path: Path) -> None:
    adapter = adapter_or_skip("torch")
    path = tmp_path / "t.pt"
    torch.save(torch.tensor([1, 2, 3]), path)
    loaded = adapter.load(path, "torch", device="cpu")
    assert loaded.device.type == "cpu"
    assert loaded.tolist() == [1, 2, 3]


@pytest.mark.parametrize(("saved_on", "loaded_on"), [("cuda", "cpu"), ("cpu", "cuda")])
def test_map_location_across_devices(saved_on: str, loaded_on: str, tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip(f"no CUDA device here (torch {torch.__version__}); {saved_on}->{loaded_on} needs a GPU")
    adapter = adapter_or_skip("torch")
    path = tmp_path / "t.pt"
    torch.save(torch.tensor([1, 2, 3], device=saved_on), path)
    loaded = adapter.load(path, "torch", device=loaded_on)
    assert loaded.device.type == loaded_on
    assert loaded.cpu().tolist() == [1, 2, 3]


def test_transfer_learning_partial_load_then_only_the_head_trains() -> None:
    """A VGG16-shaped backbone (seed 000) loads into a model with a new 10-class head; frozen
    backbone, one step: only the head changes."""
    model = recipes.vgg16(num_classes=10)
    assert {k: tuple(v.shape) for k, v in recipes.vgg16().state_dict().items()} == workloads.VGG16_SHAPES
    backbone = {k: torch.from_numpy(v) for k, v in workloads.vgg16_state_dict().items()}
    missing, unexpected, skipped = recipes.load_backbone(model, backbone)
    assert skipped == ["classifier.6.bias", "classifier.6.weight"]
    assert missing == ["classifier.6.bias", "classifier.6.weight"]
    assert unexpected == []
    assert torch.equal(model.features[0].weight, backbone["features.0.weight"])

    recipes.freeze_all_but_head(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    inputs = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32))
    loss = torch.nn.functional.cross_entropy(model(inputs), torch.tensor([1, 7]))
    loss.backward()
    optimizer.step()
    changed = sorted(k for k, v in model.state_dict().items() if not torch.equal(v, before[k]))
    assert changed == ["classifier.6.bias", "classifier.6.weight"]
