"""Reports are a pure function of stored results: right rows, right values, derived advice."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.reporting import figures, report
from tests.run_fixture import make_run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path / "run")


def test_workload_table_rows_and_values(run_dir: Path) -> None:
    frame, _, _ = report.load_run(run_dir)
    table = report.workload_table(frame, "size-64MiB").set_index(["framework", "format"])
    torch_row = table.loc[("torch", "torch")]
    gbps = (64 << 20) / 1e9
    assert torch_row["warm load"] == "40.0 ms [39.6–40.4 ms] n=6/3", "median [IQR] n=rounds/samples"
    assert torch_row["warm load GB/s"] == f"{gbps / 0.04:.3g} [{gbps / 0.0404:.3g}–{gbps / 0.0396:.3g}]"
    assert torch_row["warm % memcpy"].startswith(f"{figures.number(gbps / 0.04 / 8.0 * 100)}% [")
    assert torch_row["peak RSS x payload"] == "2.00"
    assert torch_row["file ÷ payload"] == "1.000x (+1000 B)"
    assert torch_row["round trip"] == "exact"
    assert table.loc[("torch", "safetensors"), "lazy open"] == "1.00 ms [0.990–1.01 ms] n=6/3"
    assert table.loc[("numpy", "npz"), "cold load GB/s"] == "n/a"
    assert ("numpy", "npy") not in table.index, "a format that cannot hold the workload is no row of blanks"
    assert report.not_held(frame, "size-64MiB") == "Cannot hold a dict, so not timed: npy (numpy)."
    assert report.not_held(frame, "d2l-tensor") == ""


@pytest.mark.parametrize("value", [3.2e-7, 1.5e-5, 0.00123, 0.0456, 0.5, 1.0, 9.99, 12.345, 456.7, 1349.6, 2.5e6])
def test_numbers_have_three_significant_digits_and_no_exponent(value: float) -> None:
    shown = figures.number(value)
    assert "e" not in shown.lower()
    if value >= 0.001:
        assert float(shown) == pytest.approx(value, rel=0.005 if value < 100 else 0.5 / value)
    else:
        assert shown == "<0.001"


def test_a_tiny_workload_is_shown_in_times_not_gb_per_s(tmp_path: Path) -> None:
    """A 32-byte tensor loads at 0.00005 GB/s: a rate that says nothing; its table holds times only."""
    from tests.run_fixture import row

    tiny = {"workload": "d2l-tensor", "payload_bytes": 32, "file_bytes": 160, "kind": "tensor"}
    table_rows = [
        row("numpy", "npy", "save", median=0.00067, **tiny),
        row("numpy", "npy", "load", "warm", median=0.000276, **tiny),
        row("numpy", "npy", "load", "cold", median=0.0013496, **tiny),
    ]
    run_dir = make_run(tmp_path / "tiny", table_rows)
    frame, _, _ = report.load_run(run_dir)
    table = report.workload_table(frame, "d2l-tensor")
    assert not [column for column in table.columns if "GB/s" in column or "%" in column]
    assert table.loc[0, "warm load"] == "276 µs [273–279 µs] n=6/3"
    assert table.loc[0, "cold load"] == "1.35 ms [1.34–1.36 ms] n=6/3"
    assert report.console_summary(frame).startswith("time for d2l-tensor (32 B):")
    text = report.write_report(run_dir).read_text()
    assert "Times only: below 1.0 MiB" in text
    assert "e-0" not in text
    assert "e+0" not in text


def test_recommendations_come_from_the_numbers(run_dir: Path) -> None:
    frame, _, _ = report.load_run(run_dir)
    advice = report.recommendations(frame).set_index("framework")
    fastest = advice.loc["torch", "fastest exact load"]
    assert fastest.startswith("safetensors, 1.99x ["), (
        "safetensors sorts a dict's keys: a state_dict comes back exactly"
    )
    assert "faster than the next, torch [pickle: only for files you trust]" in fastest
    assert "(safetensors 20.0 ms [19.8–20.2 ms] n=6/3)" in fastest
    assert advice.loc["torch", "fastest load, any round trip"] == fastest
    assert advice.loc["torch", "fastest exact load safe for untrusted files"].startswith("safetensors, 20.0 ms")
    assert advice.loc["torch", "fastest exact load safe for untrusted files"].endswith("(the only one timed)")
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
    assert torch_row["cuda warm"] == "20.0 ms [19.8–20.2 ms] n=6/3"
    ratio = torch_row["cuda / cpu time"]
    assert ratio.startswith("0.50x [0.49–0.51]: cuda 2.00x ["), "cuda warm 20 ms against cpu warm 40 ms, decided"
    assert ratio.endswith("faster")
    assert torch_row["cuda cold GB/s"].startswith(f"{(64 << 20) / 0.08 / 1e9:.3g} [")
    assert torch_row["cuda % h2d"].startswith("25.0% [")
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
    assert "Harness overhead: 2.00 µs [1.98–2.02 µs] n=6/3 per call" in text
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


def test_a_figure_whose_rounds_span_5x_is_unstable_and_its_comparison_undecided(tmp_path: Path) -> None:
    """The committed VGG16 safetensors warm load had rounds of 537, 102, 355, 104 and 103 ms and was
    published as a crisp 104 ms and built into the advice; from raw rounds it must come out unstable, and the
    advice a comparison that cannot decide, not a pick of either."""
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
    fastest = advice.loc["torch", "fastest exact load"]
    assert "cannot be told apart yet" in fastest, "one process of 5 rounds spanning 5x decides nothing"
    assert fastest.startswith("safetensors and torch"), "no pick: neither is decided faster than the other"
    assert "unstable 102–537 ms" in fastest, "the contenders' figures as they are"
    text = report.write_report(run_dir).read_text()
    assert "unstable 102–537 ms" in text
    assert "104 ms" not in text.replace("104 ms n=", ""), "the crisp median of an unstable figure is not printed"


def test_advice_says_when_its_pick_is_a_loader_the_safety_matrix_calls_unsafe(tmp_path: Path) -> None:
    """npy-pickle is the fastest exact NumPy load; the benchmark times it through serbench's trusted path,
    which the reference safety matrix calls UNSAFE. The advice must say so, and name the fastest safe load."""
    from bench.reporting.trust import verdicts
    from tests.run_fixture import row

    table_rows = [
        row("numpy", "npy-pickle", "save", median=0.10),
        row("numpy", "npy-pickle", "load", "warm", median=0.03),
        row("numpy", "npz", "save", median=0.12),
        row("numpy", "npz", "load", "warm", median=0.05),
        row("torch", "torch", "save", median=0.10),
        row("torch", "torch", "load", "warm", median=0.03),
    ]
    run_dir = make_run(tmp_path / "run", table_rows)
    frame, _, _ = report.load_run(run_dir)
    trust = verdicts(run_dir)
    assert trust.source == "the reference safety matrix (results/reference-safety)"
    advice = report.recommendations(frame, trust).set_index("framework")
    fastest = advice.loc["numpy", "fastest exact load"]
    assert fastest.startswith("npy-pickle [UNSAFE for untrusted files: runs code from the file], 1.67x [")
    assert "faster than the next, npz" in fastest
    assert fastest.count("UNSAFE") == 1, "the pick's label once, at its first mention, not at every mention"
    assert "(npy-pickle " in fastest, "its figure is still named"
    assert advice.loc["numpy", "fastest exact load safe for untrusted files"].startswith("npz, ")
    assert "UNSAFE" not in advice.loc["numpy", "fastest exact load safe for untrusted files"]
    assert advice.loc["torch", "fastest exact load"].startswith("torch [pickle: only for files you trust], ")
    assert advice.loc["torch", "fastest exact load safe for untrusted files"] == "nothing timed"
    assert "the reference safety matrix" in report.write_report(run_dir).read_text()


def test_the_run_s_own_safety_matrix_decides_over_the_reference(tmp_path: Path) -> None:
    from bench.reporting.trust import verdicts
    from tests.run_fixture import row

    run_dir = make_run(tmp_path / "run", [row("numpy", "npz", "load", "warm", median=0.05)])
    pd.DataFrame(
        [
            {
                "framework": "numpy",
                "format": "npz",
                "mode": "serbench",
                "input": "canary",
                "group": "hostile",
                "outcome": "code-executed",
                "detail": "",
            }
        ]
    ).to_csv(run_dir / "safety.csv", index=False)
    trust = verdicts(run_dir)
    assert trust.source == "this run's safety matrix"
    assert trust.warning("numpy", "npz") == "UNSAFE for untrusted files: runs code from the file"


def test_gpu_table_shows_peak_device_memory_per_cuda_load(tmp_path: Path) -> None:
    from tests.run_fixture import row, rows

    timed = [r for r in rows() if r["device"] != "cuda"]
    timed.append(row("torch", "torch", "load", "warm", median=0.02, device="cuda", peak_device_bytes=96 << 20))
    frame, _, _ = report.load_run(make_run(tmp_path / "gpu", timed))
    frame["peak_device_multiple"] = frame["peak_device_bytes"] / frame["payload_bytes"]
    gpu = report.gpu_table(frame).set_index(["framework", "format"])
    assert gpu.loc[("torch", "torch"), "peak GPU memory x payload"] == "1.50"


def _throughput_axes(frame: pd.DataFrame, limits: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from bench.reporting import plots

    drawn = []
    monkeypatch.setattr(plots.plt, "close", drawn.append)
    plots.load_throughput(frame, limits, tmp_path / "plot.png")
    return drawn[0].axes[0]


def test_the_throughput_plot_of_a_gpu_run_has_one_named_colour_per_series(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.colors import to_rgba

    from bench.reporting.plots import SERIES_COLOURS
    from tests.run_fixture import row, rows

    timed = [r for r in rows() if r["device"] != "cuda"]
    timed += [
        row("torch", "torch", "load", "warm", median=0.02, device="cuda"),
        row("torch", "torch", "load", "cold", median=0.08, device="cuda", stability="unstable"),
    ]
    frame, _, _ = report.load_run(make_run(tmp_path / "gpu", timed))
    axes = _throughput_axes(frame, {"memcpy": {"gbps": 8.0}, "h2d_pageable": {"gbps": 20.0}}, tmp_path, monkeypatch)
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert labels[:4] == ["cpu warm", "cpu cold", "cuda warm", "cuda cold"]
    assert "unstable figure" in labels
    assert "limit: h2d_pageable 20.00 GB/s" in labels
    bars = [container for container in axes.containers if hasattr(container, "patches")]
    for container, name in zip(bars, labels[:4], strict=True):
        assert {patch.get_facecolor() for patch in container.patches} == {to_rgba(SERIES_COLOURS[name])}
    handles = axes.get_legend().legend_handles
    assert not any(handle.get_hatch() for handle in handles[:4]), "a series' legend entry is not hatched"


def test_peak_device_memory_recorded_by_a_cuda_load_reaches_the_results(tmp_path: Path) -> None:
    from tests.run_fixture import raw_run

    run_dir = raw_run(tmp_path / "run", {("torch", "torch"): [0.05, 0.05, 0.05]}, peak_device_bytes=96 << 20)
    frame, _, _ = report.load_run(run_dir)
    assert frame["peak_device_multiple"].tolist() == [1.5]
