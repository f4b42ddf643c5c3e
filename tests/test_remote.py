"""`frameworks.remote`: the small entry point that runs one adapter operation in a framework's own
environment (files in, arrays and outcomes out). Driven here through a child of this interpreter, so
the protocol is tested wherever the suite runs; the cross-framework tests use it across environments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import workloads
from frameworks.remote import RemoteError, Side


def child_side(framework: str) -> Side:
    side = Side(framework)
    side.local = False  # through `python -m frameworks.remote`, as for another environment
    return side


def test_a_save_and_a_load_through_the_child_keep_every_bit(tmp_path: Path) -> None:
    state = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.array([1, 0], dtype=np.int8)}
    side = child_side("numpy")
    side.save(state, tmp_path / "s.npz", "npz")
    back = side.load(tmp_path / "s.npz", "npz")
    assert list(back) == list(state)
    for key, value in state.items():
        assert (back[key].dtype, back[key].shape, back[key].tobytes()) == (value.dtype, value.shape, value.tobytes())


def test_the_mlp_operations_agree_with_the_adapter_in_this_process(tmp_path: Path) -> None:
    local, child = Side("numpy"), child_side("numpy")
    assert local.local
    parameters, blank = workloads.mlp_parameters(0), workloads.mlp_parameters(1)
    state = child.native_mlp_state(tmp_path, parameters, blank)
    assert {key: value.tobytes() for key, value in state.items()} == {k: v.tobytes() for k, v in parameters.items()}
    inputs = workloads.mlp_input()
    assert child.mlp_forward(state, inputs).tobytes() == local.mlp_forward(state, inputs).tobytes()


def test_a_failure_in_the_child_is_raised_here_with_its_type(tmp_path: Path) -> None:
    with pytest.raises(RemoteError, match="FileNotFoundError"):
        child_side("numpy").load(tmp_path / "missing.npz", "npz")
    with pytest.raises(RemoteError, match=r"UnknownFormatError|ValueError"):
        child_side("numpy").load(tmp_path / "missing.npz", "no-such-format")
