"""`serbench recipes`: the textbook recipes, run now in every framework, one line each, against what is expected.

The recipes are the Dive into Deep Learning "File I/O" chapter (a tensor, a list, a dict, the MLP's
parameters loaded into a clone with `clone(X) == net(X)`, and a training checkpoint) and the seed
tutorials' (PyTorch's whole model and `weights_only`, `map_location`, transfer learning; training
checkpoints that resume bit-exactly; BatchNorm buffers and eval mode). Their checks are the test suite's
own (`RECIPE_TESTS`), so the command and `make test` can never disagree: each passes when the outcome is
the one the adapter declares (an exact round trip, or the recorded drift with its reason) and fails on
any change. They run in one pytest process with this module as a plugin, which keeps the d2l workloads
of the round-trip matrix, drops combinations a format cannot hold (counted, not printed), filters by
framework, and writes each outcome as a JSON line.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import frameworks
from bench.pytest_outcomes import failure_message, skip_reason

ROOT = Path(__file__).resolve().parents[2]
RECIPE_TESTS = {
    "tests/test_conformance.py::test_roundtrip": "d2l File I/O round trip",
    "tests/test_mlp.py::test_clone_output_equals_net_output": "d2l File I/O clone(X) == net(X)",
    "tests/test_cross_framework.py::test_weights_move_between_frameworks": "d2l File I/O MLP across frameworks",
    "tests/test_recipes_torch.py": "seed tutorials (PyTorch)",
    "tests/test_training_checkpoints.py": "seed tutorials: training checkpoints",
}
"""Test (or test file) -> the recipe group it checks."""
FRAMEWORK_OF_MODULE = {"test_recipes_torch": "torch"}
TIMEOUT_S = 1800


@dataclass(frozen=True)
class RecipeOutcome:
    group: str
    name: str
    framework: str
    outcome: str
    """passed, failed or skipped"""
    detail: str

    def line(self) -> str:
        mark = {"passed": "ok  ", "failed": "FAIL", "skipped": "skip"}[self.outcome]
        detail = f": {self.detail}" if self.detail else ""
        return f"{mark} {self.group:34} {self.name}{detail}"


def _framework(item: pytest.Item) -> str:
    """The framework a recipe runs in ('torch -> mxnet' for a move from one to another)."""
    params = _params(item)
    if "writer" in params:
        return f"{params['writer']} -> {params['reader']}"
    framework = params.get("framework")
    return str(framework) if framework else FRAMEWORK_OF_MODULE.get(item.module.__name__.split(".")[-1], "")


def _params(item: pytest.Item) -> dict[str, Any]:
    callspec = getattr(item, "callspec", None)
    return dict(callspec.params) if callspec is not None else {}


def _chosen(item: pytest.Item, chosen: set[str], every: set[str]) -> bool:
    """Whether the recipe is one of the chosen frameworks': a move between two, when both are chosen (of
    every environment's choice, since a move runs in the environment the suite gives it)."""
    params = _params(item)
    if "writer" in params:
        return not every or {params["writer"], params["reader"]} <= every
    return not chosen or _framework(item) in chosen


def _declared(item: pytest.Item) -> str:
    """For a round trip that passed: what the adapter declares it gives back, where that is not exact."""
    from bench import workloads
    from bench.conformance import expectations

    params = _params(item)
    if item.originalname != "test_roundtrip" or not params:
        return ""
    want = expectations.expected(params["framework"], params["fmt"], workloads.WORKLOADS[params["workload_name"]])
    if want.status == "exact":
        return "exact"
    changes = f" ({'; '.join(want.changes)})" if want.changes else ""
    return f"{want.status}, as declared: {'; '.join(want.reasons())}{changes}"


def _group(item: pytest.Item) -> str | None:
    for selector, group in RECIPE_TESTS.items():
        path, _, function = selector.partition("::")
        if item.nodeid.startswith(path) and (not function or item.originalname == function):
            return group
    return None


