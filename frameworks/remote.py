"""One adapter operation in a framework's own environment: `python -m frameworks.remote REQUEST.json`.

Cross-framework checks move files and weights between frameworks that may live in different
environments (`frameworks.environments`: MXNet needs numpy<2). `Side(framework)` offers the few
operations they need; where the framework runs in this interpreter it calls the adapter, elsewhere it
runs this module with the framework's interpreter. Arrays travel as .npz files (named arrays, a flat
dict); a request is a JSON object naming the framework, the operation and its files; the answer is one
JSON line on stdout, `{"ok": true}` or `{"ok": false, "error": "Type: message", "kind": "import"|"error"}`.

Operations (`OPERATIONS`):
- `save`: the arrays of `values` (.npz), as the framework's tensors, into `path` in `format`;
- `load`: `path` in `format` (trusted: these are the tests' own files), its arrays into `out` (.npz);
- `native_mlp_state`: the d2l MLP built from `parameters` (.npz) saved in the framework's native format
  under `directory`, loaded into a clone built from `blank` (.npz), the clone's state into `out`;
- `mlp_forward`: an MLP built from `state` (.npz) run on `inputs` (.npz), the output into `out`.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import frameworks
from frameworks import files, gate, stored

TIMEOUT_S = 600
REQUEST_CAP = 64 << 10
"""A request names a few paths; anything larger is not one."""
FILES = {
    "save": ("values", "path", "format"),
    "load": ("path", "format", "out"),
    "native_mlp_state": ("directory", "parameters", "blank", "out"),
    "mlp_forward": ("state", "inputs", "out"),
}
"""The string fields each operation's request carries, besides framework, operation and trusted."""


def request_schema(operation: str) -> stored.Object:
    return stored.Object(
        required={
            "framework": stored.OneOf(*frameworks.names()),
            "operation": stored.OneOf(operation),
            "trusted": bool,
            **dict.fromkeys(FILES[operation], str),
        }
    )


class RemoteError(RuntimeError):
    """The operation failed in the other environment; the message is its exception's."""


