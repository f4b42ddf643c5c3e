"""`serbench bench PATH`: a user's own checkpoint is recognised, read once behind the trust gate, stored
exactly, benchmarked, and answered. Parametrized from the registry: every format that can read a user's
file (`frameworks.readers_of`) is written by its framework and read back by name."""

from __future__ import annotations

import json
import os
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
from tests.run_fixture import case_key, rounds_for, row

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
    arrays, dropped, reader, _ = checkpoints.read_checkpoint(path, trusted=True)
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
    arrays, _, reader, _ = checkpoints.read_checkpoint(_shards(tmp_path / "model"), trusted=False)
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


def test_a_checkpoint_registered_again_under_its_name_builds_the_new_tensors_not_the_cached_ones(
    tmp_path: Path,
) -> None:
    """Two checkpoints called `model.safetensors` in one process are both `user-model`: the second one's
    tensors are what `workloads.build` gives (a cache by name returned the first one's, so a check of the
    second, e.g. that its 0-d tensors survive a round trip, ran on the first)."""
    trees = ({"w": np.arange(4, dtype=np.float32)}, {"w": np.arange(4, dtype=np.float32) + 1, "n": np.array(3)})
    try:
        for index, arrays in enumerate(trees):
            store = tmp_path / f"store-{index}.npz"
            entry = {"name": "user-model", "source": "model.safetensors", "store": str(store), "payload_bytes": 16}
            entry["tensors"] = workloads.store_arrays(arrays, store)
            (tmp_path / "checkpoints.json").write_text(json.dumps({"checkpoints": [entry]}))
            workloads.register_checkpoints(tmp_path / "checkpoints.json")
            back = workloads.build("user-model")
            assert list(back) == list(arrays)
            assert all(back[key].tobytes() == value.tobytes() for key, value in arrays.items())
    finally:
        workloads.WORKLOADS.pop("user-model", None)


def _timed(r: dict, jitter: float = 0.01) -> dict:
    """A hand-made row with its rounds by process, as a run records them (what the answer decides on)."""
    return {**r, "rounds_by_process": rounds_for(r["median_s"], case_key(r), jitter=jitter)}


def test_the_answer_counts_sorted_keys_as_exact_decides_with_intervals_and_says_what_is_unsafe() -> None:
    frame = pd.DataFrame(
        [
            _timed(row("torch", "torch", "load", "warm", median=0.040, workload="user-m")),
            _timed(
                row(
                    "torch",
                    "safetensors",
                    "load",
                    "warm",
                    median=0.030,
                    workload="user-m",
                    roundtrip="drift: root: key order changed",
                )
            ),
            _timed(row("numpy", "npz", "load", "warm", median=0.010, workload="user-m", stability="unstable"), 1.0),
            _timed(
                row(
                    "numpy",
                    "npy-pickle",
                    "load",
                    "warm",
                    median=0.020,
                    workload="user-m",
                    roundtrip="drift: root['x']: dtype bfloat16 -> |V2",
                )
            ),
            row("torch", "safetensors", "save", median=0.1, workload="user-m", file_bytes=100),
            row("torch", "torch", "save", median=0.1, workload="user-m", file_bytes=90),
        ]
    )
    frame = frame.reindex(columns=COLUMNS)
    lines = checkpoint_answer(frame, "user-m")
    text = "\n".join(lines)
    warm = lines[0]
    assert warm.startswith("fastest exact load, warm page cache: npz (numpy), "), "its noisy rounds still decide"
    assert "faster than the next, safetensors (torch)" in warm, "sorted keys are exact: safetensors is a candidate"
    assert "torch (torch) [pickle: only for files you trust] is " in warm, "torch is decided slower than the leader"
    assert "unstable 9.80–10.3 ms" in warm, "the pick's figure as it is: stability is shown, it is no gate"
    assert "smallest exact file: torch (torch) [pickle: only for files you trust]" in text
    assert "safe for untrusted files (no code runs, no pickle is parsed, sizes checked before parsing): " in text
    safe_line = next(line for line in lines if line.startswith("safe for untrusted"))
    assert "safetensors (torch)" in safe_line
    assert "torch (torch)" not in safe_line.replace("safetensors (torch)", "")
    assert "only for files you trust (pickle): torch (torch)" in text
    assert "not exact: npy-pickle (numpy): drift: root['x']: dtype bfloat16 -> |V2" in text


