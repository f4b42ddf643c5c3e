"""Hostile files written without any framework: canaries (code that leaves a marker file when run),
forged headers and bombs. Shared by the trust-gate tests; each writer returns the path it made."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

from bench import workloads
from bench.safety.canary import Canary
from frameworks.forgeries import ndarray_list, object_array, torch_zip


def _canary_pickle(marker: Path) -> bytes:
    return pickle.dumps(Canary(marker), protocol=2)


def plain_pickle(directory: Path, marker: Path) -> Path:
    path = directory / "canary.pkl"
    path.write_bytes(_canary_pickle(marker))
    return path


def npy_object_array(directory: Path, marker: Path) -> Path:
    path = directory / "canary.npy"
    path.write_bytes(object_array(Canary(marker)))
    return path


def npz_object_member(directory: Path, marker: Path) -> Path:
    path = directory / "canary.npz"
    path.write_bytes(object_array(Canary(marker), member="hidden.weight"))
    return path


def torch_zip_canary(directory: Path, marker: Path) -> Path:
    path = directory / "canary.pt"
    path.write_bytes(torch_zip(pickle.dumps({"weight": Canary(marker)}, protocol=2)))
    return path


def gluon_checkpoint_canary(directory: Path, marker: Path) -> Path:
    """A Gluon training checkpoint whose model.params is the valid MLP and whose trainer.states
    (which Trainer.load_states unpickles) is the canary."""
    path = directory / "canary.gluon"
    path.mkdir()
    (path / "model.params").write_bytes(ndarray_list(workloads.mlp_parameters(0)))
    (path / "trainer.states").write_bytes(_canary_pickle(marker))
    (path / "progress.json").write_text(json.dumps({"epoch": 1, "loss": 0.5}))
    return path


CANARIES: dict[str, Callable[[Path, Path], Path]] = {
    "plain-pickle": plain_pickle,
    "npy-object-array": npy_object_array,
    "npz-object-member": npz_object_member,
    "torch-zip-pickle": torch_zip_canary,
    "gluon-checkpoint-states": gluon_checkpoint_canary,
}
"""Every way a pickle reaches a loader here: bare, in an .npy/.npz object array, as a torch.save
data.pkl, and as the trainer states of a Gluon checkpoint beside valid parameters."""
