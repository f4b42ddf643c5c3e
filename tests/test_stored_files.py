"""Every file serbench reads that is not a tensor (a stored run, a job or request file, an index, a manifest, a
file an environment variable names) is a regular file checked before it is opened, within its cap, of its
schema: hostile ones give one line and exit 2, never a hang, a traceback or a memory blow-up.

The commands come from the parser (a new command must say here what it reads), the hostile forms from
HOSTILE, the stored files from what each command reads."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench import cli
from tests.run_fixture import make_run

SECONDS = 60


@contextlib.contextmanager
def deadline(seconds: int = SECONDS) -> Iterator[None]:
    """Fail (instead of hanging the suite) when the block blocks, on a FIFO say, for `seconds`."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"blocked for over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def link_to_a_device(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/zero")  # endless: only the regular-file check stops a read


def huge(path: Path) -> None:
    with open(path, "wb") as handle:
        handle.truncate(300 << 20)  # sparse: 300 MiB that cost nothing to make, and would fill memory to read


def deep(path: Path) -> None:
    path.write_text("[" * 200_000 + "]" * 200_000 if path.suffix == ".json" else "x\n" + '"' * 100_000)


def wrong_types(path: Path) -> None:
    if path.suffix == ".json":
        path.write_text(json.dumps({"cores_logical": "two", "ram_bytes": -1, "machine": {"busy": "no"}}))
    else:
        text = path.read_text().splitlines()
        header = text[0].split(",")
        row = text[1].split(",")
        row[header.index("median_s")] = "fast"
        path.write_text("\n".join([text[0], ",".join(row), *text[2:]]) + "\n")


def not_a_number(path: Path) -> None:
    if path.suffix == ".json":
        path.write_text('{"date": NaN}')
    else:
        text = path.read_text().splitlines()
        header = text[0].split(",")
        row = text[1].split(",")
        row[header.index("median_s")] = "-0.5"
        path.write_text("\n".join([text[0], ",".join(row), *text[2:]]) + "\n")


HOSTILE: dict[str, Callable[[Path], None]] = {
    "fifo": fifo,
    "link-to-device": link_to_a_device,
    "huge": huge,
    "deep": deep,
    "wrong-types": wrong_types,
    "nan-or-negative": not_a_number,
}

STORED = ("env.json", "limits.json", "results.csv")
"""The files of a run directory every reading command reads."""


def _run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path / "results" / "run-a")


READERS: dict[str, tuple[Callable[[Path], list[str]], tuple[str, ...]]] = {
    "report": (lambda run: ["report", str(run)], STORED),
    "compare": (lambda run: ["compare", str(run), str(run), "--no-confirm"], ("env.json", "results.csv")),
    "index": (lambda run: ["index", str(run.parent)], ("env.json",)),
}
"""Commands that read stored runs: how to point each at one, and which of its files it reads."""
NOT_READING_RUNS = {
    "support-table": "reads the registry only",
    "recipes": "runs the recipes; reads nothing stored",
    "roundtrip": "runs the round trips; reads nothing stored",
    "run": "writes a run (its --resume is checked in tests/test_written_files.py)",
    "bench": "reads checkpoints (tests/test_checkpoint_inputs.py)",
    "versions": "writes a versions run",
    "safety": "writes a safety run",
    "safety-table": "reads a safety.csv (test below)",
}


def test_every_command_says_what_stored_files_it_reads() -> None:
    parser = cli.build_parser()
    commands = set(next(a for a in parser._actions if a.dest == "command").choices)
    assert commands == set(READERS) | set(NOT_READING_RUNS), "a new command must say here what stored files it reads"


