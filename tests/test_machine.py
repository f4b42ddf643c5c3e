"""The machine check: busy detection and the VM balloon's free page reporting, on a fake /sys."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.timing import machine


def fake_sys(root: Path, features: str = "0110010100000000", bound: bool = True, device_id: str = "0x0005") -> Path:
    device = root / "bus" / "virtio" / "devices" / "virtio0"
    device.mkdir(parents=True)
    (device / "device").write_text(device_id + "\n")
    (device / "features").write_text(features + "\n")
    driver = root / "bus" / "virtio" / "drivers" / "virtio_balloon"
    driver.mkdir(parents=True)
    if bound:
        (device / "driver").symlink_to(driver)
    order = root / "module" / "page_reporting" / "parameters"
    order.mkdir(parents=True)
    (order / "page_reporting_order").write_text("9\n")
    return root


def test_reporting_is_active_when_negotiated_and_the_driver_is_bound(tmp_path: Path) -> None:
    state = machine.page_reporting(fake_sys(tmp_path))
    assert state["active"]
    assert state["negotiated"]
    assert (state["device"], state["order"]) == ("virtio0", 9)


@pytest.mark.parametrize(
    ("features", "bound", "device_id", "active"),
    [
        ("0110000100000000", True, "0x0005", False),  # bit 5 (REPORTING) not negotiated
        ("0110010100000000", False, "0x0005", False),  # driver unbound: nothing reports
        ("0110010100000000", True, "0x0001", False),  # a network device, not a balloon
    ],
)
def test_reporting_is_inactive_otherwise(
    tmp_path: Path, features: str, bound: bool, device_id: str, active: bool
) -> None:
    assert machine.page_reporting(fake_sys(tmp_path, features, bound, device_id))["active"] is active


def test_no_virtio_at_all(tmp_path: Path) -> None:
    assert machine.page_reporting(tmp_path)["note"] == "no virtio balloon"


def test_pausing_unbinds_and_always_rebinds(tmp_path: Path) -> None:
    root = fake_sys(tmp_path)
    driver = root / "bus" / "virtio" / "drivers" / "virtio_balloon"
    seen = {}

    def interrupted_run() -> None:
        with machine.page_reporting_paused(True, root) as state:
            seen.update(state, unbound=(driver / "unbind").read_text())
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted_run()
    assert seen["paused"]
    assert seen["unbound"] == "virtio0"
    assert (driver / "bind").read_text() == "virtio0", "the driver is bound again even when the run is interrupted"


def test_not_pausing_touches_nothing(tmp_path: Path) -> None:
    root = fake_sys(tmp_path)
    with machine.page_reporting_paused(False, root) as state:
        assert state["active"]
        assert not state["paused"]
    assert not (root / "bus" / "virtio" / "drivers" / "virtio_balloon" / "unbind").exists()


def test_a_pause_that_is_refused_says_why(tmp_path: Path) -> None:
    root = fake_sys(tmp_path)
    (root / "bus" / "virtio" / "drivers" / "virtio_balloon" / "unbind").mkdir()  # writing to it fails
    with machine.page_reporting_paused(True, root) as state:
        assert not state["paused"]
        assert "could not pause it" in str(state["note"])


def test_busy_record_names_each_sign_of_a_busy_machine() -> None:
    cores = machine.psutil.cpu_count()
    start = machine.Snapshot(0.0, (cores * 1.0, 0.0, 0.0), busy_s=0.0, steal_s=0.0, own_cpu_s=0.0)
    end = machine.Snapshot(10.0, (0.0, 0.0, 0.0), busy_s=10.0 * cores, steal_s=cores * 1.0, own_cpu_s=1.0)
    record = machine.busy_record(start, end)
    assert record["busy"]
    assert len(record["warnings"]) == 3, record["warnings"]
    quiet = machine.Snapshot(10.0, (0.0, 0.0, 0.0), busy_s=1.0, steal_s=0.0, own_cpu_s=1.0)
    assert not machine.busy_record(machine.Snapshot(0.0, (0.0, 0.0, 0.0), 0.0, 0.0, 0.0), quiet)["busy"]


def test_a_failed_rebind_is_reported_not_raised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = fake_sys(tmp_path)
    (root / "bus" / "virtio" / "drivers" / "virtio_balloon" / "bind").mkdir()  # writing to it fails
    with machine.page_reporting_paused(True, root) as state:
        assert state["paused"]
    assert "could not bind virtio0 to virtio_balloon again" in capsys.readouterr().err
