"""Per-round evidence: counters that move with what a round really did."""

from __future__ import annotations

import mmap
import threading
import time

from bench.timing import evidence


def test_touching_fresh_memory_shows_as_minor_faults() -> None:
    before = evidence.sample()
    region = mmap.mmap(-1, 8 << 20)  # anonymous, never touched: every page faults once
    for offset in range(0, len(region), mmap.PAGESIZE):
        region[offset] = 1
    after = evidence.sample()
    region.close()
    record = evidence.round_record(before, after, after.clock - before.clock)
    assert record["minflt"] >= (8 << 20) // (2 << 20), "at least one fault per huge page, one per page without"
    assert record["majflt"] == 0


def test_run_queue_delay_counts_every_thread_of_the_process() -> None:
    before = evidence.sample()
    threads = [threading.Thread(target=lambda: sum(range(300_000))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = evidence.sample()
    assert after.runqueue_s >= before.runqueue_s
    assert after.nvcsw >= before.nvcsw


def test_a_round_that_waited_for_the_cpu_is_marked() -> None:
    before = evidence.Counters(0.0, 0, 0, 0, 0, runqueue_s=1.0, steal_s=5.0)
    waited = evidence.Counters(0.1, 10, 0, 1, 3, runqueue_s=1.02, steal_s=5.0)
    robbed = evidence.Counters(0.1, 10, 0, 1, 0, runqueue_s=1.0, steal_s=5.02)
    quiet = evidence.Counters(0.1, 10, 0, 1, 0, runqueue_s=1.001, steal_s=5.0)
    assert evidence.round_record(before, waited, 0.1)["waited"], "20 ms in the run queue of a 100 ms round"
    assert evidence.round_record(before, robbed, 0.1)["waited"], "20 ms stolen by the hypervisor"
    assert not evidence.round_record(before, quiet, 0.1)["waited"]
    assert evidence.round_record(before, quiet, 0.1)["nivcsw"] == 0


def test_sampling_is_cheap_enough_to_sit_beside_every_round() -> None:
    start = time.perf_counter()
    for _ in range(20):
        evidence.sample()
    assert (time.perf_counter() - start) / 20 < 0.05, "read outside the timer, but not a cost to setup either"
