"""Fixture generator for the libraries that cannot be installed here: timm and torchvision. Their only wheels
for this Python are CUDA builds (torchvision 0.28.0 is `+cu130`, and `import torchvision` fails on the CPU torch
with "operator torchvision::nms does not exist"; timm imports torchvision), so their files are reproduced with
torch alone, written by the same torch calls those libraries make.

The model is a ResNet-18 at 1/16 of its widths (stem 4 channels, stages 4, 8, 16, 32; 10 classes), built from
`torch.nn` modules under the attribute names of torchvision 0.28.0 `torchvision/models/resnet.py` (`ResNet`,
`BasicBlock`, `_make_layer`) and timm 1.0.31 `timm/models/resnet.py` (its `ResNet` keeps them: `conv1`, `bn1`,
`layer1`-`layer4` of blocks `conv1 bn1 conv2 bn2 downsample`, `downsample` a `Sequential(Conv2d, BatchNorm2d)`
from `downsample_conv`, `fc`), so the state_dict has resnet18's 122 keys exactly:

    conv1.weight                               float32 (4, 3, 7, 7)   (no bias: bias=False, as in both)
    bn1.weight / .bias / .running_mean / .running_var   float32 (4,)
    bn1.num_batches_tracked                    int64 ()   a 0-d tensor: 1 after the one training forward
    layer{1-4}.{0,1}.conv{1,2}.weight, layer{1-4}.{0,1}.bn{1,2}.<the five BatchNorm entries>
    layer{2-4}.0.downsample.0.weight           the 1x1 stride-2 convolution
    layer{2-4}.0.downsample.1.<the five BatchNorm entries>
    fc.weight (10, 32), fc.bias (10,)

One forward in train mode on a seeded batch moves the running statistics off their initial 0 and 1, and one
SGD step (momentum 0.9) gives the optimizer its momentum buffers. The files:

- torchvision: `torch.save(model.state_dict(), "resnet18.pth")`, what torchvision's published weights hold (a
  flat state_dict; `torch.hub.load_state_dict_from_url` reads it back).
- timm, training: `timm/utils/checkpoint_saver.py` `CheckpointSaver._save` writes `torch.save(save_state,
  "checkpoint-0.pth.tar")` with `save_state = {"epoch", "arch" (the model name), "optimizer" (its state_dict),
  "version": 2, "args" (train.py's argparse.Namespace), "state_dict", "metric", "saver" ({"checkpoint_files",
  "best_epoch", "best_metric", "pending"})}`, in that order.
- timm, Hub: `timm/models/_hub.py` `save_for_hf(safe_serialization=True)` writes
  `safetensors.torch.save_file(model.state_dict(), "model.safetensors")` beside its config.json: the 0-d
  num_batches_tracked tensors are stored with shape [] (dtype I64).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tests.corpus.build import Expected, flatten_tensors, torch_leaf, torch_to_numpy

WIDTHS = (4, 8, 16, 32)
CLASSES = 10


def resnet18() -> tuple[Any, Any]:
    """The small ResNet-18 (see the module docstring) after one training step, and its SGD optimizer."""
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x: Any) -> Any:
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)

    class ResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inplanes = WIDTHS[0]
            self.conv1 = nn.Conv2d(3, self.inplanes, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(self.inplanes)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            self.layer1 = self._make_layer(WIDTHS[0], 1)
            self.layer2 = self._make_layer(WIDTHS[1], 2)
            self.layer3 = self._make_layer(WIDTHS[2], 2)
            self.layer4 = self._make_layer(WIDTHS[3], 2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(WIDTHS[3], CLASSES)

        def _make_layer(self, planes: int, stride: int) -> nn.Sequential:
            downsample = None
            if stride != 1 or self.inplanes != planes:
                downsample = nn.Sequential(
                    nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
                )
            first = BasicBlock(self.inplanes, planes, stride, downsample)
            self.inplanes = planes
            return nn.Sequential(first, BasicBlock(planes, planes, 1, None))

        def forward(self, x: Any) -> Any:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    torch.manual_seed(27)
    model = ResNet().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return model.eval(), optimizer


def _state(model: Any) -> dict[str, Any]:
    return {key: torch_to_numpy(value) for key, value in model.state_dict().items()}


def torchvision_resnet18(root: Path) -> Expected:
    import torch

    model, _ = resnet18()
    torch.save(model.state_dict(), root / "resnet18.pth")
    return Expected(_state(model))


def timm_train_checkpoint(root: Path) -> Expected:
    import torch

    model, optimizer = resnet18()
    args = argparse.Namespace(model="resnet18", lr=0.1, momentum=0.9, epochs=1, batch_size=4)
    save_state = {
        "epoch": 0,
        "arch": args.model,
        "optimizer": optimizer.state_dict(),
        "version": 2,
        "args": args,
        "state_dict": model.state_dict(),
        "metric": 0.25,
        "saver": {"checkpoint_files": [], "best_epoch": None, "best_metric": None, "pending": (0, 0.25)},
    }
    torch.save(save_state, root / "checkpoint-0.pth.tar")
    return Expected(dict(flatten_tensors(save_state, torch_leaf)))


def timm_hub_safetensors(root: Path) -> Expected:
    import safetensors.torch

    model, _ = resnet18()
    safetensors.torch.save_file(model.state_dict(), root / "model.safetensors")
    return Expected(_state(model))
