"""Shared fixtures: adapters by name (skipped with the reason when a framework is missing), each
test run in its framework's environment, and a session check that every framework named in
SERBENCH_REQUIRE_FRAMEWORKS really ran tests.

Environments (`frameworks.environments`): `make test` runs pytest once per environment. A session
keeps the tests whose frameworks run in its environment; tests of no framework, and tests marked
`crosses_environments` (their other side runs in its own environment through `frameworks.remote`),
run in the home one; a test marked `environment(name)` runs in that one (the corpus environment has no
framework of its own). On a machine without serbench's environments everything runs in one session.
SERBENCH_REQUIRE_FRAMEWORKS=all names every framework of the session's environment."""

from __future__ import annotations

import collections
import os

import pytest

import frameworks
from frameworks import environments

_passed_by_framework: collections.Counter[str] = collections.Counter()


def adapter_or_skip(name: str) -> frameworks.Adapter:
    try:
        return frameworks.get_adapter(name)
    except ImportError as error:
        pytest.skip(f"{name} unavailable: {error}")


@pytest.fixture(params=frameworks.names())
def adapter(request: pytest.FixtureRequest) -> frameworks.Adapter:
    return adapter_or_skip(request.param)


FRAMEWORK_PARAMETERS = ("framework", "adapter", "writer", "reader")


def frameworks_of(item: pytest.Item) -> list[str]:
    """The frameworks a test is parametrized with, or names with `@pytest.mark.framework(name)` (first:
    the one its pass is counted for)."""
    marked = [marker.args[0] for marker in item.iter_markers("framework")]
    callspec = getattr(item, "callspec", None)
    found = [callspec.params.get(key) for key in FRAMEWORK_PARAMETERS] if callspec is not None else []
    return [value for value in [*marked, *found] if isinstance(value, str) and value in frameworks.REGISTRY]


def framework_of(item: pytest.Item) -> str | None:
    found = frameworks_of(item)
    return found[0] if found else None


def home_of(item: pytest.Item) -> str:
    """The environment a test runs in (see the module docstring)."""
    if (marked := item.get_closest_marker("environment")) is not None:
        return marked.args[0]
    names = frameworks_of(item)
    if item.get_closest_marker("crosses_environments") or not names:
        return environments.HOME
    used = {frameworks.adapter_class(name).environment for name in names}
    return used.pop() if len(used) == 1 else environments.HOME


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "crosses_environments: runs in the home environment; its other side through frameworks.remote"
    )
    config.addinivalue_line("markers", "framework(name): a test of one framework that is not parametrized by it")
    config.addinivalue_line("markers", "environment(name): runs in that environment (frameworks.environments)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = environments.current()
    if here is None:
        return
    homes = {item.nodeid: home_of(item) for item in items}
    kept = [item for item in items if homes[item.nodeid] == here]
    dropped = [item for item in items if homes[item.nodeid] != here]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def required_frameworks() -> list[str]:
    """SERBENCH_REQUIRE_FRAMEWORKS as names; `all`: every framework of this session's environment."""
    value = os.environ.get("SERBENCH_REQUIRE_FRAMEWORKS", "")
    if value == "all":
        here = environments.current()
        return [n for n in frameworks.names() if here is None or frameworks.adapter_class(n).environment == here]
    return [n for n in value.split(",") if n]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.passed and (name := framework_of(item)):
        _passed_by_framework[name] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    required = required_frameworks()
    missing = [name for name in required if _passed_by_framework[name] == 0]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and required:
        counts = ", ".join(f"{name}: {_passed_by_framework[name]}" for name in required)
        reporter.write_line(f"serbench: passed tests per framework: {counts}")
    if missing:
        if reporter is not None:
            reporter.write_line(
                f"serbench: FAILED: no test passed for {', '.join(missing)}; a run that skips a "
                f"framework is not green (install it: make setup)",
                red=True,
                bold=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
