"""Spread and stability: the one definition every table, plot and comparison uses."""

from __future__ import annotations

import pytest

from bench.timing import stats


def test_tight_rounds_are_stable_with_quartiles_and_minmax_range() -> None:
    figure = stats.spread([[0.100, 0.101, 0.102], [0.099, 0.100]])
    assert figure.stable
    assert figure.median == pytest.approx(0.100)
    assert (figure.low, figure.high) == (0.099, 0.102), "under 20 rounds the range is min-max"
    assert figure.rounds == 5
    assert figure.samples == 2
    assert figure.range_kind == "min-max"


def test_rounds_spanning_more_than_one_and_a_half_times_are_unstable() -> None:
    figure = stats.spread([[0.537, 0.102, 0.355, 0.104, 0.103]])
    assert not figure.stable
    assert "rounds span 5.26x" in figure.unstable_reason
    assert "IQR is" in figure.unstable_reason


def test_a_wide_iqr_alone_makes_a_figure_unstable() -> None:
    figure = stats.spread([[1.0, 1.0, 1.3, 1.3, 1.3, 1.0, 1.3, 1.0]])
    assert figure.high / figure.low < stats.UNSTABLE_RANGE_RATIO
    assert figure.unstable_reason == "IQR is 26% of the median", "IQR 0.3 around a median of 1.15"


def test_processes_that_disagree_make_a_figure_bimodal_even_if_each_is_tight() -> None:
    steady_slow, steady_fast = [0.060] * 10, [0.030] * 10
    figure = stats.spread([steady_slow, steady_fast, steady_slow, steady_fast])
    assert "process/pass medians span 2.00x" in figure.unstable_reason
    assert (figure.sample_low, figure.sample_high) == (0.030, 0.060)


def test_from_twenty_rounds_one_stray_round_does_not_hide_a_tight_figure() -> None:
    rounds = [0.050] * 29 + [0.500]
    figure = stats.spread([rounds])
    assert figure.range_kind == "p5-p95"
    assert figure.stable, figure.unstable_reason
    assert not stats.spread([rounds[-6:]]).stable, "among 6 rounds the same stray round must show"


def test_no_rounds_is_an_error_not_a_figure() -> None:
    with pytest.raises(ValueError, match="at least one timed round"):
        stats.spread([[], []])
