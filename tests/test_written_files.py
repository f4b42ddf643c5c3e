"""Every file serbench writes goes through a temporary and a rename, or an open that refuses links; it never
writes through a link planted where its file goes, and it deletes only what its marker proves it made.

The files come from what the code writes (a report's and a run's files, found by writing them once), so a new
file is covered without editing these tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench import cli
from frameworks import files
from frameworks.errors import UnsafeTargetError
from tests.conftest import adapter_or_skip
from tests.run_fixture import make_run

VICTIM_TEXT = "a file of the user's, outside the run directory\n"


def victims(tmp_path: Path, names: list[str]) -> dict[str, Path]:
    folder = tmp_path / "victims"
    folder.mkdir(exist_ok=True)
    made = {}
    for index, name in enumerate(names):
        victim = folder / f"victim-{index}.txt"
        victim.write_text(VICTIM_TEXT)
        made[name] = victim
    return made


def plant_links(root: Path, relative: list[str], tmp_path: Path) -> dict[str, Path]:
    """Replace each file under `root` by a link to a victim of its own; returns file -> victim."""
    planted = victims(tmp_path, relative)
    for name, victim in planted.items():
        target = root / name
        target.unlink()
        target.symlink_to(victim)
    return planted


def assert_untouched(root: Path, planted: dict[str, Path]) -> None:
    for name, victim in planted.items():
        assert victim.read_text() == VICTIM_TEXT, f"{name}: written through the link planted there"


def written_under(root: Path, before: set[Path]) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p not in before)


def test_a_report_never_writes_through_a_link(tmp_path: Path) -> None:
    """`serbench report DIR` wrote through tables/*.csv and plots/*.png links."""
    from bench.reporting.report import write_report

    run = make_run(tmp_path / "run")
    before = set(run.rglob("*"))
    write_report(run)
    written = [name for name in written_under(run, before) if name != files.LOCK_NAME]
    assert {"report.md", "tables/recommendations.csv"} <= set(written)
    assert any(w.startswith("plots/") for w in written)
    planted = plant_links(run, written, tmp_path)
    write_report(run)
    assert_untouched(run, planted)
    for name in written:
        assert (run / name).is_file(), f"{name} was not written as a new file"
        assert not (run / name).is_symlink(), f"{name} was not written as a new file"


def test_a_lock_file_planted_as_a_link_is_refused_not_written_through(tmp_path: Path) -> None:
    from bench.reporting.report import write_report

    run = make_run(tmp_path / "run")
    (victim,) = victims(tmp_path, ["lock"]).values()
    (run / files.LOCK_NAME).symlink_to(victim)
    with pytest.raises(UnsafeTargetError, match="symbolic link"):
        write_report(run)
    assert victim.read_text() == VICTIM_TEXT


def test_a_report_refuses_a_tables_directory_that_is_a_link(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = make_run(tmp_path / "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run / "tables").symlink_to(elsewhere)
    assert cli.main(["report", str(run)]) == cli.EXIT_USAGE
    assert "symbolic link" in capsys.readouterr().err
    assert not any(elsewhere.iterdir())


def _tiny_config(out: Path, resume: bool = False):
    from bench.timing.runner import RunConfig

    return RunConfig(
        frameworks=("numpy",),
        kinds=("tensor",),
        sizes=("small",),
        devices=("cpu",),
        out=out,
        processes=1,
        peak_memory=False,
        resume=resume,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of NumPy's tensor cases (about 20 s)."""
    import contextlib
    import io

    from bench.timing.runner import run

    adapter_or_skip("numpy")
    out = tmp_path_factory.mktemp("tiny") / "run"
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        run(_tiny_config(out))
    return out


def test_a_resumed_run_never_writes_through_a_link(tiny_run: Path, tmp_path: Path) -> None:
    """`run --resume` wrote through raw/*.log links. Every file the first run wrote gets a link to a victim;
    every framework is made unfinished (its benchmark files removed), so the resume writes them all again."""
    import contextlib
    import io
    import shutil

    from bench.timing.runner import run

    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, symlinks=True)
    for benchmark in (copy / "raw").glob("benchmark-*.json"):
        benchmark.unlink()
    read_by_resume = {"limits.json"}  # a resume reads the run's limits instead of measuring them again
    written = [
        name for name in written_under(copy, set()) if not name.startswith(".serbench") and name not in read_by_resume
    ]
    assert any(name.startswith("raw/pytest-") for name in written), written
    planted = plant_links(copy, written, tmp_path)
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        run(_tiny_config(copy, resume=True))
    assert_untouched(copy, planted)


@contextlib.contextmanager
def held_by_another_process(directory: Path) -> Iterator[subprocess.Popen]:
    """`directory`'s run lock, held by another process for the block."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from frameworks import files\n"
            "with files.locked(sys.argv[1], 'a test'):\n    print('held', flush=True); time.sleep(60)",
            str(directory),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_run_directory_is_locked_while_a_run_writes_into_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Two concurrent `--resume` runs both wrote outcomes-*.jsonl, and lines were duplicated."""
    run = make_run(tmp_path / "run")
    with held_by_another_process(run):
        status = cli.main(["run", "--resume", "--out", str(run), "--frameworks", "numpy", "--sizes", "small"])
        assert status == cli.EXIT_USAGE
        assert "being written by serbench pid" in capsys.readouterr().err


def test_a_scale_run_refuses_a_data_directory_another_run_holds(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Two scale runs on one --scale-data directory rebuilt and removed each other's checkpoints."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "precious.txt").write_text(VICTIM_TEXT)
    with held_by_another_process(data):
        status = cli.main(["run", "--scale", "--scale-data", str(data), "--out", str(tmp_path / "run")])
        assert status == cli.EXIT_USAGE
        assert "being written by serbench pid" in capsys.readouterr().err
    assert sorted(path.name for path in data.iterdir()) == [files.LOCK_NAME, "precious.txt"]


def test_a_bench_refused_by_the_lock_leaves_the_running_runs_files(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `bench --resume` refused because a run held the directory then removed that run's scratch/ and its
    lock: the run recorded its later cases as errors, and a third process got the lock while it ran."""
    from bench import workloads

    monkeypatch.delenv(workloads.CHECKPOINTS_VARIABLE, raising=False)
    monkeypatch.setattr(workloads, "WORKLOADS", dict(workloads.WORKLOADS))
    run = make_run(tmp_path / "run")
    saved = run / "scratch" / "numpy"
    for directory in (saved.parent, saved):
        directory.mkdir(exist_ok=True)
        files.mark(directory)
    (saved / "a-case.npy").write_bytes(b"what the running run saved")
    checkpoint = tmp_path / "mine.npz"
    np.savez(checkpoint, w=np.ones(3, dtype=np.float32))
    with held_by_another_process(run) as holder:
        status = cli.main(["bench", str(checkpoint), "--out", str(run), "--resume", "--frameworks", "numpy"])
        assert status == cli.EXIT_USAGE
        assert "being written by serbench pid" in capsys.readouterr().err
        assert (saved / "a-case.npy").read_bytes() == b"what the running run saved"
        assert (run / files.LOCK_NAME).read_text().strip() == f"serbench pid {holder.pid}"


def test_the_limit_probe_writes_and_removes_only_its_own_file(tmp_path: Path) -> None:
    """The disk probe truncated, overwrote and removed a user's file of its name, removed a link or FIFO planted
    there, and two runs probing one directory broke each other."""
    import threading

    from bench.timing import limits

    linked, mine = victims(tmp_path, ["linked", "mine"]).values()
    data = tmp_path / "scale-data"
    data.mkdir()
    (data / ".serbench-limit-probe.bin").symlink_to(linked)
    (data / ".serbench-limit-probe-mine.bin").write_text(VICTIM_TEXT)
    os.mkfifo(data / ".serbench-limit-probe-fifo.bin")
    before = sorted(path.name for path in data.iterdir())
    errors = []

    def probe() -> None:
        try:
            limits.measure_disk(data, 1 << 20, rounds=2)
        except Exception as error:  # noqa: BLE001  (collected for the assertion)
            errors.append(error)

    threads = [threading.Thread(target=probe) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(path.name for path in data.iterdir()) == before
    assert linked.read_text() == VICTIM_TEXT
    assert (data / ".serbench-limit-probe-mine.bin").read_text() == VICTIM_TEXT
    assert mine.read_text() == VICTIM_TEXT


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_a_log_is_never_opened_through_a_link(kind: str, tmp_path: Path) -> None:
    (victim,) = victims(tmp_path, ["log"]).values()
    log = tmp_path / "pytest.log"
    (log.symlink_to if kind == "symlink" else log.hardlink_to)(victim)
    for append in (False, True):
        with pytest.raises(UnsafeTargetError):
            files.open_for_writing(log, append=append)
    assert victim.read_text() == VICTIM_TEXT


def test_stored_checkpoint_tensors_never_go_through_a_link(tmp_path: Path) -> None:
    """`bench --resume` wrote through scratch/checkpoints/* links."""
    from bench import workloads

    (victim,) = victims(tmp_path, ["store"]).values()
    store = tmp_path / "user-model.npz"
    store.symlink_to(victim)
    workloads.store_arrays({"w": np.ones(4, dtype=np.float32)}, store)
    assert victim.read_text() == VICTIM_TEXT
    assert store.is_file()
    assert not store.is_symlink()


def test_a_refused_checkpoint_removes_only_a_run_directory_serbench_made(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()  # the user's own empty directory, given as --out
    not_a_checkpoint = tmp_path / "notes.txt"
    not_a_checkpoint.write_text("not a checkpoint")
    assert cli.main(["bench", str(not_a_checkpoint), "--out", str(mine)]) == cli.EXIT_USAGE
    assert mine.is_dir(), "a directory the user made was removed"
    fresh = tmp_path / "fresh"
    assert cli.main(["bench", str(not_a_checkpoint), "--out", str(fresh)]) == cli.EXIT_USAGE
    assert not fresh.exists(), "a run directory serbench made for a refused checkpoint was left behind"


# -- directories serbench replaces or removes ---------------------------------------------------------------------


def test_remove_marked_never_removes_a_directory_serbench_did_not_make(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.mkdir()
    (users / "precious.txt").write_text("keep")
    with pytest.raises(UnsafeTargetError, match="did not make it"):
        files.remove_marked(users, "a test")
    assert (users / "precious.txt").read_text() == "keep"
    link = tmp_path / "link"
    link.symlink_to(users)
    with pytest.raises(UnsafeTargetError):
        files.remove_marked(link, "a test")
    assert users.is_dir()


def _tiny_llm():
    from bench import scale_workloads

    return scale_workloads.TRANSFORMERS["llama-tiny"]


def test_scale_data_never_removes_a_directory_it_did_not_write(tmp_path: Path) -> None:
    """`--scale-data DIR` removed directories already in DIR (a user's precious.txt went with them)."""
    from bench import scale_workloads
    from frameworks import scale

    adapter_or_skip("torch")
    model = _tiny_llm()
    users = tmp_path / f"{model.name}-safetensors"
    users.mkdir()
    (users / "precious.txt").write_text("keep")
    with pytest.raises(UnsafeTargetError, match="serbench did not write"):
        scale_workloads.build(scale.scale_recipe("torch"), model, "safetensors", tmp_path)
    assert (users / "precious.txt").read_text() == "keep"


def test_scale_data_is_replaced_whole_never_written_through_a_link(tmp_path: Path) -> None:
    """A user's model.safetensors was overwritten through a link planted in the scale data."""
    from bench import scale_workloads
    from frameworks import scale

    adapter_or_skip("torch")
    recipe, model = scale.scale_recipe("torch"), _tiny_llm()
    manifest = scale_workloads.build(recipe, model, "safetensors", tmp_path)
    written = [Path(name) for name in manifest["files"]]
    planted = victims(tmp_path, [str(path) for path in written])
    for path in written:
        path.unlink()
        path.symlink_to(planted[str(path)])
    again = scale_workloads.build(recipe, model, "safetensors", tmp_path)  # stale: a shard is not a file
    for victim in planted.values():
        assert victim.read_text() == VICTIM_TEXT
    assert all(Path(name).is_file() and not Path(name).is_symlink() for name in again["files"])


def test_scale_data_survives_a_save_that_fails_half_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """save_sharded was not atomic: a failure left a half-written checkpoint in place of the good one."""
    from bench import scale_workloads
    from frameworks import scale

    adapter_or_skip("torch")
    recipe = scale.scale_recipe("torch")
    model = _tiny_llm()
    first = scale_workloads.build(recipe, model, "safetensors", tmp_path)
    contents = {name: Path(name).read_bytes() for name in first["files"]}

    def failing(*args: object, **kwargs: object) -> None:
        raise OSError("the disk failed half way")

    monkeypatch.setattr(scale_workloads, "LAYOUT_VERSION", scale_workloads.LAYOUT_VERSION + 1)  # forces a rebuild
    monkeypatch.setattr(recipe, "save_checkpoint", failing)
    with pytest.raises(OSError, match="half way"):
        scale_workloads.build(recipe, model, "safetensors", tmp_path)
    assert {name: Path(name).read_bytes() for name in first["files"]} == contents
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(files.TEMPORARY_PREFIX)]


@pytest.mark.parametrize("version", ["x/../../../victim", "../victim", "0.8.0; rm -rf /", "1.0/../x", ""])
def test_a_version_that_is_not_a_release_is_refused_before_any_path_is_made(
    version: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`serbench versions safetensors 'x/y' 'x/../../../victim'` ran rmtree outside .venv-versions."""
    from frameworks.variants import Variant

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep")
    with pytest.raises(ValueError, match="PEP 440"):
        Variant("core", "safetensors", version)
    with pytest.raises(SystemExit) as refused:  # the parser refuses it
        cli.main(["versions", "safetensors", "0.7.0", version, "--out", str(tmp_path / "out")])
    assert refused.value.code == cli.EXIT_USAGE
    assert "PEP 440" in capsys.readouterr().err
    assert (victim / "precious.txt").read_text() == "keep"
    assert not (tmp_path / "out").exists()


def test_a_variant_directory_serbench_did_not_make_is_never_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from frameworks import environments, variants

    monkeypatch.setenv(environments.AT_VARIABLE, str(environments.ROOT))
    variant = variants.Variant("core", "safetensors", "0.0.1")
    monkeypatch.setattr(variants.Variant, "directory", property(lambda self: tmp_path / "variant"))
    (tmp_path / "variant").mkdir()
    (tmp_path / "variant" / "precious.txt").write_text("keep")
    if not variant.base.python.exists():
        pytest.skip("the core environment is not built")
    with pytest.raises(UnsafeTargetError):
        variant.build()
    assert (tmp_path / "variant" / "precious.txt").read_text() == "keep"


@pytest.mark.parametrize(
    "forged",
    [{"label": "/tmp/victimrun"}, {"label": "../x"}, {"version": "9.9"}, {"interpreter": "/bin/sh"},
     {"replaced": "everything"}, {"extra": 1}],
    ids=["label-absolute", "label-parent", "version", "interpreter", "replaced-not-a-list", "extra-field"],
)  # fmt: skip
def test_a_variant_stamp_is_a_cache_never_an_instruction(
    forged: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forged `.installed.json` whose label was an absolute path sent `versions`' runs outside --out, over a
    user's results: a stamp whose record is not the variant's own is rebuilt, never used."""
    import json

    from frameworks import environments, variants

    monkeypatch.setenv(environments.AT_VARIABLE, str(environments.ROOT))
    monkeypatch.setenv(variants.DIRECTORY_VARIABLE, str(tmp_path / "variants"))
    variant = variants.Variant("core", "numpy", "1.0.1")
    if not variant.base.python.exists():
        pytest.skip("the core environment is not built")
    rebuilt = []

    def build_it(self: variants.Variant) -> dict:  # what a real build leaves: the directory, marked, its python
        rebuilt.append(self)
        (self.directory / "bin").mkdir(parents=True)
        files.mark(self.directory)
        self.python.symlink_to(self.base.python)
        return own

    monkeypatch.setattr(variants.Variant, "_build", build_it)
    own = variant._record(str(variant.python), replaced=["numpy==1.0.1"], conflicts=[])
    build_it(variant)
    variant.stamp.write_text(json.dumps({"key": variant.key(), "record": {**own, **forged}}))
    assert variant.build() == own
    assert len(rebuilt) == 2  # the forged stamp was not used: the variant was built again
    assert variant.build() == own  # and its own stamp is a cache hit
    assert len(rebuilt) == 2


@pytest.mark.parametrize("commit", ["--lock", "--no-checkout", "HEAD", "main", "../x", "0123abc"])
def test_compare_never_hands_git_what_an_env_json_says_unless_it_is_a_commit_id(commit: str, tmp_path: Path) -> None:
    """`git_commit: "--lock"` was passed to git as an option and left a locked worktree in .git/worktrees."""
    import json

    from bench.timing import retime as confirm

    run = make_run(tmp_path / "run")
    env = json.loads((run / "env.json").read_text())
    (run / "env.json").write_text(json.dumps({**env, "git_commit": commit}))
    before = _worktrees()
    with pytest.raises(confirm.Unconfirmable, match="not a commit id"):
        confirm._commit(run)
    with pytest.raises(confirm.Unconfirmable), confirm.source_tree(commit):
        pass
    assert _worktrees() == before


def _worktrees() -> str:
    return subprocess.run(
        ["git", "worktree", "list", "--porcelain"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=False,
    ).stdout


def test_a_marker_planted_as_a_link_does_not_make_a_directory_serbench_s(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.mkdir()
    elsewhere = tmp_path / "marker"
    elsewhere.write_text("")
    os.symlink(elsewhere, users / files.SERBENCH_MARKER)
    (users / "mine.txt").write_text("keep")
    assert not files.is_marked(users)
    # every rule that consults the marker holds to the same one (check_target followed the link, and a scale
    # checkpoint's directory of the user's files was replaced)
    with pytest.raises(UnsafeTargetError, match="serbench did not write"):
        files.check_target(users)
    with pytest.raises(UnsafeTargetError):
        files.remove_marked(users, "a test")
    assert (users / "mine.txt").read_text() == "keep"


def test_the_scratch_that_holds_copies_of_a_users_checkpoint_is_the_users_alone(tmp_path: Path) -> None:
    """A mode-0600 checkpoint's tensors were stored in a 0644 file any local user could read during the run."""
    import stat

    from bench.timing.rundir import RunDir

    run = RunDir(tmp_path / "run")
    run.prepare()
    store = run.own_scratch(run.checkpoint_store.name)
    for directory in (run.scratch, store):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
