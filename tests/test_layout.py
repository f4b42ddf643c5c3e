"""bench/ shows its architecture: each product is a package, and each layer imports only layers below it.

    6 bench.cli                       the command line
    5 bench.version_matrix            releases of a package built, timed interleaved, checked and compared
    5 bench.gpu                       the prepared GPU run: plan, wheels, budgeted steps, its report (uses 3 and 4)
    4 bench.reporting                 stored runs -> tables, plots, comparisons, the index
    4 bench.scale                     checkpoints at scale: loaders, distributed engines, the sweep (uses timing)
    3 bench.timing, bench.safety      the two products that run frameworks
    2 bench.conformance               round trips held to what each adapter declares
    1 bench.kinds, bench.checkpoints  one strategy per kind of workload; a user's checkpoint as a workload
    0 bench.workloads, bench.scale_workloads, bench.environment, bench.errors, bench.pytest_outcomes,
      bench.decide (the comparison engine), bench.markdown (escaping stored text)

A framework's facts live in its adapter: no module of bench/ imports a framework package, even lazily.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import frameworks
from tests import framework_packages

BENCH = Path(__file__).resolve().parents[1] / "bench"
LAYERS = {
    "bench.workloads": 0,
    "bench.decide": 0,
    "bench.markdown": 0,
    "bench.environment": 0,
    "bench.errors": 0,
    "bench.pytest_outcomes": 0,
    "bench.live": 0,
    "bench.scale_workloads": 0,
    "bench.kinds": 1,
    "bench.checkpoints": 1,
    "bench.conformance": 2,
    "bench.timing": 3,
    "bench.safety": 3,
    "bench.reporting": 4,
    "bench.scale": 4,
    "bench.version_matrix": 5,
    "bench.gpu": 5,
    "bench.cli": 6,
}
FRAMEWORK_PACKAGES = framework_packages.heavy_modules()
"""The modules of every package an adapter declares, but numpy and ml_dtypes (`framework_packages.LIGHT`)."""


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(BENCH.rglob("*.py")):
        parts = path.relative_to(BENCH.parent).with_suffix("").parts
        found.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return found


def _group(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[module for module, _ in _modules()])
def test_a_module_imports_only_layers_below_its_own(module: str, path: Path) -> None:
    if module == "bench":
        return
    own = _group(module)
    assert own in LAYERS, f"{module}: a new top-level part of bench/ needs its place in LAYERS"
    upward = [
        name
        for name in _imports(path)
        if name.startswith("bench.") and _group(name) != own and LAYERS.get(_group(name), 0) >= LAYERS[own]
    ]
    assert not upward, f"{module} imports {upward}, which is not below layer {LAYERS[own]}"


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[module for module, _ in _modules()])
def test_no_bench_module_imports_a_framework(module: str, path: Path) -> None:
    """The adapters own every framework import; bench/ reaches a framework only through them."""
    heavy = [name for name in _imports(path) if name.split(".")[0] in FRAMEWORK_PACKAGES]
    assert not heavy, f"{module} imports {heavy}: ask the adapter instead"


@pytest.mark.parametrize(
    "name", [name for name in frameworks.REGISTRY if framework_packages.declared(name) - framework_packages.LIGHT]
)
def test_each_adapter_imports_the_packages_it_declares(name: str) -> None:
    """The check above has teeth: each adapter module imports one of its declared packages by a name in
    FRAMEWORK_PACKAGES. (The parameter is not `framework`, so this static check runs in the home environment.)"""
    module = frameworks.REGISTRY[name][0].split(":")[0]
    path = BENCH.parent.joinpath(*module.split(".")).with_suffix(".py")
    own = framework_packages.heavy_modules(framework_packages.declared(name))
    imported = {found.split(".")[0] for found in _imports(path)}
    assert imported & own, f"{path.name} imports none of {sorted(own)}, the modules of what {name} declares"
