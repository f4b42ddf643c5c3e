"""`serbench index [RESULTS_DIR]`: results/README.md, one row per stored run, from each run's env.json."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from frameworks.files import write_bytes_atomic

HEADER = """# Results

Each directory is one run, indexed here from its `env.json` (regenerate with `serbench index`).
Benchmark runs hold `report.md` (tables and plots), `results.csv`/`results.json`, `limits.json`,
`env.json` and pytest-benchmark's raw JSON under `raw/`; `serbench report DIR` rebuilds the report
and `serbench compare A B` compares two runs. Safety runs hold `safety.csv` and `safety.md`.
"""


def short_commit(recorded: str) -> str:
    """`0123456789ab`, `0123456789ab-dirty` or `6ac207c (given)` from env.json's git_commit."""
    first = recorded.split()[0] if recorded.split() else "?"
    sha, dirty = first.removesuffix("-dirty"), first.endswith("-dirty")
    return sha[:12] + ("-dirty" if dirty else "") + (" (given)" if "SERBENCH_GIT_COMMIT" in recorded else "")


def index_frame(results: Path) -> pd.DataFrame:
    rows = []
    for env_path in sorted(Path(results).glob("*/env.json")):
        run = env_path.parent
        env = json.loads(env_path.read_text())
        kind = "safety" if (run / "safety.csv").exists() else "benchmark"
        main = "safety.md" if kind == "safety" else "report.md"
        rows.append(
            {
                "run": f"[{run.name}]({run.name}/{main})",
                "kind": kind,
                "date (UTC)": env.get("date", "?"),
                "machine": f"{env.get('cpu', '?')}, {env.get('cores_logical', '?')} cores, "
                f"{round(env.get('ram_bytes', 0) / 2**30)} GiB",
                "GPU": env.get("gpu", "?"),
                "commit": f"`{short_commit(str(env.get('git_commit', '?')))}`",
            }
        )
    return pd.DataFrame(rows)


def write_index(results: Path) -> Path:
    path = Path(results) / "README.md"
    table = index_frame(results)
    body = table.to_markdown(index=False, disable_numparse=True) if not table.empty else "(no runs yet)"
    write_bytes_atomic(path, (HEADER + "\n" + body + "\n").encode())
    return path
