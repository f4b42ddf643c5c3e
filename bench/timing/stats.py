"""One place for the statistics every figure is published with: median, spread, and stability.

A figure pools its rounds from several samples (processes x passes, see `bench.timing.plan.Preset`). Its
spread is the interquartile range and a range: min-max under RANGE_QUANTILE_MIN_ROUNDS rounds,
5th-95th percentile from there on (one stray round among 30 should not hide a tight figure, but
among 5 it must show). A figure is `unstable` when its rounds or its samples disagree: then it is
published as a range, never as a crisp number, and no advice is built on it.

The same function serves `results` (assembly), `report` and `compare`, so an IQR means the same
thing everywhere (quartiles by linear interpolation, numpy's default).
"""

from __future__ import annotations

import math
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


def relative_noise(median: float, q1: float, q3: float, sample_low: float, sample_high: float) -> float:
    """How far a figure moves by chance, relative to its median: the larger of its IQR and the span
    of its sample medians (the drift between processes and passes that rounds within one miss)."""
    if not median or np.isnan(median):
        return float("nan")
    within = (q3 - q1) / median if not np.isnan(q3 - q1) else 0.0
    between = (sample_high - sample_low) / median if not np.isnan(sample_high - sample_low) else 0.0
    return float(max(within, between))


def rank_test_p(base: Sequence[float], new: Sequence[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, ties averaged and corrected)
    that the rounds of `new` come from the distribution of `base`'s; nan with fewer than 3 of either.

    For rounds timed interleaved (`serbench versions`: the releases' processes alternate, so a drift or
    a first-touch pass hits both alike). Rounds of one process are not independent, so the p-value is
    optimistic; it is read with a strict threshold (`bench.reporting.compare.INTERLEAVED_ALPHA`)."""
    a, b = np.asarray(base, float), np.asarray(new, float)
    if len(a) < 3 or len(b) < 3:
        return float("nan")
    values = np.concatenate([a, b])
    order = values.argsort(kind="stable")
    ordered = values[order]
    ranks = np.empty(len(values))
    start, ties = 0, 0.0
    while start < len(ordered):
        end = start
        while end + 1 < len(ordered) and ordered[end + 1] == ordered[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        count = end - start + 1
        ties += count**3 - count
        start = end + 1
    n1, n2, n = len(a), len(b), len(values)
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = (u - n1 * n2 / 2) / np.sqrt(variance)
    return float(math.erfc(abs(z) / math.sqrt(2)))


def paired_direction(base: Sequence[float], new: Sequence[float], samples: int) -> int | None:
    """For two runs whose processes alternated, `samples` of each in the same order: +1 if every one of
    `new`'s sample medians is above its partner's in `base` (the sample timed next to it), -1 if every one
    is below, 0 if they disagree; None where the rounds cannot be paired (unequal or uneven samples)."""
    if samples < 1 or len(base) != len(new) or len(base) % samples:
        return None
    pairs = zip(np.split(np.asarray(base, float), samples), np.split(np.asarray(new, float), samples), strict=True)
    signs = {int(np.sign(np.median(b) - np.median(a))) for a, b in pairs}
    return signs.pop() if len(signs) == 1 and 0 not in signs else 0
