"""`serbench index [RESULTS_DIR]`: results/README.md, one row per stored run, from each run's env.json."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pandas as pd

from bench import markdown
from bench.reporting.versions import read_record
from bench.timing.rundir import RunDir
from frameworks.files import write_bytes_atomic

HEADER = """# Results

Each directory is one run, indexed here from its `env.json` (regenerate with `serbench index`).
Benchmark runs hold `report.md` (tables and plots), `results.csv`/`results.json`, `limits.json`,
`env.json` and pytest-benchmark's raw JSON under `raw/`; `serbench report DIR` rebuilds the report
and `serbench compare A B` compares two runs. Safety runs hold `safety.csv` and `safety.md`. A
versions run (`serbench versions`) holds `versions.md` and one run directory per release. A scale run
(`serbench run --scale`) holds `scale.json` (every round), `scale.md` and its plots, and `env.json`.
"""


def short_commit(recorded: str) -> str:
    """`0123456789ab`, `0123456789ab-dirty` or `6ac207c (given)` from env.json's git_commit."""
    first = recorded.split()[0] if recorded.split() else "?"
    sha, dirty = first.removesuffix("-dirty"), first.endswith("-dirty")
    return sha[:12] + ("-dirty" if dirty else "") + (" (given)" if "SERBENCH_GIT_COMMIT" in recorded else "")


def _link(name: str, main: str) -> str:
    return f"[{markdown.escape(name)}]({urllib.parse.quote(name)}/{main})"


def _row(link: str, kind: str, env: dict) -> dict[str, str]:
    return {
        "run": link,
        "kind": kind,
        "date (UTC)": env.get("date", "?"),
        "machine": f"{env.get('cpu', '?')}, {env.get('cores_logical', '?')} cores, "
        f"{round(env.get('ram_bytes', 0) / 2**30)} GiB",
        "GPU": env.get("gpu", "?"),
        "commit": markdown.code(short_commit(str(env.get("git_commit", "?")))),
    }


def index_frame(results: Path, runs: set[str] | None = None) -> pd.DataFrame:
    """One row per stored run under `results` (only those named in `runs`, when given)."""
    rows = []
    for env_path in sorted(Path(results).glob("*/env.json")):
        run = env_path.parent
        if runs is not None and run.name not in runs:
            continue
        env = RunDir.read_env(env_path)
        if (run / "scale.json").exists():
            kind, main = "scale (`serbench run --scale`)", "scale.md"
        elif (run / "safety.csv").exists() and not (run / "results.csv").exists():
            kind, main = "safety", "safety.md"
        else:
            kind, main = "benchmark", "report.md"
        rows.append(_row(_link(run.name, main), kind, env))
    for record_path in sorted(Path(results).glob("*/versions.json")):  # `serbench versions`: one run per release
        run = record_path.parent
        if runs is not None and run.name not in runs:
            continue
        record = read_record(run)
        timed = [entry["label"] for entry in record["versions"] if "not_installable" not in entry]
        first = run / timed[0] / "env.json" if timed else None
        env = RunDir.read_env(first) if first and first.exists() else {"date": record.get("date", "?")}
        releases = ", ".join(entry["version"] for entry in record["versions"])
        kind = markdown.escape(f"versions of {record['package']} ({releases})")
        rows.append(_row(_link(run.name, "versions.md"), kind, env))
    return pd.DataFrame(rows).sort_values("run", kind="stable").reset_index(drop=True) if rows else pd.DataFrame(rows)


def index_table(results: Path, runs: set[str] | None = None) -> str:
    """The index's table in Markdown (stored text escaped; the links and commits are composed here)."""
    return markdown.table(index_frame(results, runs), markup=("run", "kind", "commit"), empty="(no runs yet)")


def write_index(results: Path) -> Path:
    path = Path(results) / "README.md"
    write_bytes_atomic(path, (HEADER + "\n" + index_table(results) + "\n").encode())
    return path
