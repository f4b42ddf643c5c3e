"""Files written by one framework and read by another: bits must be equal. Each side runs in its
framework's environment (`frameworks.remote.Side`), so a file crosses numpy 2 and numpy 1.26 too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import frameworks
from bench import workloads
from frameworks.remote import Side
from tests.conftest import adapter_or_skip

SAFETENSORS_USERS = [n for n in frameworks.names() if "safetensors" in frameworks.adapter_class(n).format_names()]
NPZ_READERS = [
    (n, fmt)
    for n in frameworks.names()
    for fmt in ("npz", "npy-pickle")
    if fmt in frameworks.adapter_class(n).format_names()
]


def mixed_state() -> dict[str, np.ndarray]:
    """Several dtypes every safetensors user holds (no bfloat16: MXNet refuses it)."""
    return {
        "x": workloads.build("d2l-tensor"),
        **{
            label: workloads.build(f"dtype-{label}/tensor")
            for label in ("float16", "float32", "float64", "int8", "int32", "uint8", "bool")
        },
        **workloads.mlp_parameters(0),
    }


def side_or_skip(framework: str) -> Side:
    side = Side(framework)
    if side.local:
        adapter_or_skip(framework)
    return side


def moved(source: Side, target: Side, state: dict, path: Path, write_format: str, read_format: str) -> dict:
    try:
        source.save(state, path, write_format)
        return target.load(path, read_format, trusted=True)  # the test's own file
    except ImportError as error:
        pytest.skip(f"unavailable: {error}")


@pytest.mark.crosses_environments
@pytest.mark.parametrize("reader", SAFETENSORS_USERS)
@pytest.mark.parametrize("writer", SAFETENSORS_USERS)
def test_safetensors_written_by_one_reads_in_another(writer: str, reader: str, tmp_path: Path) -> None:
    source, target = side_or_skip(writer), side_or_skip(reader)
    state = mixed_state()
    loaded = moved(source, target, state, tmp_path / "state.safetensors", "safetensors", "safetensors")
    assert sorted(loaded) == sorted(state)
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype, key
        assert loaded[key].shape == value.shape, key
        assert loaded[key].tobytes() == value.tobytes(), key


@pytest.mark.crosses_environments
@pytest.mark.parametrize(("reader", "fmt"), NPZ_READERS)
def test_numpy_npz_reads_in_every_npz_or_npy_pickle_adapter(reader: str, fmt: str, tmp_path: Path) -> None:
    state = mixed_state()
    loaded = moved(side_or_skip("numpy"), side_or_skip(reader), state, tmp_path / "state.npz", "npz", fmt)
    assert list(loaded) == list(state)
    for key, value in state.items():
        assert (loaded[key].dtype, loaded[key].shape) == (value.dtype, value.shape), key
        assert loaded[key].tobytes() == value.tobytes(), key
