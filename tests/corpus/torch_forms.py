"""Builders of torch's own forms beyond `torch.save`'s default zip: the legacy pickle stream and a
torch.distributed.checkpoint directory. Run in the core environment."""

from __future__ import annotations

from pathlib import Path

from tests.corpus.build import Expected, torch_to_numpy
from tests.corpus.fixtures import resnet18


def legacy_pickle(root: Path) -> Expected:
    """`torch.save(state_dict, path, _use_new_zipfile_serialization=False)`: no zip, a stream of pickles."""
    import torch

    model, _ = resnet18()
    torch.save(model.state_dict(), root / "resnet18-legacy.pt", _use_new_zipfile_serialization=False)
    return Expected({key: torch_to_numpy(value) for key, value in model.state_dict().items()})


def distributed_checkpoint(root: Path) -> Expected:
    """`torch.distributed.checkpoint.save({"model": state_dict, "epoch": 3}, checkpoint_id=dir)` in one process,
    without a process group: `.metadata` (a pickle of the tensor names, shapes and offsets) and `__0_0.distcp`."""
    import torch.distributed.checkpoint as dcp

    model, _ = resnet18()
    directory = root / "checkpoint"
    dcp.save({"model": model.state_dict(), "epoch": 3}, checkpoint_id=str(directory))
    return Expected({f"model.{key}": torch_to_numpy(value) for key, value in model.state_dict().items()})
