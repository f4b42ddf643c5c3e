"""One comparison engine: is A faster than B, slower, indistinguishable, or can it not be told yet? Every speed
answer (the advice's pick, `compare`'s regressions, `versions`' releases) is a ratio of times, its interval and a
verdict read from the interval, computed here.

Method. Rounds come grouped by the process that timed them. The estimate is the ratio of the medians of the
pooled rounds, A / B; its interval a hierarchical bootstrap of the log ratio (each side's processes resampled,
then the rounds within each chosen one, as `bench.reporting.fit.Point.resample` does), vectorised. A plain
percentile interval over 2-3 processes is too narrow (at 95% it held the true ratio in ~90% of trials on 3
processes x 10 rounds with process offsets of 4% sd, 84% at 10%, 75% on 2 processes): the plug-in variance of n
process means is (n-1)/n of the true one, and z ignores how little n processes say about how processes differ.
So the interval is an expanded percentile interval (after Hesterberg): the distances from the estimate to the
percentiles are scaled by sqrt(n/(n-1)) x t_df / z, n counting processes (or rounds, where a side has a single
process: its interval then says nothing about how processes differ). df is Satterthwaite's for the bootstrap
variance as a between-process part (n - 1 df) plus a within-process part (rounds - n df), both from a one-way
analysis of variance of the side's log rounds, then Welch's across the sides: processes that agree leave about
as many df as rounds, processes that disagree n - 1. df is rounded down and capped at MAX_DF (both widen).

`paired=True` is for interleaved timing (A's round i of process j timed next to B's): both sides need the same
shape, and each resample takes the same processes and rounds of A and B, so a drift that neighbouring rounds
share cancels in the ratio instead of widening the interval. The estimate is the same; df comes from the log
ratios of the pairs.

A gate decides many cases at once (`decide_among`): its directional verdicts use intervals at 1 - (1 - c) / m
for m cases (Bonferroni), so a false alarm anywhere among them stays under 1 - c; `rank` does the same for its
k - 1 comparisons.

Verdict, for the effect threshold t (default 0.10) and the interval [low, high] of A / B at confidence c
(default 0.95): criterion's rule, with an equivalence test added.
  SLOWER             low > 1 + t: the whole interval is beyond the threshold;
  FASTER             high < 1 / (1 + t);
  INDISTINGUISHABLE  1 / (1 + t) <= low and high <= 1 + t: whatever the difference, it is under the threshold;
  UNDECIDED          otherwise, the interval crossing a threshold's edge: a wide interval around 1 ("not
                     significant"), or a change surely there but perhaps under t. More rounds would decide.
The estimate always lies inside its interval. Input that more rounds cannot fix (under 2 rounds a side, an
empty process, a time not positive and finite, paired sides of different shapes) raises ValueError.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from statistics import NormalDist

import numpy as np

THRESHOLD = 0.10
"""A change under this fraction is not worth reporting (criterion's noise threshold is 0.01-0.05)."""
CONFIDENCE = 0.95
RESAMPLES = 2000
TAIL_DRAWS = 5
"""The fewest draws a tail's percentile is read from; beyond (a joint interval's far tails) it is extrapolated."""
SEED = 0
MAX_DF = 200
BOUND = 1e6
"""An interval's ends are clamped to [1/BOUND, BOUND]: beyond, it says nothing (a joint interval over hundreds
of cases with 1 degree of freedom reaches e^1000, which no float holds)."""
_CHUNK = 4_000_000
"""At most this many drawn rounds are held at once: the bootstrap runs in chunks of resamples."""

Samples = Sequence[Sequence[float]] | Sequence[float]
"""Rounds in seconds, grouped by process: [[0.101, 0.099], [0.110, 0.108]]; a flat sequence is one process."""


class Verdict(enum.Enum):
    FASTER = "faster"
    SLOWER = "slower"
    INDISTINGUISHABLE = "indistinguishable"
    UNDECIDED = "cannot decide yet"


def _x(ratio: float, low: float, high: float) -> str:
    return f"{ratio:.2f}x [{low:.2f}–{high:.2f}]"


@dataclass(frozen=True)
class Decision:
    ratio: float
    """Median time of A / median time of B: under 1, A is faster."""
    low: float
    high: float
    verdict: Verdict
    confidence: float
    threshold: float
    rounds_a: int
    rounds_b: int
    processes_a: int
    processes_b: int
    paired: bool = False
    comparisons: int = 1
    """How many comparisons this one was decided among (`decide_among`): a directional verdict holds for all
    of them together."""

    @property
    def factor(self) -> str:
        """The ratio as a factor of at least 1, with its interval: '1.52x [1.31-1.70]' for a ratio of 0.66."""
        if self.ratio < 1:
            return _x(1 / self.ratio, 1 / self.high, 1 / self.low)
        return _x(self.ratio, self.low, self.high)

    def describe(self, a_name: str = "A", b_name: str = "B") -> str:
        """hyperfine's form: 'A is 1.52x [1.31-1.70] faster than B'."""
        if self.verdict in (Verdict.FASTER, Verdict.SLOWER):
            return f"{a_name} is {self.factor} {self.verdict.value} than {b_name}"
        plain = _x(self.ratio, self.low, self.high)
        if self.verdict is Verdict.INDISTINGUISHABLE:
            return f"{a_name} and {b_name} are indistinguishable here: {plain}"
        if self.comparisons > 1 and verdict_of(self.low, self.high, self.threshold) is not Verdict.UNDECIDED:
            joint = f"{family_confidence(self.confidence, self.comparisons):.4%}".rstrip("0").rstrip(".")
            return (
                f"{a_name} vs {b_name} is undecided: {plain} on its own, but not at the {joint} confidence that "
                f"{self.comparisons} comparisons need together (more rounds would decide it)"
            )
        return (
            f"{a_name} vs {b_name} is undecided: {plain} "
            "(more rounds, a quieter machine, or fewer candidates would decide it)"
        )

    def inverted(self) -> Decision:
        """The same decision, read as B against A."""
        swapped = {Verdict.FASTER: Verdict.SLOWER, Verdict.SLOWER: Verdict.FASTER}.get(self.verdict, self.verdict)
        return Decision(
            *(1 / self.ratio, 1 / self.high, 1 / self.low, swapped, self.confidence, self.threshold),
            *(self.rounds_b, self.rounds_a, self.processes_b, self.processes_a, self.paired, self.comparisons),
        )


def verdict_of(low: float, high: float, threshold: float) -> Verdict:
    """The verdict on an interval of the time ratio A / B (see the module docstring)."""
    if low > 1 + threshold:
        return Verdict.SLOWER
    if high < 1 / (1 + threshold):
        return Verdict.FASTER
    if 1 / (1 + threshold) <= low and high <= 1 + threshold:
        return Verdict.INDISTINGUISHABLE
    return Verdict.UNDECIDED


def _groups(samples: Samples, side: str) -> list[np.ndarray]:
    items = list(samples)
    if items and all(isinstance(item, Real) for item in items):
        items = [items]
    groups = []
    for number, group in enumerate(items, 1):
        values = np.asarray(group, dtype=float)
        if values.ndim != 1 or not len(values):
            raise ValueError(f"{side}'s process {number} is not a non-empty list of rounds in seconds: {group!r}")
        bad = np.flatnonzero(~np.isfinite(values) | (values <= 0))
        if len(bad):
            raise ValueError(
                f"{side}'s round {bad[0] + 1} of process {number} is {values[bad[0]]}: "
                "every round must be a positive, finite time in seconds"
            )
        groups.append(values)
    if (total := sum(map(len, groups))) < 2:
        raise ValueError(f"{side} has {total} round(s): a comparison needs at least 2 a side (time more rounds)")
    return groups


def _draws(groups: list[np.ndarray], resamples: int, generator: np.random.Generator) -> np.ndarray:
    """How often each resample takes each round (resamples x rounds, the groups concatenated): processes drawn
    with replacement, then as many rounds as each chosen process has, from it."""
    sizes = np.array([len(values) for values in groups])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    n, width, total = len(sizes), int(sizes.max()), int(sizes.sum())
    small = np.min_scalar_type(n * width)  # what a count, and a running sum of counts, can reach
    step, chunks = max(1, _CHUNK // (n * width)), []
    for begin in range(0, resamples, step):
        count = min(step, resamples - begin)
        chosen = generator.integers(0, n, (count, n))
        offsets = (starts[chosen] + np.arange(count)[:, None] * total)[..., None]
        if (sizes == width).all():
            cells = (generator.integers(0, width, (count, n, width)) + offsets).ravel()
        else:
            size = sizes[chosen][..., None]
            picks = np.minimum((generator.random((count, n, width)) * size).astype(np.intp), size - 1)
            cells = (offsets + picks)[np.arange(width) < size]
        chunks.append(np.bincount(cells, minlength=count * total).astype(small).reshape(count, total))
    return np.concatenate(chunks)


def _medians(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each resample's median, from the rounds' values and each resample's counts of them."""
    order = np.argsort(values, kind="stable")
    cumulative = counts[:, order].cumsum(axis=1, dtype=counts.dtype)
    taken = cumulative[:, -1:]
    lower = (cumulative <= (taken - 1) // 2).sum(axis=1)
    upper = (cumulative <= taken // 2).sum(axis=1)
    return (values[order][lower] + values[order][upper]) / 2


def t_quantile(probability: float, df: int) -> float:
    """Student's t quantile for a whole df >= 1: bisection on its closed-form distribution (A&S 26.7.3-4)."""

    def central(theta: float) -> float:
        """P(|T| < sqrt(df) tan theta)."""
        cos2, term, total, sin = math.cos(theta) ** 2, 1.0, 1.0, math.sin(theta)
        for k in range(2 + df % 2, df - 1, 2):
            term *= cos2 * (k - 1) / k
            total += term
        return sin * total if df % 2 == 0 else 2 / math.pi * (theta + sin * math.cos(theta) * total * (df > 1))

    low, high = 0.0, math.pi / 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if central(middle) < abs(2 * probability - 1) else (low, middle)
    return math.copysign(math.sqrt(df) * math.tan((low + high) / 2), probability - 0.5)


def _side(logs: list[np.ndarray]) -> tuple[int, float]:
    """A side's units (processes, or rounds of a single process) and the df of its bootstrap variance."""
    n, total = len(logs), sum(map(len, logs))
    if n == 1:
        return total, total - 1
    grand = np.concatenate(logs).mean()
    between = sum(len(x) * (x.mean() - grand) ** 2 for x in logs) / (n * total)
    within = sum(((x - x.mean()) ** 2).sum() for x in logs) * (1 - n / total) / max(total - n, 1) / total
    if between + within <= 0:
        return n, n - 1
    return n, (between + within) ** 2 / (between**2 / (n - 1) + within**2 / max(total - n, 1))


def _expansion(variances: Sequence[float], sides: Sequence[tuple[int, float]], confidence: float) -> float:
    """sqrt(n/(n-1)) x t_df / z over one or two sides, Welch-Satterthwaite across them."""
    corrected = [v * n / (n - 1) for v, (n, _) in zip(variances, sides, strict=True)]
    if sum(variances) <= 0:
        return 1.0
    df = sum(corrected) ** 2 / sum(v**2 / d for v, (_, d) in zip(corrected, sides, strict=True))
    quantile = (1 + confidence) / 2
    t = t_quantile(quantile, max(1, min(MAX_DF, math.floor(df + 1e-9))))
    return math.sqrt(sum(corrected) / sum(variances)) * t / NormalDist().inv_cdf(quantile)


def decide(
    a: Samples,
    b: Samples,
    *,
    threshold: float = THRESHOLD,
    confidence: float = CONFIDENCE,
    paired: bool = False,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Decision:
    """A's time against B's: the ratio of medians A / B, its interval and its verdict (module docstring)."""
    (decision,) = _decisions(a, b, (confidence,), threshold=threshold, paired=paired, resamples=resamples, seed=seed)
    return decision


def _decisions(
    a: Samples,
    b: Samples,
    confidences: tuple[float, ...],
    *,
    threshold: float,
    paired: bool,
    resamples: int,
    seed: int,
) -> list[Decision]:
    """`decide` at each of `confidences`, from one bootstrap of the two sides (the same draws for each)."""
    if not all(0 < confidence < 1 for confidence in confidences) or threshold < 0 or resamples < 100:
        raise ValueError(
            "need 0 < confidence < 1, threshold >= 0 and at least 100 resamples: "
            f"found {', '.join(map(str, confidences))}, {threshold} and {resamples}"
        )
    groups_a, groups_b = _groups(a, "A"), _groups(b, "B")
    values_a, values_b = np.concatenate(groups_a), np.concatenate(groups_b)
    generator = np.random.default_rng(seed)
    if paired:
        if (shape_a := list(map(len, groups_a))) != (shape_b := list(map(len, groups_b))):
            raise ValueError(
                f"a paired comparison needs the same rounds by process on both sides: A has {shape_a}, "
                f"B {shape_b} (compare them unpaired)"
            )
        counts_a = counts_b = _draws(groups_a, resamples, generator)
    else:
        counts_a, counts_b = _draws(groups_a, resamples, generator), _draws(groups_b, resamples, generator)
    log_a, log_b = np.log(_medians(values_a, counts_a)), np.log(_medians(values_b, counts_b))
    draws = log_a - log_b
    if paired:
        variances, sides = [draws.var()], [_side([np.log(x / y) for x, y in zip(groups_a, groups_b, strict=True)])]
    else:
        variances, sides = [log_a.var(), log_b.var()], [_side(list(map(np.log, g))) for g in (groups_a, groups_b)]
    estimate = math.log(np.median(values_a) / np.median(values_b))
    shape = (len(values_a), len(values_b), len(groups_a), len(groups_b))
    found = []
    for confidence in confidences:
        expansion = _expansion([float(v) for v in variances], sides, confidence)
        # a tail with fewer than TAIL_DRAWS of the draws (a joint interval: 273 cases put 0.009% in each) is read
        # at the farthest tail the draws do estimate and stretched to its own by the normal quantiles: the plain
        # percentile of 2000 draws there was 17% too narrow against 200,000
        tail = (1 - confidence) / 2
        reach = max(tail, min(0.5, TAIL_DRAWS / resamples))
        below, above = np.quantile(draws, [reach, 1 - reach])
        stretch = NormalDist().inv_cdf(1 - tail) / NormalDist().inv_cdf(1 - reach) if reach > tail else 1.0
        low = math.exp(max(estimate - expansion * stretch * max(estimate - below, 0.0), -math.log(BOUND)))
        high = math.exp(min(estimate + expansion * stretch * max(above - estimate, 0.0), math.log(BOUND)))
        verdict = verdict_of(low, high, threshold)
        found.append(Decision(math.exp(estimate), low, high, verdict, confidence, threshold, *shape, paired=paired))
    return found


def family_confidence(confidence: float, comparisons: int) -> float:
    """The confidence each of `comparisons` intervals needs for all of them to hold together at `confidence`
    (Bonferroni: 1 - (1 - confidence) / comparisons)."""
    return 1 - (1 - confidence) / max(1, comparisons)


def decide_among(
    a: Samples,
    b: Samples,
    *,
    comparisons: int,
    threshold: float = THRESHOLD,
    confidence: float = CONFIDENCE,
    paired: bool = False,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Decision:
    """`decide`, for one of `comparisons` decided together (a gate's every case): a directional verdict
    (FASTER, SLOWER) needs the interval at `family_confidence`, so that across all of them a false alarm comes
    out at most 1 - confidence of the time (273 cases at 95% each gave 3 false "slower" between two runs of one
    commit); INDISTINGUISHABLE needs the interval at `confidence` (missing a change is a per-case error, the
    gate's power). A case slower on its own interval but not on the joint one is UNDECIDED, and says so."""
    options = {"threshold": threshold, "paired": paired, "resamples": resamples, "seed": seed}
    if comparisons <= 1:
        return decide(a, b, confidence=confidence, **options)
    single, joint = _decisions(a, b, (confidence, family_confidence(confidence, comparisons)), **options)
    if joint.verdict in (Verdict.FASTER, Verdict.SLOWER):
        return dataclasses.replace(joint, comparisons=comparisons)
    verdict = Verdict.INDISTINGUISHABLE if single.verdict is Verdict.INDISTINGUISHABLE else Verdict.UNDECIDED
    return dataclasses.replace(single, verdict=verdict, comparisons=comparisons)


@dataclass(frozen=True)
class Ranking:
    order: tuple[str, ...]
    """The candidates by median time, fastest first (equal medians by name)."""
    medians: Mapping[str, float]
    decisions: Mapping[str, Decision]
    """The leader (as A) against each other candidate (as B), by the other's name."""
    contenders: tuple[str, ...]
    """The leader and every candidate it is not decided FASTER than: any of them may be the fastest."""

    @property
    def leader(self) -> str:
        return self.order[0]

    @property
    def pick(self) -> str | None:
        """The fastest candidate, where it is decided faster than every other one; None on a tie."""
        return self.leader if len(self.contenders) == 1 else None

    def describe(self) -> str:
        """'fastest: A, 1.60x [1.30-1.90] faster than the next, B', or 'A and B tie here (1.05x [0.90-1.20]);
        C is 2.10x [1.80-2.40] slower than A'."""
        if len(self.order) == 1:
            return f"fastest: {self.leader}, the only candidate"
        slower = [name for name in self.order if name not in self.contenders]
        later = [f"{name} is {self.decisions[name].factor} slower than {self.leader}" for name in slower]
        if self.pick is not None:
            head = f"fastest: {self.leader}, {self.decisions[slower[0]].factor} faster than the next, {slower[0]}"
            return "; ".join([head, *later[1:]])
        others = self.contenders[1:]
        tie = all(self.decisions[name].verdict is Verdict.INDISTINGUISHABLE for name in others)
        factors = [self.decisions[name].inverted().factor for name in others]
        detail = factors[0] if len(others) == 1 else ", ".join(f"{n} {f}" for n, f in zip(others, factors, strict=True))
        names = f"{', '.join(self.contenders[:-1])} and {self.contenders[-1]}"
        return "; ".join([f"{names} {'tie here' if tie else 'cannot be told apart yet'} ({detail})", *later])


def rank(
    candidates: Mapping[str, Samples],
    *,
    threshold: float = THRESHOLD,
    confidence: float = CONFIDENCE,
    simultaneous: bool = True,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    paired: Callable[[str, str], bool] | None = None,
) -> Ranking:
    """Order the candidates by median and decide the fastest against each other one. With `simultaneous`, each
    of the k - 1 comparisons runs at confidence 1 - (1 - confidence) / (k - 1) (Bonferroni), so the intervals
    printed hold together. The leader has the lowest median and each interval holds its estimate, so no
    candidate is ever decided faster than the leader: the pick is never one that another candidate beats.
    `paired(a, b)` says which two candidates were timed side by side (the same processes, round i next to round
    i): those are compared paired where their shapes match, so the processes' offsets cancel."""
    if not candidates:
        raise ValueError("rank needs at least one candidate")
    medians = {name: float(np.median(np.concatenate(_groups(rounds, name)))) for name, rounds in candidates.items()}
    order = tuple(sorted(medians, key=lambda name: (medians[name], name)))
    if simultaneous and len(order) > 2:
        confidence = 1 - (1 - confidence) / (len(order) - 1)
    leader = order[0]
    against = functools.partial(decide, candidates[leader], threshold=threshold, confidence=confidence, seed=seed)

    def side_by_side(name: str) -> bool:
        shape = [len(group) for group in _groups(candidates[name], name)]
        return bool(paired and paired(leader, name)) and shape == [len(g) for g in _groups(candidates[leader], leader)]

    decisions = {name: against(candidates[name], resamples=resamples, paired=side_by_side(name)) for name in order[1:]}
    contenders = (leader, *(name for name in order[1:] if decisions[name].verdict is not Verdict.FASTER))
    return Ranking(order, medians, decisions, contenders)


class StopReason(enum.Enum):
    DECIDED = "decided"
    BUDGET = "budget spent"
    MAX_ROUNDS = "max rounds"


@dataclass(frozen=True)
class Stopped:
    decision: Decision
    reason: StopReason
    rounds: int
    """How many times `sample` was called."""
    elapsed_s: float


def until_decided(
    sample: Callable[[], object],
    decide: Callable[[], Decision],
    *,
    budget_s: float,
    min_rounds: int = 2,
    max_rounds: int = 100,
    clock: Callable[[], float] = time.monotonic,
) -> Stopped:
    """Call `sample` (time one more round of each side) until `decide()` is not UNDECIDED, the budget is spent
    or `max_rounds` were taken: BenchmarkDotNet's stopping criteria. The first `min_rounds` are always taken;
    after them, no round is started that the last one's duration says would end past the budget."""
    if not 0 <= min_rounds <= max_rounds:
        raise ValueError(f"need 0 <= min_rounds <= max_rounds: found {min_rounds} and {max_rounds}")
    start = last = clock()
    rounds, round_s = 0, 0.0
    while True:
        if rounds >= min_rounds:
            decision = decide()
            elapsed = clock() - start
            if decision.verdict is not Verdict.UNDECIDED:
                return Stopped(decision, StopReason.DECIDED, rounds, elapsed)
            if rounds >= max_rounds:
                return Stopped(decision, StopReason.MAX_ROUNDS, rounds, elapsed)
            if elapsed + round_s > budget_s:
                return Stopped(decision, StopReason.BUDGET, rounds, elapsed)
        sample()
        rounds += 1
        now = clock()
        round_s, last = now - last, now
