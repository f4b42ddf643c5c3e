"""The registry: cheap to import, lazy, and clear when a framework is missing."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import frameworks
from frameworks.trees import KINDS
from tests import framework_packages


def test_importing_serbench_loads_no_framework() -> None:
    """Every module of bench/ (but the safety host's preload, whose job is to import one) imports no framework:
    no module of a package an adapter declares, but the light ones the harness itself imports."""
    heavy = sorted(framework_packages.heavy_modules())
    code = (
        "import sys, json, importlib, pkgutil, frameworks, bench\n"
        "for module in pkgutil.walk_packages(bench.__path__, 'bench.'):\n"
        "    if module.name != 'bench.safety.preload': importlib.import_module(module.name)\n"
        "for name in frameworks.names(): frameworks.adapter_class(name).format_names()\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_light_packages_are_declared_and_in_every_environment() -> None:
    """What the tests call light (imported by the harness itself) is a package some adapter declares, so the
    list is not stale, and a core dependency in pyproject.toml, so every environment has it."""
    assert framework_packages.LIGHT <= framework_packages.every_declared()
    assert framework_packages.LIGHT <= framework_packages.core_dependencies()


def test_registry_names_the_five_frameworks() -> None:
    """Pinned on purpose: the registry's order is a product decision (the order a run plans the frameworks in,
    and `readers_of` ranks their readers by), so changing it is deliberate and done here too. Every other
    test reads `frameworks.names()`."""
    assert frameworks.names() == ("numpy", "torch", "tensorflow", "mxnet", "jax")


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
    registered = re.escape(", ".join(frameworks.REGISTRY))
    with pytest.raises(ValueError, match=rf"unknown framework 'paddle'; registered: {registered}$"):
        frameworks.get_adapter("paddle")


def test_missing_framework_raises_importerror_with_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    class GhostAdapter:
        baseline = False

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


def test_a_format_without_its_save_or_load_is_refused_when_the_adapter_is_defined() -> None:
    """No silent fallback: a format that holds trees but names no save/load cannot be declared (the old
    `_save` wrote safetensors for any format it did not know)."""
    from frameworks.base import FormatSpec

    half = FormatSpec("half", frozenset({"dict"}), "a format with a loader only", "-", lambda path: True)
    with pytest.raises(TypeError, match=r"format 'half' holds \['dict'\] but has no save, load"):
        type("HalfAdapter", (frameworks.Adapter,), {"name": "half", "specs": (half,)})
    model_only = FormatSpec("weights", frozenset({"mlp"}), "-", "-", lambda path: True, save_mlp=lambda *a: None)
    with pytest.raises(TypeError, match="has no load_mlp"):
        type("WeightsAdapter", (frameworks.Adapter,), {"name": "weights", "specs": (model_only,)})


@pytest.mark.parametrize("framework", frameworks.names())
def test_every_format_loads_what_it_saved_through_its_own_functions(framework: str) -> None:
    """Each spec names its own functions: no two formats of one adapter share a save (a copy-paste slip
    would write one format under another's name)."""
    specs = frameworks.adapter_class(framework).specs
    saves = [spec.save or spec.save_mlp for spec in specs]
    assert len(set(saves)) == len(saves), [spec.name for spec in specs]


def test_the_null_adapter_is_a_registered_baseline_not_a_framework() -> None:
    assert frameworks.baselines() == ("null-adapter",)
    assert "null-adapter" not in frameworks.names()
    assert frameworks.is_baseline("null-adapter")
    assert not frameworks.is_baseline("torch")
    assert not frameworks.is_baseline("a-framework-from-an-old-run")
