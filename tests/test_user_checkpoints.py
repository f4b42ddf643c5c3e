"""`serbench bench PATH`: a user's own checkpoint is recognised, read once behind the trust gate, stored
exactly, benchmarked, and answered. Parametrized from the registry: every format that can read a user's
file (`frameworks.readers_of`) is written by its framework and read back by name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pandas as pd
import pytest

import frameworks
from bench import checkpoints, workloads
from bench.reporting.answer import checkpoint_answer
from bench.timing.results import COLUMNS
from tests.conftest import adapter_or_skip
from tests.run_fixture import row

STATE = {
    "encoder.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
    "encoder.bias": np.linspace(-1, 1, 5, dtype=np.float32),
    "head.weight": np.ones((2, 3), np.float32) * 0.5,
}

READABLE = [
    pytest.param(name, spec.name, id=f"{name}-{spec.name}")
    for name in frameworks.names()
    for spec in frameworks.adapter_class(name).specs
    if not spec.model_only or spec.read_arrays is not None
]


def _write(adapter: frameworks.Adapter, fmt: str, directory: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A file of `fmt` made the way a user of the framework makes one; the tensors it must give back."""
    spec = adapter.spec(fmt)
    path = directory / f"mine{spec.suffix}"
    if spec.model_only:
        parameters = frameworks.base.mlp_parameters(3)
        adapter.save_mlp(adapter.new_mlp(parameters), path, fmt)
        return path, parameters
    if "dict" in spec.holds:
        adapter.save(adapter.from_numpy(STATE), path, fmt)
        return path, STATE
    tensor = STATE["encoder.weight"]
    adapter.save(adapter.from_numpy(tensor), path, fmt)
    return path, {"tensor": tensor}


def _same_values(expected: dict[str, np.ndarray], found: dict[str, np.ndarray]) -> bool:
    """Every expected tensor is in `found` with the same bits: by name, or (a model's file names its
    parameters its own way, and Keras stores kernels as (in, out)) as some tensor or its transpose."""
    if set(expected) <= set(found):
        return all(
            np.array_equal(found[key], value) and found[key].dtype == value.dtype for key, value in expected.items()
        )
    pool = list(found.values())
    return len(pool) == len(expected) and all(
        any(np.array_equal(value, other) or np.array_equal(value.T, other) for other in pool)
        for value in expected.values()
    )


