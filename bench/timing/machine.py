"""The machine around a run: was it busy, and does its hypervisor take freed memory back?

Busy: load average, CPU steal and other processes' CPU time are read before and after the run
(`snapshot`, `busy_record`); a run on a busy machine is recorded as such in env.json and warned
about, since its figures measure the machine's other work too.

Free page reporting: a VM whose virtio-balloon device negotiated VIRTIO_BALLOON_F_REPORTING hands
pages its kernel frees back to the host, which discards them; the next touch of such a page
faults in the host too. Measured on this project's VM (2-vCPU Firecracker guest): re-touching
256 MiB freed 0.5 s or more earlier ran at 0.33 GB/s, against 6.3 GB/s when touched again at
once, and at 4.8-8.0 GB/s whatever the pause with reporting paused. Every load allocates fresh
pages, so whether they were given back depends on how long the round's setup took: this is the
round-to-round noise that spans 5x (VGG16 safetensors rounds of 102-537 ms). Touching memory in
advance does not help: the reporting thread takes the freed pages back within a second, and
freed blocks go to the tail of the free lists, so the next allocation does not get them (4 tries
of each, pre-touching 1x-4x the load: timed touches of 49-864 ms).

`page_reporting_paused` unbinds the balloon driver for the duration of a run (as root; rebinding
restores it, also after Ctrl-C or SIGTERM) when asked to: `serbench run --pause-page-reporting`,
which `make bench` passes. Measured with the VGG16-shaped dict (torch and numpy, one thread, 12
rounds each over 3 passes x 2 processes): without the pause 11 of 17 figures were unstable, loads
spanning up to 6.6x (rounds of the same fault count taking 2-3x longer); with it 4 of 17, and
every load stable (within 1.43x). For 64 MiB, whose rounds follow each other within a second,
one paired run showed no difference (15 of 18 unstable either way). Without the pause the run
records that reporting was active, and the report says so.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

SYS = Path("/sys")
BALLOON_DEVICE_ID = 0x0005
REPORTING_FEATURE_BIT = 5
"""VIRTIO_BALLOON_F_REPORTING in the device's feature bits (`features` lists bit 0 first)."""
BUSY_OTHER_CPU_FRACTION = 0.10
BUSY_STEAL_FRACTION = 0.02
BUSY_LOAD_PER_CORE = 0.5


@dataclass(frozen=True)
class Snapshot:
    clock: float
    load_average: tuple[float, float, float]
    busy_s: float
    steal_s: float
    own_cpu_s: float


def _own_cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def snapshot() -> Snapshot:
    cpu = psutil.cpu_times()
    busy = sum(getattr(cpu, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))
    return Snapshot(time.monotonic(), os.getloadavg(), busy, getattr(cpu, "steal", 0.0), _own_cpu_seconds())


def busy_record(start: Snapshot, end: Snapshot) -> dict[str, object]:
    """How busy the machine was between two snapshots, and a warning for each sign that it was."""
    cores = psutil.cpu_count() or 1
    capacity = max(end.clock - start.clock, 1e-9) * cores
    other = max(0.0, (end.busy_s - start.busy_s) - (end.own_cpu_s - start.own_cpu_s)) / capacity
    steal = (end.steal_s - start.steal_s) / capacity
    warnings = []
    if start.load_average[0] > BUSY_LOAD_PER_CORE * cores:
        warnings.append(f"load average {start.load_average[0]:.2f} on {cores} cores when the run started")
    if other > BUSY_OTHER_CPU_FRACTION:
        warnings.append(f"other processes (and the kernel's I/O work) used {other:.0%} of the CPUs during the run")
    if steal > BUSY_STEAL_FRACTION:
        warnings.append(f"the hypervisor stole {steal:.1%} of the CPU time")
    return {
        "seconds": round(end.clock - start.clock, 1),
        "load_average_start": start.load_average,
        "load_average_end": end.load_average,
        "other_cpu_fraction": round(other, 4),
        "steal_fraction": round(steal, 4),
        "busy": bool(warnings),
        "warnings": warnings,
    }


def page_reporting(sys_root: Path = SYS) -> dict[str, object]:
    """Whether a virtio-balloon device here reports free pages to the host, and from what order."""
    devices = sys_root / "bus" / "virtio" / "devices"
    order_file = sys_root / "module" / "page_reporting" / "parameters" / "page_reporting_order"
    order = int(order_file.read_text()) if order_file.exists() else None
    for device in sorted(devices.glob("*")) if devices.is_dir() else []:
        try:
            if int((device / "device").read_text(), 16) != BALLOON_DEVICE_ID:
                continue
            features = (device / "features").read_text().strip()
        except (OSError, ValueError):
            continue
        negotiated = len(features) > REPORTING_FEATURE_BIT and features[REPORTING_FEATURE_BIT] == "1"
        bound = (device / "driver").exists()
        return {
            "device": device.name,
            "negotiated": negotiated,
            "active": negotiated and bound,
            "order": order,
            "note": "freed memory goes back to the host; re-touching it faults in the host"
            if negotiated and bound
            else ("balloon driver unbound: not reporting" if negotiated else "the balloon does not report free pages"),
        }
    return {"device": None, "negotiated": False, "active": False, "order": order, "note": "no virtio balloon"}


@contextmanager
def page_reporting_paused(pause: bool, sys_root: Path = SYS) -> Iterator[dict[str, object]]:
    """Yields the reporting state for env.json; when `pause` and reporting is active, the balloon
    driver is unbound for the duration and bound again afterwards, whatever happens inside."""
    state = page_reporting(sys_root)
    if not pause or not state["active"]:
        yield {**state, "paused": False}
        return
    driver = sys_root / "bus" / "virtio" / "drivers" / "virtio_balloon"
    try:
        (driver / "unbind").write_text(str(state["device"]))
    except OSError as error:
        yield {**state, "paused": False, "note": f"{state['note']}; could not pause it ({error.strerror})"}
        return
    try:
        yield {**state, "paused": True, "note": f"paused for this run ({state['device']} unbound, rebound after)"}
    finally:
        try:
            (driver / "bind").write_text(str(state["device"]))
        except OSError as error:  # the run's results still get written; say how to restore it by hand
            print(
                f"serbench: could not bind {state['device']} to virtio_balloon again ({error.strerror}); "
                f"as root: echo {state['device']} > {driver / 'bind'}",
                file=sys.stderr,
            )