def test_a_long_drift_is_counted_and_a_few_changes_shown_whole() -> None:
    """The bf16 'not exact: npz' line was one 5 KB line with names cut at 40 characters."""
    from bench.reporting.answer import changes

    entries = [f"root['model.layers.{i}.post_attention_layernorm.weight']: dtype bfloat16 -> |V2" for i in range(53)]
    shown = changes("drift: " + "; ".join(entries))
    assert shown.startswith("drift in 53 places, e.g. root['model.layers.0.post_attention_layernorm.weight']")
    assert len(shown) < 400
    assert changes("drift: root: key order changed") == "drift: root: key order changed"


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
        *("bench", str(source), "--frameworks", "numpy", "--devices", "cpu", "--no-peak-memory", "--budget", "0"),
        *("--out", str(out)),
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
        (lambda path: path.mkdir(), "no format reads it whole, it has no *.index.json"),
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
    assert lines[0] == "fastest exact load, warm page cache: nothing timed"
    assert any(line.startswith("failed: torch (torch) load: boom") for line in lines), lines


# Issue 27: the forms serbench reads besides its own (tests/corpus holds them as the libraries write them) -----
def _marker_not_made(marker: Path) -> None:
    assert not marker.exists(), "code from the file ran"


def test_a_legacy_torch_stream_is_torchs_read_trusted_and_checked_before_torch_loads_it(tmp_path: Path) -> None:
    """torch.save(..., _use_new_zipfile_serialization=False) was taken for flax msgpack (0x80 is a msgpack map);
    its pickles are checked like the zip's before torch.load, which allocates what they declare."""
    from bench.safety.canary import Canary
    from frameworks import torch_files
    from frameworks.errors import ResourceLimitError, SerbenchError
    from frameworks.gate import BUDGET_VARIABLE

    adapter = adapter_or_skip("torch")
    torch = adapter.torch
    legacy = tmp_path / "legacy.pt"
    torch.save(adapter.from_numpy(STATE), legacy, _use_new_zipfile_serialization=False)
    assert frameworks.readers_of(legacy) == [("torch", "torch")]
    arrays, _, reader, _ = checkpoints.read_checkpoint(legacy, trusted=True)
    assert reader == "read with torch (torch)"
    assert all(np.array_equal(arrays[key], value) for key, value in STATE.items())
    with pytest.raises(checkpoints.Refused, match="--trusted"):
        checkpoints.read_checkpoint(legacy, trusted=False)

    marker = tmp_path / "marker"
    hostile = tmp_path / "hostile.pt"
    torch.save({"weight": torch.ones(2), "hook": Canary(marker)}, hostile, _use_new_zipfile_serialization=False)
    with pytest.raises(SerbenchError, match="beyond the tensors"):
        adapter.read_arrays(hostile, "torch", trusted=True)
    _marker_not_made(marker)

    bomb = tmp_path / "bomb.pt"
    bomb.write_bytes(torch_files.legacy_bomb(torch, 1 << 40))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(BUDGET_VARIABLE, str(256 << 20))
        with pytest.raises(ResourceLimitError, match="nothing was allocated"):
            adapter.read_arrays(bomb, "torch", trusted=True)


def test_the_msgpack_sniffer_takes_flax_files_and_neither_hdf5_nor_a_legacy_torch_stream(tmp_path: Path) -> None:
    import msgpack

    from frameworks import files
    from frameworks.jax_adapter import is_flax_msgpack

    samples = {
        "map.msgpack": msgpack.packb({"params": {"w": msgpack.ExtType(1, b"x")}}),
        "empty.msgpack": msgpack.packb({}),
        "array.msgpack": msgpack.packb(msgpack.ExtType(1, b"\0" * 20)),
        "model.h5": files.HDF5_MAGIC + b"\0" * 64,
        "legacy.pt": files.TORCH_LEGACY_HEAD + b"\x80\x02K\x01.",
        "empty-then-more.msgpack": msgpack.packb({}) + b"\x02\x03",
    }
    found = {}
    for name, data in samples.items():
        (tmp_path / name).write_bytes(data)
        found[name] = is_flax_msgpack(tmp_path / name)
    assert found == {
        "map.msgpack": True,
        "empty.msgpack": True,
        "array.msgpack": True,
        "model.h5": False,
        "legacy.pt": False,
        "empty-then-more.msgpack": False,
    }


