"""Loading onto a device: every leaf lands there, and the tree equals the CPU load bit for bit.

The `cuda` cases run where a framework sees a GPU (the device machine); elsewhere they skip with
the adapter's own reason. The `cpu` cases run the same code path with the device set to CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import frameworks
from bench import workloads
from bench.conformance import expectations
from bench.conformance.roundtrip import describe_changes
from frameworks.trees import leaves
from tests.conftest import adapter_or_skip

DEVICE_WORKLOADS = (
    "d2l-tensor",
    "d2l-list",
    "d2l-dict",
    "dtype-bfloat16/dict",
    "dtype-int64/dict",
    "special-float32/dict",
    "shape-0d/dict",
    "size-1MiB",
)


def _cells() -> list[tuple[str, str, str, str]]:
    """Cells whose CPU round trip works (exact or a pinned drift); refusals are test_conformance's."""
    return [
        (framework, fmt, workload, device)
        for framework in frameworks.names()
        for fmt in frameworks.adapter_class(framework).format_names()
        for workload in DEVICE_WORKLOADS
        if expectations.expected(framework, fmt, workloads.WORKLOADS[workload]).status in ("exact", "drift")
        for device in ("cpu", "cuda")
    ]


@pytest.mark.parametrize(("framework", "fmt", "workload_name", "device"), _cells())
def test_load_onto_device_matches_the_cpu_load(
    framework: str, fmt: str, workload_name: str, device: str, tmp_path: Path
) -> None:
    adapter = adapter_or_skip(framework)
    try:
        adapter.check_device(device)
    except frameworks.DeviceUnavailableError as error:
        pytest.skip(f"unavailable: {error}")
    path = tmp_path / f"payload{adapter.spec(fmt).suffix}"
    adapter.save(adapter.from_numpy(workloads.build(workload_name)), path, fmt)
    on_cpu = adapter.to_numpy(adapter.load(path, fmt, "cpu", trusted=True))

    loaded = adapter.load(path, fmt, device, trusted=True)

    placed = [adapter.device_of(leaf) for leaf in leaves(loaded)]
    assert placed, "the loaded tree has no tensors"
    assert set(placed) == {device}, f"{framework}/{fmt} asked for {device}, leaves are on {set(placed)}"
    assert describe_changes(on_cpu, adapter.to_numpy(loaded)) == []