def _exit_and_stderr(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with deadline():
        status = cli.main(argv)
    return status, capsys.readouterr().err


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("file", STORED)
@pytest.mark.parametrize("command", READERS)
def test_a_hostile_stored_file_is_one_line_and_exit_2(
    command: str, file: str, hostile: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run_dir(tmp_path)
    argv, reads = READERS[command]
    if file not in reads:
        pytest.skip(f"{command} does not read {file}")
    HOSTILE[hostile](run / file)
    status, err = _exit_and_stderr(argv(run), capsys)
    lines = err.strip().splitlines()
    assert status == cli.EXIT_USAGE, err
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    assert file in lines[0] or run.name in lines[0], lines[0]


@pytest.mark.parametrize("hostile", ["fifo", "link-to-device", "huge", "deep"])
def test_a_hostile_safety_csv_is_one_line_and_exit_2(
    hostile: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "safety.csv"
    source.write_text("framework,format,mode,input,group,outcome,detail\n")
    HOSTILE[hostile](source)
    status, err = _exit_and_stderr(["safety-table", "--source", str(source)], capsys)
    assert status == cli.EXIT_USAGE, err
    assert len(err.strip().splitlines()) == 1, err


def test_env_json_of_256_mib_is_refused_without_reading_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The memory blow-up of the attack pass: a 256 MiB env.json took report's RSS to 1.4 GB."""
    run = _run_dir(tmp_path)
    (run / "env.json").write_bytes(b'{"date": "' + b"x" * (256 << 20) + b'"}')
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    status, err = _exit_and_stderr(["report", str(run)], capsys)
    assert status == cli.EXIT_USAGE
    assert "over the" in err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 128 << 10  # KiB: far below 256 MiB


@pytest.mark.parametrize("median", ["nan", "0", "-0.04", "inf", "1e308"])
def test_compare_refuses_a_median_that_is_not_a_time(
    median: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """NaN medians counted as 'same', zero or negative ones as 'faster'."""
    base, new = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    lines = (new / "results.csv").read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[1].split(",")
    cells[header.index("median_s")] = median
    (new / "results.csv").write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    status, err = _exit_and_stderr(["compare", str(base), str(new), "--no-confirm"], capsys)
    assert status == cli.EXIT_USAGE, err
    assert "median_s" in err, err


def test_compare_refuses_rounds_no_timing_gives_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rounds of 1e308 s printed three overflow warnings from the comparison's arithmetic before the refusal."""
    import pandas as pd

    base, new = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    frame = pd.read_csv(new / "results.csv")
    timed = frame.index[frame["status"] == "ok"][0]
    frame["rounds_s"] = frame["rounds_s"].astype(object)
    frame.loc[timed, "rounds_s"] = json.dumps([1e308, 1e308, 1e308])
    frame.to_csv(new / "results.csv", index=False)
    status, err = _exit_and_stderr(["compare", str(base), str(new), "--no-confirm"], capsys)
    assert status == cli.EXIT_USAGE, err
    assert "rounds_s" in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_a_versions_label_that_leaves_the_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A versions.json label of `../x` made report write outside DIR."""
    out = tmp_path / "versions-run"
    out.mkdir()
    outside = make_run(tmp_path / "x")
    before = sorted(p.name for p in outside.iterdir())
    release = {"package": "safetensors", "locked": True, "replaced": [], "conflicts": []}
    record = {
        "package": "safetensors",
        "environment": "core",
        "frameworks": ["numpy"],
        "preset": "quick",
        "date": "2026-12-01T00:00:00+00:00",
        "order": "alternating",
        "versions": [{**release, "label": "../x", "version": "0.7.0"}, {**release, "label": "y", "version": "0.8.0"}],
    }
    (out / "versions.json").write_text(json.dumps(record))
    status, err = _exit_and_stderr(["report", str(out)], capsys)
    assert status == cli.EXIT_USAGE, err
    assert "../x" in err, err
    assert sorted(p.name for p in outside.iterdir()) == before  # no report.md, tables or plots written there


def test_the_stored_reader_refuses_a_fifo_before_opening_it(tmp_path: Path) -> None:
    from frameworks import stored

    path = tmp_path / "pipe.json"
    os.mkfifo(path)
    with deadline(10), pytest.raises(stored.StoredFileError, match="FIFO"):
        stored.read_json(path, what="test file")


SCHEMA_CASES = [
    ("false", "bool", "found str"),
    (1, "bool", "int"),
    (True, "int", "bool"),
    (1.5, "int", "float"),
    (-1, "COUNT", "at least 0"),
    (0, "POSITIVE", "above 0"),
    ({"a": 1}, "Object(required={'a': int, 'b': str})", "missing 'b'"),
    ({"a": 1, "c": 2}, "Object(required={'a': int})", "unknown key 'c'"),
    (["x", 2], "ListOf(str)", "[1]"),
]


@pytest.mark.parametrize(("value", "schema_text", "found"), SCHEMA_CASES)
def test_schemas_have_exact_types(value: object, schema_text: str, found: str) -> None:
    from frameworks import stored

    schema = eval(schema_text, {**vars(stored), "int": int, "str": str, "bool": bool})
    with pytest.raises(stored.StoredFileError, match=found.replace("[", r"\[").replace("]", r"\]")):
        stored.check(value, schema, "test.json", "test file")


# -- job and request files ---------------------------------------------------------------------------------------


def _remote_request(tmp_path: Path) -> dict[str, object]:
    import numpy as np

    values = tmp_path / "values.npz"
    np.savez(values, w=np.ones(3, dtype=np.float32))
    return {"framework": "numpy", "operation": "load", "trusted": False, "path": str(values), "format": "npz",
            "out": str(tmp_path / "out.npz")}  # fmt: skip


def _distributed_job(tmp_path: Path) -> dict[str, object]:
    return {"framework": "torch", "op": "load", "source": [], "directory": str(tmp_path / "ckpt"), "device": "cpu",
            "trusted": False}  # fmt: skip


def _scale_job(tmp_path: Path) -> dict[str, object]:
    return {"framework": "torch", "loader": "safetensors load_file", "device": "cpu", "rounds": 1, "manifests": []}


JOB_FILES: dict[str, tuple[list[str], Callable[[Path], dict[str, object]], str]] = {
    "remote request": (["-m", "frameworks.remote"], _remote_request, "trusted"),
    "distributed job": (["-m", "frameworks.distributed"], _distributed_job, "trusted"),
    "scale job": (["-m", "bench.scale.child"], _scale_job, "device"),
}
"""Every JSON file one serbench process hands another: its entry point, a valid document, a typed field."""
WRONG = {
    "a string for a boolean or number": "false",
    "an integer for a boolean": 1,
    "null": None,
    "a list": [],
}


def _child(arguments: list[str], document: object, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    job = tmp_path / "job.json"
    job.write_text(json.dumps(document))
    return subprocess.run(
        [sys.executable, *arguments, str(job)], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("wrong", WRONG)
@pytest.mark.parametrize("kind", JOB_FILES)
def test_a_job_file_with_a_wrong_type_is_refused_before_anything_runs(kind: str, wrong: str, tmp_path: Path) -> None:
    arguments, valid, field = JOB_FILES[kind]
    document = {**valid(tmp_path), field: WRONG[wrong]}
    result = _child(arguments, document, tmp_path)
    text = result.stdout + result.stderr
    assert field in text, text
    assert "Traceback" not in text, text
    assert result.returncode == 2 or '"ok": false' in result.stdout, text


@pytest.mark.parametrize("kind", JOB_FILES)
def test_a_job_file_that_is_a_fifo_is_refused_not_waited_for(kind: str, tmp_path: Path) -> None:
    arguments, _, _ = JOB_FILES[kind]
    job = tmp_path / "job.json"
    os.mkfifo(job)
    result = subprocess.run(
        [sys.executable, *arguments, str(job)], capture_output=True, text=True, timeout=60, check=False
    )
    assert "FIFO" in result.stdout + result.stderr


def _names_a_missing_file(kind: str, tmp_path: Path) -> tuple[dict[str, object], dict[str, str]]:
    """A valid job of `kind` whose files are missing, and the environment its entry point needs."""
    missing = tmp_path / "gone"
    if kind == "remote request":
        return {**_remote_request(tmp_path), "path": str(missing)}, {}
    if kind == "distributed job":
        ranks = {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"}
        return {**_distributed_job(tmp_path), "source": [str(missing)], "trusted": True}, ranks
    manifest = tmp_path / "serbench-manifest.json"
    checkpoint = str(tmp_path / "model.safetensors")
    manifest.write_text(
        json.dumps(
            {
                "key": {},
                "workload": "w",
                "format": "safetensors",
                "checkpoint": checkpoint,
                "files": [checkpoint],
                "payload_bytes": 4,
                "tensors": {},
            }
        )
    )
    return {**_scale_job(tmp_path), "manifests": [str(manifest)]}, {}


@pytest.mark.parametrize("kind", JOB_FILES)
def test_a_job_naming_a_missing_file_says_so_in_one_line(kind: str, tmp_path: Path) -> None:
    """A distributed job with a missing source, or a scale job whose checkpoint is gone, ended in a
    FileNotFoundError traceback."""
    arguments, _, _ = JOB_FILES[kind]
    document, environment = _names_a_missing_file(kind, tmp_path)
    job = tmp_path / "job.json"
    job.write_text(json.dumps(document))
    result = subprocess.run(
        [sys.executable, *arguments, str(job)],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    text = result.stdout + result.stderr
    assert "Traceback" not in text, text
    assert "No such file" in text or "does not exist" in text or "not found" in text, text
    assert result.returncode == 2 or '"ok": false' in result.stdout, text


def test_a_remote_request_loads_untrusted_unless_it_says_trusted(tmp_path: Path) -> None:
    """`python -m frameworks.remote` always loaded with trusted=True: an object .npy named in a request ran."""
    from tests.hostile import npy_object_array

    marker = tmp_path / "ran"
    canary = npy_object_array(tmp_path, marker)
    request = {**_remote_request(tmp_path), "path": str(canary), "format": "npy-pickle"}
    result = _child(["-m", "frameworks.remote"], request, tmp_path)
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert not answer["ok"], answer
    assert "UnsafeLoadError" in answer["error"], answer
    assert not marker.exists(), "the request ran the pickle"


def test_a_remote_request_naming_a_fifo_is_refused(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe.npz"
    os.mkfifo(pipe)
    result = _child(["-m", "frameworks.remote"], {**_remote_request(tmp_path), "path": str(pipe)}, tmp_path)
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert not answer["ok"], answer
    assert "FIFO" in answer["error"], answer


def test_a_distributed_job_with_the_string_false_never_unpickles(tmp_path: Path) -> None:
    """`"trusted": "false"` was read as true (a non-empty string), and DCP's .metadata was unpickled."""
    from tests.hostile import plain_pickle

    marker = tmp_path / "ran"
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    plain_pickle(checkpoint, marker).rename(checkpoint / ".metadata")
    result = _child(["-m", "frameworks.distributed"], {**_distributed_job(tmp_path), "trusted": "false"}, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "trusted" in result.stderr, result.stderr
    assert not marker.exists()


def test_serbench_checkpoints_naming_a_fifo_is_one_line(tmp_path: Path) -> None:
    """SERBENCH_CHECKPOINTS pointing at a FIFO hung every process at import."""
    pipe = tmp_path / "checkpoints.json"
    os.mkfifo(pipe)
    result = subprocess.run(
        [sys.executable, "-m", "bench.cli", "report", str(tmp_path)],
        env={**os.environ, "SERBENCH_CHECKPOINTS": str(pipe)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "FIFO" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    "document",
    ['{"checkpoints": [{"name": "user-x"}]}', "[]", '{"checkpoints": "x"}', "not json"],
    ids=["missing-fields", "a-list", "wrong-type", "not-json"],
)
def test_a_malformed_checkpoints_json_is_one_line_and_exit_2(document: str, tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.json"
    path.write_text(document)
    result = subprocess.run(
        [sys.executable, "-m", "bench.cli", "report", str(tmp_path)],
        env={**os.environ, "SERBENCH_CHECKPOINTS": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
