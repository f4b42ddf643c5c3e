"""The wheels the GPU run carries (`requirements/gpu-carry.txt`), checked here and installed there.

The GPU machine reaches no registry, so what its image lacks travels as wheels in `.whl/`, inside the
working tree's 64 MiB. Here (the dry run, CI): every listed wheel must be in the wheel directory (missing
ones are fetched with `pip download` for cp312 manylinux x86-64), its file name must carry a tag that
CPython 3.12 on manylinux x86-64 installs, its metadata must name the same project and version, pip itself
must agree that it installs there (`pip install --dry-run --no-index --no-deps` for that platform), every
requirement it has must be in the image or carried too, and the tree plus the wheels must fit the transfer.
There (the run): each is installed into a directory of its own (`--target`) only where the image lacks a
version that pyproject.toml accepts, and what could not be installed is recorded.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CARRY_LIST = ROOT / "requirements" / "gpu-carry.txt"
WHEELS = ROOT / ".whl"
TRANSFER_LIMIT_BYTES = 64 << 20
"""What travels to the device machine in one call: tracked and untracked-not-ignored files plus carried paths
(/work/.library/device/README.md, Limits)."""
PYTHON = (3, 12)
"""The GPU machine's python3 (KINDS.md: Python 3.12.3, /opt/torch/.venv/bin/python3)."""
GLIBC = (2, 39)
"""The GPU machine's C library: `...-x86_64-with-glibc2.39` in results/reference-gpu-h100-20261123/env.json."""
ARCH = "x86_64"
FETCH_TIMEOUT_S = 300

IMAGE_SOURCE = "KINDS.md (the 'cuda' image, read 2026-11-17) and results/reference-gpu-h100-20261123/env.json"
IMAGE_PACKAGES = frozenset(
    """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
    charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
    cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
    flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
    huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
    jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
    llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
    multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
    nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
    nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
    nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
    opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec
    patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
    py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
    pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
    scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools
    shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server
    tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
    torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3
    uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp""".split()
)
"""The Python packages of the GPU machine's image, as KINDS.md lists them."""
IMAGE_VERSIONS = {
    "torch": "2.11.0",
    "numpy": "2.5.2",
    "safetensors": "0.8.0",
    "jax": "0.11.2",
    "jaxlib": "0.11.2",
    "cupy-cuda13x": "14.2.0",
    "transformers": "5.17.0",
    "huggingface-hub": "1.33.0",
    "pytest-benchmark": "5.2.3",
    "pandas": "3.0.6",
    "ml-dtypes": "0.6.0",
    "matplotlib": "3.11.2",
    "h5py": "3.16.0",
}
"""The versions recorded for some of them (KINDS.md's pip list row; the H100 run's env.json)."""


def _packaging():  # the module, imported late: `import bench.gpu` needs nothing beyond the standard library
    try:
        import packaging.requirements
        import packaging.specifiers
        import packaging.tags
        import packaging.utils
        import packaging.version
    except ImportError as error:  # pragma: no cover - both machines have it (core lock; the image)
        raise RuntimeError(f"the wheel checks need the 'packaging' distribution ({error})") from error
    return packaging


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Carried:
    """One line of the carry list: a distribution and the exact version carried."""

    name: str
    version: str

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


def read_carry_list(path: Path = CARRY_LIST) -> list[Carried]:
    """The `name==version` lines of the carry list (comments and blank lines skipped); ValueError on
    anything else, or on a name listed twice (two versions of one package stop the whole install)."""
    carried: list[Carried] = []
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.+!_-]+)", line)
        if not match:
            raise ValueError(f"{path}:{number}: {raw.strip()!r} is not `name==version`")
        entry = Carried(canonical(match.group(1)), match.group(2))
        if any(other.name == entry.name for other in carried):
            raise ValueError(f"{path}:{number}: {entry.name} is listed twice (keep one version of each)")
        carried.append(entry)
    return carried


def platforms() -> list[str]:
    """Every platform tag a manylinux x86-64 machine with GLIBC installs, newest first (pip matches each exactly)."""
    major, minor = GLIBC
    tags = [f"manylinux_{major}_{n}_{ARCH}" for n in range(minor, 16, -1)]
    return [*tags, f"manylinux2014_{ARCH}", f"manylinux2010_{ARCH}", f"manylinux1_{ARCH}"]


