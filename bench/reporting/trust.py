"""What the advice must say about trust: which timed loaders the safety matrix calls unsafe.

A benchmark reads files it wrote itself, so it loads with `trusted=True`: serbench's trusted path where
a format runs code (`FormatSpec.executes_code`), its default path otherwise. Advice that names a format
must therefore say when that loader is one the safety matrix calls UNSAFE (or not robust), and when it
parses a pickle (`FormatSpec.unpickles`: a restricted unpickler, for files you trust). The verdicts come
from the run's own `safety.csv` (`serbench safety --out RUN_DIR`), else from the committed reference
matrix; a format that neither covers falls back to what its adapter declares.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import frameworks

REFERENCE = Path(__file__).resolve().parents[2] / "results" / "reference-safety" / "safety.csv"


def _spec(framework: str, format_name: str) -> frameworks.FormatSpec | None:
    try:
        return frameworks.adapter_class(framework).spec(format_name)
    except ValueError:  # an unknown framework, or UnknownFormatError
        return None


def reads_untrusted(framework: str, format_name: str) -> bool | None:
    """Whether the format's serbench reader neither runs code nor parses a pickle; None if unknown here."""
    spec = _spec(framework, format_name)
    return None if spec is None else not (spec.executes_code or spec.unpickles)


def timed_mode(framework: str, format_name: str) -> str:
    """The safety matrix's name for the loader a benchmark times."""
    spec = _spec(framework, format_name)
    return "serbench trusted" if spec is not None and spec.executes_code else "serbench"


@dataclass(frozen=True)
class Verdicts:
    """The safety matrix's verdict on each (framework, format)'s timed loader, and where it came from."""

    by_format: dict[tuple[str, str], str] = field(default_factory=dict)
    source: str = "no safety matrix"

    def warning(self, framework: str, format_name: str) -> str:
        """'' for a loader safe for untrusted files, else what a reader of the advice must know."""
        verdict = self.by_format.get((framework, format_name))
        spec = _spec(framework, format_name)
        if verdict is None and spec is not None and spec.executes_code:
            verdict = "UNSAFE: runs code from the file (declared by its adapter)"
        if verdict is not None and verdict.startswith(("UNSAFE", "not robust")):
            return f"{verdict.replace('UNSAFE:', 'UNSAFE for untrusted files:')}"
        if spec is not None and spec.unpickles:
            return "parses a pickle (restricted): only for files you trust"
        return ""


def verdicts(run_dir: Path | None = None) -> Verdicts:
    """The run's own safety matrix if it has one, else the committed reference, else none."""
    from bench.safety.runner import read_safety
    from bench.safety.runner import verdicts as matrix_verdicts

    own = Path(run_dir) / "safety.csv" if run_dir is not None else None
    source = own if own is not None and os.path.lexists(own) else REFERENCE
    if not source.is_file():
        return Verdicts()
    try:
        table = matrix_verdicts(read_safety(source))
    except (ValueError, KeyError) as error:
        return Verdicts(source=f"{source} unreadable ({error!r:.100})")
    by_format = {}
    for row in table.itertuples(index=False):
        framework, format_name, mode = (part.strip() for part in row.loader.split(" / ", 2))
        if mode == timed_mode(framework, format_name):
            by_format[(framework, format_name)] = row.verdict
    label = (
        "this run's safety matrix" if source == own else f"the reference safety matrix (results/{source.parent.name})"
    )
    return Verdicts(by_format, label)
