"""Reports are a pure function of stored results: right rows, right values, derived advice."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.reporting import report
from tests.run_fixture import make_run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path / "run")


def test_workload_table_rows_and_values(run_dir: Path) -> None:
    frame, _, _ = report.load_run(run_dir)
    table = report.workload_table(frame, "size-64MiB").set_index(["framework", "format"])
    torch_row = table.loc[("torch", "torch")]
    gbps = (64 << 20) / 1e9
    assert torch_row["warm load"] == "40 ms [39.6–40.4 ms] n=6/3", "median [IQR] n=rounds/samples"
    assert torch_row["warm load GB/s"] == f"{gbps / 0.04:.3g} [{gbps / 0.0404:.3g}–{gbps / 0.0396:.3g}]"
    assert torch_row["warm % memcpy"].startswith(f"{gbps / 0.04 / 8.0 * 100:.3g}% [")
    assert torch_row["peak RSS x payload"] == "2.00"
    assert torch_row["overhead"] == "1000 B"
    assert torch_row["round trip"] == "exact"
    assert table.loc[("torch", "safetensors"), "lazy open"] == "1 ms [0.99–1.01 ms] n=6/3"
    assert table.loc[("numpy", "npy"), "round trip"] == "unsupported"
    assert table.loc[("numpy", "npz"), "cold load GB/s"] == "n/a"


def test_recommendations_come_from_the_numbers(run_dir: Path) -> None:
    frame, _, _ = report.load_run(run_dir)
    advice = report.recommendations(frame).set_index("framework")
    assert advice.loc["torch", "fastest exact load"].startswith("torch "), "safetensors is faster but drifts"
    gbps = (64 << 20) / 1e9
    assert advice.loc["torch", "fastest load, any round trip"] == (
        f"safetensors ({gbps / 0.02:.3g} [{gbps / 0.0202:.3g}–{gbps / 0.0198:.3g}] GB/s; "
        "drift: root: key order changed)"
    )
    assert advice.loc["torch", "left out (unstable)"] == "none"
    assert advice.loc["torch", "smallest file"].startswith("safetensors ")
    assert advice.loc["torch", "lowest peak memory"].startswith("safetensors (1.00x")
    assert "null-adapter" not in advice.index


def test_untimed_cuda_loads_are_listed_with_their_reason(run_dir: Path) -> None:
    frame, _, _ = report.load_run(run_dir)
    assert report.gpu_table(frame).empty, "no cuda load was timed"
    assert report.untimed_on_gpu(frame) == ["- torch (torch): unavailable: torch cannot use device 'cuda' here"]
    assert "unavailable: unavailable" not in report.write_report(run_dir).read_text()


def test_gpu_table_compares_timed_cuda_loads_with_cpu(tmp_path: Path) -> None:
    from tests.run_fixture import row, rows

    timed = [r for r in rows() if r["device"] != "cuda"]
    timed += [
        row("torch", "torch", "load", "warm", median=0.02, device="cuda"),
        row("torch", "torch", "load", "cold", median=0.08, device="cuda"),
    ]
    frame, _, _ = report.load_run(make_run(tmp_path / "gpu", timed))
    frame.loc[frame["device"] == "cuda", "limit_gbps"] = (64 << 20) / 0.02 / 1e9 / 0.25
    gpu = report.gpu_table(frame).set_index(["framework", "format"])
    torch_row = gpu.loc[("torch", "torch")]
    assert torch_row["cuda warm"] == "20 ms [19.8–20.2 ms] n=6/3"
    assert torch_row["cuda / cpu time"] == "0.50x [0.49–0.51x]", "cuda warm 20 ms against cpu warm 40 ms"
    assert torch_row["cuda cold GB/s"].startswith(f"{(64 << 20) / 0.08 / 1e9:.3g} [")
    assert torch_row["cuda % h2d"].startswith("25% [")
    assert torch_row["round trip"] == "exact"
    assert ("numpy", "npz") not in gpu.index, "no cuda row at all"


def test_write_report_produces_markdown_tables_and_plots(run_dir: Path) -> None:
    path = report.write_report(run_dir)
    text = path.read_text()
    for heading in (
        "## Environment",
        "## Which format should I use?",
        "## dict: size-64MiB (64.0 MiB)",
        "## GPU vs CPU load",
        "## Plots",
    ):
        assert heading in text
    assert "Harness overhead: 2 µs [1.98–2.02 µs] n=6/3 per call" in text
    assert "Test CPU" in text
    assert "d2l-tensor" not in text.split("## Which format")[1], "null-adapter-only workloads get no section"
    for name in ("load_throughput", "file_overhead", "peak_memory"):
        assert (run_dir / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"plots/{name}.png" in text
    assert not pd.read_csv(run_dir / "tables" / "size-64MiB.csv").empty


def test_report_embeds_a_safety_table_when_the_run_has_one(run_dir: Path) -> None:
    assert "Not measured in this run" in report.write_report(run_dir).read_text()
    pd.DataFrame(
        [
            {
                "framework": "torch",
                "format": "torch",
                "mode": "torch.load weights_only=False",
                "input": "canary-in-torch-zip",
                "group": "hostile",
                "outcome": "code-executed",
                "detail": "marker file created",
            }
        ]
    ).to_csv(run_dir / "safety.csv", index=False)
    text = report.write_report(run_dir).read_text()
    assert "### Which loaders are safe for untrusted files" in text
    assert "UNSAFE: runs code from the file" in text


def test_report_is_deterministic(run_dir: Path) -> None:
    first = report.write_report(run_dir).read_text()
    assert report.write_report(run_dir).read_text() == first


def test_a_figure_whose_rounds_span_5x_is_unstable_and_never_advice(tmp_path: Path) -> None:
    """The committed VGG16 safetensors warm load had rounds of 537, 102, 355, 104 and 103 ms and was
    published as a crisp 104 ms and built into the advice; from raw rounds it must come out unstable."""
    from tests.run_fixture import raw_run

    rounds = {
        ("torch", "safetensors"): [0.537, 0.102, 0.355, 0.104, 0.103],
        ("torch", "torch"): [0.352, 0.351, 0.353, 0.354, 0.350],
    }
    run_dir = raw_run(tmp_path / "run", rounds)
    frame, _, _ = report.load_run(run_dir)
    flaky = frame[(frame["format"] == "safetensors") & (frame["op"] == "load")].iloc[0]
    assert flaky["stability"] == "unstable"
    assert "rounds span 5.26x" in flaky["unstable_reason"]
    assert frame[(frame["format"] == "torch") & (frame["op"] == "load")].iloc[0]["stability"] == "stable"
    table = report.workload_table(frame, "size-64MiB").set_index(["framework", "format"])
    assert table.loc[("torch", "safetensors"), "warm load"] == "unstable 102–537 ms n=5/1"
    advice = report.recommendations(frame).set_index("framework")
    assert advice.loc["torch", "fastest exact load"].startswith("torch "), "the faster median is unstable"
    assert advice.loc["torch", "fastest load, any round trip"].startswith("torch ")
    assert advice.loc["torch", "left out (unstable)"].startswith("safetensors (unstable ")
    text = report.write_report(run_dir).read_text()
    assert "unstable 102–537 ms" in text
    assert "104 ms" not in text.replace("104 ms n=", ""), "the crisp median of an unstable figure is not printed"
