"""The Python environments serbench runs in, as data. Each framework runs in the one its adapter names
(`Adapter.environment`); each environment is a virtualenv built from its own lock file.

- `core` (`.venv`): numpy 2, torch, TensorFlow and Keras, JAX with Flax and Orbax, safetensors, and the
  harness. The `serbench` command and the test suite run here.
- `mxnet` (`.venv-mxnet`): MXNet 1.9.1, the last release (the project is retired); it does not
  import on numpy 2, so this environment keeps numpy 1.26. It holds the harness too, so a benchmark
  process, a safety load or a test of MXNet runs entirely inside it.
- `corpus` (`.venv-corpus`): the libraries whose own save functions write the test corpus of real
  checkpoints (`tests/corpus`): transformers, accelerate, peft, huggingface_hub. It is layered on
  core (`base`): a small virtualenv whose own site-packages holds only these and what they add, with
  a `.pth` line that puts core's site-packages after it, as `frameworks.variants` does. So its torch
  is core's CPU build, never a second copy (a torch pip picked for these libraries would be a
  multi-GB CUDA build), and it is installed with core's lock as constraints too: pip cannot change
  a core package. Its lock pins what the layer adds; rebuilding core rebuilds it.

Why each pin exists is written next to it in pyproject.toml and at the top of each lock file.

Run as a script with the standard library alone, so a fresh machine needs nothing but Python 3:

    python3 frameworks/environments.py setup            # build or update every environment
    python3 frameworks/environments.py lock             # re-pin every environment's lock file
    python3 frameworks/environments.py test [ARGS...]   # pytest in every environment, each on its frameworks

`test` runs pytest once per environment with SERBENCH_ENVIRONMENT set to it (the suite's conftest
then runs the tests of that environment's frameworks, and the tests of no framework in `core`), and
fails if any run failed.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOME = "core"
"""Where the command line, the reports and the tests of no particular framework run."""
VARIABLE = "SERBENCH_ENVIRONMENT"
AT_VARIABLE = "SERBENCH_ENVIRONMENTS_AT"
"""The checkout whose environments to use, when the code runs from another (a `git worktree` that
`serbench compare` re-times an older commit in has none of its own)."""


def normalize(package: str) -> str:
    """A package name as pip compares them (PEP 503): `ml_dtypes` and `ML-Dtypes` are `ml-dtypes`."""
    return re.sub(r"[-_.]+", "-", package).lower()


def root() -> Path:
    return Path(os.environ.get(AT_VARIABLE) or ROOT)


@dataclass(frozen=True)
class Environment:
    name: str
    directory: str
    """The virtualenv, relative to the repository."""
    lock: str
    """Exact versions (`pip -c`), relative to the repository; its header says why each pin exists."""
    extras: str
    """serbench's optional dependencies installed here (pyproject.toml)."""
    base: str | None = None
    """The environment whose site-packages this one is layered on (see the module docstring), or None."""

    @property
    def python(self) -> Path:
        return root() / self.directory / "bin" / "python"

    @property
    def stamp(self) -> Path:
        return root() / self.directory / ".installed"

    @property
    def constraints(self) -> list[str]:
        """The lock files installed with (`pip -c`): a layered environment's base's too, then its own."""
        return [*(ENVIRONMENTS[self.base].constraints if self.base else []), self.lock]

    def pins(self) -> dict[str, str]:
        """The lock's `name==version` lines, by normalized package name (a layered environment's: its layer's)."""
        pins = {}
        for line in (ROOT / self.lock).read_text().splitlines():
            name, found, version = line.split("#")[0].strip().partition("==")
            if found:
                pins[normalize(name)] = version.strip()
        return pins

    def fingerprint(self) -> str:
        """What the environment was built from: pyproject.toml and the lock files (a base's too)."""
        digest = hashlib.sha256()
        for name in ("pyproject.toml", *self.constraints):
            digest.update((ROOT / name).read_bytes())
        return digest.hexdigest()


ENVIRONMENTS = {
    "core": Environment("core", ".venv", "requirements/core.lock.txt", "torch,tensorflow,jax,dev"),
    "mxnet": Environment("mxnet", ".venv-mxnet", "requirements/mxnet.lock.txt", "mxnet,dev"),
    "corpus": Environment("corpus", ".venv-corpus", "requirements/corpus.lock.txt", "corpus", base="core"),
}


def current() -> str | None:
    """The environment this interpreter belongs to: SERBENCH_ENVIRONMENT, else the one whose
    virtualenv holds it, else None (a machine without serbench's environments, e.g. the GPU one)."""
    named = os.environ.get(VARIABLE)
    if named in ENVIRONMENTS:
        return named
    prefix = Path(sys.prefix).resolve()
    for environment in ENVIRONMENTS.values():
        if prefix == (root() / environment.directory).resolve():
            return environment.name
    return None


def interpreter_variable(environment: str) -> str:
    """Names the interpreter that replaces `environment`'s own (a version variant's, `frameworks.variants`);
    set in os.environ, so every child and grandchild of the run uses it too."""
    return f"SERBENCH_PYTHON_{environment.upper()}"


