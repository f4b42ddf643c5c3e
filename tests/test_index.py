"""The results index lists every stored run with its date, machine and commit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from bench.reporting.index import index_frame, index_table, write_index

RESULTS = Path(__file__).resolve().parent.parent / "results"


def test_index_rows_come_from_env_json(tmp_path: Path) -> None:
    for name, extra in (("2026-a-quick", {}), ("safety-x", {"safety.csv": ""})):
        run = tmp_path / name
        run.mkdir()
        (run / "env.json").write_text(
            json.dumps(
                {
                    "date": "2026-11-22T00:00:00+00:00",
                    "cpu": "Test CPU",
                    "cores_logical": 2,
                    "ram_bytes": 24 << 30,
                    "gpu": "none",
                    "git_commit": "0123456789abcdef",
                }
            )
        )
        for file, text in extra.items():
            (run / file).write_text(text)
    versions = tmp_path / "versions-x"
    (versions / "safetensors-0.7.0").mkdir(parents=True)
    (versions / "safetensors-0.7.0" / "env.json").write_text((tmp_path / "2026-a-quick" / "env.json").read_text())
    releases = [
        {
            "label": "safetensors-0.7.0",
            "package": "safetensors",
            "version": "0.7.0",
            "locked": False,
            "replaced": ["safetensors==0.7.0"],
            "conflicts": [],
        },
        {"label": "safetensors-9.9", "package": "safetensors", "version": "9.9", "not_installable": "no"},
    ]
    record = {
        "package": "safetensors",
        "environment": "core",
        "frameworks": ["numpy"],
        "preset": "quick",
        "date": "2026-11-22T00:00:00+00:00",
        "versions": releases,
        "order": "alternating",
    }
    (versions / "versions.json").write_text(json.dumps(record))
    frame = index_frame(tmp_path)
    assert list(frame["kind"]) == ["benchmark", "safety", "versions of safetensors (0.7.0, 9.9)"]
    assert frame.loc[2, "run"] == "[versions-x](versions-x/versions.md)"
    assert frame.loc[2, "machine"] == "Test CPU, 2 cores, 24 GiB"
    assert frame.loc[0, "run"] == "[2026-a-quick](2026-a-quick/report.md)"
    assert frame.loc[0, "machine"] == "Test CPU, 2 cores, 24 GiB"
    assert frame.loc[0, "commit"] == "`0123456789ab`"
    assert "Test CPU" in write_index(tmp_path).read_text()


def tracked_runs() -> set[str]:
    """The run directories under results/ that git tracks (a user's own `make bench` runs are ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--", "results"], cwd=RESULTS.parent, capture_output=True, text=True, check=True
    ).stdout.split()
    return {Path(name).parts[1] for name in listed if len(Path(name).parts) > 2}


def test_committed_index_is_current() -> None:
    readme = RESULTS / "README.md"
    runs = tracked_runs()
    expected = index_table(RESULTS, runs)
    assert expected in readme.read_text(), "results/README.md is stale: run `serbench index`"
    for name in runs:
        assert name in readme.read_text()


def test_the_committed_index_ignores_a_users_own_run() -> None:
    """`make bench` then `make test`: the user's run (results/<time>-quick/, which git ignores) is not part of
    the committed index, so the index test does not fail on it."""
    own = RESULTS / "20990101-000000-quick"
    own.mkdir()
    try:
        (own / "env.json").write_text(json.dumps({"date": "2099-01-01T00:00:00+00:00", "git_commit": "0" * 40}))
        assert own.name not in tracked_runs()
        assert index_frame(RESULTS)["run"].str.contains(own.name).any()  # it is a run the index would list
        assert not index_frame(RESULTS, tracked_runs())["run"].str.contains(own.name).any()
    finally:
        (own / "env.json").unlink(missing_ok=True)
        own.rmdir()


def test_short_commit_keeps_dirty_and_given_marks() -> None:
    from bench.reporting.index import short_commit

    assert short_commit("0123456789abcdef0123") == "0123456789ab"
    assert short_commit("0123456789abcdef0123-dirty") == "0123456789ab-dirty"
    assert short_commit("6ac207c (from SERBENCH_GIT_COMMIT; git here says 8bcf3ed-dirty)") == "6ac207c (given)"
    assert short_commit("unknown") == "unknown"
