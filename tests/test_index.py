"""The results index lists every stored run with its date, machine and commit."""

from __future__ import annotations

import json
from pathlib import Path

from bench.reporting.index import index_frame, write_index

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
    releases = [{"label": "safetensors-0.7.0", "version": "0.7.0"}, {"version": "9.9", "not_installable": "no"}]
    (versions / "versions.json").write_text(json.dumps({"package": "safetensors", "versions": releases}))
    frame = index_frame(tmp_path)
    assert list(frame["kind"]) == ["benchmark", "safety", "versions of safetensors (0.7.0, 9.9)"]
    assert frame.loc[2, "run"] == "[versions-x](versions-x/versions.md)"
    assert frame.loc[2, "machine"] == "Test CPU, 2 cores, 24 GiB"
    assert frame.loc[0, "run"] == "[2026-a-quick](2026-a-quick/report.md)"
    assert frame.loc[0, "machine"] == "Test CPU, 2 cores, 24 GiB"
    assert frame.loc[0, "commit"] == "`0123456789ab`"
    assert "Test CPU" in write_index(tmp_path).read_text()


def test_committed_index_is_current() -> None:
    readme = RESULTS / "README.md"
    expected = index_frame(RESULTS).to_markdown(index=False, disable_numparse=True)
    assert expected in readme.read_text(), "results/README.md is stale: run `serbench index`"
    for env in RESULTS.glob("*/env.json"):
        assert env.parent.name in readme.read_text()


def test_short_commit_keeps_dirty_and_given_marks() -> None:
    from bench.reporting.index import short_commit

    assert short_commit("0123456789abcdef0123") == "0123456789ab"
    assert short_commit("0123456789abcdef0123-dirty") == "0123456789ab-dirty"
    assert short_commit("6ac207c (from SERBENCH_GIT_COMMIT; git here says 8bcf3ed-dirty)") == "6ac207c (given)"
    assert short_commit("unknown") == "unknown"