@pytest.mark.parametrize(("framework", "fmt"), READABLE)
def test_a_users_file_is_recognised_and_read_back_exactly(framework: str, fmt: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip(framework)
    path, expected = _write(adapter, fmt, tmp_path)
    assert fmt in {found for _, found in frameworks.readers_of(path)}, "the format's sniffer recognises the file"
    arrays, dropped, reader = checkpoints.read_checkpoint(path, trusted=True)
    assert dropped == []
    assert _same_values(expected, arrays), (reader, {key: value.shape for key, value in arrays.items()})


@pytest.mark.parametrize(("framework", "fmt"), READABLE)
def test_a_pickle_is_read_only_when_trusted(framework: str, fmt: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip(framework)
    path, _ = _write(adapter, fmt, tmp_path)
    spec = adapter.spec(fmt)
    if not (spec.executes_code or spec.unpickles):
        checkpoints.read_checkpoint(path, trusted=False)  # no trust needed
        return
    with pytest.raises(checkpoints.Refused, match="--trusted"):
        checkpoints.read_checkpoint(path, trusted=False)


def test_a_nested_checkpoint_is_flattened_by_name_and_non_tensors_are_named() -> None:
    arrays, dropped = checkpoints.flatten({"model": {"w": np.ones(2)}, "epoch": 3, "history": [np.zeros(1)]})
    assert list(arrays) == ["model.w", "history.0"]
    assert dropped == ["epoch (int)"]
    with pytest.raises(checkpoints.Refused, match=r"a\.b"):
        checkpoints.flatten({"a.b": np.ones(1), "a": {"b": np.ones(1)}})


def _shards(directory: Path, weight_map: dict[str, str] | None = None) -> Path:
    adapter = adapter_or_skip("numpy")
    directory.mkdir()
    first, second = dict(list(STATE.items())[:2]), dict(list(STATE.items())[2:])
    adapter.save(first, directory / "model-00001-of-00002.safetensors", "safetensors")
    adapter.save(second, directory / "model-00002-of-00002.safetensors", "safetensors")
    default = dict.fromkeys(first, "model-00001-of-00002.safetensors") | dict.fromkeys(
        second, "model-00002-of-00002.safetensors"
    )
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map if weight_map is not None else default}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    return directory


def test_a_shard_directory_is_read_through_its_index(tmp_path: Path) -> None:
    arrays, _, reader = checkpoints.read_checkpoint(_shards(tmp_path / "model"), trusted=False)
    assert list(arrays) == list(STATE)
    assert all(np.array_equal(arrays[key], value) for key, value in STATE.items())
    assert "2 shards" in reader


@pytest.mark.parametrize(
    ("weight_map", "message"),
    [
        ({"encoder.weight": "model-00001-of-00002.safetensors"}, "does not hold what"),
        (dict.fromkeys(STATE, "model-00001-of-00002.safetensors"), "does not hold what"),
        (dict.fromkeys(STATE, "../outside.safetensors"), "not a file in"),
        ({"encoder.weight": 3}, "weight_map.encoder.weight: expected a string"),
    ],
    ids=["tensors-not-in-index", "tensor-in-wrong-shard", "shard-outside-directory", "not-a-name"],
)
def test_a_shard_index_that_disagrees_with_its_shards_is_refused(
    weight_map: dict, message: str, tmp_path: Path
) -> None:
    with pytest.raises(checkpoints.Refused, match=message):
        checkpoints.read_checkpoint(_shards(tmp_path / "model", weight_map), trusted=False)


def test_stored_tensors_come_back_with_their_bits_dtypes_and_order(tmp_path: Path) -> None:
    arrays = {
        "z.bf16": np.array([1.5, -0.0, np.nan], dtype=ml_dtypes.bfloat16),
        "a.scalar": np.array(7, dtype=np.int64),
        "m.empty": np.zeros((0, 3), np.float16),
        "b.bool": np.array([True, False]),
    }
    store = tmp_path / "store.npz"
    entry = {
        "name": "user-test",
        "source": "test.safetensors",
        "store": str(store),
        "payload_bytes": 16,
        "tensors": workloads.store_arrays(arrays, store),
    }
    (tmp_path / "checkpoints.json").write_text(json.dumps({"checkpoints": [entry]}))
    try:
        (workload,) = workloads.register_checkpoints(tmp_path / "checkpoints.json")
        back = workload.build()
    finally:
        workloads.WORKLOADS.pop("user-test", None)
    assert list(back) == list(arrays)
    for key, value in arrays.items():
        assert back[key].dtype == value.dtype
        assert back[key].shape == value.shape
        assert back[key].tobytes() == value.tobytes()
    assert (workload.kind, workload.group, workload.size) == ("dict", "user", "small")


def test_the_answer_counts_sorted_keys_as_exact_skips_unstable_figures_and_says_what_is_unsafe() -> None:
    frame = pd.DataFrame(
        [
            row("torch", "torch", "load", "warm", median=0.040, workload="user-m"),
            row(
                "torch",
                "safetensors",
                "load",
                "warm",
                median=0.030,
                workload="user-m",
                roundtrip="drift: root: key order changed",
            ),
            row(
                "numpy",
                "npz",
                "load",
                "warm",
                median=0.010,
                workload="user-m",
                stability="unstable",
                low_s=0.005,
                high_s=0.2,
            ),
            row(
                "numpy",
                "npy-pickle",
                "load",
                "warm",
                median=0.020,
                workload="user-m",
                roundtrip="drift: root['x']: dtype bfloat16 -> |V2",
            ),
            row("torch", "safetensors", "save", median=0.1, workload="user-m", file_bytes=100),
            row("torch", "torch", "save", median=0.1, workload="user-m", file_bytes=90),
        ]
    )
    frame = frame.reindex(columns=COLUMNS)
    lines = checkpoint_answer(frame, "user-m")
    text = "\n".join(lines)
    assert lines[0].startswith("fastest exact load, warm page cache: safetensors (torch)")
    assert "left out as unstable: npz (numpy)" in lines[0]
    assert "smallest exact file: torch (torch)" in text
    assert "safe for untrusted files (no code runs, no pickle is parsed, sizes checked before parsing): " in text
    safe_line = next(line for line in lines if line.startswith("safe for untrusted"))
    assert "safetensors (torch)" in safe_line
    assert "torch (torch)" not in safe_line.replace("safetensors (torch)", "")
    assert "only for files you trust (pickle): torch (torch)" in text
    assert "not exact: npy-pickle (numpy): drift: root['x']: dtype bfloat16 -> |V2" in text


def _serbench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_serbench_bench_times_a_users_checkpoint_end_to_end(tmp_path: Path) -> None:
    adapter = adapter_or_skip("numpy")
    source = tmp_path / "mine.safetensors"
    adapter.save(STATE, source, "safetensors")
    out = tmp_path / "run"
    result = _serbench(
        "bench", str(source), "--frameworks", "numpy", "--devices", "cpu", "--no-peak-memory", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    frame = pd.read_csv(out / "results.csv")
    mine = frame[frame["workload"] == "user-mine"]
    timed = mine[mine["status"] == "ok"]
    assert set(timed["format"]) >= {"npz", "safetensors", "npy-pickle"}
    assert set(mine.loc[mine["format"] == "npy", "status"]) == {"unsupported"}, "npy holds one tensor, not a dict"
    assert set(timed.loc[timed["op"] == "load", "roundtrip"]) <= {"exact", "drift: root: key order changed"}
    assert f"For {source} on this machine:" in result.stdout
    assert "fastest exact load, warm page cache:" in result.stdout
    assert json.loads((out / "checkpoints.json").read_text())["checkpoints"][0]["tensor_count"] == len(STATE)
    assert "user-mine" in (out / "report.md").read_text()
    assert not (out / "scratch").exists(), "the stored copy of the checkpoint is removed after the run"


def test_serbench_bench_refuses_a_pickle_without_trusted_in_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    adapter = adapter_or_skip("torch")
    source = tmp_path / "mine.pt"
    adapter.save(adapter.from_numpy(STATE), source, "torch")
    out = tmp_path / "run"
    result = _serbench("bench", str(source), "--out", str(out), timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--trusted" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: path.write_text("just some notes"), "not a checkpoint serbench recognises"),
        (lambda path: None, "no such file"),
        (lambda path: path.mkdir(), "needs exactly one"),
    ],
    ids=["not-a-checkpoint", "missing", "directory-without-index"],
)
def test_serbench_bench_answers_a_bad_path_in_one_line(make, message: str, tmp_path: Path) -> None:
    source = tmp_path / "mine.bin"
    make(source)
    result = _serbench("bench", str(source), "--out", str(tmp_path / "run"), timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr


FORGED = [
    pytest.param(framework, fmt, id=f"{framework}-{fmt}")
    for framework, fmt in (param.values for param in READABLE)
    if frameworks.adapter_class(framework).spec(fmt).forgeries is not None
]


@pytest.mark.parametrize(("framework", "fmt"), FORGED)
def test_no_forgery_of_the_format_makes_reading_a_users_file_allocate_what_it_declares(
    framework: str, fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safety matrix's bombs and forged headers, read as a user's checkpoint: refused, or read within the
    load budget (a Keras file of int64 datasets is a user's tensors, not a bomb)."""
    from bench.safety.inputs import reference, save_valid
    from frameworks.errors import SerbenchError
    from frameworks.gate import BUDGET_VARIABLE
    from frameworks.trees import leaves

    budget = 256 << 20
    monkeypatch.setenv(BUDGET_VARIABLE, str(budget))
    adapter = adapter_or_skip(framework)
    spec = adapter.spec(fmt)
    valid = tmp_path / f"valid{spec.suffix}"
    save_valid(adapter, fmt, valid)
    forged = spec.forgeries(adapter, tmp_path, valid, reference(framework, fmt))
    assert forged, "the format declares forgeries"
    for item in forged:
        try:
            tree = adapter.read_arrays(item.path, fmt, trusted=True)
        except SerbenchError:
            continue
        assert sum(np.asarray(leaf).nbytes for leaf in leaves(tree)) <= budget, item.name
        assert item.group != "damaged", f"{item.name} is an allocation bomb and was read"


def test_the_answer_for_a_checkpoint_no_format_loaded_says_so_instead_of_failing() -> None:
    frame = pd.DataFrame(
        [
            row("torch", "torch", "load", "warm", workload="user-m", status="error", median=None, note="boom"),
            row("torch", "torch", "save", workload="user-m", status="error", median=None, note="boom"),
        ]
    ).reindex(columns=COLUMNS)
    lines = checkpoint_answer(frame, "user-m")
    assert lines[0] == "fastest exact load, warm page cache: no stable figure"
    assert any(line.startswith("failed: torch (torch) load: boom") for line in lines), lines
