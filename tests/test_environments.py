"""Each framework runs in its own environment (`frameworks.environments`): the core one on numpy 2, MXNet's
on the numpy 1.26 it needs; the harness launches every framework's processes with its interpreter. (What a
run's env.json records is tests/test_env_json.py's.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

import frameworks
from frameworks import environments

pytestmark = pytest.mark.crosses_environments


def built() -> bool:
    return environments.current() is not None


@pytest.mark.parametrize("name", list(environments.ENVIRONMENTS))
def test_each_environment_has_the_numpy_its_frameworks_need(name: str) -> None:
    if not built():
        pytest.skip("serbench's environments are not built here (one interpreter runs everything)")
    environment = environments.ENVIRONMENTS[name]
    assert environment.python.exists(), f"{environment.directory} is missing: make setup builds it"
    version = subprocess.run(
        [str(environment.python), "-c", "import numpy; print(numpy.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.strip()
    want_two = name != "mxnet"
    assert (int(version.split(".")[0]) >= 2) == want_two, f"{name}: numpy {version}"


def test_every_framework_names_a_declared_environment() -> None:
    for name in frameworks.REGISTRY:
        assert frameworks.adapter_class(name).environment in environments.ENVIRONMENTS, name
    assert frameworks.adapter_class("mxnet").environment == "mxnet"


def test_a_run_times_mxnet_in_its_environment_and_records_its_versions(tmp_path: Path) -> None:
    if not built():
        pytest.skip("serbench's environments are not built here (one interpreter runs everything)")
    from bench.timing.runner import RunConfig, run

    out = run(
        RunConfig(
            frameworks=("mxnet",),
            kinds=("tensor",),
            sizes=("small",),
            devices=("cpu",),
            peak_memory=False,
            out=tmp_path / "r",
        )
    )
    frame = pd.read_csv(out / "results.csv")
    mxnet = frame[frame["framework"] == "mxnet"]
    assert not mxnet.empty
    assert set(mxnet["status"]) <= {"ok", "unsupported"}, mxnet[["format", "status", "note"]]
    assert (mxnet["status"] == "ok").any()
    env = json.loads((out / "env.json").read_text())
    assert env["versions"]["mxnet [mxnet]"] == "1.9.1"
    assert env["versions"]["numpy [mxnet]"].startswith("1.")
    assert env["versions"]["numpy"].startswith("2.")
    assert env["environments"]["mxnet"]["interpreter"].endswith(".venv-mxnet/bin/python")


def test_a_checkpoint_only_mxnet_reads_is_read_in_its_environment(tmp_path: Path) -> None:
    """`serbench bench` on an MXNet NDArray file, from the core environment: the reading child runs
    in the mxnet environment (`bench.checkpoints.prepare`), where MXNet imports."""
    if not built():
        pytest.skip("serbench's environments are not built here (one interpreter runs everything)")
    import numpy as np

    from bench.checkpoints import prepare
    from frameworks.remote import Side

    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, dtype=np.float32)}
    Side("mxnet").save(state, tmp_path / "weights.nd", "mx-ndarray")
    (entry,) = prepare([tmp_path / "weights.nd"], tmp_path / "store", trusted=False)
    assert entry["reader"] == "read with mxnet (mx-ndarray)"
    assert [(t["name"], t["dtype"], t["shape"]) for t in entry["tensors"]] == [
        (name, str(value.dtype), list(value.shape)) for name, value in state.items()
    ]
    with np.load(entry["store"]) as stored:  # the store keeps each tensor's bytes, in order
        assert [stored[str(i)].tobytes() for i in range(len(state))] == [v.tobytes() for v in state.values()]
