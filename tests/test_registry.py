"""The registry: cheap to import, lazy, and clear when a framework is missing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import frameworks
from frameworks.trees import KINDS

HEAVY = ("torch", "tensorflow", "keras", "mxnet")


def test_importing_serbench_loads_no_framework() -> None:
    code = (
        "import sys, json, frameworks, bench, bench.workloads, bench.roundtrip, bench.expectations, "
        "bench.support, bench.cli\n"
        "for name in frameworks.names(): frameworks.adapter_class(name).format_names()\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_registry_names_the_four_frameworks() -> None:
    assert frameworks.names() == ("numpy", "torch", "tensorflow", "mxnet")


@pytest.mark.parametrize("framework", frameworks.names())
def test_formats_are_readable_without_the_framework_and_say_what_they_hold(framework: str) -> None:
    cls = frameworks.adapter_class(framework)
    assert len(set(cls.format_names())) == len(cls.specs)
    for spec in cls.specs:
        assert spec.holds, spec.name
        assert spec.holds <= set(KINDS), spec.name
    assert cls.native_mlp_format in cls.format_names()
    assert "mlp" in cls.spec(cls.native_mlp_format).holds


@pytest.mark.parametrize("framework", frameworks.names())
def test_available_framework_gives_a_working_adapter(framework: str) -> None:
    if framework not in frameworks.available():
        pytest.skip(f"{framework} does not import here")
    adapter = frameworks.get_adapter(framework)
    assert adapter.name == framework
    assert "cpu" in adapter.devices()
    assert adapter.formats == frameworks.adapter_class(framework).format_names()


def test_unknown_framework_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown framework 'jax'; registered: numpy, torch"):
        frameworks.get_adapter("jax")


def test_missing_framework_raises_importerror_with_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    class GhostAdapter:
        def __init__(self) -> None:
            import ghost_framework_that_is_not_installed  # noqa: F401

    monkeypatch.setitem(frameworks.REGISTRY, "ghost", ("ghost_module:GhostAdapter", "pip install -e .[ghost]"))
    monkeypatch.setattr(frameworks, "adapter_class", lambda name: GhostAdapter)  # no framework import
    frameworks.get_adapter.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"framework 'ghost' is not usable.*pip install -e \.\[ghost\]"):
            frameworks.get_adapter("ghost")
        assert "ghost" not in frameworks.available()
    finally:
        frameworks.get_adapter.cache_clear()
