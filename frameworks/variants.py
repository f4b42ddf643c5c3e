"""Version variants of an environment, for `serbench versions`: the environment with one package at
another release, everything else exactly as its lock file pins it.

A variant is a small virtualenv layered on its environment's. Its own site-packages holds the release
under test (and whatever pip had to change to install it, recorded); a `.pth` line adds the
environment's site-packages after it, so every other package is the environment's own, as locked.
Python puts a virtualenv's site-packages before the paths its `.pth` files add, so the variant's
release is the one imported; `build` checks that it is, from the variant's own interpreter.

Variants are built once and cached under `.venv-versions/` next to the environments, keyed by the
environment's fingerprint: rebuilding the environment rebuilds its variants. Only wheels are installed
(`--only-binary`): a release that would compile here, or that does not exist for this Python, or that
conflicts with the lock, raises `NotInstallable` with pip's reason. The locked release itself needs no
variant: it is the environment.

Standard library only, like `frameworks.environments`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from frameworks import environments, files

DIRECTORY = ".venv-versions"
DIRECTORY_VARIABLE = "SERBENCH_VARIANTS_DIR"
"""Where the variants are built instead of `.venv-versions/` in the checkout (`serbench versions --variants-dir`)."""
BUILD_TIMEOUT_S = 1200
CHECK_TIMEOUT_S = 120
VERSION = re.compile(
    r"(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)*(?:(?:a|b|rc)[0-9]+)?(?:\.post[0-9]+)?(?:\.dev[0-9]+)?(?:\+[a-z0-9]+(?:\.[a-z0-9]+)*)?",
    re.IGNORECASE,
)
"""A release as PEP 440 writes it in normalized form (`2.13.0`, `0.8.0rc1`, `1.0.post1`, `2.13.0+cpu`): the only
strings that become a variant's directory name, so `x/../../victim` can never name a path."""
PACKAGE = re.compile(r"[A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9]", re.IGNORECASE)
"""A distribution name as PEP 508 allows it."""


def check_release(package: str, version: str) -> None:
    """ValueError unless `package` is a distribution name and `version` a normalized PEP 440 release."""
    if not PACKAGE.fullmatch(package):
        raise ValueError(f"{package!r} is not a package name (letters, digits, '.', '-', '_')")
    if not VERSION.fullmatch(version):
        raise ValueError(f"{version!r} is not a release version as PEP 440 writes it (for example 0.8.0 or 2.1.0rc1)")


class NotInstallable(Exception):
    """This release cannot be installed in this environment here; the message says why, in one line."""


def variants_root() -> Path:
    """The directory of every variant: $SERBENCH_VARIANTS_DIR (absolute), else `.venv-versions` in the checkout."""
    named = os.environ.get(DIRECTORY_VARIABLE)
    return Path(named).absolute() if named else environments.root() / DIRECTORY