def test_tensors_sharing_memory_are_found_stored_once_and_rebuilt_as_one_array(tmp_path: Path) -> None:
    """GPT-2's tied embeddings came back as two copies: the store held both and a torch.save of the run's
    workload wrote two storages, so a larger file than the user's was called the smallest."""
    weight = np.arange(6, dtype=np.float32)
    arrays = {
        "lm_head.weight": weight,
        "wte.weight": weight[:],  # a second view of the same memory, as torch.load gives tied tensors
        "reshaped": weight.reshape(2, 3),  # the same memory seen another way: not one tensor
        "empty.a": np.zeros(0, np.float32),
        "empty.b": np.zeros(0, np.float32),
    }
    aliased, shared = checkpoints.shared_storage(arrays)
    assert shared == [["lm_head.weight", "wte.weight"]]
    assert aliased["lm_head.weight"] is aliased["wte.weight"]
    assert aliased["reshaped"] is not aliased["lm_head.weight"]
    store = tmp_path / "store.npz"
    entry = {
        "name": "user-tied",
        "source": "tied.pt",
        "store": str(store),
        "payload_bytes": 48,
        "tensors": workloads.store_arrays(aliased, store),
        "shared": shared,
    }
    with np.load(store) as members:
        assert sorted(members.files) == ["0", "2", "3", "4"], "the tied tensor is stored once"
    (tmp_path / "checkpoints.json").write_text(json.dumps({"checkpoints": [entry]}))
    try:
        (workload,) = workloads.register_checkpoints(tmp_path / "checkpoints.json")
        back = workload.build()
    finally:
        workloads.WORKLOADS.pop("user-tied", None)
    assert back["lm_head.weight"] is back["wte.weight"]
    assert all(np.array_equal(back[key], value) for key, value in arrays.items())
    assert workloads.payload_bytes(back) == 48, "the run's payload (and every GB/s from it) counts the tie once"


@pytest.mark.parametrize(
    ("shared", "message"),
    [
        ([["a"]], "two or more"),
        ([["a", "missing"]], "two or more"),
        ([["a", "c"]], "different shapes"),
        ([["a", "b"], ["b", "a"]], "two shared groups"),
        ([[1, 2]], "expected a string"),
    ],
    ids=["one-name", "unknown-name", "different-shapes", "in-two-groups", "not-names"],
)
def test_a_checkpoints_json_whose_shared_groups_are_not_its_tensors_is_refused(
    shared: list, message: str, tmp_path: Path
) -> None:
    from frameworks.stored import StoredFileError

    tensors = [
        {"name": "a", "dtype": "float32", "shape": [2]},
        {"name": "b", "dtype": "float32", "shape": [2]},
        {"name": "c", "dtype": "float32", "shape": [3]},
    ]
    entry = {"name": "user-x", "source": "x", "store": "x.npz", "payload_bytes": 8, "tensors": tensors}
    (tmp_path / "checkpoints.json").write_text(json.dumps({"checkpoints": [{**entry, "shared": shared}]}))
    with pytest.raises(StoredFileError, match=message):
        workloads.read_checkpoints(tmp_path / "checkpoints.json")


@pytest.mark.parametrize("dtype", ["O", "O,i4", "U3", "datetime64[s]"])
def test_a_checkpoints_json_naming_a_dtype_that_is_no_tensor_s_is_refused(dtype: str, tmp_path: Path) -> None:
    """A structured dtype holding an object ("O,i4", kind V) passed, and only NumPy's own error stopped it later."""
    from frameworks.stored import StoredFileError

    tensors = [{"name": "a", "dtype": dtype, "shape": [2]}]
    entry = {"name": "user-x", "source": "x", "store": "x.npz", "payload_bytes": 8, "tensors": tensors}
    (tmp_path / "checkpoints.json").write_text(json.dumps({"checkpoints": [entry]}))
    with pytest.raises(StoredFileError, match="not a tensor's dtype"):
        workloads.read_checkpoints(tmp_path / "checkpoints.json")


def _directory(tmp_path: Path, names: dict[str, str]) -> Path:
    """A directory of files: name -> 'safetensors', 'torch', 'rng' or text."""
    torch_adapter = adapter_or_skip("torch")
    numpy_adapter = adapter_or_skip("numpy")
    directory = tmp_path / "saved"
    directory.mkdir()
    for name, kind in names.items():
        if kind == "safetensors":
            numpy_adapter.save(STATE, directory / name, "safetensors")
        elif kind == "torch":
            torch_adapter.save(
                torch_adapter.from_numpy({"state": {"0": {"exp_avg": STATE["head.weight"]}}}), directory / name, "torch"
            )
        elif kind == "rng":
            (directory / name).write_bytes(b"PK\x03\x04 not read")
        else:
            (directory / name).write_text(kind)
    return directory


def test_a_save_pretrained_directory_is_read_from_its_one_weights_file(tmp_path: Path) -> None:
    directory = _directory(tmp_path, {"model.safetensors": "safetensors", "config.json": "{}", "README.md": "# m"})
    arrays, dropped, reader, _ = checkpoints.read_checkpoint(directory, trusted=False)
    assert sorted(arrays) == sorted(STATE)  # safetensors sorts the keys
    assert dropped == []
    assert reader.startswith("model.safetensors, the directory's one weights file, read with numpy (safetensors)")
    assert "beside README.md, config.json (not weights)" in reader


