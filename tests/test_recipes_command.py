"""`serbench recipes`: the textbook recipes, one line each, exit 1 on an outcome that is not the expected one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import adapter_or_skip

ROOT = Path(__file__).resolve().parents[1]


def recipes(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", "recipes", *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_the_d2l_recipes_of_a_framework_pass_one_line_each() -> None:
    adapter_or_skip("numpy")
    result = recipes("--frameworks", "numpy")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    recipe_lines, summary = lines[:-1], lines[-1]
    assert recipe_lines, "the recipes were listed"
    assert all(line.startswith("ok ") for line in recipe_lines), recipe_lines
    assert any("clone(X) == net(X)" in line for line in recipe_lines)
    assert any("numpy / npz / d2l-dict" in line for line in recipe_lines)
    assert not any("d2l-tensor" in line and "npz" in line for line in recipe_lines), (
        "a cell npz cannot hold is not a line"
    )
    assert all(" numpy" in line or "numpy /" in line or "[numpy" in line for line in recipe_lines), "only numpy's"
    assert summary.startswith(f"{len(recipe_lines)} recipes: {len(recipe_lines)} as expected, 0 FAILED")


def test_a_recipe_whose_outcome_changed_fails_with_status_1() -> None:
    broken = {"broken-toy": ["tests.extra_adapter:BrokenToyAdapter", "nothing to install (tests only)"]}
    result = recipes("--frameworks", "broken-toy", env={"SERBENCH_EXTRA_ADAPTERS": json.dumps(broken)})
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert any("broken-toy / toy-npz / d2l-dict" in line and "float64" in line for line in failures), failures
    assert any("clone(X) == net(X)" in line for line in failures), failures
    assert "FAILED" in result.stdout.splitlines()[-1]


def test_each_recipe_says_what_it_gives_back_and_the_mlp_moves_between_the_chosen_frameworks() -> None:
    """`recipes` answered "still works?" but never "what differs": a list coming back as one float64 array from
    np.save was just "ok". And the chapter's clone(X) == net(X) across frameworks was in no command's output."""
    adapter_or_skip("numpy")
    adapter_or_skip("torch")
    result = recipes("--frameworks", "numpy,torch")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stdout.splitlines()
    pickled_list = next(line for line in lines if "numpy / npy-pickle / d2l-list" in line)
    assert "drift, as declared: np.save calls np.asarray on a list" in pickled_list
    assert "root: list -> tensor float64(2, 4)" in pickled_list
    assert any(line.endswith("numpy / npz / d2l-dict: exact") for line in lines), "an exact one says so"
    moves = [line for line in lines if "MLP across frameworks" in line]
    assert len(moves) == 2, moves  # every ordered pair of the chosen frameworks, and only theirs
    assert any("numpy -> torch: clone(X) == net(X)" in line for line in moves)
    assert any("torch -> numpy: clone(X) == net(X)" in line for line in moves)
