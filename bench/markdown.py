"""Markdown from stored text: every string that comes from a stored run, a user's file or a framework's
message (a workload's name, a round trip's detail, an error, a CPU's name) is escaped before it lands in a
report, so it reads as the text it is: no HTML, no link, no table cell split by a `|`, no heading started
by a newline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

SPECIAL = re.compile(r"([\\`|])|\](?=[(\[])")
"""What would make Markdown of text: a backslash escape, a code span, a table cell's end, and the `](` or `][`
that makes a link or an image of brackets (brackets alone stay readable: `root['value']`; emphasis is left
alone too: `allow_pickle` stays readable, and an underscore changes how text looks, never what it is)."""


def escape(value: Any) -> str:
    """`value` as Markdown text that shows exactly it, on one line."""
    text = " ".join(str(value).split())
    return SPECIAL.sub(lambda match: "\\" + match.group(0), _no_html(text))


def code(value: Any) -> str:
    """`value` in a code span (a commit, a path), with any backtick in it removed from the span's reach."""
    text = " ".join(str(value).split()).replace("`", "'")
    return f"`{_no_html(text)}`"


def table(frame: Any, markup: Iterable[str] = (), index: bool = False, empty: str = "(no rows)") -> str:
    """A pandas DataFrame as a Markdown table, every cell escaped except the columns named in `markup` (cells
    the report composes as Markdown, whose stored parts the composer escaped)."""
    if frame.empty:
        return empty
    kept = set(markup)
    shown = frame.copy()
    for column in shown.columns:
        if column not in kept:
            shown[column] = [value if _is_number(value) else escape(value) for value in shown[column]]
    shown.columns = [column if column in kept else escape(column) for column in shown.columns]
    if index:
        shown.index = [escape(value) for value in shown.index]
    return shown.to_markdown(index=index, disable_numparse=True)


def _no_html(text: str) -> str:
    """`&` and `<` as entities: no tag, no comment, no entity of the text's own reaches the reader (`->` stays)."""
    return text.replace("&", "&amp;").replace("<", "&lt;")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