@contextmanager
def interpreter(environment: str, python: str | None) -> Iterator[None]:
    """Within the block, `environment`'s work runs with `python` (None: its own interpreter)."""
    name = interpreter_variable(environment)
    before = os.environ.get(name)
    if python is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = str(python)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _replacement(environment: str) -> str | None:
    return os.environ.get(interpreter_variable(environment)) or None


def python_for(environment: str) -> str:
    """The interpreter to run `environment`'s work with: the one that replaces it (`interpreter`), else
    its virtualenv's where it exists and is not this one, else this interpreter (which then says what it
    cannot import)."""
    if replacement := _replacement(environment):
        return replacement
    if runs_here(environment):
        return sys.executable
    python = ENVIRONMENTS[environment].python
    return str(python) if python.exists() else sys.executable


def child_environment(environment: str) -> dict[str, str]:
    """os.environ for a child that runs in `environment` (and finds the others where this one does)."""
    return {**os.environ, VARIABLE: environment, AT_VARIABLE: str(root())}


def run(
    environment: str, arguments: list[str], timeout_s: float, *, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """`python ARGUMENTS` with `environment`'s interpreter and variables; its output captured as text."""
    return subprocess.run(
        [python_for(environment), *arguments],
        env=child_environment(environment),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=check,
    )


def runs_here(environment: str) -> bool:
    """Whether `environment`'s frameworks run in this interpreter (not where another replaces it: the
    paths are compared unresolved, since every virtualenv's python links to the same executable)."""
    replacement = _replacement(environment)
    if replacement is not None:
        return os.path.abspath(replacement) == os.path.abspath(sys.executable)
    here = current()
    return here == environment or here is None


# ---- building (standard library only) -----------------------------------------------------------


def _run(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)


_PURELIB = "import sysconfig; print(sysconfig.get_path('purelib'))"


def _purelib(python: Path) -> str:
    return subprocess.run([str(python), "-c", _PURELIB], capture_output=True, text=True, check=True).stdout.strip()


def _layer(environment: Environment) -> None:
    """Create a layered environment: a virtualenv without pip whose `.pth` adds its base's site-packages
    (and runs the base's `.pth` files: serbench's editable install, pip) after its own."""
    base = ENVIRONMENTS[environment.base].python
    _run([str(base), "-m", "venv", "--without-pip", str(ROOT / environment.directory)])
    own = Path(_purelib(environment.python))
    (own / "_serbench_base.pth").write_text(f"import site; site.addsitedir({_purelib(base)!r})\n")


def setup(names: list[str]) -> None:
    for name in names:
        environment = ENVIRONMENTS[name]
        if environment.base and environment.base not in names:
            setup([environment.base])
        fingerprint = environment.fingerprint()
        if environment.stamp.exists() and environment.stamp.read_text() == fingerprint:
            environment.stamp.touch()  # newer than what make compares it with
            continue
        if not environment.python.exists():
            if environment.base:
                _layer(environment)
            else:
                _run([sys.executable, "-m", "venv", str(ROOT / environment.directory)])
        python = str(environment.python)
        if not environment.base:  # a layered environment runs its base's pip
            _run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        constraints = [flag for lock in environment.constraints for flag in ("-c", lock)]
        _run([python, "-m", "pip", "install", "--quiet", *constraints, "-e", f".[{environment.extras}]"])
        environment.stamp.write_text(fingerprint)


def lock(names: list[str]) -> None:
    for name in names:
        environment = ENVIRONMENTS[name]
        path = ROOT / environment.lock
        header = [line for line in path.read_text().splitlines() if line.startswith("#")] if path.exists() else []
        own = ["--path", _purelib(environment.python)] if environment.base else []  # the layer's packages
        frozen = subprocess.run(
            [str(environment.python), "-m", "pip", "freeze", "--exclude-editable", *own],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        pins = [line.replace("+cpu", "") for line in frozen.splitlines() if line and not line.startswith("-e ")]
        path.write_text("\n".join([*header, *pins]) + "\n")
        environment.stamp.write_text(environment.fingerprint())


def test(arguments: list[str]) -> int:
    """pytest in every environment (its frameworks' tests); non-zero if any failed."""
    failed = []
    for environment in ENVIRONMENTS.values():
        print(f"== tests in the {environment.name} environment ({environment.directory})", flush=True)
        command = [str(environment.python), "-m", "pytest", *arguments]
        result = subprocess.run(command, cwd=ROOT, env=child_environment(environment.name), check=False)
        if result.returncode != 0:
            failed.append(f"{environment.name} (exit {result.returncode})")
    if failed:
        print(f"serbench: tests FAILED in: {', '.join(failed)}", flush=True)
        return 1
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("setup", "lock", "test"):
        print(f"usage: {Path(__file__).name} setup|lock [ENVIRONMENT...] | test [PYTEST ARGS...]", file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "test":
        return test(rest)
    unknown = [name for name in rest if name not in ENVIRONMENTS]
    if unknown:
        print(f"unknown environment {unknown[0]!r}; valid: {', '.join(ENVIRONMENTS)}", file=sys.stderr)
        return 2
    (setup if command == "setup" else lock)(rest or list(ENVIRONMENTS))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
