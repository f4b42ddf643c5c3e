"""Resource limits before allocation, and typed MLP loads: what a file declares is checked against
what it holds and the load budget before any parser allocates; a model's parameters must be the
MLP's float32 ones. The validators are pure Python, so most cases run without their framework."""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

import frameworks
from bench import workloads
from frameworks import gate
from frameworks.errors import (
    FormatMismatchError,
    ResourceLimitError,
    SerbenchError,
    UnsafeLoadError,
    UnsupportedError,
)
from frameworks.forgeries import (
    BYTEARRAY_8GIB_PICKLE,
    ndarray_list,
    npy_header,
    npz_bytes,
    torch_zip,
    zero_stream_npz,
)
from frameworks.mxnet_adapter import GLUON_PARAMS, MX_NDARRAY
from frameworks.numpy_adapter import NPY, NPZ, read_npz
from frameworks.torch_adapter import TORCH
from tests.conftest import adapter_or_skip

BUDGET = 256 << 20


@pytest.fixture(autouse=True)
def small_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(gate.BUDGET_VARIABLE, str(BUDGET))


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# numpy ---------------------------------------------------------------------------------------
def test_an_npy_declaring_terabytes_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "bomb.npy", npy_header((1 << 40,)) + b"\0" * 64)
    with pytest.raises(FormatMismatchError, match="declares shape"):
        gate.admit(path, NPY, trusted=False)


@pytest.mark.parametrize("elements", [1 << 31, 1 << 40])
def test_an_npz_member_declaring_more_than_it_holds_is_refused(elements: int, tmp_path: Path) -> None:
    path = write(tmp_path / "bomb.npz", npz_bytes({"x.npy": npy_header((elements,)) + b"\0" * 64}))
    with pytest.raises(FormatMismatchError, match=r"member 'x\.npy'"):
        gate.admit(path, NPZ, trusted=False)


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2])
def test_an_npz_zip_bomb_is_refused_before_decompressing(method: int, tmp_path: Path) -> None:
    path = zero_stream_npz(tmp_path / "bomb.npz", 2 * BUDGET, method)
    assert path.stat().st_size < BUDGET // 100
    with pytest.raises(ResourceLimitError, match="load budget"):
        gate.admit(path, NPZ, trusted=False)


def test_an_npz_with_a_non_array_member_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "odd.npz", npz_bytes({"x.npy": npy_header((1,)) + b"\0" * 4, "notes.txt": b"hello"}))
    with pytest.raises(FormatMismatchError, match=r"member 'notes\.txt'\) is not an \.npy"):
        gate.admit(path, NPZ, trusted=False)


def test_an_npz_with_too_many_members_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gate, "MAX_MEMBERS", 50)
    member = npy_header((1,)) + b"\0" * 4
    path = write(tmp_path / "many.npz", npz_bytes({f"a{i}.npy": member for i in range(51)}))
    with pytest.raises(ResourceLimitError, match="51 members"):
        gate.admit(path, NPZ, trusted=False)


def test_npz_members_read_in_archive_order_with_their_names(tmp_path: Path) -> None:
    arrays = {f"k{i}": np.full(3, i, np.float32) for i in (3, 1, 2)}
    np.savez(tmp_path / "ok.npz", **arrays)
    loaded = read_npz(tmp_path / "ok.npz")
    assert list(loaded) == list(arrays)
    assert all(loaded[key].tobytes() == value.tobytes() for key, value in arrays.items())


# MXNet ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [1 << 24, 1 << 40])
def test_an_mxnet_file_declaring_huge_counts_is_refused(count: int, tmp_path: Path) -> None:
    path = write(tmp_path / "bomb.ndarray", ndarray_list({"x": np.zeros(2, np.float32)}, count=count))
    with pytest.raises((ResourceLimitError, FormatMismatchError)):
        gate.admit(path, MX_NDARRAY, trusted=False)


def test_an_mxnet_name_declaring_gigabytes_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "bomb.ndarray", ndarray_list({"x": np.zeros(2, np.float32)}, name_length=3 << 30))
    with pytest.raises(FormatMismatchError, match="name 0 declares"):
        gate.admit(path, MX_NDARRAY, trusted=False)


