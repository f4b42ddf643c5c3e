"""One place for the statistics every figure is published with: median, spread, and stability.

A figure pools its rounds from several samples (processes x passes, see `bench.timing.plan.Preset`). Its
spread is the interquartile range and a range: min-max under RANGE_QUANTILE_MIN_ROUNDS rounds,
5th-95th percentile from there on (one stray round among 30 should not hide a tight figure, but
among 5 it must show). A figure is `unstable` when its rounds or its samples disagree: then it is
published as a range, never as a crisp number.

The same function serves `results` (assembly), `report` and the scale report, so an IQR means the same
thing everywhere (quartiles by linear interpolation, numpy's default). Stability describes a figure; it
decides nothing: every decision compares the rounds themselves (`bench.decide`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

UNSTABLE_RANGE_RATIO = 1.5
"""Rounds spanning more than this factor (range high / range low) make a figure unstable."""
UNSTABLE_IQR_FRACTION = 0.20
"""An interquartile range wider than this fraction of the median makes a figure unstable."""
UNSTABLE_SAMPLE_RATIO = 1.5
"""Sample medians (one per process and pass) spanning more than this factor: bimodal, unstable."""
RANGE_QUANTILE_MIN_ROUNDS = 20


@dataclass(frozen=True)
class Spread:
    median: float
    q1: float
    q3: float
    low: float
    high: float
    rounds: int
    samples: int
    sample_low: float
    sample_high: float
    unstable_reason: str = ""

    @property
    def stable(self) -> bool:
        return not self.unstable_reason

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def range_kind(self) -> str:
        return "p5-p95" if self.rounds >= RANGE_QUANTILE_MIN_ROUNDS else "min-max"


def spread(samples: Sequence[Sequence[float]]) -> Spread:
    """Median, quartiles, range and stability of the rounds of `samples` (each one process/pass)."""
    groups = [list(group) for group in samples if len(group)]
    if not groups:
        raise ValueError("a figure needs at least one timed round")
    data = np.concatenate([np.asarray(group, dtype=float) for group in groups])
    q1, median, q3 = np.percentile(data, [25, 50, 75])
    if len(data) >= RANGE_QUANTILE_MIN_ROUNDS:
        low, high = np.percentile(data, [5, 95])
    else:
        low, high = data.min(), data.max()
    medians = [float(np.median(group)) for group in groups]
    sample_low, sample_high = min(medians), max(medians)
    reasons = []
    if low > 0 and high / low > UNSTABLE_RANGE_RATIO:
        reasons.append(f"rounds span {high / low:.2f}x")
    if median > 0 and (q3 - q1) / median > UNSTABLE_IQR_FRACTION:
        reasons.append(f"IQR is {(q3 - q1) / median:.0%} of the median")
    if len(groups) > 1 and sample_low > 0 and sample_high / sample_low > UNSTABLE_SAMPLE_RATIO:
        reasons.append(f"process/pass medians span {sample_high / sample_low:.2f}x")
    return Spread(
        median=float(median),
        q1=float(q1),
        q3=float(q3),
        low=float(low),
        high=float(high),
        rounds=len(data),
        samples=len(groups),
        sample_low=sample_low,
        sample_high=sample_high,
        unstable_reason="; ".join(reasons),
    )
