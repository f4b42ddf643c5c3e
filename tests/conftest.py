"""Shared fixtures: adapters by name (skipped with the reason when a framework is missing), and
a session check that every framework named in SERBENCH_REQUIRE_FRAMEWORKS really ran tests."""

from __future__ import annotations

import collections
import os

import pytest

import frameworks

_passed_by_framework: collections.Counter[str] = collections.Counter()


def adapter_or_skip(name: str) -> frameworks.Adapter:
    try:
        return frameworks.get_adapter(name)
    except ImportError as error:
        pytest.skip(f"{name} unavailable: {error}")


@pytest.fixture(params=frameworks.names())
def adapter(request: pytest.FixtureRequest) -> frameworks.Adapter:
    return adapter_or_skip(request.param)


def framework_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    for key in ("framework", "adapter", "writer", "reader"):
        value = callspec.params.get(key)
        if isinstance(value, str) and value in frameworks.REGISTRY:
            return value
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.passed and (name := framework_of(item)):
        _passed_by_framework[name] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    required = [n for n in os.environ.get("SERBENCH_REQUIRE_FRAMEWORKS", "").split(",") if n]
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