def test_a_directory_holding_one_model_both_ways_is_read_from_its_safetensors(tmp_path: Path) -> None:
    directory = _directory(tmp_path, {"model.safetensors": "safetensors", "pytorch_model.bin": "torch"})
    arrays, dropped, _reader, _ = checkpoints.read_checkpoint(directory, trusted=False)
    assert sorted(arrays) == sorted(STATE)
    assert dropped == ["pytorch_model.bin (the same model as model.safetensors, in torch's format: not read)"]


def test_an_accelerate_directory_is_read_file_by_file_and_its_pickles_only_when_trusted(tmp_path: Path) -> None:
    files = {"model.safetensors": "safetensors", "optimizer.bin": "torch", "random_states_0.pkl": "rng"}
    directory = _directory(tmp_path, files)
    arrays, dropped, reader, _ = checkpoints.read_checkpoint(directory, trusted=True)
    assert sorted(arrays) == sorted([*STATE, "optimizer.state.0.exp_avg"])
    assert "random_states_0.pkl (RNG states, not tensors: not read)" in dropped
    assert "optimizer.bin with torch (torch) (as optimizer.*)" in reader
    arrays, dropped, reader, _ = checkpoints.read_checkpoint(directory, trusted=False)
    assert sorted(arrays) == sorted(STATE)
    assert "optimizer.bin (a torch file, a pickle: read only with --trusted)" in dropped
    (tmp_path / "bin").mkdir()
    only_pickles = _directory(tmp_path / "bin", {"pytorch_model.bin": "torch", "config.json": "{}"})
    with pytest.raises(checkpoints.Refused, match="only with --trusted"):
        checkpoints.read_checkpoint(only_pickles, trusted=False)


def test_a_whole_model_file_is_answered_with_what_to_do_from_the_command_line(tmp_path: Path) -> None:
    """The advice named a Python call the command line does not offer, and told a --trusted user to pass trust."""
    adapter = adapter_or_skip("torch")
    path = tmp_path / "whole.pt"
    adapter.torch.save(adapter.torch.nn.Linear(2, 2), path)
    with pytest.raises(checkpoints.Refused) as refused:
        checkpoints.read_checkpoint(path, trusted=True)
    message = str(refused.value)
    assert "torch.save its state_dict" in message
    assert "bench that file" in message
    assert "trusted=True" not in message
    assert "--trusted" not in message


def test_a_dcp_directory_is_read_only_when_trusted_and_its_declared_sizes_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.safety.canary import lambda_source
    from frameworks import torch_files
    from frameworks.errors import ResourceLimitError
    from frameworks.gate import BUDGET_VARIABLE

    adapter = adapter_or_skip("torch")
    valid = tmp_path / "valid.dcp"
    torch_files.save_dcp(adapter, {"model": adapter.from_numpy(dict(STATE)), "epoch": 3}, valid)
    arrays, dropped, reader, _ = checkpoints.read_checkpoint(valid, trusted=True)
    assert list(arrays) == [f"model.{key}" for key in STATE]
    assert dropped == ["epoch (int)"]
    assert reader == "read with torch (dcp)"
    with pytest.raises(checkpoints.Refused, match="--trusted"):
        checkpoints.read_checkpoint(valid, trusted=False)

    marker = tmp_path / "marker"
    canary = tmp_path / "canary.dcp"
    torch_files.dcp_metadata_canary(adapter, canary, lambda_source(marker), workloads.mlp_parameters(0))
    with pytest.raises(checkpoints.Refused, match="--trusted"):
        checkpoints.read_checkpoint(canary, trusted=False)
    _marker_not_made(marker)

    (forged,) = torch_files.dcp_forgeries(adapter, tmp_path, valid, None)
    monkeypatch.setenv(BUDGET_VARIABLE, str(256 << 20))
    with pytest.raises(ResourceLimitError, match="metadata's tensors declares"):
        adapter.read_arrays(forged.path, "dcp", trusted=True)


def test_a_tensorflow_checkpoint_directory_is_read_from_the_prefix_its_state_file_names(tmp_path: Path) -> None:
    from frameworks.errors import FormatMismatchError

    adapter = adapter_or_skip("tensorflow")
    tf = adapter.tf
    variable = tf.Variable(np.arange(3, dtype=np.float32))
    checkpoint = tf.train.Checkpoint(weights=variable)
    directory = tmp_path / "run"
    checkpoint.save(str(directory / "ckpt"))
    variable.assign(np.full(3, 7, np.float32))
    checkpoint.save(str(directory / "ckpt"))
    with frameworks.reading.collecting() as notes:
        tree = adapter.read_arrays(directory, "tf-checkpoint")
    assert np.array_equal(tree["weights/.ATTRIBUTES/VARIABLE_VALUE"], np.full(3, 7, np.float32))
    assert notes == ["prefix ckpt-2, the latest, as its `checkpoint` file names it (of 2: ckpt-1, ckpt-2)"]
    state = directory / "checkpoint"
    state.write_text('model_checkpoint_path: "../elsewhere/ckpt-1"\n')
    with pytest.raises(FormatMismatchError, match="may only name one of them"):
        adapter.read_arrays(directory, "tf-checkpoint")
    state.unlink()
    with pytest.raises(FormatMismatchError, match="holds 2 TensorFlow checkpoints"):
        adapter.read_arrays(directory, "tf-checkpoint")