def test_mxnet_dims_whose_product_wraps_are_refused(tmp_path: Path) -> None:
    data = bytearray(ndarray_list({"x": np.zeros((2, 2), np.float32)}))
    struct.pack_into("<qq", data, 24 + 12, 1 << 62, 1 << 2)  # 2^64 elements: 0 in 64-bit arithmetic
    path = write(tmp_path / "wrap.ndarray", bytes(data))
    with pytest.raises(FormatMismatchError, match="declares"):
        gate.admit(path, MX_NDARRAY, trusted=False)


# torch ---------------------------------------------------------------------------------------
def test_a_torch_pickle_calling_bytearray_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "bomb.pt", torch_zip(BYTEARRAY_8GIB_PICKLE))
    with pytest.raises(UnsafeLoadError, match="bytearray"):
        gate.admit(path, TORCH, trusted=False)


def test_a_compressed_torch_record_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path / "deflated.pt",
        torch_zip(pickle.dumps({}, protocol=2), {"data/0": bytes(1 << 20)}, method=zipfile.ZIP_DEFLATED),
    )
    with pytest.raises(FormatMismatchError, match="compressed"):
        gate.admit(path, TORCH, trusted=False)


def test_a_sparse_torch_tensor_is_refused(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "sparse.pt"
    torch.save({"w": torch.sparse_coo_tensor([[0, 5]], [1.0, 2.0], (3,))}, path)
    with pytest.raises(UnsafeLoadError, match="_rebuild_sparse_tensor"):
        adapter_or_skip("torch").load(path, "torch")


def test_a_big_endian_torch_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "big.pt", torch_zip(pickle.dumps({}, protocol=2), byteorder=b"big"))
    with pytest.raises(UnsupportedError, match="little-endian"):
        gate.admit(path, TORCH, trusted=False)


# safetensors ---------------------------------------------------------------------------------
def safetensors_bytes(entries: dict[str, dict], data: bytes) -> bytes:
    header = json.dumps(entries).encode()
    return struct.pack("<Q", len(header)) + header + data


@pytest.mark.parametrize("framework", frameworks.names())
def test_safetensors_offsets_beyond_the_file_are_refused(framework: str, tmp_path: Path) -> None:
    spec = frameworks.adapter_class(framework).spec("safetensors")
    entries = {"w": {"dtype": "F32", "shape": [1 << 38], "data_offsets": [0, 1 << 40]}}
    path = write(tmp_path / "bomb.safetensors", safetensors_bytes(entries, b"\0" * 64))
    with pytest.raises(FormatMismatchError, match="outside the file"):
        gate.admit(path, spec, trusted=False)


