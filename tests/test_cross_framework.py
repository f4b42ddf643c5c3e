"""The same d2l MLP in four frameworks: weights saved natively by A, loaded, converted, run in B.

Every ordered pair must agree with A and with the NumPy reference within float32 tolerance. Each side
runs in its framework's environment (`frameworks.remote.Side`: MXNet's is another interpreter).
Layout conversions (Keras kernels are (in, out); torch and Gluon weights are (out, in)) live in
each adapter's `mlp_state` / `set_mlp_state`; a wrong one must fail here.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

import frameworks
from bench import workloads
from frameworks.remote import Side
from tests.conftest import adapter_or_skip

RTOL, ATOL = 1e-5, 1e-6
PAIRS = list(itertools.permutations(frameworks.names(), 2))


def export_native(framework: str, tmp_path: Path) -> dict[str, np.ndarray]:
    """Save the MLP in the framework's native format, load it into a fresh clone, read its state."""
    adapter = adapter_or_skip(framework)
    fmt = adapter.native_mlp_format
    path = tmp_path / f"{framework}-mlp{adapter.spec(fmt).suffix}"
    adapter.save_mlp(adapter.new_mlp(workloads.mlp_parameters(0)), path, fmt)
    clone = adapter.load_mlp(path, fmt, adapter.new_mlp(workloads.mlp_parameters(1)), trusted=True)
    return adapter.mlp_state(clone)


def side_or_skip(framework: str) -> Side:
    """A framework's side; skipped with the reason where neither this interpreter nor its environment has it."""
    side = Side(framework)
    if side.local:
        adapter_or_skip(framework)
    return side


@pytest.mark.crosses_environments
@pytest.mark.parametrize(("writer", "reader"), PAIRS)
def test_weights_move_between_frameworks(writer: str, reader: str, tmp_path: Path) -> None:
    source, target = side_or_skip(writer), side_or_skip(reader)
    inputs = workloads.mlp_input()
    try:
        state = source.native_mlp_state(
            tmp_path, workloads.mlp_parameters(0), workloads.mlp_parameters(1), trusted=True
        )
    except ImportError as error:
        pytest.skip(f"{writer} unavailable: {error}")
    for key, value in workloads.mlp_parameters(0).items():
        assert state[key].tobytes() == value.tobytes(), f"{writer} native file changed {key}"
    try:
        got = target.mlp_forward(state, inputs)
    except ImportError as error:
        pytest.skip(f"{reader} unavailable: {error}")
    want_a = source.mlp_forward(workloads.mlp_parameters(0), inputs)
    reference = frameworks.get_adapter("numpy")
    want_ref = reference.mlp_forward(reference.new_mlp(workloads.mlp_parameters(0)), inputs)
    np.testing.assert_allclose(got, want_a, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got, want_ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("framework", frameworks.names())
def test_outputs_are_bit_identical_within_a_framework(framework: str, tmp_path: Path) -> None:
    """Same framework, same weights (via its native file): the arithmetic is the same, so are the bits."""
    adapter = adapter_or_skip(framework)
    inputs = workloads.mlp_input()
    state = export_native(framework, tmp_path)
    original = adapter.mlp_forward(adapter.new_mlp(workloads.mlp_parameters(0)), inputs)
    assert adapter.mlp_forward(adapter.new_mlp(state), inputs).tobytes() == original.tobytes()


def test_a_wrong_layout_conversion_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Drop the Keras kernel transpose: moving weights to torch must fail, not run with garbage."""
    keras_adapter, torch_adapter = adapter_or_skip("tensorflow"), adapter_or_skip("torch")

    def untransposed_state(model: object) -> dict[str, np.ndarray]:
        return {
            "hidden.weight": model.hidden.kernel.numpy(),
            "hidden.bias": model.hidden.bias.numpy(),
            "output.weight": model.out.kernel.numpy(),
            "output.bias": model.out.bias.numpy(),
        }

    monkeypatch.setattr(keras_adapter, "mlp_state", untransposed_state)
    state = export_native("tensorflow", tmp_path)
    with pytest.raises(ValueError, match="expected MLP parameters"):
        torch_adapter.new_mlp(state)
