"""The support table (docs/support.md) is generated, never typed, and never stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.conformance import support

SUPPORT_PAGE = Path(__file__).resolve().parent.parent / "docs" / "support.md"


def test_the_support_page_is_current() -> None:
    text = SUPPORT_PAGE.read_text()
    assert support.replace_block(text, support.support_markdown()) == text, (
        "docs/support.md is stale: run `serbench support-table --update docs/support.md`"
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
