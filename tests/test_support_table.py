"""The README's support table is generated, never typed, and never stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.conformance import support

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_support_table_is_current() -> None:
    text = README.read_text()
    assert support.replace_block(text, support.support_markdown()) == text, (
        "README's support table is stale: run `serbench support-table --update-readme README.md`"
    )


def test_table_reports_known_drifts_and_gaps() -> None:
    frame, notes = support.support_frame()
    cell = frame.set_index(["framework", "format"])
    assert cell.loc[("torch", "torch"), "nested"] == "exact"
    assert cell.loc[("numpy", "npy"), "list"] == "unsupported"
    assert cell.loc[("mxnet", "mx-ndarray"), "tensor"].startswith("drift 16/17, unsupported 1/17")
    assert any("one-element list" in reason for reason in notes)


def test_cli_prints_the_table() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.cli", "support-table"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout == support.support_markdown()
