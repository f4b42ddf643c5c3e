"""What a newcomer runs works as the README says: every framework from the core environment, one list
syntax, no flag silently ignored, and the variants where the user wants them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import frameworks
from bench import cli
from bench.cli import run as run_command
from frameworks import quiet


def test_roundtrip_reaches_every_framework_from_core_with_comma_lists() -> None:
    """`serbench roundtrip --frameworks torch mxnet` exited 1 from core: MXNet lives in .venv-mxnet, and the
    hint said to pip install it here. It runs there now, as `run` starts it."""
    names = ",".join(frameworks.names())
    done = subprocess.run(
        [sys.executable, "-m", "bench.cli", "roundtrip", "--frameworks", names, "--sizes", "small"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert "every outcome is the one the suite expects" in done.stdout
    for name in frameworks.names():
        assert any(line.startswith(f"{name} ") for line in done.stdout.splitlines()), f"no line of {name}"
    assert "unavailable" not in done.stdout
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert not quiet.NOISE.search(done.stderr), done.stderr[-3000:]


def test_a_framework_of_another_environment_names_it_and_its_make_target() -> None:
    hint = frameworks.install_hint("mxnet")
    assert ".venv-mxnet" in hint
    assert "make setup" in hint
    assert "pip install" not in hint


@pytest.mark.parametrize(
    "flags",
    [
        ["--frameworks", "torch"],
        ["--kinds", "dict"],
        ["--sizes", "small"],
        ["--threads", "1"],
        ["--processes", "2"],
        ["--no-peak-memory"],
        ["--extra-load-processes", "1"],
        ["--budget", "10"],
        ["--formats", "torch"],
    ],
    ids=lambda flags: flags[0],
)
def test_a_flag_the_scale_run_does_not_use_is_refused_not_ignored(
    flags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", "--scale", *flags, "--out", str(tmp_path / "run")]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert flags[0] in err
    assert err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags", [["--llm", "llama-1b"], ["--scale-data", "somewhere"]], ids=lambda f: f[0])
def test_a_scale_flag_without_scale_is_refused(flags: list[str], tmp_path: Path, capsys) -> None:
    if flags[0] == "--llm":
        flags = ["--llm", run_command.llm_names()[0]]
    assert cli.main(["run", *flags, "--out", str(tmp_path / "run")]) == cli.EXIT_USAGE
    assert "--scale" in capsys.readouterr().err


def test_versions_builds_its_variants_where_the_user_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from frameworks import variants

    monkeypatch.delenv(variants.DIRECTORY_VARIABLE, raising=False)
    assert variants.variants_root().name == variants.DIRECTORY
    monkeypatch.setenv(variants.DIRECTORY_VARIABLE, str(tmp_path / "elsewhere"))
    variant = variants.Variant("core", "safetensors", "0.4.5")
    assert variant.directory.parent == tmp_path / "elsewhere"


def test_versions_refuses_a_variants_dir_that_is_a_link(tmp_path: Path, capsys, monkeypatch) -> None:
    from frameworks import variants

    monkeypatch.delenv(variants.DIRECTORY_VARIABLE, raising=False)
    (tmp_path / "link").symlink_to(tmp_path)
    argv = ["versions", "safetensors", "0.4.5", "0.8.0", "--variants-dir", str(tmp_path / "link")]
    assert cli.main([*argv, "--out", str(tmp_path / "out")]) == cli.EXIT_USAGE
    assert "--variants-dir" in capsys.readouterr().err
