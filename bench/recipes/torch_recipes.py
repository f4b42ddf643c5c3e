"""PyTorch recipes from the seeds: training checkpoints with Adam, a VGG16-shaped backbone for
transfer learning (names and shapes of torchvision's, nothing downloaded), a BatchNorm/Dropout MLP.

torch is imported inside each function: this module is imported by tests that may run without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench import workloads
from frameworks.files import atomic_path


def bn_mlp(seed: int = 0) -> Any:
    """Seed 002's kind of model: Linear -> BatchNorm1d -> ReLU -> Dropout -> Linear."""
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(20, 256),
        torch.nn.BatchNorm1d(256),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(256, 10),
    )


def mlp_with_adam(seed: int = 0, lr: float = 1e-2) -> tuple[Any, Any]:
    import torch

    from frameworks import get_adapter

    model = get_adapter("torch").new_mlp(workloads.mlp_parameters(seed)).train()
    return model, torch.optim.Adam(model.parameters(), lr=lr)


def batch(step: int) -> tuple[Any, Any]:
    """Deterministic training data for step `step`."""
    import torch

    generator = np.random.default_rng([workloads.SEED, 5_000, step])
    inputs = generator.standard_normal((16, 20), dtype=np.float32)
    targets = generator.integers(0, 10, size=16)
    return torch.from_numpy(inputs), torch.from_numpy(targets)


def train_steps(model: Any, optimizer: Any, start: int, count: int) -> float:
    import torch

    loss = torch.tensor(float("nan"))
    for step in range(start, start + count):
        inputs, targets = batch(step)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def save_checkpoint(path: Path, model: Any, optimizer: Any, epoch: int, loss: float) -> None:
    """Seed 001/002's idiom: one file with model and optimizer state_dicts, epoch and loss; atomic."""
    import torch

    with atomic_path(path) as temporary:
        torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "loss": loss}, temporary
        )


def load_checkpoint(path: Path, model: Any, optimizer: Any) -> tuple[int, float]:
    import torch

    checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    return checkpoint["epoch"], checkpoint["loss"]


VGG16_CONV = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16(num_classes: int = 1000) -> Any:
    """torchvision's VGG16 layout (same state_dict names and shapes), built here, no download."""
    import torch

    class VGG16(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[Any] = []
            channels = 3
            for item in VGG16_CONV:
                if item == "M":
                    layers.append(torch.nn.MaxPool2d(2, 2))
                else:
                    layers += [torch.nn.Conv2d(channels, item, 3, padding=1), torch.nn.ReLU(inplace=True)]
                    channels = item
            self.features = torch.nn.Sequential(*layers)
            self.avgpool = torch.nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = torch.nn.Sequential(
                torch.nn.Linear(512 * 7 * 7, 4096),
                torch.nn.ReLU(True),
                torch.nn.Dropout(),
                torch.nn.Linear(4096, 4096),
                torch.nn.ReLU(True),
                torch.nn.Dropout(),
                torch.nn.Linear(4096, num_classes),
            )

        def forward(self, x: Any) -> Any:
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return VGG16()


def load_backbone(model: Any, state: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """Load every tensor whose name and shape match; returns (missing, unexpected, skipped-by-shape)."""
    own = model.state_dict()
    skipped = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    usable = {k: v for k, v in state.items() if k not in skipped}
    result = model.load_state_dict(usable, strict=False)
    return sorted(result.missing_keys), sorted(result.unexpected_keys), sorted(skipped)


def freeze_all_but_head(model: Any, head_prefix: str = "classifier.6.") -> None:
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith(head_prefix)
