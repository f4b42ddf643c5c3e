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

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from frameworks import files, stored
from frameworks.errors import UnsafeTargetError

ENV_CAP = 4 << 20
"""The most bytes a run's env.json or limits.json may have (one is about 10 KiB)."""
_TEXT = (str, type(None))
ENV_SCHEMA = stored.Object(
    optional={
        **dict.fromkeys(("date", "hostname", "python", "platform", "kernel", "cpu", "gpu", "git_commit"), _TEXT),
        "cores_logical": (stored.COUNT, type(None)),
        "cores_physical": (stored.COUNT, type(None)),
        "ram_bytes": stored.COUNT,
        "filesystem": stored.MapOf(stored.ANY),
        "transparent_huge_pages": stored.MapOf(_TEXT),
        "versions": stored.MapOf(_TEXT),
        "versions_in_effect": stored.MapOf(stored.MapOf(_TEXT)),
        "environments": stored.MapOf(stored.MapOf(stored.ANY)),
        "threads": stored.MapOf(stored.MapOf((stored.MapOf(stored.ANY), type(None)))),
        "page_reporting": stored.MapOf(stored.ANY),
        "variant": stored.MapOf(stored.ANY),
        "machine": stored.Object(
            optional={
                "busy": bool,
                "warnings": stored.ListOf(str),
                "other_cpu_fraction": stored.Number(),
                "steal_fraction": stored.Number(),
                "load_average_start": stored.ListOf(stored.Number()),
                "load_average_end": stored.ListOf(stored.Number()),
            },
            extra=True,
        ),
    },
    extra=True,
)
"""What the report, compare and the index read of env.json, each field of its type (a run may lack any)."""
LIMITS_SCHEMA = stored.MapOf(
    stored.Object(optional={"gbps": (stored.POSITIVE, type(None)), "bytes": stored.COUNT, "note": str}, extra=True)
)


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

    def is_checkpoint_run(self) -> bool:
        """Whether `serbench bench` made this run: its checkpoints.json or store, or (those removed) a plan or a
        benchmark file naming a user's checkpoint (`user-...`), whose workload only checkpoints.json describes; a
        plan or benchmark file that cannot be read counts as one (a resume is refused rather than misled)."""
        from bench.timing.plan import read_plan

        if os.path.lexists(self.checkpoints) or os.path.lexists(self.checkpoint_store):
            return True
        for path, _ in self.plans():
            try:
                if any(case.workload.startswith("user-") for case in read_plan(path)):
                    return True
            except stored.StoredFileError:
                return True  # a plan that cannot be read cannot say it times no user's checkpoint
        for path in self.benchmarks():
            try:
                document = stored.read_json(path, what="benchmark file", cap=256 << 20)
            except stored.StoredFileError:
                return True
            benchmarks = document.get("benchmarks", []) if isinstance(document, dict) else []
            for benchmark in benchmarks if isinstance(benchmarks, list) else []:
                info = benchmark.get("extra_info", {}) if isinstance(benchmark, dict) else {}
                if isinstance(info, dict) and str(info.get("workload", "")).startswith("user-"):
                    return True
        return False

    def prepare(self) -> None:
        """Make (or check) the run directory and its subdirectories for writing: real directories, no links
        (a planted `raw -> elsewhere` would send the run's files there), and serbench's marker in the root,
        which is what lets serbench later remove a run directory it made."""
        fresh = not self.root.exists()
        files.own_directory(self.root)
        if fresh:
            files.mark(self.root)
        for directory in (self.raw, self.tables, self.plots, self.scratch):
            if os.path.lexists(directory):
                files.own_directory(directory)

    def own_scratch(self, name: str) -> Path:
        """`scratch/<name>/` (a framework's saved files, users' checkpoints), made (readable by this user only: a
        0600 checkpoint's tensors were stored 0644) and marked as serbench's if missing: serbench removes these, so
        an existing one it did not make (no marker) is refused."""
        for directory in (self.scratch, self.scratch / name):
            if not os.path.lexists(directory):
                files.own_directory(directory)
                os.chmod(directory, 0o700)  # copies of a user's checkpoint: the user's alone, whatever its mode
                files.mark(directory)
            elif not files.is_marked(directory):
                raise UnsafeTargetError(
                    f"{directory} exists and serbench did not make it (no marker): serbench saves and removes files "
                    "there, so it will not use it; move it away"
                )
        return self.scratch / name

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """The run directory held by this process while it writes (a second run or resume there is refused)."""
        return files.locked(self.root, "a serbench run")

    def check_readable(self) -> None:
        """UsageError unless this is a finished run: results.csv, env.json and limits.json, regular files."""
        if not self.root.is_dir():
            raise UsageError(f"{self.root} is not a run directory: no such directory")
        for path in (self.results_csv, self.env, self.limits):
            if not os.path.lexists(path):
                raise UsageError(f"{self.root} is not a finished serbench run: {path.name} is missing")
            stored.regular_file(path, f"{path.name} of a run")

    @staticmethod
    def read_json_object(path: Path, cap: int = ENV_CAP, schema: Any = None) -> dict[str, Any]:
        """A JSON file of a stored run that must hold an object: a regular file within `cap` bytes (env.json's,
        by default), of `schema` (any object by default), or StoredFileError saying what is wrong with it."""
        return stored.read_json(path, what=Path(path).name, cap=cap, schema=schema)

    @staticmethod
    def read_env(path: Path) -> dict[str, Any]:
        """A run's env.json, checked against ENV_SCHEMA."""
        return stored.read_json(path, what="env.json", cap=ENV_CAP, schema=ENV_SCHEMA)

    def read_limits(self) -> dict[str, Any]:
        return stored.read_json(self.limits, what="limits.json", cap=ENV_CAP, schema=LIMITS_SCHEMA)

    def read_results(self) -> Any:
        """results.csv as a DataFrame with every case-key column, or UsageError saying what is wrong.

        Every timed figure must be a finite time above zero, and `rounds_s` a JSON list of them: a NaN or
        negative median would otherwise compare as "same" or "faster"."""
        from bench.timing.plan import CASE_KEY

        frame = stored.read_csv(self.results_csv, what="results.csv")
        missing = [column for column in (*CASE_KEY, "status", "median_s") if column not in frame]
        if missing == ["threads"]:
            frame["threads"] = "default"  # runs before the threads axis
        elif missing:
            raise UsageError(f"{self.results_csv} lacks the columns {', '.join(missing)}: not a serbench results table")
        frame["threads"] = frame["threads"].astype(str)
        _check_figures(self.results_csv, frame)
        return frame


