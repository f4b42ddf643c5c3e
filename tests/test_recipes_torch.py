"""The PyTorch seeds' recipes (000, 001, 002, 004), each checked for the behaviour it promises.
Checkpoints with optimizer state and eval mode, in every framework: test_training_checkpoints.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import frameworks
from bench import workloads
from tests import torch_recipes as recipes
from tests.conftest import adapter_or_skip

torch = pytest.importorskip("torch", reason="the PyTorch recipes need torch (they run in the core environment)")


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

    with pytest.raises(frameworks.UnsafeLoadError, match=r"beyond the tensors.*load_whole_model"):
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