def supported_tags() -> set:
    """The wheel tags CPython 3.12 installs on the GPU machine (no plain `linux_x86_64`: not manylinux)."""
    tags = _packaging().tags
    interpreter = f"cp{PYTHON[0]}{PYTHON[1]}"
    found = set(tags.cpython_tags(PYTHON, abis=[interpreter, "abi3", "none"], platforms=platforms()))
    found |= set(tags.compatible_tags(PYTHON, interpreter, platforms=platforms()))
    return found


@dataclass
class WheelCheck:
    carried: Carried
    path: Path | None = None
    size: int = 0
    tags: list[str] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)
    """Its requirements that apply on the GPU machine (markers evaluated, extras dropped)."""
    problems: list[str] = field(default_factory=list)
    fetched: bool = False

    @property
    def ok(self) -> bool:
        return self.path is not None and not self.problems


def find_wheel(directory: Path, carried: Carried) -> Path | None:
    """The wheel of exactly that project and version in `directory`, if there is one."""
    utils = _packaging().utils
    for path in sorted(Path(directory).glob("*.whl")):
        try:
            name, version, _, _ = utils.parse_wheel_filename(path.name)
        except (utils.InvalidWheelFilename, ValueError):
            continue
        if name == carried.name and str(version) == str(_packaging().version.Version(carried.version)):
            return path
    return None


def _target_environment() -> dict[str, str]:
    version = f"{PYTHON[0]}.{PYTHON[1]}"
    return {
        "python_version": version,
        "python_full_version": f"{version}.3",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": ARCH,
        "os_name": "posix",
        "extra": "",
    }