def test_an_orbax_manager_directory_is_read_from_its_latest_step(tmp_path: Path) -> None:
    adapter = adapter_or_skip("jax")
    ocp = adapter.ocp
    with ocp.CheckpointManager((tmp_path / "run").absolute()) as manager:
        for step in (1, 3):
            manager.save(step, args=ocp.args.StandardSave({"w": np.full(2, step, np.float32)}))
        manager.wait_until_finished()
    arrays, _, reader, _ = checkpoints.read_checkpoint(tmp_path / "run", trusted=False)
    assert np.array_equal(arrays["w"], np.full(2, 3, np.float32))
    assert reader == "read with jax (orbax); step 3, the latest of 2 steps (1, 3); item default"


@pytest.mark.framework("mxnet")
def test_a_legacy_mxnet_file_is_read_as_mxnet_reads_it(tmp_path: Path) -> None:
    """A file of MXNet's default API (V2 marker) made the reader crash in NumPy mode."""
    adapter = adapter_or_skip("mxnet")
    mx = adapter.mx
    path = tmp_path / "arrays.nd"
    with mx.util.np_array(False), mx.util.np_shape(False):
        mx.nd.save(str(path), {key: mx.nd.array(value, dtype=value.dtype) for key, value in STATE.items()})
    assert frameworks.mxnet_adapter.is_legacy(frameworks.mxnet_adapter.read_ndarray_list(path))
    arrays, _, reader, _ = checkpoints.read_checkpoint(path, trusted=False)
    assert all(np.array_equal(arrays[key], value) for key, value in STATE.items())
    assert "legacy (V2) arrays" in reader
    assert mx.util.is_np_array(), "NumPy mode is back on after the read"


def test_overlapping_views_of_one_storage_are_stored_within_the_load_budget_or_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 offset slices of one 4 MiB storage (a 4 MB .pt) become a 401 MB store: the torch gate counts every
    reference to a shared storage against the load budget, so what is stored is within it, or refused unread."""
    torch = pytest.importorskip("torch")
    from frameworks import gate

    storage = torch.arange(1 << 18, dtype=torch.float32)  # 1 MiB
    source = tmp_path / "views.pt"
    torch.save({f"view{i}": storage[i * 1000 : i * 1000 + 200_000] for i in range(20)}, source)  # 16 MB stored
    monkeypatch.setenv(gate.BUDGET_VARIABLE, str(8 << 20))
    store = tmp_path / "user-views.npz"
    with pytest.raises(checkpoints.Refused, match="each reference to a shared storage counted declares 16,000,000"):
        checkpoints.import_checkpoint(source, store, "user-views", trusted=True)
    assert not store.exists()
    monkeypatch.setenv(gate.BUDGET_VARIABLE, str(32 << 20))
    entry = checkpoints.import_checkpoint(source, store, "user-views", trusted=True)
    assert entry["payload_bytes"] == 20 * 200_000 * 4


def _formats_that_hold_no_dict() -> list[tuple[str, str]]:
    return [
        (name, spec.name)
        for name in frameworks.names()
        for spec in frameworks.adapter_class(name).specs
        if "dict" not in spec.holds
    ]


@pytest.mark.parametrize(("framework", "fmt"), _formats_that_hold_no_dict(), ids="/".join)
def test_the_format_a_checkpoint_came_in_is_a_row_even_where_serbench_cannot_write_it(
    framework: str, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's Keras .weights.h5 got "cannot hold it: keras-h5 (tensorflow)", so the format it came in was never
    timed: it is loaded, warm and cold, as given; a stored run never makes serbench load a pickle trusted."""
    from bench.timing.plan import plan

    monkeypatch.setattr(workloads, "WORKLOADS", dict(workloads.WORKLOADS))
    spec = frameworks.adapter_class(framework).spec(fmt)
    given = workloads.Workload("user-given", "dict", "user", "small", dict, source="x", as_given=(framework, fmt))
    workloads.WORKLOADS[given.name] = given
    cases = [
        c for c in plan("quick", (framework,), workload_names=(given.name,), include_null=False) if c.format == fmt
    ]
    loads = sorted((c.op, c.cache) for c in cases if c.held)
    if spec.read_arrays is not None and not (spec.executes_code or spec.unpickles):
        assert loads == [("load", "cold"), ("load", "warm")]
    else:
        assert loads == []
    assert [(c.op, c.held) for c in cases if not c.held] == [("save", False)]  # serbench still cannot write it


