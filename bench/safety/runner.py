"""`serbench safety --out DIR`: run every framework's safety matrix and write safety.csv/.md."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
from rich.console import Console

import frameworks
from bench import markdown
from bench.environment import environment
from bench.live import Progress
from bench.safety.inputs import safety_formats
from frameworks import stored
from frameworks.files import own_directory, write_bytes_atomic

COLUMNS = ["framework", "format", "mode", "input", "group", "outcome", "detail"]
OUTCOME_SCHEMA = stored.Object(required=dict.fromkeys(COLUMNS, str))
HOST_TIMEOUT_S = 3600
console = Console(stderr=True)
SHORT = {
    "loaded-exact": "ok",
    "clear-error": "error",
    "silent-wrong-data": "WRONG",
    "code-executed": "CODE",
    "crash": "CRASH",
    "hang": "HANG",
    "memory-blowup": "MEM",
}


def _host(framework: str, workdir: Path, jsonl: Path, stage: str, timeout_s: float) -> list[str]:
    """The arguments of one `bench.safety.host` stage (run with the framework's interpreter)."""
    return [
        "-m",
        "bench.safety.host",
        framework,
        str(workdir),
        str(jsonl),
        "--timeout",
        str(timeout_s),
        "--stage",
        stage,
    ]


def _last_line(stderr: str) -> str:
    return (stderr.strip().splitlines() or ["?"])[-1][:300]


def _unavailable(framework: str, reason: str) -> list[dict[str, str]]:
    return [
        {
            "framework": framework,
            "format": fmt,
            "mode": "-",
            "input": "-",
            "group": "-",
            "outcome": "unavailable",
            "detail": reason,
        }
        for fmt in safety_formats(framework)
    ]


def run_safety(out: Path, framework_names: tuple[str, ...] | None = None, timeout_s: float = 60.0) -> Path:
    """Generate every framework's inputs first (so the progress bar knows every load), then load them."""
    from bench.safety.host import planned_loads

    own_directory(out)
    own_directory(out / "raw")
    write_bytes_atomic(out / "env.json", json.dumps(environment(out), indent=1, default=str).encode())
    records: list[dict[str, str]] = []
    inputs = Path(tempfile.mkdtemp(prefix=".safety-inputs-", dir=out))  # ours alone: nothing of the user's is touched
    try:
        loads: dict[str, int] = {}
        for framework in framework_names or frameworks.names():
            workdir = inputs / framework
            workdir.mkdir()
            console.print(f"serbench safety: generating {framework}'s inputs ...", highlight=False)
            arguments = _host(framework, workdir, out / "raw" / f"safety-{framework}.jsonl", "generate", timeout_s)
            result = frameworks.run_child(framework, arguments, HOST_TIMEOUT_S)
            if result.returncode != 0:
                records += _unavailable(framework, _last_line(result.stderr))
            else:
                loads[framework] = len(planned_loads(framework, workdir))
        with Progress("safety", sum(loads.values()), console) as progress:
            for framework in loads:
                jsonl = out / "raw" / f"safety-{framework}.jsonl"
                jsonl.unlink(missing_ok=True)
                events = out / "raw" / f"events-{framework}.jsonl"
                events.unlink(missing_ok=True)
                arguments = [*_host(framework, inputs / framework, jsonl, "load", timeout_s), "--events", str(events)]
                before = progress.done
                with tempfile.TemporaryFile("w+") as stderr:
                    child = subprocess.Popen(
                        [frameworks.python_for(framework), *arguments],
                        env=frameworks.child_environment(framework),
                        stdout=subprocess.DEVNULL,
                        stderr=stderr,
                        text=True,
                    )
                    code = progress.follow(child, events, lambda _: 1.0, HOST_TIMEOUT_S)
                    stderr.seek(0)
                    reason = _last_line(stderr.read())
                events.unlink(missing_ok=True)
                progress.done = before + loads[framework]
                progress.step_done(f"{framework}: {loads[framework]} loads done")
                if code != 0:
                    records += _unavailable(framework, reason)
                if jsonl.exists():
                    records += stored.read_jsonl(jsonl, what="safety outcomes", schema=OUTCOME_SCHEMA, cap=64 << 20)
    finally:
        shutil.rmtree(inputs, ignore_errors=True)
    frame = pd.DataFrame(records).reindex(columns=COLUMNS)
    write_bytes_atomic(out / "safety.csv", frame.to_csv(index=False).encode())
    write_bytes_atomic(out / "safety.md", safety_markdown(frame).encode())
    return out


def read_safety(path: Path) -> pd.DataFrame:
    """A safety.csv written by `run_safety`, checked: a regular file within its cap, with every column."""
    frame = stored.read_csv(path, what="safety.csv", empty_as_nan=False)
    missing = [column for column in COLUMNS if column not in frame]
    if missing:
        raise stored.StoredFileError(f"{path} lacks the columns {', '.join(missing)}: not a safety.csv of serbench")
    return frame.astype(str)


def loader_table(frame: pd.DataFrame) -> pd.DataFrame:
    """loader (framework / format / mode) x input -> short outcome."""
    frame = frame[frame["input"] != "-"].copy()
    frame["loader"] = frame["framework"] + " / " + frame["format"] + " / " + frame["mode"]
    table = frame.pivot_table(index="loader", columns="input", values="outcome", aggfunc="first", sort=False)
    return table.apply(
        lambda column: column.map(lambda value: SHORT.get(value, value) if isinstance(value, str) else "-")
    )


def verdicts(frame: pd.DataFrame) -> pd.DataFrame:
    """Per loader: is it safe for untrusted files? Derived from the outcomes, nothing typed."""
    rows = []
    frame = frame[frame["input"] != "-"]
    for (framework, fmt, mode), group in frame.groupby(["framework", "format", "mode"], sort=False):
        outcomes = group.set_index("input")["outcome"]
        executed = sorted(outcomes[outcomes == "code-executed"].index)
        wrong = sorted(outcomes[outcomes == "silent-wrong-data"].index)
        dangerous = sorted(outcomes[outcomes.isin(["crash", "hang", "memory-blowup"])].index)
        if executed:
            verdict = "UNSAFE: runs code from the file"
        elif dangerous:
            verdict = "not robust: " + ", ".join(f"{i} ({outcomes[i]})" for i in dangerous)
        elif wrong:
            verdict = "safe from code, but returns wrong data silently for: " + ", ".join(wrong)
        else:
            verdict = "safe: clear errors only"
        rows.append(
            {"loader": f"{framework} / {fmt} / {mode}", "verdict": verdict, "valid file": outcomes.get("valid", "-")}
        )
    return pd.DataFrame(rows)


def safety_markdown(frame: pd.DataFrame) -> str:
    legend = ", ".join(f"`{short}` {long}" for long, short in SHORT.items())
    unavailable = frame[frame["outcome"] == "unavailable"]
    lines = [
        "## Which loaders are safe for untrusted files",
        "",
        markdown.table(verdicts(frame)),
        "",
    ]
    if not unavailable.empty:
        lines += [
            "Not measured: "
            + markdown.escape("; ".join(sorted(set(unavailable["framework"] + ": " + unavailable["detail"])))),
            "",
        ]
    lines += [
        "## Every loader against every input",
        "",
        f"Legend: {legend}.",
        "",
        markdown.table(loader_table(frame), index=True),
        "",
    ]
    return "\n".join(lines)