TIME_COLUMNS = ("median_s", "iqr_s", "min_s", "q1_s", "q3_s", "low_s", "high_s", "sample_low_s", "sample_high_s")


def _check_figures(path: Path, frame: Any) -> None:
    """StoredFileError naming the first timed row whose figures are not finite times (NaN, zero, negative,
    text) or whose rounds are not a JSON list of them."""
    import numpy as np
    import pandas as pd

    timed = frame[frame["status"].astype(str) == "ok"]
    for column in (c for c in TIME_COLUMNS if c in timed):
        values = pd.to_numeric(timed[column], errors="coerce")
        positive = column not in ("iqr_s",)
        # the median must be there; the spread may be absent (hand-made tables), but never wrong
        absent = timed[column].isna() & (column != "median_s")
        out_of_range = (values <= 0) if positive else (values < 0)
        bad = ~absent & (~np.isfinite(values) | out_of_range | (values > stored.MAX_TIME_S))
        if bad.any():
            row = timed.index[bad.to_numpy()][0]
            raise stored.StoredFileError(
                f"{path} row {row + 2}: {column} is {timed.loc[row, column]!r}, not a finite time"
                f"{' above zero' if positive else ''} of at most a week: not a results table serbench wrote"
            )
    for low, high in (("q1_s", "median_s"), ("median_s", "q3_s"), ("low_s", "high_s")):
        if low in timed and high in timed:
            a, b = pd.to_numeric(timed[low], errors="coerce"), pd.to_numeric(timed[high], errors="coerce")
            inverted = (a > b * (1 + 1e-9)) & a.notna() & b.notna()
            if inverted.any():
                row = timed.index[inverted.to_numpy()][0]
                raise stored.StoredFileError(
                    f"{path} row {row + 2}: {low} is above {high}: not a figure serbench wrote"
                )
    for column in ("rounds", "samples", "processes", "payload_bytes", "file_bytes"):
        if column in frame:
            values = pd.to_numeric(frame[column], errors="coerce")
            bad = frame[column].notna() & ~(np.isfinite(values) & (values >= 0) & (values == np.floor(values)))
            if bad.any():
                row = frame.index[bad.to_numpy()][0]
                raise stored.StoredFileError(
                    f"{path} row {row + 2}: {column} is {frame.loc[row, column]!r}, not a count: not a results table"
                )
    from bench.timing.plan import CASE_KEY

    duplicated = frame.duplicated(subset=[column for column in CASE_KEY if column in frame])
    if duplicated.any():
        row = frame.index[duplicated.to_numpy()][0]
        raise stored.StoredFileError(f"{path} row {row + 2}: a second row of the same case: not a results table")
    rounds = stored.ListOf(stored.DURATION)
    for column, schema in (("rounds_s", rounds), ("rounds_by_process", stored.ListOf(rounds))):
        if column not in timed:
            continue
        for row, text in timed[column].dropna().items():  # absent in hand-made and older tables
            where = f"{path} row {row + 2} {column}"
            stored.check(stored.parse_json(str(text), where, "results table"), schema, where, "results table")
