"""Seed 001's checkpoint policy: keep a checkpoint when the loss improves by at least 10%."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ImprovementPolicy:
    """Decide, epoch by epoch, whether to keep a checkpoint.

    The first loss is always kept; after that a loss is kept when it is at most
    `(1 - min_improvement)` times the last kept loss.
    """

    min_improvement: float = 0.10
    best: float | None = None
    kept: list[int] = field(default_factory=list)

    def should_save(self, epoch: int, loss: float) -> bool:
        if not 0 <= self.min_improvement < 1:
            raise ValueError(f"min_improvement must be in [0, 1), got {self.min_improvement}")
        if loss != loss:  # NaN never improves anything
            return False
        if self.best is None or loss <= self.best * (1 - self.min_improvement):
            self.best = loss
            self.kept.append(epoch)
            return True
        return False
