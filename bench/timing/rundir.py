"""The files of one benchmark run directory, named in one place.

The runner writes them; the results, the report, `compare` and the index read them. A chunk is one
framework at one thread setting (`<framework>-t<threads>`), timed by one or more pytest processes:

    env.json  limits.json  results.csv  results.json  report.md  tables/  plots/
    raw/plan-<chunk>.json  raw/loads-plan-<chunk>.json   the cases each process was given
    raw/outcomes-<chunk>.jsonl                           every case's outcome (skipped, failed, ...)
    raw/benchmark-<chunk>-p<N>.json                      pytest-benchmark's own, every round
    raw/pytest-<chunk>-p<N>.log  raw/peak-<framework>.json  raw/limits.json
    scratch/<framework>/                                 saved files, removed after each framework
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def env(self) -> Path:
        return self.root / "env.json"

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
