"""Writes the corpus: `python -m tests.corpus.build OUT MODULE [FORM...]` runs, in this interpreter, the builders
of MODULE's forms (all, or the ones named); `build(out, forms)` runs each module's builders in a child process
with its environment's interpreter, the modules at once, and says which failed.

For each form, `OUT/<form>/` holds what the library saved, and `OUT/<form>.expected.npz` / `.expected.json` the
tensors it saved, taken from the library's own in-memory tensors: each as its raw bytes (so bfloat16 and 0-d
tensors keep their bits and shape) with its name, NumPy dtype name and shape, and the groups of names that
share one storage in the file. Imports only the standard library and NumPy: it runs in every environment.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BUILD_TIMEOUT_S = 300


@dataclass
class Expected:
    """What a builder saved: tensors by the name a reader should give them, and the names sharing a storage."""

    tensors: dict[str, np.ndarray]
    shared: list[list[str]] = field(default_factory=list)


def torch_to_numpy(tensor: Any) -> np.ndarray:
    """A torch tensor's values as NumPy, bit for bit (bfloat16 as ml_dtypes.bfloat16, 0-d as 0-d)."""
    import torch

    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16).copy()
    return tensor.numpy().copy()


def torch_leaf(leaf: Any) -> np.ndarray | None:
    """A torch tensor leaf as NumPy (`torch_to_numpy`); None for a leaf that is not a tensor."""
    import torch

    return torch_to_numpy(leaf) if isinstance(leaf, torch.Tensor) else None


def flatten_tensors(
    tree: Any, convert: Callable[[Any], np.ndarray | None], prefix: str = ""
) -> Iterator[tuple[str, np.ndarray]]:
    """The tensor leaves of a nested dict/list/tuple, named as serbench names them (keys joined with '.');
    leaves that `convert` gives None for (ints, floats, strings, objects) are left out, as serbench drops them."""
    if isinstance(tree, dict):
        items: Iterable[tuple[Any, Any]] = tree.items()
    elif isinstance(tree, list | tuple):
        items = enumerate(tree)
    else:
        array = convert(tree)
        if array is not None:
            yield prefix, array
        return
    for key, value in items:
        yield from flatten_tensors(value, convert, f"{prefix}.{key}" if prefix else str(key))


def expected_paths(out: Path, form: str) -> tuple[Path, Path]:
    return out / f"{form}.expected.npz", out / f"{form}.expected.json"


def write_expected(out: Path, form: str, expected: Expected) -> None:
    arrays, manifest = expected_paths(out, form)
    members = {
        str(index): np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        for index, array in enumerate(expected.tensors.values())
    }
    np.savez(arrays, **members)
    tensors = [{"name": k, "dtype": v.dtype.name, "shape": list(v.shape)} for k, v in expected.tensors.items()]
    manifest.write_text(json.dumps({"tensors": tensors, "shared": expected.shared}, indent=1))


def read_expected(out: Path, form: str) -> Expected:
    import ml_dtypes  # noqa: F401  (registers bfloat16 with NumPy)

    arrays, manifest = expected_paths(out, form)
    described = json.loads(manifest.read_text())
    with np.load(arrays) as stored:
        tensors = {
            entry["name"]: stored[str(index)].view(np.dtype(entry["dtype"])).reshape(entry["shape"])
            for index, entry in enumerate(described["tensors"])
        }
    return Expected(tensors, described["shared"])


def build_here(out: Path, module: str, names: list[str]) -> None:
    """Run `module`'s builders of the forms `names` in this interpreter."""
    from tests.corpus import FORMS

    for name in names:
        form = FORMS[name]
        if form.module != module:
            raise ValueError(f"form {name!r} is built by {form.module}, not {module}")
        root = out / name
        root.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        builder = getattr(importlib.import_module(f"tests.corpus.{module}"), form.function)
        write_expected(out, name, builder(root))
        print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)


@dataclass
class Failure:
    module: str
    environment: str
    detail: str


def build(out: Path, names: Iterable[str]) -> dict[str, Failure]:
    """Build the forms `names` into `out`: one child per builder module, all at once, each in its module's
    environment (`frameworks.environments`), in the registry's order. Returns the forms whose module failed, with
    why."""
    from frameworks import environments
    from tests.corpus import MODULES, REGISTRY

    wanted = set(names)
    by_module: dict[str, list[str]] = {}
    for form in REGISTRY:
        if form.name in wanted:
            by_module.setdefault(form.module, []).append(form.name)
    root = Path(__file__).resolve().parents[2]
    failed: dict[str, Failure] = {}
    with contextlib.ExitStack() as stack:
        children = {}
        for module, forms in by_module.items():
            environment = MODULES[module]
            command = [environments.python_for(environment), "-m", "tests.corpus.build", str(out), module, *forms]
            log = stack.enter_context(open(out / f"{module}.log", "w"))
            child_env = environments.child_environment(environment)
            children[module] = subprocess.Popen(command, cwd=root, env=child_env, stdout=log, stderr=log)
        deadline = time.monotonic() + BUILD_TIMEOUT_S
        for module, child in children.items():
            status: int | str
            try:
                status = child.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                status = f"killed after {BUILD_TIMEOUT_S} s ({child.wait()})"
            if status != 0:
                failed |= dict.fromkeys(by_module[module], Failure(module, MODULES[module], f"exit {status}"))
    for failure in {id(failure): failure for failure in failed.values()}.values():
        lines = (out / f"{failure.module}.log").read_text().strip().splitlines()
        failure.detail += ": " + " | ".join(lines[-3:])[-600:]
    return failed


def main(argv: list[str]) -> int:
    out, module, *names = argv
    from tests.corpus import FORMS

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is fetched: every model is built from a config
    build_here(Path(out), module, names or [name for name, form in FORMS.items() if form.module == module])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
