"""`serbench bench PATH` on what users have: every dtype a checkpoint may hold gives a result or a one-line
refusal; a FIFO, a link out of a checkpoint directory or a forged safetensors header is refused before any
reader runs; a name is kept exactly."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import checkpoints, cli
from bench.errors import UsageError
from frameworks.errors import SerbenchError
from tests.conftest import adapter_or_skip
from tests.test_stored_files import deadline

DTYPES = {
    "complex64": lambda torch: torch.ones(8, dtype=torch.complex64),
    "float8_e4m3fn": lambda torch: torch.zeros(16, dtype=torch.float8_e4m3fn),
    "float8_e5m2": lambda torch: torch.zeros(16, dtype=torch.float8_e5m2),
    "bool": lambda torch: torch.tensor([True, False, True]),
    "zero-d int64": lambda torch: torch.tensor(3),
    "bfloat16": lambda torch: torch.ones(4, dtype=torch.bfloat16),
    "empty": lambda torch: torch.zeros((0, 3)),
}
"""Tensors a torch checkpoint may hold, beside an ordinary float32 one."""


@pytest.mark.framework("torch")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("container", ["safetensors", "torch"])
def test_every_dtype_gives_a_result_or_a_one_line_refusal(dtype: str, container: str, tmp_path: Path) -> None:
    """A complex64 checkpoint ran to the end and failed with KeyError: 'roundtrip' (exit 3, no results.csv);
    an fp8 safetensors file gave 'the reader crashed (TypeError...)'."""
    adapter = adapter_or_skip("torch")
    torch = adapter.torch
    state = {"weight": torch.ones(4, 4), "odd": DTYPES[dtype](torch)}
    path = tmp_path / f"model.{'safetensors' if container == 'safetensors' else 'pt'}"
    if container == "safetensors":
        adapter.safetensors.save_file(state, str(path))
    else:
        torch.save(state, path)
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "bench.cli", "bench", str(path), "--frameworks", "numpy,torch", "--devices", "cpu"]
    argv += ["--no-peak-memory", "--processes", "1", "--budget", "0", "--out", str(out), "--trusted"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "internal error" not in result.stderr, result.stderr[-2000:]
    if result.returncode == 0:
        assert (out / "results.csv").is_file()
        assert (out / "report.md").is_file()
        assert "fastest exact load" in result.stdout
    else:
        assert result.returncode == cli.EXIT_USAGE, result.stderr[-2000:]
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_fifo_given_to_bench_is_refused_before_it_is_read(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The parent sniffed the file before the gate, and hung."""
    pipe = tmp_path / "model.safetensors"
    os.mkfifo(pipe)
    with deadline(30):
        status = cli.main(["bench", str(pipe), "--out", str(tmp_path / "run")])
    assert status == cli.EXIT_USAGE
    assert "FIFO" in capsys.readouterr().err


def _safetensors(path: Path, header: dict, data: bytes) -> Path:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def _shard_directory(tmp_path: Path) -> Path:
    folder = tmp_path / "shards"
    folder.mkdir()
    _safetensors(folder / "a.safetensors", {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "a.safetensors"}}))
    return folder


def test_a_fifo_shard_in_an_indexed_directory_is_refused_at_once(tmp_path: Path) -> None:
    """A FIFO shard inside an indexed directory waited for the 1800 s child timeout."""
    folder = _shard_directory(tmp_path)
    (folder / "a.safetensors").unlink()
    os.mkfifo(folder / "a.safetensors")
    with deadline(30), pytest.raises(UsageError, match="FIFO"):
        checkpoints.prepare([folder], tmp_path / "store", trusted=False)


def test_a_link_out_of_a_checkpoint_directory_is_refused(tmp_path: Path) -> None:
    """bench followed links out of a checkpoint directory, where the scale index checker refuses them."""
    folder = _shard_directory(tmp_path)
    outside = tmp_path / "outside.safetensors"
    (folder / "a.safetensors").rename(outside)
    (folder / "a.safetensors").symlink_to(outside)
    with pytest.raises(UsageError, match="symbolic link"):
        checkpoints.prepare([folder], tmp_path / "store", trusted=False)


OFFSETS = {
    "overlapping": ([0, 8], [4, 12], 12),
    "aliased": ([0, 8], [0, 8], 8),
    "gapped": ([0, 8], [12, 20], 20),
    "out of order and gapped": ([8, 16], [20, 28], 28),
    "short of the data": ([0, 8], [8, 16], 20),
}


@pytest.mark.parametrize("case", OFFSETS)
def test_a_safetensors_header_whose_ranges_do_not_tile_the_data_is_refused(case: str, tmp_path: Path) -> None:
    """The validator accepted overlapping, aliased and gapped offsets, and the reference loader then returned
    aliased or shifted tensors; safetensors, fastsafetensors and the Run:ai streamer refuse such files."""
    from frameworks import validators

    first, second, size = OFFSETS[case]
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": first},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": second},
    }
    path = _safetensors(tmp_path / "forged.safetensors", header, bytes(range(size)))
    with pytest.raises(SerbenchError, match=r"starts at byte|end at byte"):
        validators.safetensors_header(path, frozenset(validators.SAFETENSORS_ITEM_BYTES))


def test_tensors_in_order_with_empty_ones_tile_the_data(tmp_path: Path) -> None:
    from frameworks import validators

    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "empty": {"dtype": "F32", "shape": [0], "data_offsets": [8, 8]},
        "b": {"dtype": "I8", "shape": [3], "data_offsets": [8, 11]},
    }
    validators.safetensors_header(
        _safetensors(tmp_path / "ok.safetensors", header, b"\1" * 11), frozenset({"F32", "I8"})
    )


@pytest.mark.parametrize("name", ["", " ", "tensor", ".hidden"])
def test_a_tensor_name_is_kept_exactly(name: str) -> None:
    """A tensor named '' became 'tensor'."""
    arrays, dropped = checkpoints.flatten({name: np.ones(2), "other": np.zeros(1)})
    assert list(arrays) == [name, "other"]
    assert not dropped


def test_a_bare_tensor_is_named_tensor() -> None:
    arrays, _ = checkpoints.flatten(np.ones(3))
    assert list(arrays) == [checkpoints.ROOT_NAME]


def test_an_npz_that_inflates_beyond_its_bound_is_refused_untrusted(tmp_path: Path) -> None:
    """An npz whose member inflates from a few MB to 4 GiB passed an untrusted load (no bound on the ratio)."""
    import zipfile

    from frameworks import forgeries, gate
    from frameworks.numpy_adapter import NPZ

    bomb = forgeries.zero_stream_npz(tmp_path / "bomb.npz", 256 << 20, zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(SerbenchError, match="inflate"):
        gate.admit(bomb, NPZ, trusted=False)


@pytest.mark.framework("torch")
def test_a_torch_file_whose_shared_references_expand_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A torch file whose shared references expand when converted (load, then to_numpy) hung."""
    adapter = adapter_or_skip("torch")
    torch = adapter.torch
    shared = torch.zeros(1 << 18)  # 1 MiB, named 2,000 times: 2 GiB once every name is converted
    path = tmp_path / "shared.pt"
    torch.save([shared] * 2000, path)
    assert path.stat().st_size < 4 << 20
    monkeypatch.setenv("SERBENCH_MAX_LOAD_BYTES", str(1 << 30))
    with pytest.raises(SerbenchError, match="shared storage"):
        adapter.load(path, "torch", trusted=False)