@pytest.mark.parametrize("framework", frameworks.names())
def test_safetensors_dtypes_a_reader_lacks_are_named(framework: str, tmp_path: Path) -> None:
    spec = frameworks.adapter_class(framework).spec("safetensors")
    entries = {"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}
    path = write(tmp_path / "f8.safetensors", safetensors_bytes(entries, b"\0" * 4))
    if framework == "torch":
        gate.admit(path, spec, trusted=False)
    else:
        with pytest.raises(UnsupportedError, match="F8_E4M3"):
            gate.admit(path, spec, trusted=False)


# typed MLP loads -----------------------------------------------------------------------------
TREE_MLP_CELLS = [
    (name, spec.name)
    for name in frameworks.names()
    for spec in frameworks.adapter_class(name).specs
    if {"dict", "mlp"} <= spec.holds
]


@pytest.mark.parametrize("wrong", ["float64", "int32-bits"])
@pytest.mark.parametrize(("framework", "fmt"), TREE_MLP_CELLS)
def test_mlp_weights_of_another_dtype_fail_loudly(framework: str, fmt: str, wrong: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip(framework)
    params = workloads.mlp_parameters(0)
    forged = {
        key: value.astype(np.float64) if wrong == "float64" else value.view(np.int32) for key, value in params.items()
    }
    path = tmp_path / f"mlp{adapter.spec(fmt).suffix}"
    adapter.save(adapter.from_numpy(forged), path, fmt)
    clone = adapter.new_mlp(workloads.mlp_parameters(1))
    with pytest.raises(FormatMismatchError, match="float32"):
        adapter.load_mlp(path, fmt, clone, trusted=True)


@pytest.mark.framework("mxnet")
def test_gluon_params_of_another_dtype_fail_loudly(tmp_path: Path) -> None:
    forged = {key: value.astype(np.float64) for key, value in workloads.mlp_parameters(0).items()}
    path = write(tmp_path / "mlp.params", ndarray_list(forged))
    gate.admit(path, GLUON_PARAMS, trusted=False)  # a well-formed file ...
    adapter = adapter_or_skip("mxnet")
    with pytest.raises(FormatMismatchError, match="float32"):  # ... but not the MLP's parameters
        adapter.load_mlp(path, "gluon-params", adapter.new_mlp(workloads.mlp_parameters(1)))


@pytest.mark.parametrize("forgery", ["int64", "huge-dims"])
def test_a_keras_weights_file_with_foreign_datasets_is_refused(forgery: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip("tensorflow")
    import h5py

    path = tmp_path / "mlp.weights.h5"
    adapter.save_mlp(adapter.new_mlp(workloads.mlp_parameters(0)), path, "keras-h5")
    with h5py.File(path, "a") as handle:
        names: list[str] = []
        handle.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        target = next(name for name in names if handle[name].shape == (10,))
        del handle[target]
        if forgery == "int64":
            handle.create_dataset(target, data=np.arange(10, dtype=np.int64))
        else:
            handle.create_dataset(target, shape=(1 << 20, 1 << 20), dtype="f4", fillvalue=1.0, chunks=(1, 1024))
    with pytest.raises(FormatMismatchError, match="MLP's weights"):
        adapter.load_mlp(path, "keras-h5", adapter.new_mlp(workloads.mlp_parameters(1)))


def test_the_mlps_tf_checkpoint_read_as_a_tree_names_what_it_holds(tmp_path: Path) -> None:
    adapter = adapter_or_skip("tensorflow")
    path = tmp_path / "mlp.ckpt"
    adapter.save_mlp(adapter.new_mlp(workloads.mlp_parameters(0)), path, "tf-checkpoint")
    with pytest.raises(FormatMismatchError, match=r"holds no tree.*load_mlp"):
        adapter.load(path, "tf-checkpoint")


def test_a_checkpoint_state_file_beside_a_tf_checkpoint_is_refused(tmp_path: Path) -> None:
    adapter = adapter_or_skip("tensorflow")
    path = tmp_path / "tree.ckpt"
    adapter.save(adapter.from_numpy(workloads.build("d2l-dict")), path, "tf-checkpoint")
    (path / "checkpoint").write_text('model_checkpoint_path: "/elsewhere/ckpt"\n')
    with pytest.raises(FormatMismatchError, match="'checkpoint'"):
        adapter.load(path, "tf-checkpoint")


@pytest.mark.framework("mxnet")
def test_a_gluon_progress_record_that_is_not_one_fails_loudly(tmp_path: Path) -> None:
    from frameworks import training

    adapter_or_skip("mxnet")
    recipe = training.training_recipe("mxnet")
    model, trainer = recipe.new()
    path = tmp_path / "checkpoint.gluon"
    recipe.save_checkpoint(path, model, trainer, 3, 0.25)
    (path / "progress.json").write_text(json.dumps({"epoch": "DROP TABLE", "loss": [1, 2]}))
    with pytest.raises(SerbenchError, match=r"not \{'epoch': int"):
        recipe.load_checkpoint(path, *recipe.new(), trusted=True)


def test_a_torch_tensor_expanded_past_the_budget_is_refused(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "expanded.pt"
    torch.save({"value": torch.zeros(1).expand(1 << 40)}, path)  # one stored float, 2^40 elements viewed
    with pytest.raises(ResourceLimitError, match="a tensor's shape"):
        adapter_or_skip("torch").load(path, "torch")


def test_a_torch_meta_tensor_is_refused(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "meta.pt"
    torch.save({"value": torch.empty(4, device="meta")}, path)
    with pytest.raises(SerbenchError, match="meta"):
        adapter_or_skip("torch").load(path, "torch")
