"""The packages the registered adapters declare (`Adapter.packages`), as the top-level modules they install:
what no module of bench/ imports (tests/test_layout.py) and what `import frameworks` leaves unloaded
(tests/test_registry.py). Read from the registry without importing a framework, so an adapter registered
with new packages is covered by those tests without editing them."""

from __future__ import annotations

import functools
import importlib.metadata
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

import frameworks
from frameworks.environments import normalize

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

LIGHT = frozenset({"numpy", "ml-dtypes"})
"""The declared packages the harness itself imports, so they are no framework's: bench/ builds every workload
as NumPy arrays (numpy), with the bfloat16 and float8 dtypes of ml_dtypes. Both are core dependencies in
pyproject.toml, so every environment has them (tests/test_registry.py checks both facts). safetensors is
a core dependency too, but only the adapters call it: it stays heavy, so bench/ keeps out of it."""


def declared(name: str) -> frozenset[str]:
    """The packages adapter `name` declares, as pip compares their names."""
    return frozenset(normalize(package) for package in frameworks.adapter_class(name).packages)


def every_declared() -> frozenset[str]:
    """Every package an adapter of the registry declares (baselines included)."""
    return frozenset().union(*(declared(name) for name in frameworks.REGISTRY))


@functools.cache
def _installed() -> dict[str, frozenset[str]]:
    """Installed distribution (normalized) -> the top-level modules it provides here."""
    found: dict[str, set[str]] = {}
    for module, distributions in importlib.metadata.packages_distributions().items():
        if module.isidentifier():  # not a stray path such as 'tensorstore/_tensorstore'
            for distribution in distributions:
                found.setdefault(normalize(distribution), set()).add(module)
    return {distribution: frozenset(modules) for distribution, modules in found.items()}


def modules_of(package: str) -> frozenset[str]:
    """The top-level modules `package` installs (orbax-checkpoint: orbax; torch: torch, functorch, torchgen).
    A package not installed here is taken by its own name (mxnet in the core environment): nothing here can
    import it, and the name is right for every declared package whose module differs but orbax-checkpoint."""
    return _installed().get(normalize(package)) or frozenset({normalize(package).replace("-", "_")})


def heavy_modules(packages: frozenset[str] | None = None) -> frozenset[str]:
    """The modules of `packages` (default: every declared package) that are not light."""
    chosen = every_declared() if packages is None else packages
    return frozenset().union(*(modules_of(package) for package in chosen - LIGHT))


def core_dependencies() -> frozenset[str]:
    """What pyproject.toml installs in every environment ([project] dependencies), normalized."""
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    return frozenset(normalize(Requirement(dependency).name) for dependency in dependencies)
