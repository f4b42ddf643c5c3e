"""Bad input gets a clear error and loses nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import frameworks
from bench import workloads
from tests.conftest import adapter_or_skip

CELLS = [(n, fmt) for n in frameworks.names() for fmt in frameworks.adapter_class(n).format_names()]


def sample_for(adapter: frameworks.Adapter, fmt: str) -> object:
    """Something the format holds, as the adapter's tensors (the MLP for model-only formats)."""
    holds = adapter.spec(fmt).holds
    if "tensor" in holds:
        return adapter.from_numpy(workloads.build("d2l-tensor"))
    if "dict" in holds:
        return adapter.from_numpy(workloads.build("d2l-dict"))
    return None


def save_sample(adapter: frameworks.Adapter, fmt: str, path: Path) -> None:
    sample = sample_for(adapter, fmt)
    if sample is None:
        adapter.save_mlp(adapter.new_mlp(workloads.mlp_parameters(0)), path, fmt)
    else:
        adapter.save(sample, path, fmt)


def load_any(adapter: frameworks.Adapter, fmt: str, path: Path) -> object:
    if sample_for(adapter, fmt) is None:
        return adapter.load_mlp(path, fmt, adapter.new_mlp(workloads.mlp_parameters(1)), trusted=True)
    return adapter.load(path, fmt, trusted=True)


@pytest.mark.parametrize(("framework", "fmt"), CELLS)
def test_missing_path_raises_filenotfound_naming_it(framework: str, fmt: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip(framework)
    missing = tmp_path / f"nothing-here{adapter.spec(fmt).suffix}"
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        load_any(adapter, fmt, missing)


@pytest.mark.parametrize("framework", frameworks.names())
def test_unknown_format_lists_the_valid_ones(framework: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip(framework)
    with pytest.raises(ValueError, match="valid formats: " + ", ".join(adapter.formats)):
        adapter.load(tmp_path / "x", "pickle5")
    with pytest.raises(frameworks.UnknownFormatError):
        adapter.save(adapter.from_numpy(workloads.build("d2l-dict")), tmp_path / "x", "hdf4")


def foreign_files(tmp_path: Path) -> dict[str, Path]:
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a tensor file\n")
    npy = tmp_path / "array.npy"
    np.save(npy, np.arange(3))
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    directory = tmp_path / "a-directory"
    directory.mkdir()
    return {"text": text, "npy": npy, "empty": empty, "directory": directory}


@pytest.mark.parametrize(("framework", "fmt"), CELLS)
def test_file_of_another_format_names_the_expected_format(framework: str, fmt: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip(framework)
    for label, path in foreign_files(tmp_path).items():
        if label == "npy" and adapter.spec(fmt).sniff(path):
            continue  # an .npy file is a valid npy / npy-pickle file
        with pytest.raises(frameworks.FormatMismatchError, match=f"is not a '{fmt}' file: expected"):
            load_any(adapter, fmt, path)


@pytest.mark.parametrize(("framework", "fmt"), [c for c in CELLS if c[1] == "npy-pickle"])
def test_pickle_formats_refuse_to_load_unless_trusted(framework: str, fmt: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip(framework)
    path = tmp_path / "d.npy"
    adapter.save(adapter.from_numpy(workloads.build("d2l-dict")), path, fmt)
    with pytest.raises(frameworks.UnsafeLoadError, match="trusted=True"):
        adapter.load(path, fmt)
    assert list(adapter.to_numpy(adapter.load(path, fmt, trusted=True))) == ["x", "y"]


PARTIAL_CELLS = [(n, f) for n, f in CELLS if len(frameworks.adapter_class(n).spec(f).holds) < 5]


@pytest.mark.parametrize(("framework", "fmt"), PARTIAL_CELLS)
def test_unsupported_kind_is_refused_before_writing(framework: str, fmt: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip(framework)
    holds = adapter.spec(fmt).holds
    kind, tree = next(
        (
            (k, workloads.build(n))
            for k, n in (("nested", "nested"), ("list", "d2l-list"), ("tensor", "d2l-tensor"))
            if k not in holds
        ),
    )
    with pytest.raises(frameworks.UnsupportedError, match=f"format '{fmt}' of {framework} cannot hold a {kind}"):
        adapter.save(adapter.from_numpy(tree), tmp_path / "x", fmt)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("framework", frameworks.names())
def test_cuda_without_a_gpu_says_why(framework: str, tmp_path: Path) -> None:
    adapter = adapter_or_skip(framework)
    if "cuda" in adapter.devices():
        pytest.skip("a CUDA device is present")
    fmt = next(f for f in adapter.formats if "dict" in adapter.spec(f).holds)
    path = tmp_path / f"d{adapter.spec(fmt).suffix}"
    adapter.save(adapter.from_numpy(workloads.build("d2l-dict")), path, fmt)
    with pytest.raises(frameworks.DeviceUnavailableError, match=f"{framework} cannot use device 'cuda'"):
        adapter.load(path, fmt, device="cuda", trusted=True)


@pytest.mark.parametrize(("framework", "fmt"), CELLS)
def test_failed_save_leaves_the_previous_file_intact(
    framework: str, fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = adapter_or_skip(framework)
    path = tmp_path / f"kept{adapter.spec(fmt).suffix}"
    save_sample(adapter, fmt, path)
    before = sorted(p.name for p in tmp_path.rglob("*"))

    def half_write_then_fail(*args: object) -> None:
        target = next(a for a in args if isinstance(a, Path))
        target.write_bytes(b"partial garbage")
        raise OSError("disk went away mid-save")

    monkeypatch.setattr(adapter, "_save", half_write_then_fail)
    monkeypatch.setattr(adapter, "_save_mlp", half_write_then_fail)
    with pytest.raises(OSError, match="mid-save"):
        save_sample(adapter, fmt, path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "temporary file left behind"
    load_any(adapter, fmt, path)