def _read(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz passed in (values, parameters, inputs), admitted as an untrusted npz: a FIFO,
    an object array or a declared bomb is refused before NumPy reads it."""
    from frameworks.numpy_adapter import NPZ, read_npz

    return read_npz(gate.admit(path, NPZ, trusted=False))


def _write(path: str, arrays: dict[str, np.ndarray]) -> None:
    """An answer's arrays as an .npz at `path`, through a temporary and a rename (never through a link there)."""
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    files.write_bytes_atomic(path, buffer.getvalue())


def _save(adapter: frameworks.Adapter, request: dict[str, Any]) -> None:
    adapter.save(adapter.from_numpy(_read(request["values"])), Path(request["path"]), request["format"])


def _load(adapter: frameworks.Adapter, request: dict[str, Any]) -> None:
    loaded = adapter.to_numpy(adapter.load(Path(request["path"]), request["format"], trusted=request["trusted"]))
    _write(request["out"], loaded)


def _native_mlp_state(adapter: frameworks.Adapter, request: dict[str, Any]) -> None:
    fmt = adapter.native_mlp_format
    path = Path(request["directory"]) / f"{adapter.name}-mlp{adapter.spec(fmt).suffix}"
    adapter.save_mlp(adapter.new_mlp(_read(request["parameters"])), path, fmt)
    clone = adapter.load_mlp(path, fmt, adapter.new_mlp(_read(request["blank"])), trusted=request["trusted"])
    _write(request["out"], adapter.mlp_state(clone))


def _mlp_forward(adapter: frameworks.Adapter, request: dict[str, Any]) -> None:
    output = adapter.mlp_forward(adapter.new_mlp(_read(request["state"])), _read(request["inputs"])["x"])
    _write(request["out"], {"y": np.asarray(output)})


OPERATIONS: dict[str, Callable[[frameworks.Adapter, dict[str, Any]], None]] = {
    "save": _save,
    "load": _load,
    "native_mlp_state": _native_mlp_state,
    "mlp_forward": _mlp_forward,
}


def check_request(request: Any, where: str = "the request") -> dict[str, Any]:
    """The request, if it is an object with exactly the fields of its operation, each of its type."""
    stored.check(
        request, stored.Object(required={"operation": stored.OneOf(*OPERATIONS)}, extra=True), where, "request"
    )
    stored.check(request, request_schema(request["operation"]), where, "request")
    return request


def perform(request: dict[str, Any]) -> None:
    """Run one request in this interpreter."""
    check_request(request)
    OPERATIONS[request["operation"]](frameworks.get_adapter(request["framework"]), request)


class Side:
    """One framework's end of a cross-framework check, wherever its environment is."""

    def __init__(self, framework: str) -> None:
        self.framework = framework
        self.local = frameworks.runs_here(framework)

    def _call(self, operation: str, trusted: bool = False, **files: str | Path) -> None:
        request = {
            "framework": self.framework,
            "operation": operation,
            "trusted": trusted,
            **{k: str(v) for k, v in files.items()},
        }
        if self.local:
            perform(request)
            return
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(request, handle)
        try:
            result = frameworks.run_child(self.framework, ["-m", "frameworks.remote", handle.name], TIMEOUT_S)
        finally:
            Path(handle.name).unlink(missing_ok=True)
        lines = result.stdout.strip().splitlines()
        answer = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
        if answer is None:
            last = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
            raise RemoteError(f"{self.framework} {operation}: the child gave no answer ({last[:300]})")
        if not answer["ok"]:
            raise (ImportError if answer["kind"] == "import" else RemoteError)(answer["error"])

    def save(self, values: dict[str, np.ndarray], path: Path, fmt: str) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            np.savez(Path(scratch) / "values.npz", **values)
            self._call("save", values=Path(scratch) / "values.npz", path=path, format=fmt)

    def load(self, path: Path, fmt: str, *, trusted: bool = False) -> dict[str, np.ndarray]:
        """`path` read as `fmt` by this framework; a format that unpickles needs `trusted=True`."""
        with tempfile.TemporaryDirectory() as scratch:
            self._call("load", trusted, path=path, format=fmt, out=Path(scratch) / "out.npz")
            return _read(Path(scratch) / "out.npz")

    def native_mlp_state(
        self, directory: Path, parameters: dict[str, np.ndarray], blank: dict[str, np.ndarray], *, trusted: bool = False
    ) -> dict[str, np.ndarray]:
        """The MLP saved in the native format under `directory` and loaded into a clone (a native format that
        unpickles, torch's, needs `trusted=True`: the file is the one this call writes)."""
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            np.savez(folder / "parameters.npz", **parameters)
            np.savez(folder / "blank.npz", **blank)
            self._call(
                "native_mlp_state",
                trusted,
                directory=directory,
                parameters=folder / "parameters.npz",
                blank=folder / "blank.npz",
                out=folder / "state.npz",
            )
            return _read(folder / "state.npz")

    def mlp_forward(self, state: dict[str, np.ndarray], inputs: np.ndarray) -> np.ndarray:
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            np.savez(folder / "state.npz", **state)
            np.savez(folder / "inputs.npz", x=inputs)
            self._call("mlp_forward", state=folder / "state.npz", inputs=folder / "inputs.npz", out=folder / "y.npz")
            return _read(folder / "y.npz")["y"]


def main(argv: list[str]) -> int:
    try:
        if len(argv) != 1:
            raise stored.StoredFileError("usage: python -m frameworks.remote REQUEST.json")
        request = stored.read_json(argv[0], what="remote request", schema=stored.ANY, cap=REQUEST_CAP)
        perform(check_request(request, argv[0]))
    except ImportError as error:
        print(json.dumps({"ok": False, "kind": "import", "error": str(error)}))
        return 0
    except Exception as error:  # noqa: BLE001  (the caller re-raises it, named, in its own process)
        print(json.dumps({"ok": False, "kind": "error", "error": f"{type(error).__name__}: {error}"}))
        return 0
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
