"""Seed 001's policy: keep a checkpoint when the loss improves by 10% over the last kept one."""

from __future__ import annotations

import pytest

from tests.checkpoint_policy import ImprovementPolicy


def test_keeps_first_and_each_ten_percent_improvement() -> None:
    policy = ImprovementPolicy()
    losses = [1.0, 0.95, 0.89, 0.85, 0.79, 0.75, 0.70, float("nan"), 0.5]
    kept = [epoch for epoch, loss in enumerate(losses) if policy.should_save(epoch, loss)]
    assert kept == [0, 2, 4, 6, 8]
    assert policy.best == 0.5
    assert policy.kept == kept


def test_exactly_ten_percent_counts() -> None:
    policy = ImprovementPolicy(min_improvement=0.5)
    assert policy.should_save(0, 2.0)
    assert policy.should_save(1, 1.0)
    assert not policy.should_save(2, 0.51)


def test_rejects_an_impossible_threshold() -> None:
    with pytest.raises(ValueError, match=r"min_improvement must be in \[0, 1\)"):
        ImprovementPolicy(min_improvement=1.5).should_save(0, 1.0)
