"""`make gpu`: the prepared GPU run, on a GPU machine, within a time budget.

Refuses in one line (exit 2) where there is no CUDA device, before anything is installed or measured. Then,
step by step (bench.gpu.plan): installs the carried wheels the image lacks, probes what is installed, and
runs each measuring step in a process group of its own with the time the budget leaves it after the later
required steps' estimates and a reserve; a step that runs over is ended, an optional step that would not
fit is skipped, and each is recorded with its estimate, its time and why. Every file is written atomically;
`gpu-run.json` is rewritten after every step, so an interrupted run still says what it did.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.environment import gpu_description
from bench.errors import UsageError
from bench.gpu import plan as planning
from bench.gpu import wheels
from bench.gpu.report import RECORD
from frameworks.files import write_bytes_atomic

ROOT = wheels.ROOT
EXIT_REFUSED = 2
GRACE_S = 10.0
"""After SIGTERM (which the harness turns into a clean exit: the balloon driver is bound again), SIGKILL."""
OUT_CAP_BYTES = 16 << 20
"""The most one file brought back from the device machine's $OUT may have."""


class Refused(Exception):
    """No GPU here: the run prints no GPU figure without one."""


@dataclass
class Options:
    out: Path | None = None
    budget_s: float = planning.BUDGET_S
    steps: tuple[str, ...] | None = None
    tar: Path | None = None
    site: Path = Path(tempfile.gettempdir()) / "serbench-gpu-site"
    data: Path = ROOT / ".scale-data"
    wheels: Path = wheels.WHEELS


def _child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


@dataclass
class Outcome:
    status: str
    """ok, failed (non-zero exit), stopped (ran out of its time)."""
    seconds: float
    why: str = ""
    result: dict[str, Any] | None = None