def inspect_wheel(check: WheelCheck) -> None:
    """Fill `check` from its file: size, tags, requirements, and every problem found (none: it installs there)."""
    packaging = _packaging()
    path = check.path
    assert path is not None
    check.size = path.stat().st_size
    try:
        name, version, _, tags = packaging.utils.parse_wheel_filename(path.name)
    except (packaging.utils.InvalidWheelFilename, ValueError) as error:
        check.problems.append(f"{path.name}: not a wheel file name ({error})")
        return
    check.tags = sorted(str(tag) for tag in tags)
    if not set(tags) & supported_tags():
        check.problems.append(
            f"{path.name}: none of its tags ({', '.join(check.tags)}) installs on CPython "
            f"{PYTHON[0]}.{PYTHON[1]}, manylinux {ARCH} (glibc {GLIBC[0]}.{GLIBC[1]})"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
            names = archive.namelist()
            metadata_path = next((n for n in names if n.endswith(".dist-info/METADATA") and n.count("/") == 1), None)
            metadata = archive.read(metadata_path).decode() if metadata_path else ""
    except (zipfile.BadZipFile, OSError, KeyError) as error:
        check.problems.append(f"{path.name}: not a readable wheel ({error})")
        return
    if broken:
        check.problems.append(f"{path.name}: {broken} fails its CRC check (a damaged download)")
    if not metadata:
        check.problems.append(f"{path.name}: no *.dist-info/METADATA inside")
        return
    fields = email.parser.Parser().parsestr(metadata)
    if canonical(fields.get("Name", "")) != name or fields.get("Version", "") != str(version):
        check.problems.append(
            f"{path.name}: its metadata says {fields.get('Name')} {fields.get('Version')}, not {name} {version}"
        )
    environment = _target_environment()
    for line in fields.get_all("Requires-Dist") or []:
        requirement = packaging.requirements.Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            check.requires.append(str(requirement))


def unmet_requirements(checks: list[WheelCheck]) -> list[str]:
    """Requirements of carried wheels that neither the image (IMAGE_SOURCE) nor the carry list provides."""
    packaging = _packaging()
    carried = {check.carried.name: check.carried.version for check in checks}
    problems = []
    for check in checks:
        for text in check.requires:
            requirement = packaging.requirements.Requirement(text)
            name = canonical(requirement.name)
            version = carried.get(name) or IMAGE_VERSIONS.get(name)
            if name not in carried and name not in IMAGE_PACKAGES:
                problems.append(
                    f"{check.carried.pin} needs {text}, which is neither in the image ({IMAGE_SOURCE}) nor in "
                    f"{CARRY_LIST.name}: add its wheel"
                )
            elif version and requirement.specifier and version not in requirement.specifier:
                where = "carried" if name in carried else "in the image"
                problems.append(f"{check.carried.pin} needs {text}, but {name} {version} is {where}")
    return problems


def _pip_says(result: subprocess.CompletedProcess[str]) -> str:
    """pip's reason for failing: its last ERROR line, else its last line on stderr, else on stdout."""
    errors = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    said = [line for line in errors if line.startswith("ERROR")] or errors
    said = said or [line.strip() for line in result.stdout.splitlines() if line.strip()]
    return (said or [f"exit {result.returncode}"])[-1][:400]


def pip_platform_arguments() -> list[str]:
    arguments = ["--python-version", f"{PYTHON[0]}.{PYTHON[1]}", "--implementation", "cp", "--only-binary=:all:"]
    for platform in platforms():
        arguments += ["--platform", platform]
    return arguments


def pip_would_install(paths: list[Path]) -> str:
    """Empty if pip, asked as for the GPU machine, would install every wheel; else pip's last words."""
    if not paths:
        return ""
    with tempfile.TemporaryDirectory(prefix="serbench-gpu-pip-") as target:
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-deps"]
        command += [*pip_platform_arguments(), "--target", target, *map(str, paths)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"pip could not be asked ({error})"
    return "" if result.returncode == 0 else _pip_says(result)


def fetch(carried: Carried, directory: Path) -> str:
    """`pip download` the wheel for the GPU machine into `directory`; empty on success, else why not."""
    directory.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", *pip_platform_arguments()]
    command += ["-d", str(directory), carried.pin]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"pip download {carried.pin} did not run ({error})"
    return f"pip download {carried.pin} failed: {_pip_says(result)}" if result.returncode != 0 else ""


def tree_bytes(root: Path = ROOT) -> tuple[int | None, str]:
    """Bytes of what a device call sends besides carried paths: tracked and untracked-not-ignored files."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        return None, f"git could not list the tree ({error})"
    total = 0
    for name in {item for item in listed.decode(errors="surrogateescape").split("\0") if item}:
        path = root / name
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total, "tracked and untracked-not-ignored files (git ls-files)"


@dataclass
class CarryReport:
    checks: list[WheelCheck]
    problems: list[str]
    wheels_bytes: int
    """Every file in the wheel directory: `carry` sends the whole folder."""
    extra: list[str]
    """Wheels in the directory that the list does not name (they travel, but are not installed)."""
    tree_bytes: int | None
    tree_note: str

    @property
    def ok(self) -> bool:
        return not self.problems


def check_carry(
    directory: Path = WHEELS, carry_list: Path = CARRY_LIST, fetch_missing: bool = True, root: Path = ROOT
) -> CarryReport:
    """Every check of the module docstring; missing wheels are fetched first when `fetch_missing`."""
    problems: list[str] = []
    try:
        carried = read_carry_list(carry_list)
    except (OSError, ValueError) as error:
        return CarryReport([], [str(error)], 0, [], None, "")
    checks = []
    for entry in carried:
        check = WheelCheck(entry, find_wheel(directory, entry))
        if check.path is None and fetch_missing:
            why = fetch(entry, directory)
            check.path = find_wheel(directory, entry)
            check.fetched = check.path is not None
            if check.path is None:
                check.problems.append(why or f"pip download {entry.pin} wrote no wheel of that name into {directory}")
        elif check.path is None:
            check.problems.append(
                f"{entry.pin}: no wheel in {directory} (fetch it: make gpu-dry-run, or "
                f"pip download --no-deps {' '.join(pip_platform_arguments())} -d {directory} {entry.pin})"
            )
        if check.path is not None:
            inspect_wheel(check)
        checks.append(check)
    problems += [problem for check in checks for problem in check.problems]
    problems += unmet_requirements([check for check in checks if check.path is not None])
    installable = [check.path for check in checks if check.path is not None and not check.problems]
    refused = pip_would_install(installable)
    if refused:
        problems.append(f"pip would not install the carried wheels for CPython 3.12 manylinux {ARCH}: {refused}")
    listed = {check.path for check in checks if check.path is not None}
    present = sorted(Path(directory).glob("*")) if Path(directory).is_dir() else []
    extra = [path.name for path in present if path.suffix == ".whl" and path not in listed]
    wheels_bytes = sum(path.stat().st_size for path in present if path.is_file())
    tree, note = tree_bytes(root)
    if tree is None:
        problems.append(f"the transfer size could not be measured: {note}")
    elif tree + wheels_bytes > TRANSFER_LIMIT_BYTES:
        problems.append(
            f"the tree ({tree / 2**20:.1f} MiB) and {directory.name}/ ({wheels_bytes / 2**20:.1f} MiB) exceed the "
            f"{TRANSFER_LIMIT_BYTES >> 20} MiB a device call carries"
        )
    return CarryReport(checks, problems, wheels_bytes, extra, tree, note)


# ---- on the GPU machine ----------------------------------------------------------------------------------


def pyproject_specifiers(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """Every distribution serbench declares (dependencies and extras), by canonical name -> version specifier."""
    import tomllib

    packaging = _packaging()
    project = tomllib.loads(pyproject.read_text())["project"]
    declared = list(project.get("dependencies", []))
    for group in project.get("optional-dependencies", {}).values():
        declared += group
    specifiers: dict[str, str] = {}
    for text in declared:
        requirement = packaging.requirements.Requirement(text)
        specifiers.setdefault(canonical(requirement.name), str(requirement.specifier))
    return specifiers


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def satisfied(name: str, specifier: str) -> tuple[bool, str]:
    """Whether this interpreter has `name` in a version `specifier` accepts, and what it has."""
    version = installed_version(name)
    if version is None:
        return False, "not installed"
    accepted = not specifier or version in _packaging().specifiers.SpecifierSet(specifier)
    return accepted, version


def to_install(checks: list[WheelCheck], specifiers: dict[str, str]) -> dict[str, str]:
    """Carried distribution -> why it is installed: serbench needs it and the image's does not do (missing, or
    outside pyproject's range), or a wheel installed for that reason needs it and the image lacks it."""
    packaging = _packaging()
    reasons: dict[str, str] = {}
    for check in checks:
        name = check.carried.name
        if name in specifiers:
            accepted, found = satisfied(name, specifiers[name])
            if not accepted:
                reasons[name] = f"needed ({name}{specifiers[name]}); here: {found}"
    carried = {check.carried.name: check for check in checks}
    queue = list(reasons)
    while queue:
        for text in carried[queue.pop()].requires:
            requirement = packaging.requirements.Requirement(text)
            name = canonical(requirement.name)
            if name in carried and name not in reasons:
                accepted, found = satisfied(name, str(requirement.specifier))
                if not accepted:
                    reasons[name] = f"required by an installed wheel ({text}); here: {found}"
                    queue.append(name)
    return reasons


def install(paths: list[Path], site: Path) -> dict[Path, str]:
    """pip install the wheels into `site` (no index, no dependencies); path -> "" or why it failed. One call for
    all; if that fails, one call each, so the failure is pinned on the wheel that caused it."""
    site.mkdir(parents=True, exist_ok=True)

    def pip(chosen: list[Path]) -> str:
        command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
        command += ["--no-cache-dir", "--upgrade", "--target", str(site), *map(str, chosen)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"pip did not run ({error})"
        return "" if result.returncode == 0 else _pip_says(result)

    if not paths:
        return {}
    if not pip(paths):
        return dict.fromkeys(paths, "")
    return {path: pip([path]) for path in paths}


def activate(site: Path) -> None:
    """Make `site` visible to this process and every child: first on sys.path and PYTHONPATH, with the
    repository (children run `python3 -m bench...` from anywhere)."""
    entries = [str(site), str(ROOT)]
    for entry in reversed(entries):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    existing = [item for item in os.environ.get("PYTHONPATH", "").split(os.pathsep) if item and item not in entries]
    os.environ["PYTHONPATH"] = os.pathsep.join(entries + existing)
    importlib.invalidate_caches()
