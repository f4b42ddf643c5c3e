"""A loader's cost model, fitted to the scaling sweep: seconds = per_load + per_file x files + per_tensor x
tensors + per_byte x bytes, each cost at least zero, so a user can predict a load of their own model's shape.
`per_load` is what a call costs whatever it reads (fastsafetensors starts its threads, Run:ai its streamer);
without it that cost lands in the per-file or per-tensor cost and the prediction for many shards is wrong.

The fit minimizes relative error (each point weighted by 1/median: the sweep spans 1 MiB to gigabytes, and
an unweighted fit would only see the largest points), by non-negative least squares. Its uncertainty comes
from the rounds: each point's processes and the rounds within them are resampled, the medians refitted, and
the 5th-95th percentiles of each cost are its interval. That interval is the noise of the timings only: how
well the model describes the loader is `worst_residual`, reported beside it. A fit whose points miss it by
more than MAX_GOOD_RESIDUAL is reported as not describing the loader (its costs are then not advice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

TERMS = ("load", "files", "tensors", "bytes")
BOOTSTRAP = 200
MAX_GOOD_RESIDUAL = 0.35
"""A fit that misses a point's median by more than this fraction does not describe the loader."""


@dataclass(frozen=True)
class Point:
    files: int
    tensors: int
    bytes: int
    rounds: tuple[float, ...]
    samples: tuple[tuple[float, ...], ...] = ()
    """The rounds by process, where there were several: the bootstrap resamples processes, then rounds within
    them, so a difference between processes widens the interval instead of vanishing in the pool."""

    def resample(self, generator: np.random.Generator) -> float:
        groups = self.samples or (self.rounds,)
        chosen = [groups[i] for i in generator.integers(0, len(groups), len(groups))]
        return float(np.median([value for group in chosen for value in generator.choice(group, len(group))]))

    @property
    def median(self) -> float:
        return float(np.median(self.rounds))


@dataclass(frozen=True)
class Fit:
    per_load_s: float
    per_file_s: float
    per_tensor_s: float
    per_byte_s: float
    intervals: dict[str, tuple[float, float]]
    """Each cost's 5th-95th percentile over the bootstrap, by term."""
    worst_residual: float
    """The largest |fitted - median| / median over the points."""
    points: int

    @property
    def describes(self) -> bool:
        return self.worst_residual <= MAX_GOOD_RESIDUAL

    @property
    def gbps(self) -> float:
        """The per-byte cost as a bandwidth (inf where it is zero)."""
        return 1 / self.per_byte_s / 1e9 if self.per_byte_s > 0 else float("inf")

    def predict(self, files: int, tensors: int, nbytes: int) -> float:
        return self.per_load_s + self.per_file_s * files + self.per_tensor_s * tensors + self.per_byte_s * nbytes

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "describes": self.describes, "gbps": self.gbps}


def _design(points: Sequence[Point]) -> np.ndarray:
    return np.array([[1, p.files, p.tensors, p.bytes] for p in points], dtype=float)


def _solve(design: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    from scipy.optimize import nnls  # scipy is in the core environment only (JAX needs it); tests import this anywhere

    scale = design.max(axis=0)
    weighted = design / scale / seconds[:, None]
    coefficients, _ = nnls(weighted, np.ones(len(seconds)))
    return coefficients / scale


def check_design(points: Sequence[Point]) -> None:
    """ValueError unless the points vary files, tensors and bytes independently of each other and of the
    per-load cost (else the costs cannot be told apart)."""
    design = _design(points)
    if len(points) < len(TERMS) or np.linalg.matrix_rank(design / design.max(axis=0)) < len(TERMS):
        constant = [term for term, column in zip(TERMS[1:], design.T[1:], strict=True) if len(set(column)) == 1]
        detail = f" ({', '.join(constant)} never change)" if constant else ""
        raise ValueError(
            f"the sweep's {len(points)} points cannot separate the costs per load, file, tensor and byte{detail}: "
            "vary each of them"
        )


def fit(points: Sequence[Point], seed: int = 0) -> Fit:
    check_design(points)
    design = _design(points)
    medians = np.array([p.median for p in points])
    if (medians <= 0).any():
        raise ValueError("every point needs a positive time")
    coefficients = _solve(design, medians)
    generator = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOTSTRAP):
        resampled = np.array([p.resample(generator) for p in points])
        draws.append(_solve(design, resampled))
    low, high = np.percentile(np.array(draws), [5, 95], axis=0)
    fitted = design @ coefficients
    return Fit(
        per_load_s=float(coefficients[0]),
        per_file_s=float(coefficients[1]),
        per_tensor_s=float(coefficients[2]),
        per_byte_s=float(coefficients[3]),
        intervals={term: (float(low[i]), float(high[i])) for i, term in enumerate(TERMS)},
        worst_residual=float(np.max(np.abs(fitted - medians) / medians)),
        points=len(points),
    )