def _title(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    words = item.originalname.removeprefix("test_").replace("_", " ")
    if callspec is None:
        return words
    if "writer" in callspec.params:
        return f"{callspec.params['writer']} -> {callspec.params['reader']}: clone(X) == net(X)"
    values = " / ".join(str(value) for value in callspec.params.values())
    return values if item.originalname == "test_roundtrip" else f"{words} [{values}]"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("serbench-recipes", "serbench recipes (set by the command)")
    group.addoption("--serbench-recipes-out", metavar="PATH", help="JSON-lines file for each recipe's outcome")
    group.addoption("--serbench-recipes-frameworks", default="", help="comma-separated frameworks to keep")
    group.addoption(
        "--serbench-recipes-every", default="", help="comma-separated frameworks chosen in every environment"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the recipes: d2l workloads of the round-trip matrix, no combination a format cannot hold, the
    chosen frameworks."""
    from bench import workloads
    from bench.conformance import expectations

    chosen = {name for name in config.getoption("serbench_recipes_frameworks").split(",") if name}
    every = {name for name in config.getoption("serbench_recipes_every").split(",") if name}
    kept, dropped = [], []
    for item in items:
        keep = _group(item) is not None and _chosen(item, chosen, every)
        if keep and item.originalname == "test_roundtrip":
            params = item.callspec.params
            workload = workloads.WORKLOADS[params["workload_name"]]
            keep = workload.group == "d2l" and (
                expectations.expected(params["framework"], params["fmt"], workload).status != "unsupported"
            )
        (kept if keep else dropped).append(item)
    items[:] = kept
    config.hook.pytest_deselected(items=dropped)


_items: dict[str, pytest.Item] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    _items.update({item.nodeid: item for item in session.items})


def pytest_runtest_logreport(report: Any) -> None:
    if not (report.when == "call" or (report.when == "setup" and not report.passed)):
        return
    item = _items.get(report.nodeid)
    out = item.config.getoption("serbench_recipes_out") if item is not None else None
    if item is None or not out:
        return
    detail = skip_reason(report) if report.skipped else failure_message(report) if report.failed else _declared(item)
    record = {
        "group": _group(item),
        "name": _title(item),
        "framework": _framework(item),
        "outcome": report.outcome,
        "detail": " ".join(detail.split())[:300],
    }
    with open(out, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def run_recipes(framework_names: tuple[str, ...] | None, out: Path) -> tuple[list[RecipeOutcome], int, str]:
    """Run every recipe (of the chosen frameworks) in a pytest subprocess: the outcomes in order, pytest's exit
    status, and the end of its output (for a session that could not run)."""
    tests = [ROOT / selector.partition("::")[0] for selector in RECIPE_TESTS]
    missing = [str(path) for path in tests if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"the recipes are checked by serbench's tests, not found here: {missing[0]}")
    out.unlink(missing_ok=True)
    chosen = framework_names or frameworks.names()
    returncode, tails = 0, []
    for environment in dict.fromkeys(frameworks.adapter_class(name).environment for name in chosen):
        names = tuple(name for name in chosen if frameworks.adapter_class(name).environment == environment)
        code, tail = _run_in(environment, names, tests, out, chosen)
        returncode, tails = max(returncode, code), [*tails, tail]
    if not out.exists():
        return [], returncode, " ".join(tails)[-500:]
    return [RecipeOutcome(**json.loads(line)) for line in out.read_text().splitlines()], returncode, " ".join(tails)


def _run_in(
    environment: str, framework_names: tuple[str, ...], tests: list[Path], out: Path, every: tuple[str, ...] = ()
) -> tuple[int, str]:
    """One pytest session in `environment` for its frameworks' recipes; its exit status and last lines."""
    from frameworks import environments

    command = [
        environments.python_for(environment),
        "-m",
        "pytest",
        *dict.fromkeys(str(path) for path in tests),
        "-p",
        "bench.conformance.recipes",
        "--serbench-recipes-out",
        str(out),
        "--serbench-recipes-frameworks",
        ",".join(framework_names or ()),
        "--serbench-recipes-every",
        ",".join(every or ()),
        "-p",
        "no:cacheprovider",
        "-q",
        "--no-header",
        "-o",
        "addopts=",
    ]
    env = environments.child_environment(environment)
    env.pop("SERBENCH_REQUIRE_FRAMEWORKS", None)  # a selection
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    return result.returncode, " ".join((result.stdout + result.stderr).strip().splitlines()[-3:])[-500:]
