"""Load modes: each (framework, format) is opened with the framework's own loaders under each of their
safety-relevant flags (`FormatSpec.framework_loaders`, declared in the adapter), and with serbench's
default path (which refuses code-running formats), plus its trusted path where the format unpickles.

Every other entry point that loads a file on a caller's behalf is a mode too, named after the serbench mode it
must match (`BASE_MODE`: it is held to the same expectations, so a request or a job can never be less safe than
the load it stands for):
- "remote request" (and "remote request trusted"): `python -m frameworks.remote REQUEST.json`'s `load`, the way
  a cross-environment check calls it, for every format that holds a dict;
- "distributed job" (and "distributed job trusted", where the engine unpickles): one rank of
  `python -m frameworks.distributed JOB.json` started by its launcher, on the format the framework's scale
  recipe writes with its engine (`ScaleRecipe.distributed_format`); the rank checks the rows it loaded byte for
  byte against a source written from the valid file's contents.

A mode function takes the adapter and a path and returns a NumPy tree to compare with the valid
file's contents, or raises.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import frameworks

ModeFn = Callable[[frameworks.Adapter, Path], Any]

REMOTE, JOB = "remote request", "distributed job"
BASE_MODE = {
    REMOTE: "serbench",
    f"{REMOTE} trusted": "serbench trusted",
    JOB: "serbench",
    f"{JOB} trusted": "serbench trusted",
}
"""Each entry-point mode and the serbench mode whose expectations it is held to."""
JOB_TIMEOUT_S = 45.0
"""The launcher's own limit on a rank (it then kills and reaps it); the host's limit for the load is above it
(`startup_s`), so a rank is never left behind by a load the host kills."""


def startup_s(mode: str) -> float:
    """Seconds a mode needs beyond the load itself before the host calls it a hang: a job starts a fresh
    interpreter that imports the framework (and, on a FIFO, must still get to refuse it)."""
    return JOB_TIMEOUT_S + 15.0 if mode.startswith(JOB) else 0.0


def base_mode(mode: str) -> str:
    """The mode whose expectations `mode` is held to (itself, unless it is an entry point's)."""
    return BASE_MODE.get(mode, mode)


def _serbench(fmt: str, trusted: bool = False) -> ModeFn:
    def load(adapter: frameworks.Adapter, path: Path) -> Any:
        if adapter.spec(fmt).model_only:
            return adapter.mlp_state(adapter.load_mlp(path, fmt, adapter.blank_mlp(), trusted=trusted))
        return adapter.to_numpy(adapter.load(path, fmt, trusted=trusted))

    return load


def _remote_request(fmt: str, trusted: bool = False) -> ModeFn:
    """`frameworks.remote`'s entry point on a request file that loads `path`, its answer read back as a caller
    reads it (an .npz through the gate)."""

    def load(adapter: frameworks.Adapter, path: Path) -> Any:
        from frameworks import remote

        with tempfile.TemporaryDirectory(prefix="serbench-request-") as scratch:
            request, out = Path(scratch) / "request.json", Path(scratch) / "out.npz"
            fields = {"path": str(path), "format": fmt, "out": str(out)}
            request.write_text(
                json.dumps({"framework": adapter.name, "operation": "load", "trusted": trusted, **fields})
            )
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                remote.main([str(request)])
            answer = json.loads(printed.getvalue().strip().splitlines()[-1])
            if not answer["ok"]:
                raise RuntimeError(answer["error"])
            return remote._read(out)

    return load


def _distributed_job(trusted: bool = False) -> ModeFn:
    """One rank of the framework's distributed engine loading `path`, started by serbench's launcher; the rank
    compares every row with a source written from the valid file's contents, so what comes back is those
    contents when it found them all, else the names it found wrong."""

    def load(adapter: frameworks.Adapter, path: Path) -> Any:
        from bench.safety.inputs import reference
        from frameworks import distributed, scale

        recipe = scale.scale_recipe(adapter.name)
        values = reference(adapter.name, recipe.distributed_format)
        with tempfile.TemporaryDirectory(prefix="serbench-job-") as scratch:
            source = Path(scratch) / "model.safetensors"
            recipe.write_shard(dict(values), source, "safetensors")
            record = distributed.launch(
                adapter.name, "load", 1, [source], path, timeout_s=JOB_TIMEOUT_S, trusted=trusted
            )
        return {name: f"differs from the source: {name}" for name in record["wrong"]} or values

    return load


def _distributed_format(framework: str) -> str:
    cls = frameworks.adapter_class(framework)
    if not cls.scale_recipe:
        return ""
    from frameworks import scale

    return scale.recipe_class(framework).distributed_format


def modes_for(framework: str, fmt: str) -> dict[str, ModeFn]:
    """The load modes for one format: the framework's own loaders its adapter declares, serbench's default path
    for every format serbench offers, and the entry points that load on a caller's behalf (so a new format,
    request operation or distributed engine is covered without an edit)."""
    cls = frameworks.adapter_class(framework)
    modes = dict(cls.safety_spec(fmt).framework_loaders)
    if fmt in cls.format_names():
        spec = cls.spec(fmt)
        trust = (False, True) if spec.executes_code else (False,)
        for trusted in trust:
            suffix = " trusted" if trusted else ""
            modes[f"serbench{suffix}"] = _serbench(fmt, trusted)
        if "dict" in spec.holds and not spec.model_only:
            for trusted in trust:
                modes[f"{REMOTE}{' trusted' if trusted else ''}"] = _remote_request(fmt, trusted)
        if fmt == _distributed_format(framework):
            for trusted in trust:
                modes[f"{JOB}{' trusted' if trusted else ''}"] = _distributed_job(trusted)
    return modes
