"""The files of one benchmark run directory, named in one place.

The runner writes them; the results, the report, `compare` and the index read them. A chunk is one
framework at one thread setting (`<framework>-t<threads>`), timed by one or more pytest processes:

    env.json  limits.json  results.csv  results.json  report.md  tables/  plots/
    checkpoints.json                                     users' checkpoints timed (`serbench bench`)
    raw/plan-<chunk>.json  raw/loads-plan-<chunk>.json   the cases each process was given
    raw/outcomes-<chunk>.jsonl                           every case's outcome (skipped, failed, ...)
    raw/benchmark-<chunk>-p<N>.json                      pytest-benchmark's own, every round
    raw/pytest-<chunk>-p<N>.log  raw/peak-<framework>.json  raw/limits.json
    scratch/<framework>/                                 saved files, removed after each framework
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import UsageError


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def env(self) -> Path:
        return self.root / "env.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints.json"

    @property
    def checkpoint_store(self) -> Path:
        """Where users' checkpoints are stored for the run's processes (removed with the scratch)."""
        return self.scratch / "checkpoints"

    @property
    def limits(self) -> Path:
        return self.root / "limits.json"

    @property
    def results_csv(self) -> Path:
        return self.root / "results.csv"

    @property
    def results_json(self) -> Path:
        return self.root / "results.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def raw_limits(self) -> Path:
        """The limits beside the raw files, so `raw/` alone can be assembled again."""
        return self.raw / "limits.json"

    @property
    def scratch(self) -> Path:
        return self.root / "scratch"

    @staticmethod
    def chunk(framework: str, threads: str) -> str:
        return f"{framework}-t{threads}"

    def plan(self, chunk: str, name: str = "plan") -> Path:
        """The cases of a chunk (`name` "loads-plan" for the extra processes that time headline loads)."""
        return self.raw / f"{name}-{chunk}.json"

    def outcomes(self, chunk: str) -> Path:
        return self.raw / f"outcomes-{chunk}.jsonl"

    def benchmark(self, chunk: str, process: int) -> Path:
        return self.raw / f"benchmark-{chunk}-p{process}.json"

    def partial_benchmark(self, chunk: str, process: int) -> Path:
        """Where pytest-benchmark writes; renamed to `benchmark` only when the process finished."""
        return self.raw / f".benchmark-{chunk}-p{process}.json.partial"

    def log(self, chunk: str, process: int) -> Path:
        return self.raw / f"pytest-{chunk}-p{process}.log"

    def events(self, chunk: str, process: int) -> Path:
        """Each case's start and end, for the progress bar (`bench.live`)."""
        return self.raw / f"events-{chunk}-p{process}.jsonl"

    def peaks(self, framework: str) -> Path:
        return self.raw / f"peak-{framework}.json"

    def benchmarks(self) -> list[Path]:
        return sorted(self.raw.glob("benchmark-*.json"))

    def plans(self) -> list[tuple[Path, Path]]:
        """Each chunk's plan (not the loads-plans: their cases are in the plan too) with its outcomes file."""
        return [
            (path, self.outcomes(path.name.removeprefix("plan-").removesuffix(".json")))
            for path in sorted(self.raw.glob("plan-*.json"))
        ]

    def all_peaks(self) -> list[Path]:
        return sorted(self.raw.glob("peak-*.json"))

    def is_benchmark_run(self) -> bool:
        return self.results_csv.exists()

    def check_readable(self) -> None:
        """UsageError unless this is a finished run: results.csv, env.json and limits.json, regular files."""
        if not self.root.is_dir():
            raise UsageError(f"{self.root} is not a run directory: no such directory")
        for path in (self.results_csv, self.env, self.limits):
            if not path.exists():
                raise UsageError(f"{self.root} is not a finished serbench run: {path.name} is missing")
            if not path.is_file():
                raise UsageError(f"{path} is not a regular file")

    @staticmethod
    def read_json_object(path: Path) -> dict[str, Any]:
        """A JSON file that must hold an object, or UsageError saying what is wrong with it."""
        if not Path(path).is_file():
            raise UsageError(f"{path} is not a regular file")
        try:
            value = json.loads(Path(path).read_bytes())
        except (ValueError, RecursionError) as error:
            raise UsageError(f"{path} is not valid JSON: {str(error)[:200]}") from None
        if not isinstance(value, dict):
            raise UsageError(f"{path} holds a JSON {type(value).__name__}, not an object")
        return value

    def read_results(self) -> Any:
        """results.csv as a DataFrame with every case-key column, or UsageError saying what is wrong."""
        import pandas as pd

        from bench.timing.plan import CASE_KEY

        try:
            frame = pd.read_csv(self.results_csv, keep_default_na=False, na_values=[""])
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
            raise UsageError(f"{self.results_csv} is not a readable CSV: {str(error).splitlines()[0][:200]}") from None
        missing = [column for column in (*CASE_KEY, "status", "median_s") if column not in frame]
        if missing == ["threads"]:
            frame["threads"] = "default"  # runs before the threads axis
        elif missing:
            raise UsageError(f"{self.results_csv} lacks the columns {', '.join(missing)}: not a serbench results table")
        frame["threads"] = frame["threads"].astype(str)
        return frame