@dataclass(frozen=True)
class Variant:
    environment: str
    package: str
    version: str

    def __post_init__(self) -> None:
        check_release(self.package, self.version)

    @property
    def label(self) -> str:
        return f"{environments.normalize(self.package)}-{self.version}"

    @property
    def base(self) -> environments.Environment:
        return environments.ENVIRONMENTS[self.environment]

    @property
    def locked(self) -> bool:
        """Whether this is the release the environment's lock pins (then the variant is the environment)."""
        return self.base.pins().get(environments.normalize(self.package)) == self.version

    @property
    def directory(self) -> Path:
        return variants_root() / f"{self.environment}-{self.label}"

    @property
    def python(self) -> Path:
        return self.directory / "bin" / "python"

    @property
    def stamp(self) -> Path:
        return self.directory / ".installed.json"

    def key(self) -> str:
        return f"{self.base.fingerprint()} {environments.normalize(self.package)}=={self.version}"

    def build(self) -> dict[str, object]:
        """The variant's record (interpreter, what it replaces, pip's complaints), building it if its cache
        is missing or stale; NotInstallable if pip cannot install the release here."""
        if not self.base.python.exists():
            raise NotInstallable(f"the {self.environment} environment is not built (make setup builds it)")
        if self.locked:
            return self._record(str(self.base.python), replaced=[], conflicts=[])
        if files.is_marked(self.directory) and self.stamp.is_file() and self.python.exists():
            cached = _read_stamp(self.stamp)
            if cached.get("key") == self.key() and self._is_own_record(cached.get("record")):
                return cached["record"]
        files.remove_marked(self.directory, "a version variant")
        try:
            record = self._build()
        except BaseException:
            if files.is_marked(self.directory):
                files.remove_marked(self.directory, "a version variant whose build failed")
            raise
        files.write_bytes_atomic(self.stamp, json.dumps({"key": self.key(), "record": record}, indent=1).encode())
        return record

    def _build(self) -> dict[str, object]:
        base_python = str(self.base.python)
        files.own_directory(self.directory.parent)
        if self.directory.parent not in self.directory.parents or self.directory.exists():
            raise NotInstallable(f"{self.directory} is not a new directory under {self.directory.parent}")
        self.directory.mkdir()
        files.mark(self.directory)  # from here on, this directory is serbench's to remove
        _checked([base_python, "-m", "venv", "--without-pip", str(self.directory)], "create the virtualenv")
        own = Path(_checked([str(self.python), "-c", _PURELIB], "find its site-packages").strip())
        base = _checked([base_python, "-c", _PURELIB], "find the environment's site-packages").strip()
        # processed after the variant's own packages are on sys.path; addsitedir also runs the
        # environment's .pth files (serbench's editable install is one)
        (own / "_serbench_environment.pth").write_text(f"import site; site.addsitedir({base!r})\n")
        constraints = self.directory / "constraints.txt"
        unpinned = environments.normalize(self.package)
        constraints.write_text(
            "".join(f"{name}=={version}\n" for name, version in self.base.pins().items() if name != unpinned)
        )
        install = [
            str(self.python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "-c",
            str(constraints),
            f"{self.package}=={self.version}",
        ]
        try:
            result = subprocess.run(install, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise NotInstallable(f"pip did not finish within {BUILD_TIMEOUT_S} s") from None
        if result.returncode != 0:
            raise NotInstallable(f"pip cannot install it here: {_pip_reason(result.stderr)}")
        found = json.loads(_checked([str(self.python), "-c", _WHICH, self.package], "import it"))
        if found["version"] != self.version or Path(found["location"]).resolve() != own.resolve():
            raise NotInstallable(
                f"installed, but the variant's interpreter finds {self.package} {found['version']} at "
                f"{found['location']}, not {self.version} in {own}"
            )
        replaced = _checked(
            [str(self.python), "-m", "pip", "freeze", "--disable-pip-version-check", "--path", str(own)],
            "list what it replaced",
        ).split()
        check = subprocess.run(
            [str(self.python), "-m", "pip", "check", "--disable-pip-version-check"],
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_S,
            check=False,
        )
        conflicts = [line for line in check.stdout.splitlines() if line and "No broken requirements" not in line]
        return self._record(str(self.python), replaced=replaced, conflicts=conflicts)

    def _is_own_record(self, record: object) -> bool:
        """Whether a cached stamp's record is this variant's: the stamp is a cache, not an instruction, so every
        field that says where and what the variant is (its label names the run directory of its release) must be
        the variant's own, and the rest lists of strings (a forged label sent a run's files outside --out)."""
        from frameworks import stored

        own = self._record(str(self.python), replaced=[], conflicts=[])
        if not isinstance(record, dict) or set(record) != set(own):
            return False
        try:
            stored.check(record["replaced"], stored.ListOf(str), str(self.stamp), "variant stamp")
            stored.check(record["conflicts"], stored.ListOf(str), str(self.stamp), "variant stamp")
        except stored.StoredFileError:
            return False
        return all(record[name] == own[name] for name in own if name not in ("replaced", "conflicts"))

    def _record(self, interpreter: str, replaced: list[str], conflicts: list[str]) -> dict[str, object]:
        return {
            "label": self.label,
            "environment": self.environment,
            "package": self.package,
            "version": self.version,
            "locked": self.locked,
            "interpreter": interpreter,
            "replaced": replaced or [f"nothing: {self.package} {self.version} is what {self.base.lock} pins"],
            "conflicts": conflicts,
        }


def _read_stamp(path: Path) -> dict:
    """A variant's cache stamp ({} if it is not one: the variant is then rebuilt)."""
    from frameworks import stored

    try:
        return stored.read_json(path, what="variant stamp", cap=1 << 20)
    except stored.StoredFileError:
        return {}


_PURELIB = "import sysconfig; print(sysconfig.get_path('purelib'))"
_WHICH = (
    "import importlib.metadata as m, json, sys; d = m.distribution(sys.argv[1]); "
    "print(json.dumps({'version': d.version, 'location': str(d.locate_file(''))}))"
)


def _checked(command: list[str], what: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S, check=False)
    if result.returncode != 0:
        raise NotInstallable(f"could not {what}: {_pip_reason(result.stderr)}")
    return result.stdout


def _pip_reason(stderr: str) -> str:
    """pip's error in one line: its first `ERROR:` line that is not about yanked releases, else the last
    line it printed; a long list of the releases it saw is cut short."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("WARNING")]
    errors = [line for line in lines if line.startswith("ERROR:") and not line.startswith("ERROR: Ignored")]
    reason = (errors or lines[-1:] or ["no output"])[0].removeprefix("ERROR: ")
    before, listed, releases = reason.partition("(from versions: ")
    if listed and len(releases) > 80:
        reason = f"{before}(from versions: {releases[:80].rsplit(',', 1)[0]}, ...)"
    return reason[:300]
