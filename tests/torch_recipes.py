"""PyTorch recipes from the seeds: a VGG16-shaped backbone for transfer learning (torchvision's
names and shapes, nothing downloaded), partial loading and freezing. Training checkpoints and the
BatchNorm/Dropout model, in every framework, are in the framework's training recipe (`frameworks.training`).

torch is imported inside each function: this module is imported by tests that may run without it.
"""

from __future__ import annotations

from typing import Any

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
