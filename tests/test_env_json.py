"""env.json, what every run records about its machine (`bench.environment`): the commit (also on a copied tree)
and the THP mode. The virtualenvs each framework runs in are tests/test_environments.py's."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.environment import environment, git_commit, transparent_huge_pages


def test_commit_outside_a_checkout_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERBENCH_GIT_COMMIT", raising=False)
    assert git_commit(tmp_path) == "unknown"


def test_commit_given_by_the_caller_comes_first_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERBENCH_GIT_COMMIT", "d17f2b8")
    assert git_commit(tmp_path) == "d17f2b8 (from SERBENCH_GIT_COMMIT; git here says unknown)"


def test_transparent_huge_pages_mode_is_the_selected_word() -> None:
    modes = transparent_huge_pages()
    assert set(modes) == {"enabled", "defrag"}
    for value in modes.values():
        assert "[" not in value
        assert " " not in value


def test_environment_records_the_thp_mode(tmp_path: Path) -> None:
    assert environment(tmp_path)["transparent_huge_pages"] == transparent_huge_pages()
