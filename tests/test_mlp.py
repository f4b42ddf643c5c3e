"""d2l 5.5 in every framework: save the MLP's parameters, load them into a fresh clone,
and `clone(X) == net(X)` bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import frameworks
from bench import workloads
from tests.conftest import adapter_or_skip

MLP_CELLS = [
    (framework, spec.name)
    for framework in frameworks.names()
    for spec in frameworks.adapter_class(framework).specs
    if "mlp" in spec.holds
]


@pytest.mark.parametrize(("framework", "fmt"), MLP_CELLS)
def test_clone_output_equals_net_output(framework: str, fmt: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip(framework)
    inputs = workloads.mlp_input()
    net = adapter.new_mlp(workloads.mlp_parameters(0))
    expected = adapter.mlp_forward(net, inputs)
    clone = adapter.new_mlp(workloads.mlp_parameters(1))
    assert not np.array_equal(adapter.mlp_forward(clone, inputs), expected), "clone must start different"

    path = tmp_path / f"mlp{adapter.spec(fmt).suffix}"
    adapter.save_mlp(net, path, fmt)
    adapter.load_mlp(path, fmt, clone, trusted=True)

    got = adapter.mlp_forward(clone, inputs)
    assert got.dtype == np.float32
    assert got.shape == (2, 10)
    assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("framework", frameworks.names())
def test_forward_matches_numpy_reference(framework: str) -> None:
    adapter = adapter_or_skip(framework)
    params, inputs = workloads.mlp_parameters(0), workloads.mlp_input()
    reference = frameworks.get_adapter("numpy")
    want = reference.mlp_forward(reference.new_mlp(params), inputs)
    got = adapter.mlp_forward(adapter.new_mlp(params), inputs)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("framework", frameworks.names())
def test_mlp_state_roundtrips_through_the_model(framework: str) -> None:
    adapter = adapter_or_skip(framework)
    params = workloads.mlp_parameters(0)
    state = adapter.mlp_state(adapter.new_mlp(params))
    assert list(state) == list(params)
    for key in params:
        assert state[key].tobytes() == params[key].tobytes(), key


def test_d2l_keras_file_name_fails_with_a_clear_error(tmp_path: Path) -> None:
    adapter = adapter_or_skip("tensorflow")
    net = adapter.new_mlp(workloads.mlp_parameters(0))
    with pytest.raises(ValueError, match=r"must end|needs a file name ending in '\.weights\.h5'"):
        adapter.save_mlp(net, tmp_path / "mlp.params", "keras-h5")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("framework", frameworks.names())
def test_mlp_state_with_wrong_shapes_is_refused(framework: str) -> None:
    adapter = adapter_or_skip(framework)
    model = adapter.new_mlp(workloads.mlp_parameters(0))
    bad = dict(workloads.mlp_parameters(0))
    bad["hidden.weight"] = bad["hidden.weight"].T.copy()
    with pytest.raises(ValueError, match="expected MLP parameters"):
        adapter.set_mlp_state(model, bad)