def run_child(
    arguments: list[str],
    timeout_s: float,
    log: Path | None,
    env: dict[str, str] | None = None,
    echo: bool = True,
    module: str = "bench.gpu.steps",
) -> Outcome:
    """`python3 -m bench.gpu.steps ARGUMENTS` in a new process group, its output to `log` (and to stderr with
    `echo`), ended (TERM, then KILL, the whole group) after `timeout_s`."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_path = Path(handle.name)
    command = [sys.executable, "-m", module, *arguments, "--result", str(result_path)]
    start = time.monotonic()
    tail: list[str] = []
    stopped = False
    with open(log or os.devnull, "w") as sink:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env or _child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )

        def follow() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                sink.write(line)
                sink.flush()
                if echo:
                    sys.stderr.write(f"    {line}")
                tail[:] = [*tail[-20:], line.rstrip()]

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        try:
            process.wait(max(timeout_s, 1.0))
        except subprocess.TimeoutExpired:
            stopped = True
            _end_group(process)
        reader.join(5)
    seconds = time.monotonic() - start
    try:
        found = json.loads(result_path.read_text()) if result_path.stat().st_size else None
    except (OSError, json.JSONDecodeError):
        found = None
    finally:
        result_path.unlink(missing_ok=True)
    if stopped:
        return Outcome("stopped", seconds, f"ran out of its {timeout_s:.0f} s and was ended", found)
    if process.returncode != 0:
        last = next((line for line in reversed(tail) if line.strip()), "no output")
        return Outcome("failed", seconds, f"exit {process.returncode}: {last[:300]}", found)
    return Outcome("ok", seconds, "", found)


def _end_group(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def refusal() -> str:
    """Why this machine cannot run the GPU run ("" if it can): no NVIDIA device node or tool, or no CUDA device
    that the torch adapter sees."""
    if shutil.which("nvidia-smi") is None and not Path("/dev/nvidiactl").exists():
        return "no NVIDIA GPU here (no nvidia-smi, no /dev/nvidiactl)"
    outcome = run_child(["cuda"], 120, None, echo=False)
    found = outcome.result or {}
    if outcome.status != "ok" or not found.get("cuda"):
        return f"no CUDA device for torch here ({found.get('note') or outcome.why})"
    return ""


def gpu_slug(description: str) -> str:
    """`h200` from 'NVIDIA H200, 143771 MiB, 580.159.03'; `h100` from 'NVIDIA H100 80GB HBM3, ...'."""
    name = description.splitlines()[0].split(",")[0] if description else ""
    words = [word for word in re.split(r"[^a-z0-9]+", name.lower()) if word and word not in ("nvidia", "tesla")]
    return words[0] if words else "unknown"


def default_out(description: str) -> Path:
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
    return ROOT / "results" / f"reference-gpu-{gpu_slug(description)}-{date}"


class Runner:
    def __init__(self, options: Options, started: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self.started = started
        self.clock = clock
        self.record: dict[str, Any] = {}
        self.out = Path()

    def left(self) -> float:
        return self.options.budget_s - (self.clock() - self.started)

    def save(self) -> None:
        self.record["wall_s"] = self.clock() - self.started
        write_bytes_atomic(self.out / RECORD, json.dumps(self.record, indent=1, default=str).encode())

    # ---- the install step (in this process: it imports nothing heavy) ----
    def install(self) -> Outcome:
        start = self.clock()
        installs: list[dict[str, str]] = []
        self.record["installs"] = installs
        try:
            carried = wheels.read_carry_list()
        except (OSError, ValueError) as error:
            return Outcome("failed", self.clock() - start, f"the carry list: {error}")
        checks = []
        for entry in carried:
            check = wheels.WheelCheck(entry, wheels.find_wheel(self.options.wheels, entry))
            if check.path is not None:
                wheels.inspect_wheel(check)
            checks.append(check)
        reasons = wheels.to_install(checks, wheels.pyproject_specifiers())
        chosen = []
        for check in checks:
            name, pin = check.carried.name, check.carried.pin
            if name not in reasons:
                installs.append({"pin": pin, "status": f"not needed: here {wheels.installed_version(name)}"})
            elif check.path is None:
                installs.append({"pin": pin, "status": f"NOT INSTALLED: no wheel carried ({reasons[name]})"})
            else:
                chosen.append(check)
        paths = [check.path for check in chosen if check.path]
        results = wheels.install(paths, self.options.site) if paths else {}
        for check in chosen:
            why = results.get(check.path, "") if check.path else "no wheel"
            status = f"installed ({reasons[check.carried.name]})" if not why else f"NOT INSTALLED: {why}"
            installs.append({"pin": check.carried.pin, "status": status})
        wheels.activate(self.options.site)
        failed = [item["pin"] for item in installs if item["status"].startswith("NOT INSTALLED")]
        why = f"could not install {', '.join(failed)}" if failed else ""
        return Outcome("ok", self.clock() - start, why)

    # ---- the measuring steps (children) ----
    def arguments(self, step: planning.Step, seconds: float) -> tuple[list[str], dict[str, str] | None]:
        out = str(self.out)
        if step.name == "probe":
            return ["probe"], _child_env(XLA_PYTHON_CLIENT_PREALLOCATE="false")
        if step.name in ("limits", "report"):
            return [step.name, "--out", out], None
        if step.name in planning.TIMING:
            return ["timing", "--out", out, "--name", step.name], None
        if step.name in planning.SCALE:
            scale_dir = self.out / step.name
            limits = self.out / "limits.json"
            budget = max(seconds - 5.0, 1.0)  # it stops starting rounds in time; the group is ended after `seconds`
            arguments = ["scale", "--out", str(scale_dir), "--data", str(self.options.data), "--name", step.name]
            return [*arguments, "--limits", str(limits), "--seconds", f"{budget:.0f}"], None
        if step.name == "nccl":
            return ["nccl", "--out", str(self.out / "scale-llama-1b"), "--data", str(self.options.data)], None
        raise ValueError(step.name)

    def observed_ratio(self, names: tuple[str, ...] | None = None) -> float:
        """How much longer than estimated the finished steps took (of `names`, else all), within [0.5, 3]."""
        done = [s for s in self.record["steps"] if s.get("status") == "ok" and (names is None or s["name"] in names)]
        estimate = sum(s["estimate_s"] for s in done)
        if not estimate:
            return 1.0
        return min(max(sum(s["seconds"] for s in done) / estimate, 0.5), 3.0)

    def run(self) -> int:
        options = self.options
        description = gpu_description()
        self.out = Path(options.out) if options.out else default_out(description)
        if self.out.exists() and any(self.out.iterdir()):
            raise UsageError(f"{self.out} already exists and is not empty: give --out a new directory")
        self.out.mkdir(parents=True, exist_ok=True)
        logs = self.out / "gpu-logs"
        logs.mkdir(exist_ok=True)
        gpus = len([line for line in description.splitlines() if line.strip() and not line.startswith("none")])
        chosen = planning.build_plan(options.budget_s, max(gpus, 1), options.steps)
        self.record = {
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": sys.argv,
            "budget_s": options.budget_s,
            "reserve_s": chosen.reserve_s,
            "gpus": description.splitlines(),
            "plan": [asdict(step) for step in chosen.steps],
            "figures": {name: asdict(figure) for name, figure in planning.FIGURES.items()},
            "steps": [{"name": "check", "required": True, "estimate_s": chosen.steps[0].estimate_s,
                       "seconds": self.clock() - self.started, "status": "ok", "why": ""}],
        }  # fmt: skip
        self.save()
        remaining = [step for step in chosen.steps if step.name != "check"]
        for index, step in enumerate(remaining):
            entry = {"name": step.name, "required": step.required, "estimate_s": step.estimate_s}
            self.record["steps"].append(entry)
            later = sum(s.estimate_s for s in remaining[index + 1 :] if s.required and s.name not in chosen.skipped)
            allowed = self.left() - later - chosen.reserve_s
            why = self.skip_reason(step, chosen, allowed)
            if why:
                entry.update(status="skipped", why=why, seconds=None)
                print(f"gpu: {step.name}: skipped: {why}", file=sys.stderr, flush=True)
                self.save()
                continue
            if step.name == "report":
                allowed = max(self.left() - 5.0, 5.0)
            print(f"gpu: {step.name} (estimate {step.estimate_s:.0f} s, at most {allowed:.0f} s)", file=sys.stderr)
            if step.name == "install":
                outcome = self.install()
                self.write_environment()
            else:
                arguments, env = self.arguments(step, allowed)
                outcome = run_child(arguments, allowed, logs / f"{step.name}.log", env)
                if step.name == "probe" and outcome.result:
                    self.record["probe"] = outcome.result
            entry.update(status=outcome.status, why=outcome.why, seconds=outcome.seconds, result=outcome.result)
            print(f"gpu: {step.name}: {outcome.status} in {outcome.seconds:.0f} s {outcome.why}", file=sys.stderr)
            self.save()
        self.save()
        if options.tar:
            self.archive(options.tar)
        print(summary(self.record, self.out))
        failed = [s for s in self.record["steps"] if s["required"] and s["status"] != "ok"]
        return 1 if failed else 0

    def write_environment(self) -> None:
        """env.json as every serbench run records it (the timing steps rewrite it with their own), so the run
        directory holds its environment whatever the later steps do."""
        from bench.environment import environment

        path = self.out / "env.json"
        if not path.exists():
            write_bytes_atomic(path, json.dumps(environment(self.out), indent=1, default=str).encode())

    def skip_reason(self, step: planning.Step, chosen: planning.Plan, allowed: float) -> str:
        """Why `step` does not run now ("" if it does): not chosen, what it needs is missing, no time left for a
        required step, or, for an optional one, its estimate (rescaled by how the steps so far kept theirs) does
        not fit what the later required steps and the reserve leave."""
        if step.name in chosen.skipped:
            return chosen.skipped[step.name]
        missing = [name for name in step.needs if wheels.installed_version(name) is None]
        if missing:
            return f"{', '.join(missing)} not installed here (see the installs)"
        if step.required:
            if allowed < 1.0 and step.name != "report":
                return f"no time left ({self.left():.0f} s of the budget remain and the later steps need theirs)"
            return ""
        ratio = self.observed_ratio(("scale-llama-1b",) if step.name.startswith("scale-") else None)
        predicted = step.estimate_s * ratio
        if predicted > allowed:
            return (
                f"needs about {predicted:.0f} s (its estimate {step.estimate_s:.0f} s x {ratio:.2f}, how long the "
                f"steps so far took over their estimates); {max(allowed, 0):.0f} s are left after the later steps "
                "and the reserve"
            )
        return ""

    def archive(self, path: Path) -> None:
        """The run directory as one .tar.gz (what the device tool's $OUT brings back: at most 16 MiB a file)."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(self.out, arcname=self.out.name)
        data = buffer.getvalue()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data)
        note = "" if len(data) <= OUT_CAP_BYTES else f" (over the {OUT_CAP_BYTES >> 20} MiB $OUT brings back a file)"
        print(f"gpu: archived {self.out.name} into {path}: {len(data) / 2**20:.1f} MiB{note}", file=sys.stderr)


def summary(record: dict[str, Any], out: Path) -> str:
    lines = [f"GPU run into {out} ({record.get('wall_s', 0):.0f} s of a {record.get('budget_s', 0):.0f} s budget):"]
    for step in record.get("steps", []):
        took = f"{step['seconds']:.0f} s" if step.get("seconds") is not None else "-"
        lines.append(
            f"  {step['name']:15} estimate {step['estimate_s']:4.0f} s  took {took:>6}  {step['status']}"
            + (f": {step['why']}" if step.get("why") else "")
        )
    lines.append(f"report: {out / 'gpu.md'}")
    return "\n".join(lines)


def run(options: Options) -> int:
    started = time.monotonic()
    why = refusal()
    if why:
        raise Refused(why)
    return Runner(options, started).run()