def test_a_users_keras_weights_are_read_in_place_exactly_and_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses
    import os

    from bench import kinds

    adapter = adapter_or_skip("tensorflow")
    keras = adapter.keras
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(4)])
    source = tmp_path / "model.weights.h5"
    model.save_weights(source)
    before = source.read_bytes()
    monkeypatch.setattr(workloads, "WORKLOADS", dict(workloads.WORKLOADS))
    entry = checkpoints.import_checkpoint(source, tmp_path / "user-model.npz", "user-model", trusted=False)
    assert entry["as_given"] == {"framework": "tensorflow", "format": "keras-h5"}
    (tmp_path / "checkpoints.json").write_text(json.dumps({"checkpoints": [entry]}))
    (workload,) = workloads.register_checkpoints(tmp_path / "checkpoints.json")
    kind = kinds.kind_of(workload.name)
    subject = kind.subject(adapter, workload.name)
    path = kinds.saved_path(adapter, "keras-h5", workload.name, tmp_path / "scratch")
    assert path == source, "the user's own file, where it is"
    back = kind.state(adapter, subject, kind.load(adapter, subject, path, "keras-h5"))
    assert _same_values(subject.reference, back)
    assert len(back) == 4
    assert source.read_bytes() == before
    # given as a link (the Hugging Face cache's), it is read where the link points
    (tmp_path / "link").symlink_to(source)
    workloads.WORKLOADS[workload.name] = dataclasses.replace(workload, source=str(tmp_path / "link"))
    assert kinds.saved_path(adapter, "keras-h5", workload.name, tmp_path / "scratch") == source
    # a stored run naming a FIFO, a link to one, or nothing as the file given is refused before anything opens it
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "fifo-link").symlink_to(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()  # a directory, for a file format, whose links the page cache helpers followed
    (tmp_path / "folder" / "link").symlink_to(source)
    for planted in ("fifo", "fifo-link", "gone", "folder", "/proc/self/status"):
        workloads.WORKLOADS[workload.name] = dataclasses.replace(workload, source=str(tmp_path / planted))
        with pytest.raises(frameworks.UnsupportedError, match="as given"):
            kinds.saved_path(adapter, "keras-h5", workload.name, tmp_path / "scratch")
    with pytest.raises(frameworks.UnsupportedError, match="no longer there"):
        kind.save(adapter, subject, tmp_path / "gone", "keras-h5")


@pytest.mark.parametrize(
    "as_given",
    [{"framework": "nope", "format": "npz"}, {"framework": "numpy", "format": "nope"}, {"framework": 1, "format": "x"}],
    ids=["unknown-framework", "unknown-format", "wrong-type"],
)
def test_a_checkpoints_json_whose_as_given_is_not_a_reader_is_refused(as_given: dict, tmp_path: Path) -> None:
    from frameworks.stored import StoredFileError

    tensors = [{"name": "a", "dtype": "float32", "shape": [2]}]
    entry = {"name": "user-x", "source": "x", "store": "x.npz", "payload_bytes": 8, "tensors": tensors}
    (tmp_path / "checkpoints.json").write_text(json.dumps({"checkpoints": [{**entry, "as_given": as_given}]}))
    with pytest.raises(StoredFileError, match="as_given"):
        workloads.read_checkpoints(tmp_path / "checkpoints.json")


def _upstream_findings() -> list[tuple[str, object]]:
    return [
        (name, finding)
        for name in frameworks.names()
        for finding in frameworks.adapter_class(name).findings
        if finding.expectation.signature
    ]


@pytest.mark.parametrize(("framework", "finding"), _upstream_findings(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_failure_with_an_upstream_bugs_signature_is_named_as_upstream(framework: str, finding: object) -> None:
    """A user's 0-d int64 met safetensors 0.8.0's TensorFlow writer bug, and the answer said only "failed:
    AttributeError ..." as though serbench or the file were wrong."""
    from bench.reporting.answer import _upstream

    expected = finding.expectation
    fmt = finding.formats[0]
    note = f"{expected.error}: the library said {expected.signature}, deep inside"
    row = pd.Series({"framework": framework, "format": fmt, "note": note})
    assert _upstream(row).startswith(" (upstream, not serbench: ")
    assert expected.reasons()[0].removeprefix("upstream: ")[:40] in _upstream(row)
    assert _upstream(row.copy().replace({note: f"{expected.error}: something else"})) == ""
    assert _upstream(pd.Series({"framework": framework, "format": "not-" + fmt, "note": note})) == ""


@pytest.mark.parametrize("storage", ["external-file", "external-fifo", "virtual"])
def test_a_keras_weights_file_whose_data_lives_in_other_files_is_refused_unread(storage: str, tmp_path: Path) -> None:
    """A forged .weights.h5 whose dataset used HDF5 external storage returned a mode-0600 file of the user's as
    a tensor (and blocked on a FIFO); a virtual dataset read another .h5 file."""
    import os

    import h5py

    adapter = adapter_or_skip("tensorflow")
    secret = tmp_path / "secret"
    secret.write_bytes(b"TOP SECRET shadow-like\n")
    os.chmod(secret, 0o600)
    forged = tmp_path / "evil.weights.h5"
    with h5py.File(forged, "w") as handle:
        handle.create_dataset("layers/dense/vars/0", data=np.ones((2, 2), dtype=np.float32))
        if storage == "virtual":
            other = tmp_path / "other.h5"
            with h5py.File(other, "w") as source:
                source.create_dataset("x", data=np.frombuffer(secret.read_bytes(), dtype=np.uint8))
            layout = h5py.VirtualLayout(shape=(23,), dtype="u1")
            layout[:] = h5py.VirtualSource(str(other), "x", shape=(23,))
            handle.create_virtual_dataset("layers/dense/vars/1", layout)
        else:
            target = secret
            if storage == "external-fifo":
                target = tmp_path / "pipe"
                os.mkfifo(target)
            handle.create_dataset("layers/dense/vars/1", shape=(23,), dtype="u1", external=[(str(target), 0, 23)])
    for read in (lambda: adapter.read_arrays(forged, "keras-h5"), lambda: checkpoints.read_file(forged, False)):
        with pytest.raises((frameworks.FormatMismatchError, checkpoints.Refused), match="outside the file"):
            read()


def test_a_resume_with_another_checkpoint_of_the_same_name_is_refused_and_keeps_the_run(tmp_path: Path) -> None:
    """`bench other/model.weights.h5 --resume --out K` (2 tensors), K made from a 4-tensor file of the same name,
    said "already done, skipped" and answered for the new file from the old one's figures."""
    adapter = adapter_or_skip("numpy")
    first, second = tmp_path / "a" / "mine.safetensors", tmp_path / "b" / "mine.safetensors"
    for path, state in ((first, STATE), (second, {"only": np.ones(3, dtype=np.float32)})):
        path.parent.mkdir()
        adapter.save(state, path, "safetensors")
    out = tmp_path / "run"
    options = ("--frameworks", "numpy", "--formats", "npz", "--devices", "cpu", "--no-peak-memory", "--budget", "0")
    made = _serbench("bench", str(first), *options, "--out", str(out))
    assert made.returncode == 0, made.stderr[-2000:]

    def files_of(run: Path) -> dict[Path, bytes]:  # the lock names its last holder
        return {
            p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".serbench-lock"
        }

    before = files_of(out)
    refused = _serbench("bench", str(second), *options, "--out", str(out), "--resume")
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "timed other checkpoints" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert files_of(out) == before, "the run's store, entries and results are as they were"
    # a fine-tuned model: the same names and shapes, other values
    tuned = tmp_path / "c" / "mine.safetensors"
    tuned.parent.mkdir()
    adapter.save({name: value + 1 for name, value in STATE.items()}, tuned, "safetensors")
    refused = _serbench("bench", str(tuned), *options, "--out", str(out), "--resume")
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert files_of(out) == before
    again = _serbench("bench", str(first), *options, "--out", str(out), "--resume")
    assert again.returncode == 0, again.stderr[-2000:]
    # and a `run --resume` of a bench run is refused (its cases are the checkpoints' workloads)
    resumed = _serbench("run", "--resume", "--out", str(out), "--frameworks", "numpy", "--sizes", "small")
    assert resumed.returncode == 2, resumed.stderr[-2000:]
    assert "serbench bench" in resumed.stderr
    # and with its checkpoints.json removed by hand, neither resume can tell what it timed
    (out / "checkpoints.json").unlink()
    for command in (("bench", str(first), *options), ("run", "--frameworks", "numpy", "--sizes", "small")):
        blind = _serbench(*command, "--out", str(out), "--resume")
        assert blind.returncode == 2, blind.stderr[-2000:]
        assert "Traceback" not in blind.stderr
    for plan in (out / "raw").glob("plan-*.json"):  # and its plans too: the benchmark files still name the checkpoint
        plan.unlink()
    blind = _serbench("bench", str(tuned), *options, "--out", str(out), "--resume")
    assert blind.returncode == 2, blind.stderr[-2000:]


def test_a_keras_weights_file_with_a_chunk_larger_than_its_data_is_refused_unread(tmp_path: Path) -> None:
    """A 21 KB .weights.h5 whose 1-element dataset sat in one deflated 1 GiB chunk took 2.8 s and 1.75 GB to read,
    and 39 copies of it 42 s: a chunk is decompressed whole, whatever the dataset declares."""
    import h5py

    adapter = adapter_or_skip("tensorflow")
    bomb = tmp_path / "bomb.weights.h5"
    with h5py.File(bomb, "w") as handle:
        handle.create_dataset("layers/dense/vars/0", data=np.ones((2, 2), dtype=np.float32))
        handle.create_dataset(
            "layers/dense/vars/1", shape=(1,), maxshape=(None,), chunks=(1 << 26,), dtype="f4", compression="gzip"
        )
    with pytest.raises(frameworks.FormatMismatchError, match="decompression bomb"):
        adapter.read_arrays(bomb, "keras-h5")
    chunked = tmp_path / "chunked.weights.h5"  # what h5py chooses for a small resizable dataset still reads
    with h5py.File(chunked, "w") as handle:
        handle.create_dataset("layers/dense/vars/0", data=np.ones((3, 4), dtype=np.float32), maxshape=(None, 4))
    assert adapter.read_arrays(chunked, "keras-h5")["layers/dense/vars/0"].shape == (3, 4)


@pytest.mark.parametrize("path", ["/proc/self/status", "/sys/kernel/mm/transparent_hugepage/enabled", "/dev/null"])
def test_a_kernel_interface_is_refused_as_a_checkpoint_whatever_it_looks_like(path: str, tmp_path: Path) -> None:
    """/proc/kmsg passes as a "regular" empty file, and reading it blocks and consumes the kernel's log."""
    from bench.errors import UsageError

    if not os.path.exists(path):
        pytest.skip(f"{path} is not on this machine")
    link = tmp_path / "model.safetensors"
    link.symlink_to(path)
    for given in (Path(path), link):
        with pytest.raises(UsageError, match="kernel interface"):
            checkpoints.check_source(given)


def test_the_load_budget_counts_a_keras_weights_file_chunk_by_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each chunk is decompressed whole: many tiny datasets in chunks just under the slack are refused by what
    their chunks hold, not waved through by the few bytes their shapes declare."""
    import h5py

    from frameworks import gate
    from frameworks.errors import ResourceLimitError

    adapter = adapter_or_skip("tensorflow")
    many = tmp_path / "many.weights.h5"
    with h5py.File(many, "w") as handle:
        for index in range(20):
            handle.create_dataset(
                f"layers/d{index}/vars/0", shape=(1,), maxshape=(None,), chunks=(1 << 18,), dtype="f4",
                compression="gzip",
            )  # fmt: skip
    monkeypatch.setenv(gate.BUDGET_VARIABLE, str(16 << 20))  # 20 chunks of 1 MiB pass 32 MiB, not 16
    with pytest.raises(ResourceLimitError, match="chunk by chunk"):
        adapter.read_arrays(many, "keras-h5")
    monkeypatch.setenv(gate.BUDGET_VARIABLE, str(32 << 20))
    assert len(adapter.read_arrays(many, "keras-h5")) == 20


def test_a_kernel_filesystem_is_refused_wherever_it_is_mounted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A procfs mounted at /host/proc (a container's, a chroot's) passed a check of the path's first part, and a
    tmpfs under /dev (/dev/shm) was refused with it."""
    from frameworks import gate
    from frameworks.errors import NotRegularFileError

    proc = tmp_path / "host" / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "status").write_text("")
    mounts = ((str(proc), "proc"), ("/dev/shm", "tmpfs"), ("/dev", "devtmpfs"), ("/", "ext4"))
    monkeypatch.setattr(gate, "_mounts", lambda: mounts)
    with pytest.raises(NotRegularFileError, match="kernel interface"):
        gate.regular_source(proc / "self" / "status", "npz")
    assert gate.kernel_filesystem("/dev/shm/weights.npz") is None
    assert gate.kernel_filesystem("/dev/null") == "devtmpfs, mounted at /dev"
    assert gate.kernel_filesystem(tmp_path / "elsewhere.npz") is None


def test_a_keras_weights_file_whose_chunks_hold_far_more_than_its_data_is_refused(tmp_path: Path) -> None:
    """A (1, N) dataset in (2^18, 1) chunks passed the per-chunk rule: writing row 0 stored N chunks of 1 MiB, and an
    18 MB file declaring 64 KiB decompressed 16 GiB."""
    import h5py

    adapter = adapter_or_skip("tensorflow")
    wide = tmp_path / "wide.weights.h5"
    with h5py.File(wide, "w") as handle:
        dataset = handle.create_dataset(
            "layers/d/vars/0", shape=(1, 80), maxshape=(None, 80), chunks=(1 << 18, 1), dtype="f4", compression="gzip"
        )
        dataset[0] = np.ones(80, dtype=np.float32)
    with pytest.raises(frameworks.FormatMismatchError, match="would decompress"):
        adapter.read_arrays(wide, "keras-h5")
